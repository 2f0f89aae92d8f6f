"""The preference-data pipeline on the shipped files: both input shapes, chatterbot pairs, the prompt-length filter
(really applied), batched tokenization with masks, the split by prompt, and the offline Hub message."""

from __future__ import annotations

import json

import pytest

from playground import data

BIGBENCH = data.PREFERENCE_FILES["bigbench"]
CHATTERBOT = data.PREFERENCE_FILES["chatterbot"]


def shipped_rows(path, n=None) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:n] if n else rows


@pytest.fixture(scope="module")
def tok():
    from playground.tokenizer import train_tokenizer

    rows = shipped_rows(CHATTERBOT)
    return train_tokenizer("\n".join(f"{r['prompt']}\n{r['answer']}" for r in rows), vocab_size=512)


def test_flat_shape_loads_and_normalises():
    ds = data.load_preferences("bigbench")
    raw = shipped_rows(BIGBENCH)
    assert len(ds) == len(raw) == 2775
    assert ds.column_names == ["prompt", "chosen", "rejected", "source"]
    for i in (0, 1000, len(raw) - 1):
        assert ds[i]["prompt"] == [{"role": "user", "content": raw[i]["prompt"]}]
        assert ds[i]["chosen"] == [{"role": "assistant", "content": raw[i]["chosen"]}]
        assert ds[i]["rejected"] == [{"role": "assistant", "content": raw[i]["rejected"]}]
        assert ds[i]["source"] == raw[i]["source"]


def test_messages_shape_loads_with_the_prompt_as_all_but_the_last_message(tmp_path):
    raw = shipped_rows(BIGBENCH, 30)
    path = tmp_path / "messages.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, r in enumerate(raw):
            history = [{"role": "user", "content": r["prompt"]}]
            if i % 2:  # every other row: a longer conversation, as in mlabonne/orpo-dpo-mix-40k
                history = [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                ] + history
            row = {
                "chosen": history + [{"role": "assistant", "content": r["chosen"]}],
                "rejected": history + [{"role": "assistant", "content": r["rejected"]}],
                "source": "test",
            }
            f.write(json.dumps(row) + "\n")
    ds = data.load_preferences(str(path))
    assert len(ds) == 30
    assert ds[0]["prompt"] == [{"role": "user", "content": raw[0]["prompt"]}]
    assert [m["role"] for m in ds[1]["prompt"]] == ["system", "user", "assistant", "user"]
    assert ds[1]["prompt"][-1]["content"] == raw[1]["prompt"]
    assert ds[1]["chosen"] == [{"role": "assistant", "content": raw[1]["chosen"]}]
    assert ds[1]["rejected"][0]["content"] == raw[1]["rejected"]


def test_chatterbot_pairs_of_both_kinds():
    qa = [r for r in shipped_rows(CHATTERBOT) if len(r["prompt"].strip()) >= 2 and r["answer"].strip()]
    assert len(qa) < len(shipped_rows(CHATTERBOT))  # the one-letter junk rows of the trivia file are dropped
    category = {r["answer"]: r["category"] for r in qa}
    ds = data.load_preferences("chatterbot")
    assert len(ds) == 2 * len(qa)
    mismatch = ds.filter(lambda r: r["source"] == "chatterbot/mismatch")
    runon = ds.filter(lambda r: r["source"] == "chatterbot/runon")
    assert len(mismatch) == len(runon) == len(qa)
    for r in mismatch.select(range(50)):
        assert category[r["rejected"][0]["content"]] != category[r["chosen"][0]["content"]]
    for r in runon.select(range(50)):
        good, bad = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert bad.startswith(good + "\n") and len(bad) > len(good) + 2  # the same answer, then it runs on
    again = data.load_preferences("chatterbot")
    assert again[:20] == ds[:20]  # seeded: the same pairs every time


def test_several_sources_concatenate():
    ds = data.load_preferences("chatterbot,bigbench")
    assert len(ds) == len(data.load_preferences("chatterbot")) + 2775


def test_prompt_length_filter_really_removes_rows(tok):
    from playground.chat import render_prompt

    ds = data.load_preferences("bigbench").shuffle(seed=0).select(range(300))  # a sample keeps the test quick
    kept = data.filter_by_prompt_length(ds, tok, 64)
    lengths = [len(tok.encode(render_prompt(tok, p))) for p in ds["prompt"]]
    assert 0 < len(kept) < len(ds)  # the notes' `datatset = dataset.filter(...)` would have kept every row
    assert len(kept) == sum(n < 64 for n in lengths)
    assert all(len(tok.encode(render_prompt(tok, p))) < 64 for p in kept["prompt"])


