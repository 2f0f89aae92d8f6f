"""Helpers for the lesson walk-throughs (tests/browser/test_lesson_<name>.py, issue 16).

Each lesson's "Try this" steps are followed in Chromium exactly as written, once in normal mode and once in
instructor mode (`?instructor=1`). A test is named after its step (`test_step_3[instructor]`), reads the step's
text from lessons/<name>.md and checks that the values it uses are still the ones written there
(`step_text(name, 3)`, `number_after(...)`): a lesson edit the app does not honour fails the walk-through, and
tests/unit/test_lessons.py fails when a lesson gains a step without a test.

One page per module and mode: the steps of a lesson build on each other (step 2 continues from step 1), as for a
learner, so the tests of one module run in file order on one page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
MODES = ["normal", "instructor"]


def section(name: str, heading: str) -> str:
    """The text under `### heading` of lessons/<name>.md, up to the next heading."""
    text = (LESSONS / f"{name}.md").read_text(encoding="utf-8")
    m = re.search(rf"^### {re.escape(heading)}\s*$(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    assert m, f"lessons/{name}.md has no '### {heading}'"
    return m.group(1)


def steps(name: str) -> list[str]:
    """The numbered "Try this" steps of a lesson, each as one line of text (continuation lines joined)."""
    items = re.split(r"^\s*\d+\.\s+", section(name, "Try this"), flags=re.M)[1:]
    return [" ".join(item.split()) for item in items]


def step_text(name: str, n: int) -> str:
    """Step n (1-based) of the lesson's "Try this"."""
    all_steps = steps(name)
    assert 1 <= n <= len(all_steps), f"lessons/{name}.md has {len(all_steps)} steps, no step {n}"
    return all_steps[n - 1]


def says(text: str, *phrases: str) -> None:
    """The step (or notice) still says each phrase (whitespace-insensitive): what the test does is what it says."""
    flat = " ".join(text.split())
    for phrase in phrases:
        assert phrase in flat, f"the lesson no longer says {phrase!r}: update the walk-through with it\n{flat}"


def number_after(text: str, label: str) -> float:
    """The number the step gives right after `label` (markup such as ** or $ skipped): 'top-k **50**' -> 50."""
    m = re.search(re.escape(label) + r"[\s*$`=:]*(-?\d+(?:\.\d+)?)", text)
    assert m, f"the step gives no number after {label!r}: {text}"
    return float(m.group(1))


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ------------------------------------------------------------------------------------------------ the page
def open_lesson(browser, app_url: str, tab: str, mode: str, width: int = 1440, height: int = 1000):
    """A fresh browser session on `tab`, in normal or instructor mode; returns (context, page)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    query = f"?tab={tab}" + ("&instructor=1" if mode == "instructor" else "")
    page.goto(app_url + query)
    page.wait_for_selector(f"#tab-{tab}", state="visible", timeout=60_000)
    if mode == "instructor":
        page.wait_for_function("() => document.body.classList.contains('pg-instructor')")
    return context, page


def lesson_page_fixture(tab: str, modes: list[str] = MODES):
    """A module-scoped fixture `lesson_page`, one page per mode, reused by every step test of the module. A lesson
    whose walk-through is long (train) walks each mode in a file of its own, so that `make test`'s two workers
    (`--dist loadfile`) can take one mode each."""

    @pytest.fixture(scope="module", params=modes)
    def lesson_page(request, browser, app_url):
        context, page = open_lesson(browser, app_url, tab, request.param)
        page.pg_mode = request.param
        yield page
        context.close()

    return lesson_page


# ---------------------------------------------------------------------------------------------- controls
def set_number(page, elem_id: str, value) -> None:
    """Type a value into a gr.Number or a slider's number box and commit it (as a person does: type, Tab)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(fmt(value) if isinstance(value, float | int) else str(value))
    box.press("Tab")
    page.wait_for_function(  # a slider's range input follows its number box: the component has the value
        """([id, v]) => [...document.querySelectorAll(`#${id} input[type=number], #${id} input[type=range]`)]
                         .every(e => Number(e.value) === Number(v))""",
        arg=[elem_id, str(value)],
    )


