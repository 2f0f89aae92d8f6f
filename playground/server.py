"""Start the app (or any gradio script) as a user does, `python app.py`, on a free loopback port, offline.

One home for what the bench, the load tool and the tests all need: a free port, the offline environment, a
process that answers HTTP 200, and a clean stop. Nothing here imports gradio.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playground import ROOT

# Offline hygiene (shared/STACK.md): no analytics, no Hub look-ups, no tokenizer threads fighting the app's.
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    argv: list[str] | None = None,
    extra_env: dict | None = None,
    timeout: float = 120.0,
    log: Path | None = None,
) -> tuple[subprocess.Popen, str, float]:
    """`python <argv>` (default `app.py`) on a free port; return (process, url, seconds to its first HTTP 200).

    The server's output goes to `log` (or nowhere). SPACES_ZERO_GPU is removed: off a ZeroGPU Space the
    `spaces` decorators must be no-ops."""
    argv = argv or ["app.py"]
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env.pop("SPACES_ZERO_GPU", None)
    env.update(extra_env or {})
    out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    url = f"http://127.0.0.1:{port}/"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    while time.perf_counter() - t < timeout:
        if proc.poll() is not None:
            where = f"; see {log}" if log is not None else ""
            raise RuntimeError(f"`python {' '.join(argv)[:40]}` exited with {proc.returncode}{where}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t
        except OSError:
            time.sleep(0.05)
    stop_server(proc)
    raise TimeoutError(f"no HTTP 200 from {url} within {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
