"""Chromium: shared links restore the tab and its inputs, instructor mode hides advanced controls, demo presets
fill a tab, the page works at phone width and in the dark theme, and nothing is fetched from outside (issue 13)."""

from __future__ import annotations

from urllib.parse import urlencode, urlparse

import pytest

from tests.conftest import screenshot

LINK = {"tab": "sample", "prompt": "A shared prompt", "temperature": "0.35", "top_k": "7", "seed": "42"}
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture()
def open_page(browser, app_url):
    """open_page(query, width=1400) -> a page on the app with that query string, loaded and restored."""
    contexts = []

    def _open(query: dict | str = "", width: int = 1400, height: int = 1000, requests: list | None = None):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        if requests is not None:
            pg.on("request", lambda r: requests.append(r.url))
        qs = query if isinstance(query, str) else urlencode(query)
        pg.goto(app_url + (f"?{qs}" if qs else ""))
        pg.wait_for_selector("#pg-tabs", timeout=60_000)
        if isinstance(query, dict) and query.get("tab", "start") != "start":  # the load event has restored it
            pg.wait_for_selector(f"#tab-{query['tab']}", state="visible", timeout=30_000)
        return pg

    yield _open
    for ctx in contexts:
        ctx.close()


def selected_tab(pg) -> str:
    return pg.locator("[role=tab][aria-selected=true]").first.inner_text().strip()


def field(pg, elem_id: str) -> str:
    return pg.locator(
        f"#{elem_id} textarea, #{elem_id} input[type=number], #{elem_id} input[type=text]"
    ).first.input_value()


def wait_value(pg, elem_id: str, value: str) -> None:
    pg.wait_for_function(
        """([id, v]) => { const e = document.querySelector(`#${id} textarea, #${id} input[type=number]`);
                          return e && e.value === v; }""",
        arg=[elem_id, value],
        timeout=30_000,
    )


def test_shared_link_restores_tab_and_inputs(open_page):
    pg = open_page(LINK)
    wait_value(pg, "sample-prompt", "A shared prompt")
    assert selected_tab(pg) == "4 Sample"  # tab labels are numbered
    assert float(field(pg, "sample-temperature")) == pytest.approx(0.35)
    assert field(pg, "sample-topk") == "7" and field(pg, "sample-seed") == "42"

    # Copy link builds the same link in the browser; opening it restores the same inputs again
    pg.locator("#sample-copy-link").click()
    pg.wait_for_function("() => document.querySelector('#sample-link textarea, #sample-link input').value.length > 0")
    url = field(pg, "sample-link")
    assert urlparse(url).query and "tab=sample" in url and "seed=42" in url and "top_k=7" in url
    pg2 = open_page(urlparse(url).query)
    wait_value(pg2, "sample-prompt", "A shared prompt")
    assert float(field(pg2, "sample-temperature")) == pytest.approx(0.35)
    assert field(pg2, "sample-topk") == "7"
    screenshot(pg2, "shared-link")


def test_link_values_are_clamped_and_checked(open_page):
    pg = open_page({"tab": "sample", "prompt": "x", "temperature": "99", "top_k": "-5", "model": "/etc/passwd"})
    wait_value(pg, "sample-prompt", "x")
    assert float(field(pg, "sample-temperature")) == 5.0  # the slider's maximum
    assert field(pg, "sample-topk") == "0"
    assert "passwd" not in pg.locator("#sample-model input").input_value()


def test_instructor_mode_hides_advanced_controls(open_page):
    pg = open_page({"tab": "sample"})
    assert pg.locator("#sample-topp").is_visible() and pg.locator("#sample-seed").is_visible()
    normal = pg.evaluate("() => getComputedStyle(document.querySelector('#sample-prompt textarea')).fontSize")

    pg = open_page({"tab": "sample", "instructor": "1"})
    pg.wait_for_function("() => document.body.classList.contains('pg-instructor')")
    assert pg.locator("#pg-instructor-toggle input").is_checked()
    assert not pg.locator("#sample-max-new").is_visible() and not pg.locator("#sample-answers").is_visible()
    for used in ("sample-prompt", "sample-temperature", "sample-topk", "sample-topp", "sample-seed"):  # issue 16
        assert pg.locator(f"#{used}").is_visible(), f"#{used} is hidden in instructor mode, yet the lesson uses it"
    big = pg.evaluate("() => getComputedStyle(document.querySelector('#sample-prompt textarea')).fontSize")
    assert float(big.rstrip("px")) > float(normal.rstrip("px")), (normal, big)
    screenshot(pg, "instructor")

    pg.locator("#pg-instructor-toggle input").uncheck()  # the toggle turns it off again
    pg.wait_for_function("() => !document.body.classList.contains('pg-instructor')")
    assert pg.locator("#sample-max-new").is_visible()


