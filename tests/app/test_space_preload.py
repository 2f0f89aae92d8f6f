"""The Aligned-vs-base tab opens on the SmolLM2 pair on a Space that preloaded it (README's `preload_from_hub`
puts both repos into the Space's Hugging Face cache at build time), and on the bundled pair offline.

The "Space" here is the real server started with a Hugging Face cache that holds tiny Llamas saved by transformers
under the two SmolLM2 repo ids (the Hub stays offline: nothing is downloaded). What only a real Space shows, that
its build really fetches those files, is listed in README's deployment section.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from playground.spaces_support import BUNDLED_PAIR, HUB_PAIR
from tests.conftest import start_app, stop_app


def opening_values(url: str) -> dict[str, object]:
    """elem_id -> initial value of the Aligned-vs-base pickers and checkboxes, from the app's own /config."""
    with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as r:
        config = json.load(r)
    wanted = ("compare-left-model", "compare-right-model", "compare-left-chat", "compare-right-chat")
    values = {}
    for comp in config["components"]:
        props = comp.get("props", {})
        if props.get("elem_id") in wanted:
            values[props["elem_id"]] = props.get("value")
    assert set(values) == set(wanted)
    return values


def test_offline_the_tab_opens_on_the_bundled_pair(app_url):
    values = opening_values(app_url)
    assert (values["compare-left-model"], values["compare-right-model"]) == BUNDLED_PAIR
    assert (values["compare-left-chat"], values["compare-right-chat"]) == (False, True)


@pytest.fixture(scope="module")
def preloaded_space(tmp_path_factory):
    from tests.unit._tiny import cache_hub_repo, hf_llama

    cache = tmp_path_factory.mktemp("hf-cache") / "hub"
    for seed, repo in enumerate(HUB_PAIR):
        cache_hub_repo(cache, repo, hf_llama(seed=seed, tie_word_embeddings=True))
    proc, url = start_app({"HF_HUB_CACHE": str(cache), "PLAYGROUND_ALLOW_LOCAL_PATHS": "0"})
    yield url
    stop_app(proc)


def test_a_space_with_the_hub_pair_cached_opens_on_it_and_generates(preloaded_space):
    from gradio_client import Client

    values = opening_values(preloaded_space)
    assert (values["compare-left-model"], values["compare-right-model"]) == HUB_PAIR
    assert (values["compare-left-chat"], values["compare-right-chat"]) == (False, True)
    client = Client(preloaded_space, verbose=False)
    job = client.submit(*HUB_PAIR, "What is a food recipe using apple?", False, True, 1.0, 0, 1.0, 8, 1, 0,
                        api_name="/compare_generate")  # fmt: skip
    list(job)
    left, right, _, right_prompt, status, _eos_curve = job.outputs()[-1]
    assert status.startswith("Done: 1 answer(s) per model") and "answer 1" in left and "answer 1" in right
    assert "<|assistant|>" in right_prompt  # the Instruct side got the chat template
