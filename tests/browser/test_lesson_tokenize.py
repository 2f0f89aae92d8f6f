"""lessons/tokenize.md, "Try this" step by step in Chromium (normal and instructor mode): see lesson_steps.py."""

from __future__ import annotations

import re

from tests.browser.lesson_steps import (
    assert_visible,
    choose,
    click_and_wait,
    fill_text,
    lesson_page_fixture,
    number_after,
    says,
    section,
    set_number,
    step_text,
)

LESSON = "tokenize"
lesson_page = lesson_page_fixture(LESSON)


def chips(page, box: str = "tok-chips") -> list[dict]:
    """The chips shown: their text (the piece, without the id beneath) and whether they are byte pieces."""
    return page.locator(f"#{box}-inner .pg-tok").evaluate_all(
        """els => els.map(e => ({piece: [...e.childNodes].filter(n => n.nodeName !== 'SUB')
                                          .map(n => n.textContent).join(''),
                                 byte: e.classList.contains('byte'), special: e.classList.contains('special'),
                                 outline: getComputedStyle(e).outlineStyle}))"""
    )


def stat(page, key: str, box: str = "tok-stats") -> float:
    return float(re.sub(r"[^\d.]", "", page.locator(f"#{box}-inner [data-key='{key}'] b").inner_text()))


def type_text(page, text: str) -> None:
    """Type into the text box; the chips follow the typing (wait until the counts are those of this text)."""
    fill_text(page, "tok-text", "")  # the counts of the previous text must not pass for this one's
    page.locator("#tok-stats-inner [data-key='characters']").wait_for(state="detached")
    fill_text(page, "tok-text", text)
    page.wait_for_function(
        "n => document.querySelector(\"#tok-stats-inner [data-key='characters'] b\")?.textContent === String(n)",
        arg=len(text),
    )


def test_step_1(lesson_page):
    """The prefilled text: byte-fallback chips are dashed; 🚀 is four byte pieces."""
    page, step = lesson_page, step_text(LESSON, 1)
    says(step, "prefilled text", "dashed (byte fallback)", "Count the bytes of 🚀")
    page.wait_for_selector("#tok-chips-inner .pg-tok")
    prefilled = page.locator("#tok-text textarea").input_value()
    assert "🚀" in prefilled and re.search(r"\d", prefilled) and re.search("[\u3040-\u30ff\u4e00-\u9fff]", prefilled)
    assert re.search("[\u0590-\u05ff]", prefilled) and re.search("[éèïç]", prefilled)  # Hebrew, accents
    shown = chips(page)
    assert all(c["outline"] == "dashed" for c in shown if c["byte"]) and any(c["byte"] for c in shown)
    assert not any(c["outline"] == "dashed" for c in shown if not c["byte"])
    pieces = [c["piece"] for c in shown]
    rocket = ["<0xF0>", "<0x9F>", "<0x9A>", "<0x80>"]  # the UTF-8 bytes of U+1F680
    assert any(pieces[i : i + 4] == rocket for i in range(len(pieces))), pieces


def test_step_2(lesson_page):
    """`1999` and `2024`: every digit is its own token."""
    page, step = lesson_page, step_text(LESSON, 2)
    says(step, "every digit is its own token")
    for number in re.findall(r"`(\d+)`", step):
        type_text(page, number)
        digits = [c for c in chips(page) if c["piece"].strip("▁")]
        assert len(digits) == len(number), (number, digits)  # one chip per digit: numbers never merge
        bytes_ = [c["piece"] for c in digits if c["byte"]]
        assert not bytes_, f"{number}: digits spelled as byte pieces {bytes_}, not tokens of their own"
        assert [c["piece"].strip("▁") for c in digits] == list(number), (number, digits)


