"""Chromium on the Cross-entropy tab: score a text, see the table and the coloured text, break the naive loss."""

from __future__ import annotations

import pytest

from tests.app.test_cross_entropy_app import tiny_model_source
from tests.conftest import open_tab, screenshot


@pytest.fixture(scope="module")
def model_source(tmp_path_factory):
    return tiny_model_source(tmp_path_factory.mktemp("ce-browser-model") / "tiny-gpt")


def choose_model(page, source: str) -> None:
    """Type a folder path (or a bundled name) into the model dropdown, which takes custom values."""
    box = page.locator("#ce-model input")
    box.click()
    box.fill(source)
    box.press("Enter")
    page.locator("#ce-text textarea").click()  # leave the dropdown so it commits the value


def test_score_shows_table_and_coloured_text(page, model_source):
    open_tab(page, "Cross-entropy")
    choose_model(page, model_source)
    page.locator("#ce-score").click()
    chips = page.locator("#ce-chips .pg-ce-tok")
    chips.first.wait_for(timeout=60_000)
    assert chips.count() > 10
    colour = chips.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour.startswith("rgb") and colour != "rgba(0, 0, 0, 0)"
    assert "nats/token" in page.locator("#ce-summary").inner_text()
    table = page.locator("#ce-table")
    table.get_by_text("context's last token").first.wait_for()
    assert table.get_by_text("entropy").count() >= 1
    assert page.locator("#ce-three").get_by_text("F.cross_entropy").count() >= 1

    # break it: float16, the largest logit 10^2, and the naive loss is no longer finite
    page.locator("#ce-dtype").get_by_text("float16", exact=True).click()
    number = page.locator("#ce-scale input[type=number]")
    number.fill("2")
    number.press("Tab")  # commit the value, as a person does; the slider follows its number box
    page.wait_for_function("() => [...document.querySelectorAll('#ce-scale input')].every(e => Number(e.value) === 2)")
    page.locator("#ce-break-go").click()
    verdict = page.locator("#ce-break-verdict")
    verdict.wait_for(timeout=60_000)
    text = verdict.inner_text()  # the largest logit is 100 > ln 65504 = 11.1: the naive loss is judged broken
    assert "largest logit is 100 " in text and "overflows" in text and "float16" in text
    assert "naive manual:" in text
    assert "no formula can recover it" not in text  # the logits themselves still fit float16
    page.locator("#ce-summary").scroll_into_view_if_needed()
    screenshot(page, "cross_entropy")
