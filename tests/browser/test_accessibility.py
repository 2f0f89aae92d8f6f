"""axe-core (the engine behind Lighthouse's and Deque's accessibility audits) on every tab, light and dark theme.

Each tab is opened by a link, something is done on it so its generated views (token chips, bar charts, tables) are on
the page, and axe checks the whole page against WCAG 2.1 A/AA and best practice. A serious or critical violation fails
the test, with axe's own report. GRADIO_OWN lists violations in Gradio's markup that we cannot patch from the app,
each with its upstream issue (docs/accessibility.md); it is empty: page.js and the theme in common.py patch what was.
"""

from __future__ import annotations

import pytest

TABS = ["start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo"]
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
GRADIO_OWN: dict[str, str] = {}  # axe rule id -> upstream issue URL; keep in step with docs/accessibility.md


def _act(pg, tab: str) -> None:
    """Put the tab's generated views on the page (the cheap way: no training burst, no long generation)."""
    if tab == "tokenize":
        pg.locator("#tok-chips .pg-tok").first.wait_for()
    elif tab == "cross_entropy":
        pg.locator("#ce-score").click()
        pg.locator("#ce-chips .pg-ce-tok").first.wait_for(timeout=60_000)
    elif tab == "sample":
        pg.locator("#sample-step").click()
        pg.locator("#sample-dist .pg-drawn").first.wait_for(timeout=60_000)
    elif tab == "orpo":
        pg.locator("#orpo-go").click()
        pg.locator("#orpo-numbers table").wait_for(timeout=60_000)
    pg.wait_for_timeout(500)  # the last paint of plots and chips


def serious_violations(pg) -> list[dict]:
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    found = Axe().run(pg, options=options).response["violations"]
    return [v for v in found if v["impact"] in ("serious", "critical") and v["id"] not in GRADIO_OWN]


def _report(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes): {v['help']}")
        for node in v["nodes"][:5]:
            why = (node.get("any") or node.get("all") or node.get("none") or [{}])[0].get("message", "")
            lines.append(f"    {node['target']}: {node['html'][:120]!r} {why[:160]}")
    return "\n".join(lines)


def _audit(browser, app_url, tab: str, theme: str, width: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    try:
        pg.goto(f"{app_url}?tab={tab}&__theme={theme}")
        pg.wait_for_selector(f"#tab-{tab}", state="visible", timeout=60_000)
        assert pg.evaluate("() => document.body.classList.contains('dark')") == (theme == "dark")
        _act(pg, tab)
        bad = serious_violations(pg)
    finally:
        ctx.close()
    assert not bad, f"{tab}, {theme} theme, {width} px:\n{_report(bad)}"


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("tab", TABS)
def test_no_serious_violations(browser, app_url, tab, theme):
    _audit(browser, app_url, tab, theme, 1440)


@pytest.mark.parametrize(("tab", "theme"), [("train", "dark"), ("cross_entropy", "light"), ("orpo", "dark")])
def test_phone_width_no_serious_violations(browser, app_url, tab, theme):
    """At 390 px: the tab bar wrapped onto several rows, the plots' legend lists, tables that scroll sideways (an empty
    one too: its first header takes the focus, assets/page.js), the table's headers beside '⋮'."""
    _audit(browser, app_url, tab, theme, 390)
