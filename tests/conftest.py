"""Shared fixtures: offline environment, the real app server, a gradio_client and a Chromium page.

The app runs as `python app.py` in a subprocess on a free loopback port, exactly as a user starts it.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from playground.server import OFFLINE_ENV, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

for _k, _v in OFFLINE_ENV.items():
    os.environ[_k] = _v
os.environ.pop("SPACES_ZERO_GPU", None)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def start_app(extra_env: dict | None = None, timeout: float = 120.0, argv: list[str] | None = None):
    """Start `python app.py` (or `python <argv>`) on a free port; return (process, url) once it answers HTTP 200.
    Its output goes to test-artifacts/server-<n>.log."""
    env = {"PLAYGROUND_ALLOW_LOCAL_PATHS": "1"}  # tests load tiny models from tmp folders (limits.py)
    env.update(extra_env or {})
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"server-{next(_SERVERS)}-{os.getpid()}.log"
    proc, url, _ = start_server(argv, env, timeout, log=log)
    return proc, url


stop_app = stop_server
_SERVERS = itertools.count()


@pytest.fixture(scope="session")
def app_url():
    proc, url = start_app()
    yield url
    stop_app(proc)


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(exe).exists():
        pytest.fail(f"Chromium not found at {exe}: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(app_url)
    pg.wait_for_selector("#pg-tabs", timeout=60_000)
    yield pg
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (the README's images come from here)."""
    out = ARTIFACTS / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()


# One torch thread in the test process: the app server runs in its own process beside it on a 2-core
# machine, and two processes each spinning two threads run many times slower than one thread each.
try:
    import torch as _torch

    _torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement
    pass