def test_tokenize_preferences_batched_with_masks(tok):
    ds = data.load_preferences("bigbench").select(range(40))
    out = data.tokenize_preferences(ds, tok, max_len=128)
    for name in ("prompt_len", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"):
        assert name in out.column_names
    for r in out:
        n = r["prompt_len"]
        assert len(r["chosen_input_ids"]) == len(r["rejected_input_ids"]) <= 128
        for ids, labels in (
            (r["chosen_input_ids"], r["chosen_labels"]),
            (r["rejected_input_ids"], r["rejected_labels"]),
        ):
            assert labels[:n] == [-100] * n
            scored = [i for i, lab in enumerate(labels) if lab != -100]
            assert scored and scored[0] == n and scored == list(range(n, scored[-1] + 1))
            assert all(labels[i] == ids[i] for i in scored)
            assert all(lab == -100 for lab in labels[scored[-1] + 1 :])


def test_split_is_seeded_and_keeps_prompts_on_one_side():
    ds = data.load_preferences("chatterbot")
    train, val = data.split_preferences(ds, val_fraction=0.1, seed=42)
    assert len(train) + len(val) == len(ds) and len(val) > 0
    key = data._prompt_key
    assert not {key(p) for p in train["prompt"]} & {key(p) for p in val["prompt"]}
    train2, val2 = data.split_preferences(ds, val_fraction=0.1, seed=42)
    assert val2["prompt"] == val["prompt"]
    _, val3 = data.split_preferences(ds, val_fraction=0.1, seed=7)
    assert val3["prompt"] != val["prompt"]
    assert all(data.is_held_out(p, 0.1, 42) for p in val["prompt"])  # what the ORPO tab uses to list examples
    assert not any(data.is_held_out(p, 0.1, 42) for p in train["prompt"][:200])
    assert 0.05 < len(val) / len(ds) < 0.2


def test_hub_id_offline_gives_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="offline"):
        data.load_preferences("mlabonne/orpo-dpo-mix-40k")


@pytest.mark.parametrize("source", ["", "no-such-file.jsonl", "not a name"])
def test_unknown_sources_raise(source):
    with pytest.raises(ValueError):
        data.load_preferences(source)


def test_rows_of_the_wrong_shape_raise(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "q", "answer": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="chosen"):
        data.load_preferences(str(path))
    path.write_text(json.dumps({"chosen": "a", "rejected": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="prompt"):
        data.load_preferences(str(path))


def test_pairs_with_an_empty_reply_are_dropped(tmp_path):
    path = tmp_path / "some_empty.jsonl"
    rows = [
        {"prompt": "q1", "chosen": "a", "rejected": "b"},
        {"prompt": "q2", "chosen": " ", "rejected": "b"},
        {"prompt": "q3", "chosen": "a", "rejected": ""},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = data.load_preferences(str(path))
    assert ds["prompt"] == [[{"role": "user", "content": "q1"}]]


def test_choice_questions_rebuild_the_multiple_choice_tasks():
    """The "choices" data comes from bigbench_pairs.jsonl alone: each question's options are its right answer and
    every wrong answer paired with it there; held-out questions of the bigbench pairs are never trained on here."""
    import json

    rows = [json.loads(x) for x in data.PREFERENCE_FILES["bigbench"].read_text(encoding="utf-8").splitlines() if x]
    qs = data.choice_questions()
    assert len(qs) > 2000 and not [q for q in qs if q["source"].startswith("bigbench/hhh")]
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    for q in qs[::50]:
        mine = by_prompt[q["question"]]
        assert set(q["options"]) == {q["answer"]} | {r["rejected"].strip() for r in mine}
        assert q["prompt"] == data.choice_prompt(q["question"], q["options"])
        assert q["held_out"] == data.is_held_out(q["prompt"], 0.05, 1337)
    for q in qs:  # a question held out of the bigbench pairs is held out here too
        if data.is_held_out(q["question"], 0.05, 1337):
            assert q["held_out"]
    assert 0.03 < sum(q["held_out"] for q in qs) / len(qs) < 0.08


def test_choice_pairs_prefer_the_right_option_over_off_topic_and_run_on():
    ds = data.load_preferences("choices", seed=1337)
    qs = {q["prompt"]: q for q in data.choice_questions()}
    assert len(ds) == 2 * len(qs)
    for r in ds.select(range(0, len(ds), 97)):
        q = qs[r["prompt"][0]["content"]]
        good, bad = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert good == q["answer"]
        if r["source"] == "choices/offtopic":
            assert bad not in q["options"]
        else:
            assert r["source"] == "choices/runon" and bad.startswith(good + "\n")
    assert data.DEFAULT_PREFERENCES == "chatterbot,choices"


def test_the_held_out_split_of_the_tabs_is_the_align_commands():
    # the examples the ORPO and compare tabs offer are held out with data.CHOICE_SPLIT: it must be the split the
    # align command trains with, or the tabs would show pairs the bundled aligned model was trained on
    from playground.orpo import ORPOConfig

    d = ORPOConfig()
    assert data.CHOICE_SPLIT == (d.val_fraction, d.seed)
