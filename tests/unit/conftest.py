"""Unit layer: where gradio, gradio_client or spaces is not installed (the GPU machine's image, see
scripts/gpu_suite.sh), a test that needs one of them is skipped with that reason instead of failing.
Where they are installed (`make test`, CI) nothing changes: every test runs."""

from __future__ import annotations

import importlib.util

import pytest

UI_ONLY = ("gradio", "gradio_client", "spaces")  # what only the app needs; the library never imports them


def _missing(name: str | None) -> bool:
    root = (name or "").split(".")[0]
    if root not in UI_ONLY:
        return False
    try:
        return importlib.util.find_spec(root) is None
    except (ImportError, ValueError):
        return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except ModuleNotFoundError as exc:
        if _missing(exc.name):
            pytest.skip(f"needs {exc.name}, which is not installed here (the app's packages)")
        raise
