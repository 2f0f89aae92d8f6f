"""The app imports and serves with and without Hugging Face's `spaces` package (ZeroGPU helpers).

"With": the real `spaces` (requirements-dev.txt) and SPACES_ZERO_GPU unset, as on a laptop, CPU basic or a dedicated
GPU Space: `spaces.GPU` hands every handler back unchanged. That is the session's app server (`client`).
"Without": a second server in which `import spaces` fails exactly as when the package is not installed
(`sys.modules["spaces"] = None` before app.py runs). Both serve a wrapped plain handler (cross-entropy scoring) and a
wrapped streaming one (ORPO steps).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tests.conftest import ROOT, start_app, stop_app

WITHOUT_SPACES = "import runpy, sys; sys.modules['spaces'] = None; runpy.run_path('app.py', run_name='__main__')"
TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"


def _serve_without_spaces(timeout: float = 180.0):
    return start_app(timeout=timeout, argv=["-c", WITHOUT_SPACES])


def _serves_gpu_handlers(client) -> None:
    from playground.data import shipped_examples

    summary, *_ = client.predict("gpt-tiny", TEXT, api_name="/ce_score")
    assert "ce-loss" in summary
    pair = shipped_examples()[0]
    client.predict(api_name="/orpo_reset")  # a fresh copy of the model: the steps count from 0
    job = client.submit(
        "llama-base", pair["prompt"], pair["chosen"], pair["rejected"], 0.5, 2, 1e-3, api_name="/orpo_steps"
    )
    list(job)  # streamed to the end
    final = job.outputs()[-1]
    assert [int(r[0]) for r in final[5]["data"]] == [0, 1, 2]  # the table: before and after each of 2 steps
    assert "your own copy" in final[6]


def test_spaces_is_real_and_a_no_op_off_zero_gpu():
    import spaces

    from playground import spaces_support

    assert not spaces_support.on_zero_gpu()
    assert spaces_support.spaces_module() is spaces and spaces.__file__.startswith(sys.prefix)  # installed, no stand-in

    def handler(steps, session=None):
        return steps

    wrapped = spaces_support.gpu(duration=lambda a: 10 + a["steps"])(handler)
    assert wrapped is handler  # spaces.GPU hands it back unchanged without SPACES_ZERO_GPU
    assert handler.gpu_duration(30) == 40 and handler.gpu_duration(10_000) == spaces_support.MAX_DURATION
    assert handler.gpu_duration("not a number") == spaces_support.DEFAULT_DURATION  # the handler reports bad input


def test_heavy_handlers_carry_a_request_sized_duration():
    from playground.ui import compare_tab, cross_entropy_tab, orpo_tab, sample_tab, train_tab

    assert sample_tab.stream_answers.gpu_duration(
        "m", "p", 1.0, 0, 1.0, 512, 4, 0, {}
    ) > sample_tab.stream_answers.gpu_duration("m", "p", 1.0, 0, 1.0, 16, 1, 0, {})
    assert compare_tab.stream_compare.gpu_duration("a", "b", "p", True, True, 1.0, 0, 1.0, 256, 2, 0, {}) > 30
    burst = train_tab.TrainForm.from_values([None] * 13 + ["seconds", 90, "prompt", "attn", 0])
    assert train_tab.start.gpu_duration({}, burst) == train_tab.resume.gpu_duration({}, burst) == 110
    steps = dataclasses.replace(burst, mode="steps", amount=200)
    assert train_tab.start.gpu_duration({}, steps) == 30  # 20 s + 50 ms a step
    assert orpo_tab.take_steps.gpu_duration("m", "p", "c", "r", 0.5, 50, 1e-3, {}) == 60
    for fn in (
        sample_tab.next_token,
        orpo_tab.breakdown,
        cross_entropy_tab.score,
        cross_entropy_tab.break_naive,
        train_tab.attention,
    ):
        assert 5 <= fn.gpu_duration() <= 30


def test_app_serves_with_spaces(client):
    _serves_gpu_handlers(client)


def test_app_imports_and_serves_without_spaces():
    from gradio_client import Client

    proc, url = _serve_without_spaces()
    try:
        _serves_gpu_handlers(Client(url, verbose=False))
    finally:
        stop_app(proc)


@pytest.mark.parametrize("blocked", [False, True])
def test_package_import_leaves_spaces_and_gradio_alone(blocked):
    """`import playground.*` (no UI) never imports spaces or gradio, whether spaces is installed or not."""
    code = (
        "import sys\n"
        + ("sys.modules['spaces'] = None\n" if blocked else "")
        + "import playground.spaces_support, playground.distributed, playground.train, playground.orpo\n"
        "assert 'gradio' not in sys.modules and not sys.modules.get('spaces'), sorted(sys.modules)[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
