"""ZeroGPU's process boundary with a real GPU (skipped without CUDA): a learner's run trains on the GPU in a forked
worker and crosses back to an app process that must not initialise CUDA, twice (tests/unit/_zero_gpu.py emulates
spaces' worker and queues; a fresh Python process, so that CUDA is not initialised before the fork).

Without `spaces_support.install_host_reducers` torch sends the worker's CUDA tensors as CUDA IPC handles, which
the app process cannot open: the control case must fail that way, or the emulation is not reaching CUDA at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SCRIPT = """
import json, torch
from tests.unit._zero_gpu import gpu_call, learner_session
out = {}
try:
    gpu_call(learner_session(), "cuda", reducers=False)
    out["without_reducers"] = "crossed"
except Exception as exc:
    out["without_reducers"] = f"{type(exc).__name__}: {exc}"[:300]
first = gpu_call(learner_session(), "cuda", steps=3)
session = first["session"]
idx = session["data"].train[:16].view(1, -1)
with torch.no_grad():
    out["logit_diff"] = float((session["model"](idx) - first["logits"]).abs().max())
out["worker_device"] = first["device"]
out["device_here"] = str(next(session["model"].parameters()).device)
out["moments_here"] = sorted({str(s["exp_avg"].device) for s in session["state"].optimizer.state.values()})
second = gpu_call(session, "cuda", steps=2)
out["second_worker_device"] = second["device"]
out["step"] = second["session"]["state"].step
out["cuda_initialised_here"] = torch.cuda.is_initialized()
print("RESULT " + json.dumps(out))
"""


def test_a_run_trained_on_the_gpu_crosses_back_to_a_process_without_cuda():
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # keep carried wheels
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    print("\n", out)
    assert "CUDA must not be initialized" in out["without_reducers"]  # the control: torch's own CUDA IPC fails
    assert out["worker_device"].startswith("cuda") and out["second_worker_device"].startswith("cuda")
    assert out["device_here"] == "cpu" and out["moments_here"] == ["cpu"]
    assert out["logit_diff"] < 1e-3  # the worker's model, here on the CPU (float32 on both sides)
    assert out["step"] == 5 and out["cuda_initialised_here"] is False
