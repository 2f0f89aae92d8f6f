"""Chromium on the ORPO tab: compute the loss of a shipped pair and see every number, then take ORPO steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import open_tab, screenshot


@pytest.fixture(scope="module")
def model_source(tmp_path_factory) -> str:
    """llama-base once it is trained; until then a tiny random Llama in a temporary folder."""
    from playground import checkpoints

    if (Path(checkpoints.BUNDLED["llama-base"]["folder"]) / "config.json").exists():
        return "llama-base"
    from playground.llama import new_llama
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    model = new_llama("tiny", vocab_size=tok.vocab_size, max_seq_len=128, dim=64, n_layers=2)
    folder = tmp_path_factory.mktemp("orpo-browser") / "llama"
    return str(checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "llama"}), folder))


def choose_model(page, source: str) -> None:
    box = page.locator("#orpo-model input")
    box.click()
    box.fill(source)
    box.press("Enter")
    page.locator("#orpo-prompt textarea").click()  # leave the dropdown so it commits the value


def test_see_the_numbers_then_take_steps(page, model_source):
    open_tab(page, "ORPO")
    choose_model(page, model_source)
    assert page.locator("#orpo-prompt textarea").input_value().strip()  # a shipped example is prefilled
    page.locator("#orpo-go").click()
    table = page.locator("#orpo-numbers table")
    table.wait_for(timeout=60_000)
    for key in (
        "chosen_avg_logp",
        "rejected_avg_logp",
        "chosen_p",
        "chosen_odds",
        "log_odds_ratio",
        "sigmoid",
        "or_loss",
        "nll",
        "loss",
    ):
        text = table.locator(f"[data-key='{key}']").inner_text()
        assert re.fullmatch(r"-?[\d.e+-]+|inf", text.strip()), (key, text)
    chips = page.locator("#orpo-chosen .pg-tok")
    assert chips.count() > 3
    colour = chips.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour.startswith("rgb") and colour != "rgba(0, 0, 0, 0)"
    assert page.locator("#orpo-rejected .pg-tok").count() > 0
    assert "log odds ratio" in page.locator("#orpo-reading").inner_text()

    # N ORPO steps on the learner's own copy: the per-step table fills and the status says so
    n = page.locator("#orpo-n input[type=number]")
    n.fill("5")
    n.press("Enter")
    page.locator("#orpo-steps-btn").click()
    page.locator("#orpo-status").get_by_text("Step 5 of 5").wait_for(timeout=90_000)
    assert page.locator("#orpo-steps-table").get_by_text("log odds ratio").count() >= 1
    page.locator("#orpo-numbers").scroll_into_view_if_needed()
    screenshot(page, "orpo")