def choose(page, elem_id: str, value: str, leave: str | None = None) -> None:
    """Pick a value of a dropdown (typing it, as the dropdowns take custom values too)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    box.press("Enter")
    if leave:
        page.locator(leave).click()  # leave the dropdown so it commits the value
    page.wait_for_function("([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, value])


def pick_radio(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").get_by_text(value, exact=True).click()
    page.wait_for_function(
        "([id, v]) => [...document.querySelectorAll(`#${id} input[type=radio]`)].some(r => r.checked && r.value === v)",
        arg=[elem_id, value],
    )


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def fill_text(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea").fill(value)


def assert_visible(page, *elem_ids: str) -> None:
    """Every control the step uses is on screen, in instructor mode too (issue 16: larger, not poorer)."""
    for elem_id in elem_ids:
        assert page.locator(f"#{elem_id}").is_visible(), f"#{elem_id} is hidden in {page.pg_mode} mode"


def errors(page):
    """Gradio's error toasts (a gr.Error raised by a handler)."""
    return page.locator("[data-testid='toast-body']").filter(has_text=re.compile("error", re.I))


def click_and_wait(page, button: str, done, timeout: float = 90_000) -> None:
    """Click `button` and wait until `done` (a locator) shows; an error toast instead fails at once, with its text."""
    before = errors(page).count()
    page.locator(button).click()
    err = errors(page).nth(before)
    done.or_(err).first.wait_for(timeout=timeout)
    if not done.first.is_visible() and err.count():
        raise AssertionError(f"{button}: the app answered with an error: {err.inner_text()}")


_WATCH = """id => { const t = document.querySelector(`#${id} [data-testid=status-tracker]`);
  window.__pgSeen = window.__pgSeen || {}; window.__pgSeen[id] = false;
  const o = new MutationObserver(() => {
    if (!t.classList.contains('hide')) { window.__pgSeen[id] = true; o.disconnect(); } });
  o.observe(t, {attributes: true, attributeFilter: ['class']}); }"""
_RAN = """([id, n]) => { const t = document.querySelector(`#${id} [data-testid=status-tracker]`);
  return (window.__pgSeen[id] && t.classList.contains('hide'))
      || document.querySelectorAll("[data-testid='toast-body']").length > n; }"""


def run_event(page, button: str, output: str, timeout: float = 120_000) -> None:
    """Click `button` and wait until its (non-streaming) event has updated the component `#output`: Gradio's status
    tracker on that output went pending and is idle again. Works when the new value equals the old one, where
    waiting for a change would hang; an error toast instead fails at once, with its text."""
    page.evaluate(_WATCH, output)
    before = page.locator("[data-testid='toast-body']").count()
    page.locator(button).click()
    page.wait_for_function(_RAN, arg=[output, before], timeout=timeout)
    toasts = page.locator("[data-testid='toast-body']")
    if toasts.count() > before and re.search("error", toasts.nth(before).inner_text(), re.I):
        raise AssertionError(f"{button}: the app answered with an error: {toasts.nth(before).inner_text()}")


_SETTLED = """ids => { const v = ids.map(id => document.querySelector(`#${id} textarea`).value).join('\\u0001');
  const idle = ids.every(id => { const t = document.querySelector(`#${id} [data-testid=status-tracker]`);
                                 return !t || t.classList.contains('hide'); });
  window.__pgCalm = (idle && v === window.__pgLastText) ? (window.__pgCalm || 0) + 1 : 0;
  window.__pgLastText = v; return window.__pgCalm >= 3; }"""


def settle(page, *textboxes: str, timeout: float = 180_000) -> None:
    """Wait until streamed text boxes hold still: idle status trackers and the same text over three polls
    (the last streamed value can land in the box a moment after the status says Done)."""
    page.evaluate("() => { window.__pgCalm = 0; window.__pgLastText = null; }")
    page.wait_for_function(_SETTLED, arg=list(textboxes), polling=400, timeout=timeout)
