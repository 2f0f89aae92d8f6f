"""lessons/sample.md, "Try this" step by step in Chromium (normal and instructor mode): see lesson_steps.py."""

from __future__ import annotations

import re

from tests.browser.lesson_steps import (
    assert_visible,
    choose,
    click_and_wait,
    fill_text,
    lesson_page_fixture,
    number_after,
    says,
    section,
    set_number,
    settle,
    step_text,
    text_of,
)

LESSON = "sample"
lesson_page = lesson_page_fixture(LESSON)
HEADER = "── answer 1 ──\n"


def generate(page) -> str:
    """Press Generate and return the streamed answer once this run's status says Done."""
    before = page.locator("#sample-status").inner_text()
    click_and_wait(page, "#sample-generate", page.locator("#sample-status").get_by_text("Done:"), timeout=120_000)
    page.wait_for_function(  # a previous run's Done does not count (each status has its own timings)
        "b => { const s = document.querySelector('#sample-status').innerText; return s !== b && s.includes('Done:'); }",
        arg=before,
        timeout=120_000,
    )
    settle(page, "sample-output")
    head, _, text = text_of(page, "sample-output").partition("\n")
    assert head.startswith(HEADER.strip()), head
    return text


def settings(page, temperature: float, top_k: int, seed: int | None = None) -> None:
    assert_visible(page, "sample-temperature", "sample-topk", "sample-topp", "sample-seed")
    set_number(page, "sample-temperature", temperature)
    set_number(page, "sample-topk", top_k)
    if seed is not None:
        set_number(page, "sample-seed", seed)


def words_known(text: str) -> float:
    """The share of the text's words that occur in the austen corpus (an independent yardstick of 'plausible')."""
    from playground import corpus

    known = set(re.findall(r"[a-z]+", corpus.sample_corpus("austen", 400_000).lower()))
    words = re.findall(r"[A-Za-z]+", text)
    return sum(w.lower() in known for w in words) / max(len(words), 1)


_FIRST: dict[str, str] = {}


def test_step_1(lesson_page):
    """gpt-tiny, Once upon a time, seed 0, temperature 0: the same text every time, and it repeats itself."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(step, "`gpt-tiny`", "**Once upon a time**", "Press it again: the same text")
    choose(page, "sample-model", "gpt-tiny", leave="#sample-prompt textarea")
    fill_text(page, "sample-prompt", "Once upon a time")
    set_number(page, "sample-seed", number_after(step, "seed"))
    set_number(page, "sample-temperature", number_after(step, "temperature"))
    first = generate(page)
    assert first.startswith("Once upon a time") and len(first) > len("Once upon a time") + 20
    assert generate(page) == first
    words = re.findall(r"\w+", first[len("Once upon a time") :].lower())
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    assert len(set(trigrams)) < len(trigrams), f"greedy text without a repeated phrase: {first!r}"
    _FIRST[page.pg_mode + "greedy"] = first


def test_step_2(lesson_page):
    """Temperature 1, top-k 50: varied text; another seed, another story; the seed back, the first one again."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "change the seed", "put the seed back")
    settings(page, number_after(step, "Temperature"), int(number_after(step, "top-k")))
    seed = int(page.locator("#sample-seed input[type=number]").input_value())
    first = generate(page)
    assert first != _FIRST.get(page.pg_mode + "greedy")
    set_number(page, "sample-seed", seed + 1)
    other = generate(page)
    assert other != first
    set_number(page, "sample-seed", seed)
    assert generate(page) == first
    _FIRST[page.pg_mode] = first


def test_step_3(lesson_page):
    """Temperature 3 without top-k falls apart; with top-k 50 it is odd but made of plausible pieces."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "the tail takes over", "plausible pieces")
    temperature = number_after(step, "Temperature")
    settings(page, temperature, int(number_after(step, "top-k")))
    wild = generate(page)
    settings(page, temperature, int(number_after(step, "Now top-k")))
    kept = generate(page)
    assert words_known(kept) > words_known(wild) + 0.1, (wild, kept)


def stage_kept(page) -> list[int]:
    """Each panel's 'N of V tokens kept'."""
    texts = page.locator("#sample-dist .pg-entropy").all_inner_texts()
    return [int(re.search(r"([\d,]+) of", t).group(1).replace(",", "")) for t in texts]


