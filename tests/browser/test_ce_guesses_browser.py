"""Chromium on the Cross-entropy tab: clicking a token lists the model's top-10 next-token guesses at that
position (recomputed here from the bundled model's own logits), and the table's sort hint is true."""

from __future__ import annotations

import pytest
import torch

from playground import checkpoints
from playground.ui import common
from playground.ui.cross_entropy_tab import DEFAULT_TEXT, visible_chip


@pytest.fixture(scope="module")
def reference():
    """softmax(logits) top 10 at every position, in float64, from the bundled model the tab scores by default."""
    name = common.model_choices()[0]
    bundle = checkpoints.load(name)
    bundle.model.eval()
    ids = bundle.tokenizer.encode(DEFAULT_TEXT)
    with torch.no_grad():
        logits = bundle.model(torch.tensor([ids]))[0].double()  # (T, V); the text fits one context
    top = torch.softmax(logits, -1).topk(10, -1)
    return bundle.tokenizer, ids, top


def test_click_a_token_shows_its_top_guesses(page, reference):
    tokenizer, ids, top = reference
    page.get_by_role("tab", name="Cross-entropy").click()
    page.locator("#ce-score").click()
    chips = page.locator("#ce-chips .pg-ce-tok")
    chips.first.wait_for(timeout=60_000)
    assert chips.count() == len(ids) - 1
    for k in (0, 3, len(ids) - 2):  # chip k is token k+1, predicted from position k
        chips.nth(k).click()
        rows = page.locator("#ce-chips .pg-ce-guess")
        assert rows.count() == 10
        shown = [float(t) for t in rows.locator(".pg-ce-guess-p").all_inner_texts()]
        want = top.values[k].tolist()
        assert shown == pytest.approx(want, abs=6e-5)
        pieces = [visible_chip(tokenizer.id_to_piece(i).replace("▁", " ")) for i in top.indices[k].tolist()]
        assert rows.locator("code").all_text_contents() == pieces
        target = ids[k + 1]
        hit = page.locator("#ce-chips .pg-ce-guess.pg-ce-hit")
        assert hit.count() == (1 if target in top.indices[k].tolist() else 0)
    chips.nth(3).focus()  # keyboard: Enter opens a chip too
    page.keyboard.press("Enter")
    assert "Before" in page.locator("#ce-chips .pg-ce-guesses-title").inner_text()


def test_sort_hint_is_true(page):
    page.get_by_role("tab", name="Cross-entropy").click()
    page.locator("#ce-score").click()
    page.locator("#ce-chips .pg-ce-tok").first.wait_for(timeout=60_000)
    table = page.locator("#ce-table")
    assert "open the ⋮ menu" in table.inner_text()
    header = table.locator("th").nth(4)  # -log p
    menu = header.locator(".cell-menu-button")
    assert menu.is_visible() and menu.inner_text() == "⋮"  # shown without hovering, as the label says
    menu.click()
    page.get_by_text("Sort descending", exact=True).click()
    page.wait_for_timeout(300)
    cells = table.locator("[role=row] [role=gridcell]:nth-child(5)").all_inner_texts()  # Gradio's virtual rows
    col = [float(t) for t in cells if t.strip()][:5]
    assert col == sorted(col, reverse=True) and len(col) == 5
