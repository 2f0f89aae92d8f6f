"""The Tokenize tab as a person sees it in Chromium: type, watch chips and counts follow, train, switch tabs."""

import re

from tests.conftest import open_tab, screenshot


def _stat(page, box: str, key: str) -> int:
    text = page.locator(f"#{box}-inner [data-key='{key}'] b").inner_text()
    return int(re.sub(r"[^\d]", "", text))


def test_type_text_see_chips_and_counts(page):
    open_tab(page, "Tokenize")
    page.wait_for_selector("#tok-chips-inner .pg-tok")  # the prefilled example is tokenized on load
    assert page.locator("#tok-chips-inner .pg-tok.byte").count() > 0  # emoji / CJK as bytes, marked
    box = page.locator("#tok-text textarea")
    box.fill("Hello world")
    page.wait_for_function(
        "() => document.querySelector(\"#tok-stats-inner [data-key='characters'] b\")?.textContent === '11'"
    )
    chips = page.locator("#tok-chips-inner .pg-tok")
    assert chips.count() == _stat(page, "tok-stats", "tokens")
    assert "▁" in chips.last.inner_text()  # the space mark is visible ("▁world")
    assert not chips.first.inner_text().startswith("▁")  # no dummy prefix before the first word
    assert page.locator("#tok-stats-inner .pg-ok").is_visible()  # round trip ✓
    # colours: chips have a background of their own
    bg = chips.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert bg not in ("rgba(0, 0, 0, 0)", "transparent")

    box.fill("<img src=x onerror=alert(1)> 🚀")
    page.wait_for_function(
        "() => document.querySelector(\"#tok-stats-inner [data-key='characters'] b\")?.textContent === '30'"
    )
    assert page.locator("#tok-chips-inner img").count() == 0  # pasted HTML is shown, never rendered
    assert page.locator("#tok-chips-inner .pg-tok.byte").count() >= 4  # 🚀 = 4 UTF-8 bytes
    screenshot(page, "tokenize")


def test_train_compare_and_switch_tabs(page):
    open_tab(page, "Tokenize")
    page.wait_for_selector("#tok-chips-inner .pg-tok")
    page.locator("#tok-text textarea").fill("And God said, Let there be light: and there was light.")
    page.locator("#tok-train-box").get_by_role("button", name=re.compile("Train your own tokenizer")).click()
    page.locator("#tok-train").click()
    page.wait_for_selector("#tok-train-status :text('my bpe 1000 #1')", timeout=60_000)
    # the trained tokenizer is now the chosen one; compare it with the bundled one
    compare = page.locator("#tok-compare input")
    compare.click()
    compare.fill("bundled BPE 4096")
    compare.press("Enter")
    page.wait_for_selector("#tok-stats-b-inner")
    page.wait_for_function("() => document.querySelector('#tok-stats-inner')?.textContent.includes('my bpe 1000')")
    assert _stat(page, "tok-stats", "tokens") >= _stat(page, "tok-stats-b", "tokens") > 0
    assert page.locator("#tok-chips-b-inner .pg-tok").count() == _stat(page, "tok-stats-b", "tokens")
    # switch away and back: the view is still there
    tabs = page.get_by_role("tab")
    other = [t for t in tabs.all() if t.inner_text().strip() not in ("Tokenize", "")][0]
    other.click()
    open_tab(page, "Tokenize")
    assert page.locator("#tok-chips-inner .pg-tok").first.is_visible()
    screenshot(page, "tokenize-train-compare")
