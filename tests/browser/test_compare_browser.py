"""Chromium on the Aligned-vs-base tab: two columns fill side by side; the prompt strings can be shown; the
p(end-of-sequence) plot's legend names both lines in their colours, at 1400 px and at phone width."""

from __future__ import annotations

import pytest

from tests.app.test_sample_app import model_sources
from tests.browser.test_plots_browser import at_each_width, legend_seen
from tests.browser.test_sample_browser import choose_model
from tests.conftest import open_tab, screenshot


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    sources = model_sources(tmp_path_factory.mktemp("compare-browser-models"))
    return sources["base"], sources["aligned"]


def test_two_columns_side_by_side(page, pair):
    open_tab(page, "Aligned vs base")
    choose_model(page, "compare-left-model", pair[0], "#compare-prompt textarea")
    choose_model(page, "compare-right-model", pair[1], "#compare-prompt textarea")
    page.locator("#compare-left-chat input").uncheck()  # base: raw text (the box guesses from the model's name)
    page.locator("#compare-right-chat input").check()  # aligned: the chat template
    page.locator("#compare-answers input[type=number]").fill("2")
    page.locator("#compare-answers input[type=number]").press("Enter")
    page.locator("#compare-generate").click()
    page.get_by_text("Done: 2 answer(s) per model").wait_for(timeout=60_000)
    left = page.locator("#compare-left textarea").input_value()
    right = page.locator("#compare-right textarea").input_value()
    assert left.count("── answer") == 2 and right.count("── answer") == 2
    lbox = page.locator("#compare-left").bounding_box()
    rbox = page.locator("#compare-right").bounding_box()
    assert rbox["x"] > lbox["x"] + lbox["width"] / 2 and abs(rbox["y"] - lbox["y"]) < 80, "columns side by side"

    page.locator("#compare-show-prompts input").check()
    right_prompt = page.locator("#compare-right-prompt textarea")
    right_prompt.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('#compare-right-prompt textarea').value.includes('<|assistant|>')",
        timeout=30_000,
    )
    assert "<|user|>" in right_prompt.input_value()
    page.locator("#compare-generate").scroll_into_view_if_needed()
    screenshot(page, "compare")

    want = {"left column's model", "right column's model"}

    def check(width: int) -> None:
        assert legend_seen(page, "#compare-eos-plot", "#compare-eos-legend") == want, f"at {width} px"

    at_each_width(page, check)
