"""lessons/train.md, "Try this" step by step in Chromium, normal mode (instructor mode: the same tests, collected
again by test_lesson_train_instructor.py): see lesson_steps.py."""

from __future__ import annotations

import math
import re

import pytest

from tests.browser.lesson_steps import (
    assert_visible,
    choose,
    click_and_wait,
    fill_text,
    lesson_page_fixture,
    number_after,
    run_event,
    says,
    section,
    set_number,
    settle,
    step_text,
    text_of,
)

LESSON = "train"
lesson_page = lesson_page_fixture(LESSON, modes=["normal"])  # instructor mode: test_lesson_train_instructor.py
_RUN: dict[str, dict] = {}
PAGE = (  # "a page of your own": about 1,600 characters of plain prose, for step 5
    "My grandmother kept a garden behind the house, a narrow strip of earth between the kitchen wall and the "
    "railway embankment. Every spring she planted the same things in the same order: first the peas along the "
    "fence, then the potatoes in three short rows, then beans, lettuce and a line of marigolds to keep the insects "
    "away. She never wrote anything down. When I asked her how she knew what to plant and when, she said that the "
    "soil told her, and that I would hear it too if I stopped talking long enough. In the evenings we carried water "
    "from the rain barrel in two dented cans, and she would stand at the end of each row and count the plants under "
    "her breath, as if they might have wandered off during the day. The trains went past every half hour, and the "
    "leaves shook, and she did not look up. In August the kitchen smelled of vinegar and dill for a week, and the "
    "jars stood on every shelf with their dates written on strips of paper. In the winter she read seed catalogues "
    "at the table and circled things she would never buy. I did not understand then that the garden was not about "
    "the food. It was about the order of things, the same work in the same season, a promise kept to the ground "
    "every year. When she moved to the flat in town she took a pot of mint with her and kept it on the windowsill, "
    "and she watered it every morning with a teacup, counting the leaves under her breath."
)


def status(page) -> dict[str, str]:
    return dict(
        page.locator("#train-status-inner [data-key]").evaluate_all(
            "els => els.map(e => [e.dataset.key, e.querySelector('b').textContent])"
        )
    )


def burst(page, button: str, to_step: int) -> dict[str, str]:
    """Press Start or Continue and wait until the burst is done at `to_step`; the status numbers then."""
    click_and_wait(
        page, button, page.locator("#train-status-inner").get_by_text(re.compile("burst done")), timeout=300_000
    )
    page.wait_for_function(
        "n => document.querySelector('#train-status-inner')?.dataset.step === String(n)"
        " && document.querySelector('#train-status-inner').textContent.includes('burst done')",
        arg=to_step,
        timeout=300_000,
    )
    return status(page)


def test_step_1(lesson_page):
    """tiny on austen: Start (100 steps), Continue twice to finish the 300-step schedule, val loss near 5.3."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(
        step,
        "Keep *tiny* and *austen*",
        "100 steps",
        "**Continue** twice",
        "300-step schedule",
        "validation loss ends near 5.3",
    )
    assert page.locator("#train-preset input[value='tiny']").is_checked()
    assert page.locator("#train-source input").input_value() == "austen"
    assert_visible(page, "train-lr", "train-total", "train-amount", "train-start", "train-continue")
    says(step, "100 steps take about")
    per_burst = int(number_after(step, "once):"))  # "... (..., once): 100 steps take about ..."
    assert int(float(page.locator("#train-amount input").input_value())) == per_burst
    assert int(float(page.locator("#train-total input").input_value())) == int(number_after(step, "finish the"))
    s1 = burst(page, "#train-start", per_burst)
    assert float(s1["val loss"]) < math.log(4096) - 1  # "falls from 8.3 at once"
    samples = [text_of(page, "train-sample")]
    s2 = burst(page, "#train-continue", 2 * per_burst)
    samples.append(text_of(page, "train-sample"))
    s3 = burst(page, "#train-continue", 3 * per_burst)
    samples.append(text_of(page, "train-sample"))
    assert float(s3["val loss"]) == pytest.approx(number_after(step, "ends near"), abs=0.4), s3
    assert float(s1["val loss"]) > float(s2["val loss"]) > float(s3["val loss"])
    _RUN[page.pg_mode] = {"samples": samples, "val100": float(s1["val loss"]), "val300": float(s3["val loss"])}


def test_step_2(lesson_page):
    """A sample after each burst; Total steps 2000 and keep going: the loss keeps falling."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "**sample** after each burst", "Raise *Total steps* to 2000 and keep going")
    run = _RUN[page.pg_mode]
    assert len(set(run["samples"])) == 3 and all(s.strip() for s in run["samples"])  # a new sample every burst
    set_number(page, "train-total", number_after(step, "*Total steps* to"))
    s = burst(page, "#train-continue", 400)
    assert s["step"].replace(",", "").startswith("400 / 2000")
    assert float(s["val loss"]) < run["val300"]
    assert text_of(page, "train-sample") != run["samples"][-1]


