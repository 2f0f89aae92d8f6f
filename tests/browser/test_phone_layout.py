"""Chromium at phone width (390 px): every tab label is on screen, whole and reachable by click and keyboard (the tab
bar wraps onto more rows instead of folding five lessons into Gradio's "⋯" menu, while the lessons say "Click
**1 Tokenize**"), in both themes and in instructor mode; the Cross-entropy table's header text stays clear of each
column's menu button "⋮", at 390 px and at 1440 px."""

from __future__ import annotations

import pytest

LABELS = ["Start here", "1 Tokenize", "2 Cross-entropy", "3 Train", "4 Sample", "5 Aligned vs base", "6 ORPO"]
PHONE = {"width": 390, "height": 844}
# each tab button: its label, its box, whether the point at its centre is the button itself, whether its text fits
TAB_BUTTONS = """() => [...document.querySelectorAll('#pg-tabs [role=tab]')].map((t) => {
  const b = t.getBoundingClientRect();
  const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
  return {label: t.textContent.trim(), left: b.left, right: b.right, width: b.width,
          uncovered: hit !== null && t.contains(hit), whole: t.scrollWidth <= t.clientWidth, tabindex: t.tabIndex};
})"""
# each header of the Cross-entropy table: its text's box (a Range over the text), the menu button's box
HEADERS = """() => [...document.querySelectorAll('#ce-table th')].map((th) => {
  const text = th.querySelector('.header.text');
  const range = document.createRange();
  range.selectNodeContents(text);
  const box = (r) => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width});
  const button = th.querySelector('.cell-menu-button');
  const shown = button && getComputedStyle(button).visibility !== 'hidden';
  return {label: text.textContent.trim(), text: box(range.getBoundingClientRect()),
          whole: text.scrollWidth <= text.clientWidth, button: shown ? box(button.getBoundingClientRect()) : null};
})"""


@pytest.fixture()
def phone(browser, app_url):
    """phone(query) -> a 390 px wide page on the app with that query string."""
    contexts = []

    def _open(query: str):
        ctx = browser.new_context(viewport=PHONE)
        contexts.append(ctx)
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(f"{app_url}?{query}")
        pg.wait_for_selector("#pg-tabs [role=tab]", timeout=60_000)
        return pg

    yield _open
    for ctx in contexts:
        ctx.close()


@pytest.mark.parametrize("query", ["", "__theme=dark", "instructor=1"])
def test_every_tab_label_on_screen(phone, query):
    pg = phone(query)
    if query == "instructor=1":  # larger type: wider labels
        pg.wait_for_function("() => document.body.classList.contains('pg-instructor')")
    pg.wait_for_timeout(300)  # Gradio lays the tab bar out after the first paint
    tabs = pg.evaluate(TAB_BUTTONS)
    assert [t["label"] for t in tabs] == LABELS
    for t in tabs:
        assert t["width"] > 0 and t["left"] >= 0 and t["right"] <= PHONE["width"], f"{t['label']!r} off screen: {t}"
        assert t["uncovered"] and t["whole"], f"{t['label']!r} covered or cut short: {t}"
        assert t["tabindex"] >= 0, f"{t['label']!r} is not in the keyboard's tab order"
    more = pg.get_by_role("button", name="More tabs")
    assert more.count() == 0 or not more.is_visible(), "Gradio's '⋯' overflow menu is shown"

    pg.get_by_role("tab", name="6 ORPO").click()  # the last tab, by pointer
    pg.wait_for_selector("#tab-orpo", state="visible")
    pg.get_by_role("tab", name="4 Sample").focus()  # and one by keyboard
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#tab-sample", state="visible")
    assert pg.get_by_role("tab", name="4 Sample").get_attribute("aria-selected") == "true"


def _overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def test_cross_entropy_headers_clear_of_the_menu_button(phone):
    pg = phone("tab=cross_entropy")
    pg.wait_for_selector("#tab-cross_entropy", state="visible", timeout=30_000)
    pg.locator("#ce-score").click()
    pg.locator("#ce-chips .pg-ce-tok").first.wait_for(timeout=60_000)
    for width in (PHONE["width"], 1440):
        pg.set_viewport_size({"width": width, "height": PHONE["height"]})
        pg.wait_for_timeout(400)  # the table measures its columns again
        headers = pg.evaluate(HEADERS)
        assert len(headers) == 7
        for h in headers:
            assert h["button"] is not None, f"{h['label']!r}: no visible menu button (sorting lives there)"
            assert h["text"]["width"] > 0 and h["whole"], f"{h['label']!r} cut short at {width} px: {h}"
            assert not _overlap(h["text"], h["button"]), f"'⋮' covers {h['label']!r} at {width} px: {h}"
