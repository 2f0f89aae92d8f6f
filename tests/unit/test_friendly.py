"""The UI's error policy (playground.ui.common.friendly): a ValueError is the learner's input and its message is
shown; any other exception is a bug, logged with its traceback and shown as an internal error."""

from __future__ import annotations

import logging

import pytest

gr = pytest.importorskip("gradio")  # the UI's package: absent on the GPU machine's image

from playground.ui.common import friendly  # noqa: E402


def test_value_error_message_reaches_the_learner(caplog):
    @friendly
    def handler():
        raise ValueError("Steps must be between 1 and 2000, got 0")

    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as err:
        handler()
    assert "Steps must be between 1 and 2000, got 0" in err.value.message
    assert not caplog.records  # bad input is not a server problem


@pytest.mark.parametrize("exc", [KeyError("train_run"), RuntimeError("shape mismatch"), OSError("disk")])
def test_other_errors_are_logged_bugs_not_input_messages(exc, caplog):
    @friendly
    def handler():
        raise exc

    @friendly
    def streaming():
        yield 1
        raise exc

    for fn in (handler, lambda: list(streaming())):
        caplog.clear()
        with caplog.at_level(logging.ERROR), pytest.raises(gr.Error) as err:
            fn()
        assert err.value.message.startswith(f"Internal error ({type(exc).__name__})")
        assert str(exc.args[0]) not in err.value.message
        assert caplog.records and caplog.records[-1].exc_info[1] is exc
