"""Chromium on the line plots: every legend entry is on screen (not clipped by the plot's box) and the axes carry
sensible tick labels, on the empty plots and after a training burst and ORPO steps."""

from __future__ import annotations

import re

LEGEND = """(sel) => {
  const root = document.querySelector(sel);
  root.scrollIntoView({block: 'center'});
  return [...root.querySelectorAll('.role-legend-label text')].filter((t) => {
    const b = t.getBoundingClientRect();
    const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    return b.width > 0 && hit !== null && hit.closest('svg') === t.closest('svg');  // visible, not clipped away
  }).map((t) => t.textContent);
}"""
TICKS = "(sel) => [...document.querySelectorAll(sel + ' .role-axis-label text')].map((t) => t.textContent)"


def _legend(page, sel: str) -> set[str]:
    page.locator(f"{sel} .role-legend-label text").first.wait_for()
    return set(page.evaluate(LEGEND, sel))


def _ticks(page, sel: str) -> list[str]:
    ticks = page.evaluate(TICKS, sel)
    assert ticks, f"no tick labels on {sel}"
    return ticks


def _sensible(ticks: list[str]) -> None:
    """No '8.317766' or '0.000000': at most two decimals, or a short number such as 0.005 without trailing zeros."""
    for t in ticks:
        assert re.fullmatch(r"[-−]?[\d,]+(\.\d{1,2})?|[-−]?0\.0*[1-9]\d?", t), f"tick label {t!r}"


def test_train_plots_legends_and_axes(page, app_url):
    page.goto(f"{app_url}?tab=train&amount=30")
    page.wait_for_selector("#tab-train", state="visible")
    loss, lr = "#train-loss-plot", "#train-lr-plot"
    want = {"batch loss", "train (eval)", "validation", "uniform (ln V)"}
    assert _legend(page, loss) == want
    assert _legend(page, lr) == {"schedule", "done"}
    for sel in (loss, lr):
        _sensible(_ticks(page, sel))
    steps = [int(t.replace(",", "")) for t in _ticks(page, loss) if t.replace(",", "").isdigit()]
    assert max(steps) >= 250  # the empty loss plot already spans the 300-step schedule

    page.locator("#train-start").click()
    page.get_by_text("burst done: 30 steps").wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    assert _legend(page, loss) == want
    for sel in (loss, lr):
        _sensible(_ticks(page, sel))


def test_orpo_plot_legend(page, app_url):
    page.goto(f"{app_url}?tab=orpo&n=2")
    page.wait_for_selector("#tab-orpo", state="visible")
    page.locator("#orpo-steps-btn").click()
    page.locator("#orpo-plot .role-legend-label text").first.wait_for(timeout=180_000)
    page.locator("#orpo-status").get_by_text("Step 2 of 2").wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    assert len(_legend(page, "#orpo-plot")) == 3
    _sensible(_ticks(page, "#orpo-plot"))
