"""The Aligned-vs-base tab through the real server: both columns stream together, the chat template, N answers,
and clear messages for models that cannot load (a Hub id offline, a missing folder)."""

from __future__ import annotations

import pytest

from tests.app.test_sample_app import model_sources, stream


@pytest.fixture(scope="session")
def pair(tmp_path_factory) -> tuple[str, str]:
    sources = model_sources(tmp_path_factory.mktemp("compare-models"))
    return sources["base"], sources["aligned"]


def compare(
    client,
    left,
    right,
    prompt="What is a food recipe using apple?",
    chat_left=False,
    chat_right=True,
    temperature=1.0,
    top_k=50,
    top_p=1.0,
    max_new=10,
    answers=1,
    seed=0,
):
    return stream(
        client,
        "/compare_generate",
        left,
        right,
        prompt,
        chat_left,
        chat_right,
        temperature,
        top_k,
        top_p,
        max_new,
        answers,
        seed,
    )


def test_both_columns_stream_together(client, pair):
    outputs = compare(client, *pair, max_new=40, answers=2)
    left, right, left_prompt, right_prompt, status, _eos = outputs[-1]
    assert left.count("── answer") == 2 and right.count("── answer") == 2
    assert status.startswith("Done: 2 answer(s) per model")
    # interleaved: the first update already holds text in both columns, long before either is finished
    early = outputs[0]
    assert "answer 1" in early[0] and "answer 1" in early[1] and early[4].startswith("Answer 1 of 2")
    assert len(early[0]) < len(left) and len(early[1]) < len(right)
    # the prompts as each model reads them: raw text on the left, the chat template on the right
    assert left_prompt == "What is a food recipe using apple?"
    assert right_prompt.startswith("<|user|>\nWhat is a food recipe using apple?") and "<|assistant|>" in right_prompt


def test_same_seed_reproduces_each_column(client, pair):
    a = compare(client, *pair, seed=5)[-1]
    b = compare(client, *pair, seed=5)[-1]
    assert a[:2] == b[:2]
    # each column has its own generator: the same model twice with the same prompt gives the same text twice
    same = compare(client, pair[0], pair[0], chat_left=False, chat_right=False, seed=5)[-1]
    assert same[0] == same[1]


def test_show_prompts_endpoint(client, pair):
    left_prompt, right_prompt, info = client.predict(True, *pair, "Hi there", False, True, api_name="/compare_prompts")
    assert left_prompt == "Hi there"
    assert right_prompt == "<|user|>\nHi there</s><|assistant|>\n"
    assert "raw text" in info and "chat template" in info


def test_hub_model_offline_gives_a_clear_message(client, pair):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"right model 'HuggingFaceTB/SmolLM2-135M-Instruct' could not be loaded"):
        compare(client, pair[0], "HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"left": "/no/such/folder"}, "left model '/no/such/folder' could not be loaded"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"max_new": 0}, "Max new tokens|less than minimum"),  # (NaN cannot travel: the client's JSON refuses it)
    ],
)
def test_bad_inputs_give_clear_messages(client, pair, kwargs, needle):
    from gradio_client.exceptions import AppError

    args = {"left": pair[0], "right": pair[1], **kwargs}
    with pytest.raises(AppError, match=needle):
        compare(client, **args)
