"""Chromium on the Train tab's interactive attention maps: after a burst, hovering a cell names the query token,
the key token and the weight (the weight the map carries for that cell), arrow keys move the readout, the future
is masked, and a thumbnail switches the large map; Redraw after a second burst shows the new step."""

from __future__ import annotations

import re

from tests.conftest import open_tab


def _big(page):
    return page.locator("#train-attention .pg-attn-map:not([hidden])")


def _weight_at(fig, row: int, col: int) -> float:
    n = int(fig.get_attribute("data-t"))
    return int(fig.get_attribute("data-w").split(",")[row * n + col]) / 1e4


def _hover(page, fig, row: int, col: int) -> str:
    cells = fig.locator(".pg-attn-cells")
    box = cells.bounding_box()
    n = int(fig.get_attribute("data-t"))
    cells.hover(position={"x": (col + 0.5) * box["width"] / n, "y": (row + 0.5) * box["height"] / n})
    return fig.locator(".pg-attn-readout").inner_text()


def test_hover_click_and_keys(page):
    open_tab(page, "Train")
    box = page.locator("#tab-train").get_by_label("Burst length", exact=True)
    box.fill("30")
    box.press("Tab")
    page.locator("#train-start").click()
    page.get_by_text("burst done: 30 steps").wait_for(timeout=180_000)
    fig = _big(page)
    fig.wait_for()
    assert fig.count() == 1 and "Layer 2, average of the heads · step 30" in fig.locator("figcaption").inner_text()
    tokens = page.evaluate("(f) => JSON.parse(f.dataset.tokens)", fig.element_handle())
    # the prompt's own tokens, word-start mark shown as ␣ (the tokenizer adds no dummy prefix: the first word has none)
    assert tokens[:3] == ["Em", "ma", "␣Woodhouse"]

    text = _hover(page, fig, 3, 1)
    assert f"query “{tokens[3]}” (token 4)" in text and f"key “{tokens[1]}” (token 2)" in text
    shown = float(re.search(r"weight ([\d.]+)", text).group(1))
    assert shown == _weight_at(fig, 3, 1) and 0 < shown < 1
    assert fig.locator(".pg-attn-rows span.pg-on").inner_text() == tokens[3]  # the row label lights up
    assert "masked" in _hover(page, fig, 1, 3)  # a token cannot look at a later one

    fig.locator(".pg-attn-cells").focus()  # keyboard: from (1, 3) one step left and one down -> (2, 2)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowDown")
    text = fig.locator(".pg-attn-readout").inner_text()
    assert f"query “{tokens[2]}” (token 3)" in text and f"weight {_weight_at(fig, 2, 2):.4f}" in text

    thumb = page.get_by_role("button", name="Show Layer 1, head 3")
    thumb.click()
    assert thumb.get_attribute("aria-pressed") == "true"
    assert _big(page).locator("figcaption").inner_text().startswith("Layer 1, head 3")
    page.locator("#train-attention").screenshot(path=str(_artifact("attention-hover")))

    page.locator("#train-continue").click()  # a second burst redraws the maps at the new step
    page.get_by_text("burst done: 30 steps").wait_for(timeout=180_000)
    page.wait_for_function(
        "() => /step 60/.test(document.querySelector('#train-attention .pg-attn-map:not([hidden]) figcaption')"
        "?.textContent || '')",
        timeout=60_000,
    )


def _artifact(name: str):
    from tests.conftest import ARTIFACTS

    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / "screenshots" / f"{name}.png"
