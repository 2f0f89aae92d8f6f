"""lessons/start.md, "Try this" step by step in Chromium (normal and instructor mode): see lesson_steps.py."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from tests.browser.lesson_steps import (
    click_and_wait,
    fill_text,
    lesson_page_fixture,
    says,
    settle,
    step_text,
    text_of,
)

LESSON = "start"
lesson_page = lesson_page_fixture(LESSON)
BODY_SIZE = "() => parseFloat(getComputedStyle(document.querySelector('#tab-start .pg-lesson-text p')).fontSize)"
DONE = "b => { const s = document.querySelector('#sample-status').innerText; return s !== b && s.includes('Done'); }"


def selected_tab(page) -> str:
    return page.locator("[role=tab][aria-selected=true]").first.inner_text().strip()


def go_start(page) -> None:
    page.get_by_role("tab", name="Start here").click()
    page.locator("#tab-start").wait_for(state="visible")


def test_step_1(lesson_page):
    """1 Tokenize opens the Tokenize tab, prefilled with an emoji and four scripts; a pasted sentence tokenizes."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(step, "**1 Tokenize**", "prefilled with digits, an emoji and three scripts")
    go_start(page)
    page.locator("#tab-start").get_by_role("button", name="1 Tokenize").click()
    page.locator("#tab-tokenize").wait_for(state="visible")
    text = text_of(page, "tok-text")
    assert re.search("[\U0001f300-\U0001faff]", text) and re.search(r"\d", text)
    scripts = ["[A-Za-z]", "[\u4e00-\u9fff\u3040-\u30ff]", "[\u0590-\u05ff]", "[\u0400-\u04ff]", "[\u0600-\u06ff]"]
    assert sum(bool(re.search(s, text)) for s in scripts) == 3, f"not three scripts in {text!r}"
    fill_text(page, "tok-text", "Ich spreche ein bisschen Deutsch.")
    page.wait_for_function(
        "() => document.querySelector(\"#tok-stats-inner [data-key='characters'] b\")?.textContent === '33'"
    )


def test_step_2(lesson_page):
    """The two Sample presets fill the Sample tab and open it; Generate gives text."""
    page, step = lesson_page, step_text(LESSON, 2)
    for preset, temperature in re.findall(r"\*\*(Sample: [^*]*\(temperature (\d+)[^*]*\))\*\*", step):
        go_start(page)
        page.locator("#start-presets input").click()
        page.get_by_role("option", name=preset).click()
        page.wait_for_function(
            "t => Number(document.querySelector('#sample-temperature input[type=number]')?.value) === Number(t)",
            arg=temperature,
        )
        assert selected_tab(page) == "4 Sample"  # tab labels are numbered
        before = page.locator("#sample-status").inner_text()
        click_and_wait(page, "#sample-generate", page.locator("#sample-status").get_by_text("Done:"), 120_000)
        page.wait_for_function(
            DONE,
            arg=before,
        )
        settle(page, "sample-output")
        assert len(text_of(page, "sample-output")) > 20
    assert "greedy" in step and "hot" in step


def test_step_3(lesson_page):
    """Copy link gives a link that opens that tab with the same inputs."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "**Copy link**", "opens that tab with the same inputs")
    page.get_by_role("tab", name="Sample").click()
    fill_text(page, "sample-prompt", "A link for a classmate")
    page.locator("#sample-copy-link").click()
    page.wait_for_function("() => document.querySelector('#sample-link textarea, #sample-link input').value.length")
    url = page.locator("#sample-link textarea, #sample-link input").first.input_value()
    other = page.context.new_page()
    try:
        other.goto(page.url.split("?")[0] + "?" + urlparse(url).query)
        other.wait_for_function(
            "() => document.querySelector('#sample-prompt textarea')?.value === 'A link for a classmate'",
            timeout=60_000,
        )
        assert other.locator("[role=tab][aria-selected=true]").first.inner_text().strip() == "4 Sample"
        t1 = page.locator("#sample-temperature input[type=number]").input_value()
        assert other.locator("#sample-temperature input[type=number]").input_value() == t1
    finally:
        other.close()


def test_step_4(lesson_page):
    """Instructor mode (the toggle or ?instructor=1): larger type, advanced controls hidden."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "**Instructor mode**", "`?instructor=1`", "larger type, advanced")
    go_start(page)
    toggle = page.locator("#pg-instructor-toggle input")
    on = page.pg_mode == "instructor"
    assert toggle.is_checked() == on
    size = page.evaluate(BODY_SIZE)
    toggle.set_checked(not on)
    page.wait_for_function("on => document.body.classList.contains('pg-instructor') === on", arg=not on)
    other = page.evaluate(BODY_SIZE)
    assert (other > size) if not on else (other < size)
    toggle.set_checked(on)  # back as the mode of this page
    page.wait_for_function("on => document.body.classList.contains('pg-instructor') === on", arg=on)
