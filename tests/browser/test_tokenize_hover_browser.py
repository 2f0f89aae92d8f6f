"""Chromium on Tokenize: byte pieces grouped under their character, and hovering a chip lights its stretch of the
text (and the other way round)."""

from __future__ import annotations

from tests.app.test_tokenize_chips import TEXT


def test_hover_links_chip_and_text(page):
    page.get_by_role("tab", name="Tokenize").click()
    box = page.locator("#tok-text textarea")
    box.fill(TEXT)
    page.wait_for_function(
        "(t) => document.querySelector('#tok-chips .pg-tok-text')?.textContent === t", arg=TEXT, timeout=60_000
    )
    chip = page.locator("#tok-chips .pg-char").first
    chip.hover()
    lit = page.locator("#tok-chips .pg-tok-text .pg-span.pg-lit")
    assert lit.count() == 1 and lit.inner_text() == "こ"
    page.locator("#tok-chips .pg-tok-text .pg-span[data-k='1']").hover()  # the text's second stretch
    lit = page.locator("#tok-chips .pg-tokens .pg-lit")
    assert lit.count() == 1 and lit.get_attribute("data-k") == "1"  # lights its own chip (or character box)
