"""lessons/compare.md, "Try this" step by step in Chromium (normal and instructor mode): see lesson_steps.py."""

from __future__ import annotations

import re

from playground.tokenizer import load_tokenizer
from playground.ui.compare_tab import COURSE_PROMPT, DEMO
from tests.browser.lesson_steps import (
    assert_visible,
    click_and_wait,
    errors,
    lesson_page_fixture,
    number_after,
    says,
    section,
    set_number,
    settle,
    step_text,
    text_of,
)

LESSON = "compare"
lesson_page = lesson_page_fixture(LESSON)
EOS = "■ [end of sequence]"


_WATCH_STATUS = """() => { const s = document.querySelector('#compare-status'); window.__pgStatusMoved = false;
  new MutationObserver((_, o) => { window.__pgStatusMoved = true; o.disconnect(); })
    .observe(s, {subtree: true, childList: true, characterData: true, attributes: true}); }"""


def generate(page) -> tuple[list[str], list[str]]:
    """Generate both; the answers of each column (split at their `── answer n ──` headers). The status line is
    watched for any change, its status tracker included (it can read the same "Done: ..." twice), then for "Done"."""
    page.evaluate(_WATCH_STATUS)
    click_and_wait(page, "#compare-generate", page.locator("#compare-status").get_by_text("Done:"), 180_000)
    page.wait_for_function(
        "() => window.__pgStatusMoved && document.querySelector('#compare-status').innerText.includes('Done')",
        timeout=180_000,
    )
    settle(page, "compare-left", "compare-right")
    split = lambda s: [a.strip() for a in re.split(r"── answer \d+ ──", s)[1:]]  # noqa: E731
    return split(text_of(page, "compare-left")), split(text_of(page, "compare-right"))


def test_step_1(lesson_page):
    """Bundled pair: llama-base (raw text) left, llama-aligned (chat template) right; a held-out question greedy, then
    the course's question at the course's settings."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(
        step,
        "`llama-base` left (raw text)",
        "`llama-aligned` right (chat template)",
        "Pick a question from **Held-out questions**",
        "temperature 0 (greedy)",
        "**Generate both**",
        "the course's question at temperature 1, top-k 50",
    )
    page.locator("#compare-bundled").click()
    page.wait_for_function("() => document.querySelector('#compare-right-model input').value === 'llama-aligned'")
    assert page.locator("#compare-left-model input").input_value() == "llama-base"
    assert not page.locator("#compare-left-chat input").is_checked()
    assert page.locator("#compare-right-chat input").is_checked()
    assert_visible(page, "compare-demo", "compare-temperature", "compare-topk", "compare-seed", "compare-answers")

    # a held-out question (offered by default): its prompt, options included, is in the prompt box
    assert DEMO, "the tab offers no held-out questions"
    assert page.locator("#compare-demo input").input_value() == DEMO[0]["label"]
    assert page.locator("#compare-prompt textarea").input_value() == DEMO[0]["prompt"]
    set_number(page, "compare-temperature", number_after(step, "temperature"))
    left, right = generate(page)
    assert len(left) == len(right) == 1 and left[0] and right[0]

    # the course's question (the last entry of the list), at the course's settings
    page.locator("#compare-demo input").click()
    page.get_by_role("option", name=COURSE_PROMPT).click()
    page.wait_for_function("q => document.querySelector('#compare-prompt textarea').value === q", arg=COURSE_PROMPT)
    flat = " ".join(step.split())
    set_number(page, "compare-temperature", number_after(flat, "the course's question at temperature"))
    set_number(page, "compare-topk", number_after(flat, "top-k"))
    left, right = generate(page)
    assert len(left) == len(right) == 1 and left[0] and right[0]


def test_step_2(lesson_page):
    """Answers per model 3: the aligned model answers and ends its turn; the base one runs on."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "**Answers per model** to 3")
    n = int(number_after(step, "**Answers per model** to"))
    set_number(page, "compare-answers", n)
    left, right = generate(page)
    assert len(left) == len(right) == n
    ended_aligned, ended_base = sum(a.endswith(EOS) for a in right), sum(a.endswith(EOS) for a in left)
    assert ended_aligned >= n - 1 and ended_aligned > ended_base, (left, right)  # llama-aligned: 97% end, base 0%


def test_step_3(lesson_page):
    """Untick the aligned model's chat template: the same weights read the raw text."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "Untick the aligned model's chat template")
    page.locator("#compare-right-chat input").uncheck()
    page.locator("#compare-show-prompts input").check()
    _, right = generate(page)
    assert right
    page.wait_for_function("() => !document.querySelector('#compare-right-prompt textarea').value.includes('<|user|>')")
    page.locator("#compare-show-prompts input").uncheck()


def test_step_4(lesson_page):
    """Temperature 0: one greedy answer each; Generate again, nothing changes."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "Temperature 0", "nothing changes")
    page.locator("#compare-right-chat input").check()
    set_number(page, "compare-temperature", number_after(step, "Temperature"))
    first = generate(page)
    assert all(len(set(col)) == 1 for col in first), first  # every answer of a column is the one greedy answer
    assert generate(page) == first


def test_step_5(lesson_page):
    """SmolLM2 pair (Hub): offline, a clear message says it cannot be fetched (never a stack trace)."""
    page, step = lesson_page, step_text(LESSON, 5)
    says(step, "**SmolLM2-135M pair (Hub)**", "offline, a clear message")
    page.locator("#compare-hub").click()
    page.wait_for_function("() => document.querySelector('#compare-left-model input').value.includes('SmolLM2')")
    before = errors(page).count()
    page.locator("#compare-generate").click()
    message = errors(page).nth(before)
    message.wait_for(timeout=120_000)
    text = message.inner_text()
    assert "internet connection" in text and "Traceback" not in text, text
    page.locator("#compare-bundled").click()  # back to the offline pair


def test_notice(lesson_page):
    """Special tokens are single tokens in the prompt the aligned model reads."""
    page, notice = lesson_page, section(LESSON, "What to notice")
    says(notice, "Special tokens (`<|user|>`, `</s>`) are single tokens")
    page.locator("#compare-show-prompts input").check()
    page.wait_for_function("() => document.querySelector('#compare-right-prompt textarea')?.value.includes('<|user|>')")
    page.locator("#compare-show-prompts input").uncheck()

    tok = load_tokenizer()
    for special in ("<|user|>", "</s>"):
        assert special in tok.render_chat([{"role": "user", "content": "hi"}], True)
        ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
        assert sum(tok.id_to_piece(i) == special for i in ids) == 1
