"""Chromium on the line plots: every legend entry is on screen (inside the viewport, not covered) at 1400 px and at
phone width (390 px), its colour is one of the plot's lines, and the axes carry sensible tick labels, on the empty
plots and after a training burst and ORPO steps.

Vega-Lite's own legend stays on one row: at 390 px the loss plot's fourth entry ("uniform (ln V)") fell outside the
page. Each plot's legend is a list under it (common.plot_legend) that wraps; these checks read that list."""

from __future__ import annotations

import re

WIDTHS = (1400, 390)
LEGEND = """(sel) => {
  const list = document.querySelector(sel);
  list.scrollIntoView({block: 'center'});
  const width = document.documentElement.clientWidth;
  return [...list.querySelectorAll('li')].filter((li) => {
    const b = li.getBoundingClientRect();
    const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    return b.width > 0 && b.left >= 0 && b.right <= width && hit !== null && li.contains(hit);  // on screen, uncovered
  }).map((li) => li.textContent);
}"""
SWATCHES = """(sel) => [...document.querySelectorAll(sel + ' .pg-swatch')]
  .map((s) => getComputedStyle(s).backgroundColor)"""
# the colours of the lines Vega drew (its own legend's symbols, hidden in the page, left out)
STROKES = """(sel) => [...document.querySelectorAll(sel + ' svg.marks .role-mark path')]
  .filter((p) => !p.closest('.role-legend')).map((p) => getComputedStyle(p).stroke)"""
TICKS = "(sel) => [...document.querySelectorAll(sel + ' .role-axis-label text')].map((t) => t.textContent)"


def legend_seen(page, plot: str, legend: str, lines: bool = True) -> set[str]:
    """The entries of `legend` that a reader sees; with `lines`, each entry's colour must be a line of `plot`."""
    page.locator(f"{plot} svg.marks").first.wait_for()
    if lines:
        drawn = set(page.evaluate(STROKES, plot))
        for colour in page.evaluate(SWATCHES, legend):
            assert colour in drawn, f"{legend}: {colour} is not the colour of a line of {plot} ({sorted(drawn)})"
    return set(page.evaluate(LEGEND, legend))


def at_each_width(page, check) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(400)  # Vega redraws the plots at the new width
        check(width)


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

    def check(width: int) -> None:
        assert legend_seen(page, loss, "#train-loss-legend") == want, f"at {width} px"
        assert legend_seen(page, lr, "#train-lr-legend", lines=False) == {"schedule", "done"}, f"at {width} px"
        for sel in (loss, lr):
            _sensible(_ticks(page, sel))

    at_each_width(page, check)
    steps = [int(t.replace(",", "")) for t in _ticks(page, loss) if t.replace(",", "").isdigit()]
    assert max(steps) >= 250  # the empty loss plot already spans the 300-step schedule

    page.locator("#train-start").click()
    page.get_by_text("burst done: 30 steps").wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    legend_seen(page, lr, "#train-lr-legend")  # both LR lines drawn now: their colours are the legend's
    at_each_width(page, check)


def test_orpo_plot_legend(page, app_url):
    page.goto(f"{app_url}?tab=orpo&n=2")
    page.wait_for_selector("#tab-orpo", state="visible")
    page.locator("#orpo-steps-btn").click()
    page.locator("#orpo-status").get_by_text("Step 2 of 2").wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    want = {"log odds ratio", "chosen avg log p", "rejected avg log p"}

    def check(width: int) -> None:
        assert legend_seen(page, "#orpo-plot", "#orpo-legend") == want, f"at {width} px"
        _sensible(_ticks(page, "#orpo-plot"))

    at_each_width(page, check)
