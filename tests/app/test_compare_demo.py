"""The Aligned-vs-base tab's offered prompts are honest: held-out questions of the kind llama-aligned was tuned on
(multiple choice, options in the prompt); the aligned model's greedy answers to them are one of the offered options
far more often than the base model's (issue 17 asks for 80%: not met yet, see the strict xfail below)."""

import json

import pytest

from playground import align, checkpoints, data, orpo
from playground.ui import compare_tab


def test_offered_prompts_are_held_out_choice_questions():
    offered = compare_tab.DEMO
    assert len(offered) >= 20
    assert compare_tab.DEFAULT_PROMPT == offered[0]["prompt"]
    # independent reading of the shipped file: every offered question's options are its right answer and the
    # wrong answers paired with it there
    rows = [json.loads(line) for line in data.PREFERENCE_FILES["bigbench"].read_text(encoding="utf-8").splitlines()]
    for q in offered:
        mine = [r for r in rows if r["prompt"] == q["question"]]
        assert mine and {r["chosen"].strip() for r in mine} == {q["answer"]}
        assert set(q["options"]) == {q["answer"]} | {r["rejected"].strip() for r in mine}
        assert all(f"- {o}" in q["prompt"] for o in q["options"])
        # held out by the align command's split, so the aligned model never trained on it
        assert data.is_held_out(q["prompt"], 0.05, orpo.ORPOConfig().seed)
    labels = [q["label"] for q in offered]
    assert all(compare_tab.demo_prompt(label) == q["prompt"] for label, q in zip(labels, offered, strict=True))
    assert compare_tab.demo_prompt(compare_tab.COURSE_PROMPT) == compare_tab.COURSE_PROMPT


def test_on_topic_means_one_of_the_options():
    assert data.on_topic(" No. ", ["Yes.", "No."]) and data.on_topic("relieved", ["Relieved", "Anxious"])
    assert not data.on_topic("Go home now", ["Go home", "Get candy"]) and not data.on_topic("", ["a", "b"])


@pytest.fixture(scope="module")
def answers():
    out = {}
    prompts = [q["prompt"] for q in compare_tab.DEMO]
    for name in ("llama-aligned", "llama-base"):
        bundle = checkpoints.load(name)
        out[name] = align.sample_answers(bundle.model, bundle.tokenizer, prompts, max_new_tokens=32)
    return out


def _hits(answers, name):
    return [data.on_topic(a["answer"], q["options"]) for a, q in zip(answers[name], compare_tab.DEMO, strict=True)]


@pytest.mark.xfail(
    strict=True,
    reason="issue 17's target, not met yet: the retrained llama-aligned answers with one of the offered options "
    "to 12 of the 24 held-out questions (greedy), not 80%; strict, so this turns red once a checkpoint meets it",
)
def test_aligned_answers_with_an_offered_option_80_percent(answers):
    assert sum(_hits(answers, "llama-aligned")) >= 0.8 * len(compare_tab.DEMO)


def test_aligned_answers_with_an_offered_option_far_more_than_base(answers):
    aligned, base = sum(_hits(answers, "llama-aligned")), sum(_hits(answers, "llama-base"))
    assert aligned >= 0.4 * len(compare_tab.DEMO), [a["answer"] for a in answers["llama-aligned"]]
    assert base <= 0.1 * len(compare_tab.DEMO)  # the base model continues in the corpus's style instead
    # and the aligned model ends its turn; the base one runs on to the limit
    assert sum(a["stopped"] for a in answers["llama-aligned"]) >= 0.8 * len(compare_tab.DEMO)
    assert sum(a["stopped"] for a in answers["llama-base"]) <= 0.1 * len(compare_tab.DEMO)