def test_step_4(lesson_page):
    """Next token: four panels over the same ten candidates, the drawn token lit; top-p 0.5 keeps a handful."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "four bar charts", "same ten candidates", "top-p to **0.5**", "half of the probability mass")
    page.locator("#sample-reset").click()
    page.locator("#sample-step-caption").get_by_text("Press Next token").wait_for()
    for n in range(1, 4):  # "a few times"
        click_and_wait(page, "#sample-step", page.locator("#sample-step-caption").get_by_text(f"Step {n}: drew"))
    stages = page.locator("#sample-dist .pg-stage")
    assert stages.count() == 4
    names = [stages.nth(i).locator("div").first.inner_text() for i in range(4)]
    rows = [[c.strip() for c in stages.nth(i).locator("code").all_inner_texts()] for i in range(4)]
    assert all(r == rows[0] for r in rows) and 10 <= len(rows[0]) <= 11, rows  # the same candidates in each
    assert "raw" in names[0] and "top-p" in names[3], names
    drawn = page.locator("#sample-dist .pg-bar-row").filter(has_text="◀ drawn")
    assert drawn.count() == 4  # lit in every panel, with its probability
    assert float(re.search(r"([\d.]+) ◀", drawn.nth(3).inner_text()).group(1)) > 0
    top_p = number_after(step, "top-p to")
    set_number(page, "sample-topp", top_p)
    # new settings start the stepping over from the prompt
    click_and_wait(page, "#sample-step", page.locator("#sample-step-caption").get_by_text("Step 1: drew"))
    kept = stage_kept(page)
    assert kept[3] < kept[2], kept  # fewer than top-k left
    last = [float(v) for v in re.findall(r"(\d\.\d{3})", stages.nth(3).inner_text().split("kept", 1)[1])]
    nonzero = [v > 0 for v in last]
    assert nonzero == sorted(nonzero, reverse=True), last  # the most likely ones survive, the tail goes


def test_notice(lesson_page):
    """What to notice: stepping with the same seed draws the same tokens as the first streamed answer; tokens cut
    by top-k / top-p have probability exactly 0; a higher temperature raises the second panel's entropy."""
    page, notice = lesson_page, section(LESSON, "What to notice")
    says(notice, "stepping draws the same tokens as the first streamed answer", "exactly 0")
    settings(page, 1, 50, 0)
    set_number(page, "sample-topp", 1)
    streamed = generate(page)
    page.locator("#sample-reset").click()
    page.locator("#sample-step-caption").get_by_text("Press Next token").wait_for()
    for n in range(1, 6):
        click_and_wait(page, "#sample-step", page.locator("#sample-step-caption").get_by_text(f"Step {n}: drew"))
    stepped = page.locator("#sample-step-text").inner_text()
    prefix = re.sub(r"\s+", " ", stepped.split("\n")[0]).strip()
    assert re.sub(r"\s+", " ", streamed).startswith(prefix[: max(len(prefix) - 1, 1)]), (prefix, streamed)
    values = [float(v) for v in re.findall(r"(\d\.\d{3})", page.locator("#sample-dist .pg-stage").nth(2).inner_text())]
    assert all(v >= 0 for v in values)
    entropy = [
        float(re.search(r"entropy ([\d.]+)", t).group(1))
        for t in page.locator("#sample-dist .pg-entropy").all_inner_texts()
    ]
    assert entropy[2] <= entropy[1] + 1e-9 and entropy[3] <= entropy[2] + 1e-9  # filters only lower it
    set_number(page, "sample-temperature", 2)
    page.locator("#sample-reset").click()
    page.locator("#sample-step-caption").get_by_text("Press Next token").wait_for()
    click_and_wait(page, "#sample-step", page.locator("#sample-step-caption").get_by_text("Step 1: drew"))
    second = page.locator("#sample-dist .pg-entropy").nth(1).inner_text()
    hotter = float(re.search(r"entropy ([\d.]+)", second).group(1))
    assert hotter > entropy[1], f"temperature 2 entropy {hotter} <= temperature 1 {entropy[1]}"
