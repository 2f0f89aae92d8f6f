"""Chromium on the Start page and the tab bar: numbered tab labels (the lessons say "Click **1 Tokenize**"), a
legible pipeline picture whose stages open their tabs, step buttons on one row, whole header words in the class
table, and on a phone a Next button on every tab that walks the path."""

from __future__ import annotations

LABELS = ["Start here", "1 Tokenize", "2 Cross-entropy", "3 Train", "4 Sample", "5 Aligned vs base", "6 ORPO"]


def test_tabs_are_numbered(page):
    assert page.get_by_role("tab").all_inner_texts() == LABELS


def test_pipeline_is_legible_and_clickable(page):
    pic = page.locator("#start-pipeline svg")
    # the smallest text of the picture, as drawn: 12 px in the picture's own units, scaled by its width
    scale = pic.bounding_box()["width"] / 1286
    assert 12 * scale >= 11, f"pipeline text drawn at {12 * scale:.1f} px"
    steps = page.locator(".pg-steps button")
    tops = {round(b["y"]) for b in (steps.nth(i).bounding_box() for i in range(steps.count()))}
    assert steps.count() == 6 and len(tops) == 1  # one row
    header = page.locator(".pg-class-path th").first
    lines = header.evaluate(
        "(th) => { const r = document.createRange(); r.selectNodeContents(th);"
        " return new Set([...r.getClientRects()].map((b) => Math.round(b.top))).size; }"
    )
    assert header.inner_text() == "minutes" and lines == 1  # not broken as "minut/es"
    page.locator(".pg-pipeline .pg-stage[data-tab='train']").click()
    page.wait_for_selector("#tab-train", state="visible")
    assert page.get_by_role("tab", name="3 Train").get_attribute("aria-selected") == "true"


def test_instructor_mode_enlarges_the_picture(page):
    before = page.locator("#start-pipeline svg").bounding_box()["width"]
    page.locator(".pg-instructor-toggle input").check()
    page.wait_for_function("() => document.body.classList.contains('pg-instructor')")
    assert page.locator("#start-pipeline svg").bounding_box()["width"] > before


def test_phone_walks_the_tabs_with_next_buttons(browser, app_url):
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    pg = ctx.new_page()
    try:
        pg.goto(app_url)
        pg.wait_for_selector("#pg-tabs", timeout=60_000)
        pg.locator("#start-go-tokenize").click()
        for here, there in [
            ("tokenize", "cross_entropy"),
            ("cross_entropy", "train"),
            ("train", "sample"),
            ("sample", "compare"),
            ("compare", "orpo"),
        ]:
            pg.wait_for_selector(f"#tab-{here}", state="visible")
            pg.locator(f"#{here}-next").click()
            pg.wait_for_selector(f"#tab-{there}", state="visible")
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing widens the page
    finally:
        ctx.close()