# Every control a lesson's "Try this" uses stays visible in instructor mode (issue 16); the walk-throughs in
# tests/browser/test_lesson_*.py click them there, this lists them in one place.
LESSON_CONTROLS = {
    "cross_entropy": ["ce-dtype", "ce-scale", "ce-break-go"],
    "sample": ["sample-seed", "sample-topp", "sample-topk", "sample-temperature"],
    "tokenize": ["tok-model-type", "tok-vocab", "tok-corpus"],
    "train": ["train-lr", "train-total", "train-amount", "train-source", "train-preset"],
    "compare": ["compare-answers", "compare-seed", "compare-topp", "compare-temperature", "compare-topk"],
    "orpo": ["orpo-lr", "orpo-n", "orpo-lambda"],
}
HEADINGS = """tab => { const root = document.querySelector(`#tab-${tab} .pg-lesson-text`);
  const size = s => parseFloat(getComputedStyle(root.querySelector(s)).fontSize);
  const cut = [...root.querySelectorAll('.katex-display')].filter(d => d.scrollWidth > d.clientWidth + 1)
                .map(d => [d.scrollWidth, d.clientWidth, d.textContent.slice(0, 40)]);
  return {h2: size('h2'), h3: size('h3'), p: size('p'), cut}; }"""


@pytest.mark.parametrize("tab", ["start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo"])
def test_instructor_mode_is_larger_not_poorer(open_page, tab):
    """Instructor mode at 1440 px: the lesson's headings are larger than its text, no display formula is cut
    off (each fits its column), and every control the lesson's steps use is shown."""
    pg = open_page({"tab": tab, "instructor": "1"}, width=1440)
    pg.wait_for_function("() => document.body.classList.contains('pg-instructor')")
    if tab == "tokenize":
        pg.locator("#tok-train-box").get_by_role("button", name="Train your own tokenizer").click()
        for elem_id in LESSON_CONTROLS[tab]:  # the accordion opens with an animation (CI saw it still closed)
            try:
                pg.locator(f"#{elem_id}").wait_for(state="visible", timeout=10_000)
            except Exception as exc:
                raise AssertionError(f"#{elem_id} is hidden in instructor mode 10 s after opening its panel") from exc
    pg.wait_for_function(  # the lesson has rendered (CI once measured the start page before its h2 existed)
        "tab => ['h2', 'h3', 'p'].every(s => document.querySelector(`#tab-${tab} .pg-lesson-text ${s}`))", arg=tab
    )
    m = pg.evaluate(HEADINGS, tab)
    assert m["h2"] > m["h3"] > m["p"] >= 18, m
    assert not m["cut"], f"display formulas wider than the lesson column: {m['cut']}"
    for elem_id in LESSON_CONTROLS.get(tab, []):
        assert pg.locator(f"#{elem_id}").is_visible(), f"#{elem_id} is hidden in instructor mode"


def test_demo_preset_fills_a_tab_and_opens_it(open_page):
    pg = open_page()
    pg.locator("#start-presets input").click()
    pg.get_by_role("option", name="Sample: greedy (temperature 0)").click()
    pg.wait_for_function("() => document.querySelector('#sample-temperature input[type=number]')?.value === '0'")
    assert selected_tab(pg) == "4 Sample"  # tab labels are numbered
    assert field(pg, "sample-prompt") == "Once upon a time"


@pytest.mark.parametrize("tab", ["start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo"])
def test_phone_width_has_no_horizontal_scroll(open_page, tab):
    pg = open_page({"tab": tab}, width=390, height=844)
    pg.wait_for_timeout(300)
    width = pg.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    assert width <= 390, f"the {tab} tab is {width} px wide at a 390 px viewport"
    if tab == "sample":  # the controls are usable: the main button is on screen and inside the viewport
        box = pg.locator("#sample-generate").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390


def test_offline_and_dark_theme(open_page):
    requests: list[str] = []
    pg = open_page({"__theme": "dark", "tab": "cross_entropy"}, requests=requests)
    assert pg.evaluate("() => document.body.classList.contains('dark')")
    bg = pg.evaluate("() => getComputedStyle(document.querySelector('.gradio-container')).backgroundColor")
    r, g, b = (int(x) for x in bg[bg.index("(") + 1 : bg.index(")")].split(",")[:3])
    assert r + g + b < 200, f"dark theme background is {bg}"
    outside = [
        u
        for u in requests
        if urlparse(u).scheme in ("http", "https", "ws", "wss") and urlparse(u).hostname not in LOOPBACK
    ]
    assert not outside, f"requests left the machine: {outside[:5]}"
    assert requests, "no request was recorded at all"
