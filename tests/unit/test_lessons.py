"""Every tab has its lesson, and every lesson has the parts a class needs (issue 13).

The headings are the standard every lesson follows: `### The idea`, `### Try this`, `### What to notice`, a
formula in LaTeX ($...$ inline or $$...$$ display, as `common.LATEX` renders), and a `Course: section(s) N-M` line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
TAB_FILES = sorted((ROOT / "playground" / "ui").glob("*_tab.py"))
NAMES = [p.stem.removesuffix("_tab") for p in TAB_FILES]


def _section(text: str, heading: str) -> str:
    """The text under `### heading` up to the next heading."""
    m = re.search(rf"^### {re.escape(heading)}\s*$(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    return m.group(1) if m else ""


def test_every_tab_module_is_found():
    assert {"start", "tokenize", "cross_entropy", "train", "sample", "compare", "orpo"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_tab_has_its_lesson(name):
    source = (ROOT / "playground" / "ui" / f"{name}_tab.py").read_text(encoding="utf-8")
    assert (LESSONS / f"{name}.md").is_file(), f"lessons/{name}.md is missing"
    assert f'common.lesson("{name}")' in source, f"{name}_tab.py does not show lessons/{name}.md"


@pytest.mark.parametrize("name", NAMES)
def test_lesson_has_every_part(name):
    text = (LESSONS / f"{name}.md").read_text(encoding="utf-8")
    assert re.match(r"## \S", text), "a lesson starts with a `## Title`"
    idea = _section(text, "The idea")
    assert len(idea.split()) >= 25, "### The idea: a paragraph in plain words"
    steps = _section(text, "Try this")
    assert len(re.findall(r"^\s*(?:\d+\.|-) \S", steps, re.M)) >= 2, "### Try this: at least two steps"
    assert len(_section(text, "What to notice").split()) >= 15, "### What to notice: say what to look for"
    assert re.search(r"^\*?Course: sections? \d+(-\d+)?", text, re.M), "a `Course: section N-M` line"


@pytest.mark.parametrize("name", NAMES)
def test_lesson_formulas_are_latex_that_renders(name):
    text = (LESSONS / f"{name}.md").read_text(encoding="utf-8")
    assert text.count("$$") % 2 == 0, "unbalanced $$ display delimiters"
    display = re.findall(r"\$\$(.+?)\$\$", text, re.S)
    assert display, "at least one display formula ($$ ... $$)"
    inline = re.sub(r"\$\$.+?\$\$", "", text, flags=re.S)
    inline = re.sub(r"`[^`]*`", "", inline)  # code spans may hold a literal $
    assert inline.count("$") % 2 == 0, "unbalanced $ inline delimiters"
    for formula in display:
        assert formula.count("{") == formula.count("}"), f"unbalanced braces in {formula!r}"


def test_lesson_panel_is_collapsible():
    source = (ROOT / "playground" / "ui" / "common.py").read_text(encoding="utf-8")
    assert "gr.Accordion(" in source.split("def lesson", 1)[1].split("\ndef ", 1)[0]


@pytest.mark.parametrize("name", NAMES)
def test_every_try_this_step_has_its_browser_test(name):
    """Issue 16: each "Try this" step is walked in Chromium by tests/browser/test_lesson_<name>.py::test_step_<n>
    (normal and instructor mode). A lesson that gains a step fails here until a test follows it."""
    steps = re.split(
        r"^\s*\d+\.\s+", _section((LESSONS / f"{name}.md").read_text(encoding="utf-8"), "Try this"), flags=re.M
    )[1:]
    walk = ROOT / "tests" / "browser" / f"test_lesson_{name}.py"
    assert walk.is_file(), f"no walk-through of lessons/{name}.md ({walk.name})"
    tested = sorted(int(n) for n in re.findall(r"^def test_step_(\d+)\(", walk.read_text(encoding="utf-8"), re.M))
    assert tested == list(range(1, len(steps) + 1)), f"{len(steps)} steps in the lesson, tests for {tested}"