def test_step_3(lesson_page):
    """The attention maps: every head of every layer (and each layer's average) as thumbnails, one map large with
    the prompt's tokens along both axes; its weights are rows of probabilities over the tokens before."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "**attention maps**", "square root of each weight")
    view = page.locator("#train-attention .pg-attn")
    assert view.count() == 1
    n_layers = view.locator("table.pg-attn-grid tbody tr").count()
    n_heads = view.locator("table.pg-attn-grid thead th").count() - 1  # the last column is the average
    assert n_layers >= 1 and n_heads >= 1, (n_layers, n_heads)
    assert view.locator("button.pg-attn-thumb img").count() == n_layers * (n_heads + 1)
    assert view.locator("figure.pg-attn-map").count() == n_layers * (n_heads + 1)
    shown = view.locator("figure.pg-attn-map:not([hidden])")
    assert shown.count() == 1 and shown.is_visible()
    t = int(shown.get_attribute("data-t"))
    assert t >= 2
    assert shown.locator(".pg-attn-cols span").count() == t == shown.locator(".pg-attn-rows span").count()
    assert all(s.strip() for s in shown.locator(".pg-attn-cols span").all_inner_texts())
    img = shown.locator(".pg-attn-cells img")
    img.wait_for()
    assert img.evaluate("e => [e.naturalWidth, e.naturalHeight]") == [t, t]  # one pixel per (query, key)
    box = img.bounding_box()
    assert box and min(box["width"], box["height"]) > 50, box  # drawn large
    w = [int(v) for v in shown.get_attribute("data-w").split(",")]
    assert len(w) == t * t
    for q in range(t):
        row = w[q * t : (q + 1) * t]
        assert all(v == 0 for v in row[q + 1 :]), (q, row)  # causal: no weight on a later token
        assert abs(sum(row) - 10_000) <= t, (q, sum(row))  # a probability row (weights x 10^4, rounded)
    assert page.locator("#train-attention-reading li").count() == n_layers  # what each head does, per layer


def test_step_4(lesson_page):
    """Learning rate 0.05: the loss jumps around or gets stuck; 0.0003: it falls, but slowly."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "learning rate to 0.05 and Start again", "Try 0.0003", "it falls, but slowly")
    good = _RUN[page.pg_mode]["val100"]
    set_number(page, "train-lr", number_after(step, "learning rate to"))
    high = float(burst(page, "#train-start", 100)["val loss"])
    assert high > good + 0.2, (high, good)  # stuck or jumping: worse than the default rate at the same step
    set_number(page, "train-lr", number_after(step, "Try"))
    says(step, "(Start, then Continue)")
    low = float(burst(page, "#train-start", 100)["val loss"])
    lower = float(burst(page, "#train-continue", 200)["val loss"])
    assert low > good, (good, low)  # at step 100: slower than the default rate...
    assert lower < low, (low, lower)  # ...but it falls


def test_step_5(lesson_page):
    """my text, 100 steps: the train loss goes far below the validation loss (overfitting)."""
    page, step = lesson_page, step_text(LESSON, 5)
    says(step, "choose *my text*", "train for 100 steps", "far below the validation loss")
    set_number(page, "train-lr", number_after(step, "learning rate back to"))
    choose(page, "train-source", "my text (paste or upload)", leave="#train-text textarea")  # *my text*
    fill_text(page, "train-text", PAGE)
    steps = int(number_after(step, "train for"))
    set_number(page, "train-total", steps)
    set_number(page, "train-amount", steps)
    s = burst(page, "#train-start", steps)
    assert float(s["train loss"]) < float(s["val loss"]) - 1.0, s


def test_step_6(lesson_page):
    """Download the model; use it at once in the Cross-entropy and Sample tabs."""
    page, step = lesson_page, step_text(LESSON, 6)
    says(step, "**Download**", "*Cross-entropy* and *Sample* tabs", "my model (Train tab)")
    run_event(page, "#train-download-btn", "train-download")
    assert page.locator("#train-download a").first.get_attribute("href").endswith(".zip")
    page.get_by_role("tab", name="Cross-entropy").click()
    choose(page, "ce-model", "my model (Train tab)", leave="#ce-text textarea")
    run_event(page, "#ce-score", "ce-summary")
    assert float(page.locator("#ce-loss").inner_text()) > 0
    page.get_by_role("tab", name="Sample").click()
    choose(page, "sample-model", "my model (Train tab)", leave="#sample-prompt textarea")
    click_and_wait(page, "#sample-generate", page.locator("#sample-status").get_by_text("Done:"), 120_000)
    settle(page, "sample-output")
    assert len(text_of(page, "sample-output")) > 20
    page.get_by_role("tab", name="Train").click()


def test_presets(lesson_page):
    """The presets section: "tiny, 1 minute" sets a 720-step schedule and a burst of all of it; tiny gives back its
    300 steps in bursts of 100 (the held-out figure is the bench's: `python -m playground bench --only burst`)."""
    page, text = lesson_page, section(LESSON, "The presets")
    says(text, "*tiny, 1 minute*", "a batch of 24 and a 720-step schedule", "sets the burst length to 720")
    says(text, "a 300-step schedule, run in bursts of 100 steps")

    def pick(preset: str, total: int, burst: int, batch: int) -> None:
        page.locator("#train-preset").get_by_text(preset, exact=True).click()
        page.wait_for_function(
            """([t, b, n]) => [['#train-total', t], ['#train-amount', b], ['#train-batch', n]].every(
                 ([id, v]) => Number(document.querySelector(`${id} input[type=number]`).value) === v)""",
            arg=[total, burst, batch],
        )

    assert_visible(page, "train-preset", "train-total", "train-amount")
    set_number(page, "train-amount", 100)  # the default burst (step 5 left its own)
    pick("tiny, 1 minute", int(number_after(text, "and a")), int(number_after(text, "burst length to")), 24)
    pick("tiny", int(number_after(text, "in 20 seconds on a CPU: a")), int(number_after(text, "bursts of")), 32)
