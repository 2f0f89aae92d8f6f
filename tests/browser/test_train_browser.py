"""Chromium on the Train tab: press Start, watch the step count and the loss curve grow, see the sample and maps."""

from __future__ import annotations

import re

from tests.conftest import open_tab, screenshot


def _step(page) -> int:
    html = page.locator("#train-status").inner_html()
    m = re.search(r"data-step=\"(\d+)\"|data-step='(\d+)'", html)
    return int(next(g for g in m.groups() if g)) if m else 0


def _set_number(page, label: str, value: str) -> None:
    box = page.locator("#tab-train").get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")


def test_start_grows_the_curve(page):
    open_tab(page, "Train")
    _set_number(page, "Burst length", "60")
    _set_number(page, "Batch size", "16")
    plot = page.locator("#train-loss-plot")
    page.locator("#train-start").click()

    page.wait_for_function(
        "() => /data-step=.([1-9][0-9]*)/.test(document.querySelector('#train-status').innerHTML)", timeout=60_000
    )
    first = _step(page)
    page.wait_for_function(
        f"() => {{ const m = document.querySelector('#train-status').innerHTML.match(/data-step=.(\\d+)/);"
        f" return m && Number(m[1]) > {first}; }}",
        timeout=60_000,
    )
    assert _step(page) > first  # the run moves on while we watch
    assert plot.locator("canvas, svg").count() >= 1  # the loss curve is drawn (vega renders into a canvas/svg)

    page.get_by_text("burst done: 60 steps").wait_for(timeout=120_000)
    assert _step(page) == 60
    box = plot.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 150
    assert page.locator("#train-sample textarea").input_value().startswith("It is a truth")
    assert page.locator("#train-attention .pg-attn-map").count() == 2 * (4 + 1)  # layers x (heads + average)
    page.locator("#train-status").scroll_into_view_if_needed()
    screenshot(page, "train")
