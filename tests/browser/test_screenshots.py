"""The README's screenshots, made by the test run: every tab after doing something meaningful in it (1280 px wide,
light theme), plus the dark theme and a phone. Each page is opened through a shared link, so the links are
exercised too. A normal run writes the images under test-artifacts/screenshots/ (ignored by git);
PLAYGROUND_SCREENSHOTS=docs writes them to docs/screenshots/<name>.png, the README's images (`make screenshots`).
A test checks the README's images all exist."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS_SHOTS = ROOT / "docs" / "screenshots"  # tracked: written only when PLAYGROUND_SCREENSHOTS=docs asks
SHOTS = DOCS_SHOTS if os.environ.get("PLAYGROUND_SCREENSHOTS") == "docs" else ROOT / "test-artifacts" / "screenshots"
TABS = ["start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo"]
EXPECTED = [*TABS, "dark", "phone"]
MAX_HEIGHT = 2200  # px: the top of a long page is what a README shows


def _open(browser, app_url, query: dict, width: int = 1280, height: int = 900):
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{app_url}?{urlencode(query)}")
    pg.wait_for_selector("#pg-tabs", timeout=60_000)
    if query.get("tab", "start") != "start":
        pg.wait_for_selector(f"#tab-{query['tab']}", state="visible")
    return ctx, pg


def _shot(pg, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.wait_for_timeout(400)  # let plots and chips finish their last paint
    pg.evaluate("() => window.scrollTo(0, 0)")
    height = min(pg.evaluate("() => document.documentElement.scrollHeight"), MAX_HEIGHT)
    width = pg.viewport_size["width"]
    pg.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})
    return path


def _do(pg, tab: str) -> None:
    """Something meaningful on each tab, waiting until its result is on screen."""
    if tab == "start":
        pg.locator("#start-pipeline svg").wait_for()
    elif tab == "tokenize":  # tokenized on load
        pg.locator("#tok-chips .pg-tok").first.wait_for()
    elif tab == "cross_entropy":
        pg.locator("#ce-score").click()
        pg.locator("#ce-chips .pg-ce-tok").first.wait_for()
    elif tab == "train":
        pg.locator("#train-start").click()
        pg.get_by_text("burst done: 30 steps").wait_for(timeout=120_000)
        pg.locator("#train-attention .pg-attn-map:not([hidden])").wait_for()
    elif tab in ("sample", "compare"):
        pg.locator(f"#{tab}-generate").click()
        pg.locator(f"#{tab}-status").get_by_text("Done:").wait_for(timeout=120_000)
    elif tab == "orpo":
        pg.locator("#orpo-go").click()
        pg.locator("#orpo-numbers table").wait_for()


QUERIES = {
    "start": {},
    "tokenize": {"tab": "tokenize"},
    "cross_entropy": {"tab": "cross_entropy"},
    "train": {"tab": "train", "mode": "steps", "amount": "30"},
    "sample": {"tab": "sample", "prompt": "Once upon a time", "temperature": "0.8", "max_new": "48", "seed": "1"},
    "compare": {"tab": "compare", "prompt": "What is a food recipe using apple?", "max_new": "48", "seed": "0"},
    "orpo": {"tab": "orpo"},
}


@pytest.mark.parametrize("tab", TABS)
def test_tab_screenshot(browser, app_url, tab):
    ctx, pg = _open(browser, app_url, QUERIES[tab])
    try:
        _do(pg, tab)
        path = _shot(pg, tab)
    finally:
        ctx.close()
    assert path.stat().st_size > 20_000


def test_dark_and_phone_screenshots(browser, app_url):
    ctx, pg = _open(browser, app_url, {"__theme": "dark", "tab": "tokenize"})
    try:
        pg.locator("#tok-chips .pg-tok").first.wait_for()
        assert pg.evaluate("() => document.body.classList.contains('dark')")
        _shot(pg, "dark")
    finally:
        ctx.close()
    ctx, pg = _open(browser, app_url, {"tab": "sample"}, width=390, height=844)
    try:
        pg.locator("#sample-prompt").wait_for()
        _shot(pg, "phone")
    finally:
        ctx.close()
    for name in ("dark", "phone"):
        assert (SHOTS / f"{name}.png").stat().st_size > 20_000


def test_readme_images_exist():
    """Every image the README references under docs/screenshots exists, and so does every screenshot it will use."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else ""
    referenced = set(re.findall(r"docs/screenshots/([\w.-]+\.png)", readme))
    missing = sorted(n for n in referenced | {f"{e}.png" for e in EXPECTED} if not (DOCS_SHOTS / n).is_file())
    assert not missing, f"missing under docs/screenshots: {missing} (run tests/browser/test_screenshots.py)"
