"""lessons/cross_entropy.md, "Try this" step by step in Chromium (normal and instructor mode): lesson_steps.py."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest

from playground.ui.cross_entropy_tab import BREAK_MAX_EXP
from tests.browser.lesson_steps import (
    assert_visible,
    fill_text,
    lesson_page_fixture,
    pick_radio,
    run_event,
    says,
    section,
    set_number,
    step_text,
    text_of,
)

LESSON = "cross_entropy"
lesson_page = lesson_page_fixture(LESSON)
_SEEN: dict[str, dict] = {}


def score(page) -> dict:
    """Press Score; the loss shown, ln V, and each chip's text and -log p."""
    run_event(page, "#ce-score", "ce-summary")
    chips = page.locator("#ce-chips .pg-ce-tok").evaluate_all(
        "els => els.map(e => [e.textContent, Number(e.dataset.nll)])"
    )
    return {
        "loss": float(page.locator("#ce-loss").inner_text()),
        "lnV": float(page.locator("#ce-baseline").inner_text()),
        "first": page.locator("#ce-chips .pg-ce-first").inner_text(),
        "chips": chips,
    }


def test_step_1(lesson_page):
    """The prefilled text: the famous first sentence is easy (green), the spaceship in Tokyo hard (red)."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(step, "**Score**", "famous first sentence", "the spaceship in Tokyo hard")
    s = score(page)
    text = s["first"] + "".join(t for t, _ in s["chips"])
    assert text.replace("\n", " ").startswith("It is a truth universally acknowledged")
    ends, n = [], len(s["first"])
    for chip, _ in s["chips"]:
        n += len(chip)
        ends.append(n)
    cut = next(i for i, end in enumerate(ends) if end > text.index("Suddenly"))  # the chip where it starts
    easy = [n for _, n in s["chips"][:cut]]
    hard = [n for _, n in s["chips"][cut:]]
    assert sum(easy) / len(easy) < sum(hard) / len(hard), (easy, hard)
    colours = page.locator("#ce-chips .pg-ce-tok").evaluate_all("els => els.map(e => e.style.background)")
    assert len(set(colours)) > 3  # from green to red
    _SEEN[page.pg_mode] = s


def _csv_rows(page) -> list[dict]:
    href = page.locator("#ce-csv a").first.get_attribute("href")
    body = page.request.get(href if href.startswith("http") else page.url.split("?")[0].rstrip("/") + href).text()
    return list(csv.DictReader(io.StringIO(body)))


def test_step_2(lesson_page):
    """Sort by -log p: the top row is the most surprising token; the column's mean is the loss shown."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "Sort the table by **-log p**", "the mean of the column is the loss shown")
    s = _SEEN.get(page.pg_mode) or score(page)
    page.locator("#ce-table th[title='-log p']").hover()  # the header's menu button shows on hover
    page.locator("#ce-table th[title='-log p'] button").click()
    page.locator(".cell-menu button", has_text="Sort descending").click()
    top = max(n for _, n in s["chips"])
    page.wait_for_function(  # the first data row is now the most surprising token
        """top => { const r = document.querySelectorAll('#ce-table [role=row]')[1];
                    const cells = r ? [...r.querySelectorAll('td, [role=gridcell]')] : [];
                    return cells.length > 4 && Math.abs(Number(cells[4].innerText.trim()) - top) < 1e-3; }""",
        arg=top,
    )
    rows = _csv_rows(page)
    column = [float(r["-log p"]) for r in rows]
    assert len(column) == len(s["chips"])
    assert sum(column) / len(column) == pytest.approx(s["loss"], abs=2e-4)


def test_step_3(lesson_page):
    """The loss beside the baseline ln V: the trained model is better than a uniform guess."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "baseline $\\ln V$")
    s = _SEEN.get(page.pg_mode) or score(page)
    assert s["lnV"] == pytest.approx(math.log(4096), abs=0.01)
    assert s["loss"] < s["lnV"]


def test_step_4(lesson_page):
    """A sentence of your own, then its words shuffled: the loss rises."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "words shuffled: the loss rises")
    sentence = "She was the youngest of the two daughters of a most affectionate, indulgent father."
    fill_text(page, "ce-text", sentence)
    ordered = score(page)["loss"]
    words = sentence.rstrip(".").split()
    shuffled = " ".join(words[1::2] + words[::2]) + "."
    fill_text(page, "ce-text", shuffled)
    assert score(page)["loss"] > ordered