def test_step_3(lesson_page):
    """`President? 2024!`: the bundled tokenizer has a piece for every printable ASCII character; a tokenizer
    trained with the course's settings (coverage 0.995) spells `?`, `!`, the digits and capital P as byte pieces."""
    page, step = lesson_page, step_text(LESSON, 3)
    says(step, "every printable ASCII character a piece", "**course settings**", "train on `all`")
    says(step, "switches to your tokenizer", "`bundled BPE 4096` under **Compare with**", "capital P", "byte pieces")
    text = re.search(r"Type `([^`]+)`", step).group(1)
    type_text(page, text)
    shown = chips(page)
    assert not any(c["byte"] for c in shown), shown  # bundled: printable ASCII never falls back to bytes
    assert "".join(c["piece"] for c in shown).replace("▁", " ") == text  # no dummy prefix: exact pieces
    _open_training(page)
    assert page.locator("#tok-settings input:checked").get_attribute("value").startswith("course settings")
    choose(page, "tok-corpus", "all")
    vocab = int(page.locator("#tok-vocab input[type=number]").input_value())
    name = _train(page, "bpe", vocab)
    assert page.locator("#tok-choice input").input_value() == name  # the tab switched to it
    choose(page, "tok-compare", "bundled BPE 4096", leave="#tok-text textarea")
    page.wait_for_function(
        "v => document.querySelector('#tok-stats-b-inner')?.textContent.includes(v)", arg="bundled BPE 4096"
    )
    page.wait_for_function("v => document.querySelector('#tok-stats-inner')?.textContent.includes(v)", arg=name)
    mine = [c["piece"] for c in chips(page) if c["byte"]]
    for char in "P?!" + "".join(ch for ch in text if ch.isdigit()):
        assert f"<0x{ord(char):02X}>" in mine, (char, chips(page))
    assert not any(c["byte"] for c in chips(page, "tok-chips-b")), chips(page, "tok-chips-b")
    spaced = re.search(r"\(` (\w+)` starts", step).group(1)
    type_text(page, " " + spaced)
    assert [c["piece"] for c in chips(page)][:2] == ["▁", f"<0x{ord(spaced[0]):02X}>"], chips(page)


def _train(page, model_type: str, vocab: int) -> str:
    """Train with the panel's current settings; return the new tokenizer's name (`my bpe 300 #2`)."""
    choose(page, "tok-model-type", model_type, leave="#tok-text textarea")  # leaving the dropdown commits it
    set_number(page, "tok-vocab", vocab)
    status = page.locator("#tok-train-status")
    before = status.inner_text() if status.count() else ""
    named = re.compile(rf"my {model_type} {vocab} #\d+")
    try:
        click_and_wait(page, "#tok-train", status.get_by_text(named), timeout=180_000)
    except Exception as exc:  # say what the page showed instead (CI once timed out here with no clue)
        raise AssertionError(f"no {named.pattern!r} in the training status: {status.inner_text()!r}") from exc
    page.wait_for_function(
        "b => document.querySelector('#tok-train-status').innerText !== b", arg=before, timeout=180_000
    )
    return named.search(status.inner_text()).group(0)


def _open_training(page) -> None:
    if not page.locator("#tok-train").is_visible():
        page.locator("#tok-train-box").get_by_role("button", name=re.compile("Train your own tokenizer")).click()
    for elem_id in ("tok-source", "tok-corpus", "tok-vocab", "tok-model-type", "tok-train"):
        page.locator(f"#{elem_id}").wait_for(state="visible", timeout=10_000)  # the accordion opens with an animation
    assert_visible(page, "tok-source", "tok-corpus", "tok-vocab", "tok-model-type", "tok-train")


