"""Chromium on Tokenize: byte pieces grouped under their character, and hovering a chip lights its stretch of the
text (and the other way round)."""

from __future__ import annotations

from tests.app.test_tokenize_chips import TEXT


def test_hover_links_chip_and_text(page):
    page.get_by_role("tab", name="Tokenize").click()
    box = page.locator("#tok-text textarea")
    box.fill(TEXT)
    chip = page.locator("#tok-chips .pg-char").first
    chip.wait_for()
    chip.hover()
    lit = page.locator("#tok-chips .pg-tok-text .pg-span.pg-lit")
    assert lit.count() == 1 and lit.inner_text() == "こ"
    page.locator("#tok-chips .pg-tok-text .pg-span", has_text="Hi").first.hover()
    assert page.locator("#tok-chips .pg-tokens .pg-lit").count() == 1