def break_it(page, exp: float) -> dict:
    set_number(page, "ce-scale", exp)
    run_event(page, "#ce-break-go", "ce-break-verdict-box")
    rows = page.locator("#ce-break-table [role=row]").evaluate_all(
        "trs => trs.slice(1).map(tr => tr.innerText.split('\\n').map(x => x.trim()).filter(x => x))"
    )
    value = {r[0]: float(r[1]) for r in rows if len(r) > 1}  # float() reads nan and inf too
    return {"rows": value, "verdict": page.locator("#ce-break-verdict").inner_text()}


def pick_dtype(page, dtype: str) -> None:
    """Pick a dtype and wait for the slider to take its range, before an x is typed (CI once saw the answer to the
    dtype change land after the typed x)."""
    pick_radio(page, "ce-dtype", dtype)
    page.wait_for_function(
        "top => Number(document.querySelector('#ce-scale input[type=range]').max) === top",
        arg=BREAK_MAX_EXP[dtype],
    )


def naive_broke(r) -> bool:
    return not math.isfinite(r["rows"]["naive manual"])


def test_step_5(lesson_page):
    """The slider sets the largest logit to 10^x. float16: at the step's first x all three agree; at its second the
    naive loss turns inf/nan while log-sum-exp and PyTorch still agree; at its third the logits no longer fit and the
    tab says so. float32: the naive loss breaks at the x the step gives, later than in float16, not just before."""
    page, step = lesson_page, step_text(LESSON, 5)
    says(
        step,
        "the slider multiplies the logits so that the largest one is $10^x$",
        "Pick `float16`",
        "all three agree",
        "log-sum-exp and PyTorch still agree",
        "nothing can help, and the tab says so",
        "Repeat with `float32`",
    )
    xs = [float(x) for x in re.findall(r"at \$x = ([\d.]+)\$", step)]
    assert len(xs) == 3, f"the step no longer walks float16 at three values of x: {xs}"
    agree_x, naive_x, far_x = xs
    fill_text(page, "ce-text", text_of(page, "ce-text"))  # the text of step 4 stays
    assert_visible(page, "ce-dtype", "ce-scale", "ce-break-go")

    pick_dtype(page, "float16")
    r = break_it(page, agree_x)
    assert "All three agree" in r["verdict"] and not naive_broke(r), r
    r = break_it(page, naive_x)
    assert naive_broke(r) and "overflows" in r["verdict"], r
    ref = r["rows"]["float64 reference"]
    for name in ("stable manual (log-sum-exp)", "F.cross_entropy"):
        assert r["rows"][name] == pytest.approx(ref, rel=1e-2), (name, r)
    far = break_it(page, far_x)
    assert "no formula can recover it" in far["verdict"], far  # the tab says so
    assert not math.isfinite(far["rows"]["float64 reference"]), far  # and it is so: the cast logits hold inf

    pick_dtype(page, "float32")
    x32 = float(re.search(r"the naive loss breaks past \$x = ([\d.]+)\$", step).group(1))
    assert x32 > naive_x
    assert not naive_broke(break_it(page, round(x32 - 0.1, 2)))
    assert naive_broke(break_it(page, x32))


def test_notice(lesson_page):
    """bfloat16 has float32's range: at the model's own logits its losses are finite but coarse."""
    page, notice = lesson_page, section(LESSON, "What to notice")
    says(notice, "bfloat16 has float32's range")
    pick_dtype(page, "bfloat16")
    r = break_it(page, 1.0)
    values = r["rows"]
    assert all(math.isfinite(values[k]) for k in ("stable manual (log-sum-exp)", "F.cross_entropy"))
    assert values["float64 reference"] == pytest.approx(values["stable manual (log-sum-exp)"], rel=5e-2)
