"""The Sample tab through the real server: streaming generation consumed to the end, step-through, bad inputs.

Until the bundled checkpoints exist, the models are tiny random ones saved with `checkpoints.save` into a temporary
folder whose path is typed into the model box (the server runs on this machine, so it reads the same folder).
Once checkpoints/gpt-tiny etc. exist, the bundled names are used instead.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import torch


# ---------------------------------------------------------------------------------------------- models
def _bundled_or_none(name: str) -> str | None:
    from playground import checkpoints

    folder = Path(checkpoints.BUNDLED[name]["folder"])
    return name if (folder / "config.json").exists() else None


def save_tiny_models(root: Path) -> dict[str, str]:
    """Tiny random GPT and Llama on the bundled tokenizer, saved as the app loads them; returns arch -> folder."""
    from playground import checkpoints
    from playground.gpt import new_gpt
    from playground.llama import new_llama
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    models = {
        "gpt": new_gpt("tiny", vocab_size=tok.vocab_size, context_length=64, n_embd=64, n_layer=2),
        "llama": new_llama("tiny", vocab_size=tok.vocab_size, max_seq_len=64, dim=64, n_layers=2),
    }
    out = {}
    for arch, model in models.items():
        out[arch] = str(checkpoints.save(checkpoints.Bundle(model, tok, {"arch": arch}), root / arch))
    return out


def model_sources(root: Path) -> dict[str, str]:
    """Names for the tests: bundled when trained (gpt-tiny, llama-base, llama-aligned), else tiny random folders."""
    tiny = None
    out = {}
    for key, name, arch in (
        ("gpt", "gpt-tiny", "gpt"),
        ("base", "llama-base", "llama"),
        ("aligned", "llama-aligned", "llama"),
    ):
        source = _bundled_or_none(name)
        if source is None:
            tiny = tiny or save_tiny_models(root)
            source = tiny[arch]
        out[key] = source
    return out


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, str]:
    return model_sources(tmp_path_factory.mktemp("sample-models"))


# ----------------------------------------------------------------------------------------------- helpers
def stream(client, api_name: str, *args) -> list[tuple]:
    """Submit, consume the stream to the end, return every streamed output (the last one is the final)."""
    job = client.submit(*args, api_name=api_name)
    outputs = [tuple(o) for o in job]
    final = job.result()
    if not outputs or outputs[-1] != tuple(final):
        outputs.append(tuple(final))
    return outputs


def generate(
    client, model, prompt="Once upon a time", temperature=1.0, top_k=50, top_p=1.0, max_new=12, answers=1, seed=0
):
    return stream(client, "/sample_generate", model, prompt, temperature, top_k, top_p, max_new, answers, seed)


# ------------------------------------------------------------------------------------------------- tests
def test_generate_streams_to_the_end(client, sources):
    outputs = generate(client, sources["gpt"], max_new=48, answers=2)
    text, status = outputs[-1]
    assert len(outputs) >= 3, "expected streamed updates before the final one"
    assert outputs[0][0].startswith("── answer 1 ──\nOnce upon a time") and outputs[0][1].startswith("Answer 1 of 2")
    assert text.count("── answer") == 2 and text.count("Once upon a time") == 2
    assert status.startswith("Done: 2 answer(s), ")
    first_answer = [len(o[0]) for o in outputs if o[1].startswith("Answer 1")]
    assert first_answer == sorted(first_answer), "the text should grow as tokens arrive"


def test_same_seed_same_text_and_greedy_is_deterministic(client, sources):
    a = generate(client, sources["base"], seed=7, temperature=1.2)[-1][0]
    b = generate(client, sources["base"], seed=7, temperature=1.2)[-1][0]
    c = generate(client, sources["base"], seed=8, temperature=1.2)[-1][0]
    assert a == b
    assert a != c
    g1 = generate(client, sources["base"], seed=1, temperature=0)[-1][0]
    g2 = generate(client, sources["base"], seed=2, temperature=0)[-1][0]
    assert g1 == g2  # greedy ignores the seed


def test_step_through_shows_the_stages_and_matches_generate(client, sources):
    client.predict(api_name="/sample_reset")
    args = (sources["gpt"], "Once upon a time", 0.8, 20, 0.9, 3)
    steps = [client.predict(*args, api_name="/sample_step") for _ in range(3)]
    bars, text, caption = steps[-1][:3]
    assert bars.count("class='pg-stage'") == 4
    assert "raw softmax" in bars and "temperature 0.8" in bars and "k=20" in bars and "p=0.9" in bars
    assert "entropy" in bars and "◀ drawn" in bars
    assert caption.startswith("Step 3: drew")
    assert text.count("class='pg-tok'") == 3
    # the same seed and settings: stepping draws what the first streamed answer drew
    streamed = generate(client, sources["gpt"], temperature=0.8, top_k=20, top_p=0.9, max_new=3, seed=3)[-1][0]
    client.predict(api_name="/sample_reset")
    decoded = html.unescape(re.search(r"class='pg-step-decoded'[^>]*>(.*?)</div>", text, re.S).group(1))
    assert streamed == f"── answer 1 ──\n{decoded}"


SLIDER = r"|less than minimum|greater than maximum"  # gradio checks slider/number bounds before our handler runs


@pytest.mark.parametrize(
    "override,needle",
    [
        ({"temperature": -1}, "Temperature" + SLIDER),
        ({"top_p": 1.5}, "top-p" + SLIDER),
        ({"top_p": 0}, "top-p" + SLIDER),
        ({"top_k": -3}, "top-k" + SLIDER),
        ({"seed": -1}, "Seed" + SLIDER),
        ({"seed": 2**40}, "Seed"),
        ({"max_new": 100_000}, "Max new tokens" + SLIDER),
        ({"answers": 99}, "answers" + SLIDER),
        ({"prompt": ""}, "prompt"),
        ({"model": "/no/such/folder"}, "no such folder"),
    ],
)
def test_bad_inputs_give_clear_messages(client, sources, override, needle):
    from gradio_client.exceptions import AppError

    args = {
        "model": sources["gpt"],
        "prompt": "Hello",
        "temperature": 1.0,
        "top_k": 50,
        "top_p": 1.0,
        "max_new": 5,
        "answers": 1,
        "seed": 0,
        **override,
    }
    with pytest.raises(AppError, match=needle):
        generate(client, **args)
