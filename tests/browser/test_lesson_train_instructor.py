"""lessons/train.md in instructor mode (`?instructor=1`): the very tests of test_lesson_train.py, collected again here
with a page in instructor mode. Each mode trains about a thousand steps, so the two modes live in two files, which
`make test`'s two workers (`--dist loadfile`) walk at the same time."""

from __future__ import annotations

from tests.browser.lesson_steps import lesson_page_fixture
from tests.browser.test_lesson_train import (  # noqa: F401  (collected here with this module's `lesson_page`)
    LESSON,
    test_presets,
    test_step_1,
    test_step_2,
    test_step_3,
    test_step_4,
    test_step_5,
    test_step_6,
)

lesson_page = lesson_page_fixture(LESSON, modes=["instructor"])