def test_step_4(lesson_page):
    """bpe 300 then 4000 on austen: 300 falls back to coverage 0.98 and says so; the bigger vocabulary gives more
    characters per token."""
    page, step = lesson_page, step_text(LESSON, 4)
    says(step, "Train your own", "`bpe`", "on `austen`", "Compare with", "characters per token")
    says(step, "lowers the coverage to 0.98", "and says so", "smallest size the course's setting would need")
    small, big = int(number_after(step, "vocabulary")), int(number_after(step, "then"))
    type_text(page, "She was not sorry to hear that the family were very well and happy in their new home.")
    _open_training(page)
    choose(page, "tok-corpus", "austen")
    small_name = _train(page, "bpe", small)
    said = " ".join(page.locator("#tok-train-status").inner_text().split())
    least = re.search(r"needs at least (\d+) pieces, so it was trained with coverage 0\.98", said)
    assert least and int(least.group(1)) > small, said
    big_name = _train(page, "bpe", big)
    assert "0.98" not in page.locator("#tok-train-status").inner_text()  # 4000 holds the course's coverage
    page.wait_for_function("v => document.querySelector('#tok-stats-inner')?.textContent.includes(v)", arg=big_name)
    choose(page, "tok-compare", small_name, leave="#tok-text textarea")
    page.wait_for_function("v => document.querySelector('#tok-stats-b-inner')?.textContent.includes(v)", arg=small_name)
    assert stat(page, "characters per token") > stat(page, "characters per token", "tok-stats-b")


def test_step_5(lesson_page):
    """char and word on the same text: the word model leaves ⁇ (unknown) in the decoded text, char does not."""
    page, step = lesson_page, step_text(LESSON, 5)
    says(step, "`char` and `word`", "⁇")
    text = re.search(r"Type `([^`]+)`", step).group(1)
    if page.locator("#tok-compare input").input_value() != "(none)":
        choose(page, "tok-compare", "(none)", leave="#tok-text textarea")
    type_text(page, text)
    _open_training(page)
    vocab = int(page.locator("#tok-vocab input[type=number]").input_value())
    name = _train(page, "char", vocab)
    page.wait_for_function("v => document.querySelector('#tok-stats-inner')?.textContent.includes(v)", arg=name)
    assert page.locator("#tok-stats-inner .pg-ok").is_visible()  # exact round trip: bytes cover every character
    name = _train(page, "word", vocab)
    page.wait_for_function("v => document.querySelector('#tok-stats-inner')?.textContent.includes(v)", arg=name)
    assert "⁇" in page.locator("#tok-stats-inner [data-key='decoded']").inner_text()


def test_step_6(lesson_page):
    """`<script>alert(1)</script>` is shown as text, never run."""
    page, step = lesson_page, step_text(LESSON, 6)
    says(step, "shown as text, never run")
    script = re.search(r"`(<script>[^`]*)`", step).group(1)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    choose(page, "tok-choice", "bundled BPE 4096", leave="#tok-text textarea")
    type_text(page, script)
    assert page.locator("#tok-chips-inner script").count() == 0
    assert "script" in "".join(c["piece"] for c in chips(page))  # the text is there, as pieces
    assert not dialogs


def test_notice(lesson_page):
    """What to notice: spaces live inside pieces; special tokens typed as text are spelled out, never forged."""
    page, notice = lesson_page, section(LESSON, "What to notice")
    says(notice, "Spaces live *inside* pieces", "typed as plain text (here, or in a chat message) they are spelled out")
    says(notice, "no `▁` before the first word")
    if page.locator("#tok-choice input").input_value() != "bundled BPE 4096":
        choose(page, "tok-choice", "bundled BPE 4096", leave="#tok-text textarea")
    type_text(page, "the cat and the hat")
    shown = [c["piece"] for c in chips(page)]
    assert any(p.startswith("▁") and len(p) > 1 for p in shown), shown
    assert not shown[0].startswith("▁") and "".join(shown).replace("▁", " ") == "the cat and the hat", shown
    for special in re.findall(r"`(<\|?\w+\|?>|</s>)`", notice.split("Special tokens", 1)[1]):
        type_text(page, special)
        assert not any(c["special"] for c in chips(page)), f"typing {special} gave the special token"
