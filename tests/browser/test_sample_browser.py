"""Chromium on the Sample tab: the streamed text appears, the four stage bar charts with entropies, the drawn token."""

from __future__ import annotations

import pytest

from tests.app.test_sample_app import model_sources
from tests.conftest import open_tab, screenshot


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return model_sources(tmp_path_factory.mktemp("sample-browser-models"))


def choose_model(page, elem_id: str, source: str, leave: str) -> None:
    """Type a folder path (or a bundled name) into a model dropdown, which takes custom values."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(source)
    box.press("Enter")
    page.locator(leave).click()  # leave the dropdown so it commits the value


def test_sample_streams_text_and_shows_bars(page, sources):
    open_tab(page, "Sample")
    choose_model(page, "sample-model", sources["gpt"], "#sample-prompt textarea")
    page.locator("#sample-generate").click()
    page.get_by_text("Done: 1 answer(s)").wait_for(timeout=60_000)
    text = page.locator("#sample-output textarea").input_value()
    assert text.startswith("── answer 1 ──\nOnce upon a time") and len(text) > len("── answer 1 ──\nOnce upon a time")

    for _ in range(2):
        page.locator("#sample-step").click()
        page.get_by_text("Step 1: drew").or_(page.get_by_text("Step 2: drew")).first.wait_for(timeout=60_000)
    page.get_by_text("Step 2: drew").wait_for(timeout=60_000)
    stages = page.locator("#sample-dist .pg-stage")
    assert stages.count() == 4
    assert "raw softmax" in stages.nth(0).inner_text() and "entropy" in stages.nth(0).inner_text()
    assert page.locator("#sample-dist .pg-bar").count() >= 40  # ten candidates x four stages
    drawn = page.locator("#sample-dist").get_by_text("◀ drawn")
    assert drawn.count() >= 1
    width = stages.nth(0).locator(".pg-bar").first.evaluate("e => e.getBoundingClientRect().width")
    assert width > 0
    assert page.locator("#sample-step-text .pg-tok").count() == 2
    page.locator("#sample-step").scroll_into_view_if_needed()
    screenshot(page, "sample")


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_stop_ends_a_long_generation(page, sources):
    open_tab(page, "Sample")
    choose_model(page, "sample-model", sources["gpt"], "#sample-prompt textarea")
    set_slider(page, "sample-max-new", 512)
    set_slider(page, "sample-answers", 4)
    page.locator("#sample-generate").click()
    page.wait_for_function("() => document.querySelector('#sample-output textarea').value.length > 40", timeout=60_000)
    page.locator("#sample-stop").click()
    page.wait_for_timeout(1500)
    frozen = page.locator("#sample-output textarea").input_value()
    page.wait_for_timeout(1500)
    assert page.locator("#sample-output textarea").input_value() == frozen, "the text kept growing after Stop"
    assert "Done" not in page.locator("#sample-status").inner_text()
