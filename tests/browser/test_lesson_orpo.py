"""lessons/orpo.md, "Try this" step by step in Chromium (normal and instructor mode): see lesson_steps.py."""

from __future__ import annotations

import math
import re

import pytest

from tests.browser.lesson_steps import (
    assert_visible,
    choose,
    click_and_wait,
    lesson_page_fixture,
    number_after,
    run_event,
    says,
    section,
    set_number,
    step_text,
    text_of,
)

LESSON = "orpo"
lesson_page = lesson_page_fixture(LESSON)
KEYS = ("chosen_avg_logp", "rejected_avg_logp", "log_odds_ratio", "sigmoid", "or_loss", "nll", "loss")


def compute(page) -> dict[str, float]:
    """Press Compute and read every number of the table (data-key cells)."""
    run_event(page, "#orpo-go", "orpo-numbers")
    return numbers(page)


def numbers(page) -> dict[str, float]:
    cells = page.locator("#orpo-numbers [data-key]").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.key, e.textContent.trim()]))"
    )
    return {k: float(v) for k, v in cells.items()}


def chip_texts(page, box: str) -> list[str]:
    return page.locator(f"#{box} .pg-tok").evaluate_all(
        "els => els.map(e => [...e.childNodes].filter(n => n.nodeName !== 'SUB').map(n => n.textContent).join(''))"
    )


def set_lambda(page, lam: float) -> dict[str, float]:
    set_number(page, "orpo-lambda", lam)
    return compute(page)


def test_step_1(lesson_page):
    """The first example (chatterbot, off-topic rejected reply): every number, chips red to green."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(step, "first example", "**Compute the ORPO loss**")
    label = page.locator("#orpo-example input").input_value()
    assert label.startswith("1.") and "chatterbot" in label and "mismatch" in label, label
    nums = compute(page)
    assert set(KEYS) <= set(nums)
    colours = page.locator("#orpo-chosen .pg-tok").evaluate_all("els => els.map(e => e.style.background)")
    assert len(colours) > 3 and all(c.startswith("hsl") or c.startswith("rgb") for c in colours)


def test_step_2(lesson_page):
    """lambda = 0: the total is the NLL alone; lambda = 2: L_OR's share of the total grows."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "the total becomes the NLL alone", "share grow")
    assert_visible(page, "orpo-lambda")
    course = numbers(page)
    zero = set_lambda(page, number_after(step, "Set $\\lambda ="))
    assert zero["loss"] == pytest.approx(zero["nll"], rel=1e-3)
    lam = number_after(step, "Set $\\lambda = 0$: the total becomes the NLL alone. Set $\\lambda =")
    two = set_lambda(page, lam)
    assert two["loss"] == pytest.approx(two["nll"] + lam * two["or_loss"], rel=1e-3)
    share = lambda n, lam_: lam_ * n["or_loss"] / n["loss"]  # noqa: E731
    assert share(two, lam) > share(course, 0.5) > 0


def test_step_3(lesson_page):
    """A run-on example: right after the answer, `</s>` in the chosen reply and a new line in the rejected one."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "**run-on** example", "`</s>` in the chosen reply, a new line in the rejected one")
    options = page.locator("#orpo-example input")
    options.click()
    runon = page.get_by_role("option").filter(has_text="runon").first
    label = runon.inner_text().strip()
    runon.click()
    page.wait_for_function("v => document.querySelector('#orpo-example input').value === v", arg=label)
    page.wait_for_function(
        "() => document.querySelector('#orpo-rejected-text textarea').value.length"
        " > document.querySelector('#orpo-chosen-text textarea').value.length"
    )
    assert text_of(page, "orpo-rejected-text").startswith(text_of(page, "orpo-chosen-text"))
    compute(page)
    chosen, rejected = chip_texts(page, "orpo-chosen"), chip_texts(page, "orpo-rejected")
    k = len(chosen) - 1
    assert chosen[-1] == "</s>", chosen
    assert rejected[:k] == chosen[:k], (chosen, rejected)
    newline = ("↵", "<0x0A>")  # a newline piece, or the newline's byte where the vocabulary has no piece for it
    assert rejected[k].startswith(newline), f"the rejected reply goes on with {rejected[k]!r}, not a new line"


def test_step_4(lesson_page):
    """N = 10 ORPO steps on your own copy: log odds ratio and chosen log-prob rise, rejected falls; Reset."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "(N = 10)", "log odds ratio rising", "rejected one falling", "**Reset**")
    assert_visible(page, "orpo-n", "orpo-lr", "orpo-steps-btn", "orpo-reset")
    before = compute(page)
    n = int(number_after(step, "(N ="))
    set_number(page, "orpo-n", n)
    click_and_wait(page, "#orpo-steps-btn", page.locator("#orpo-status").get_by_text(f"Step {n} of {n}"), 180_000)
    after = numbers(page)
    assert after["log_odds_ratio"] > before["log_odds_ratio"]
    assert after["chosen_avg_logp"] > before["chosen_avg_logp"]
    assert after["rejected_avg_logp"] < before["rejected_avg_logp"]
    assert page.locator("#orpo-plot canvas, #orpo-plot svg").count() >= 1
    click_and_wait(page, "#orpo-reset", page.locator("#orpo-status").get_by_text("shared model"))
    again = compute(page)
    assert again["log_odds_ratio"] == pytest.approx(before["log_odds_ratio"], rel=1e-3, abs=1e-4)


def test_step_5(lesson_page):
    """Your own pair: swap chosen and rejected, and the log odds ratio changes sign."""
    page, step = lesson_page, step_text(LESSON, 5)
    says(step, "swap chosen and rejected", "sign of the log odds ratio flip")
    before = compute(page)
    chosen, rejected = text_of(page, "orpo-chosen-text"), text_of(page, "orpo-rejected-text")
    page.locator("#orpo-chosen-text textarea").fill(rejected)
    page.locator("#orpo-rejected-text textarea").fill(chosen)
    after = compute(page)
    assert after["log_odds_ratio"] == pytest.approx(-before["log_odds_ratio"], rel=1e-3, abs=1e-4)
    choose(page, "orpo-example", page.locator("#orpo-example input").input_value())


def test_notice(lesson_page):
    """L_OR = -log sigmoid(log OR): ln 2 at equal odds, towards 0 as the chosen reply wins."""
    page, notice = lesson_page, section(LESSON, "What to notice")
    says(notice, "$\\mathcal{L}_{OR} \\to 0$")
    n = numbers(page)
    assert n["or_loss"] == pytest.approx(-math.log(1 / (1 + math.exp(-n["log_odds_ratio"]))), rel=2e-3, abs=1e-4)
    assert n["sigmoid"] == pytest.approx(1 / (1 + math.exp(-n["log_odds_ratio"])), rel=2e-3, abs=1e-4)
    assert re.search(r"\d", page.locator("#orpo-reading").inner_text())
