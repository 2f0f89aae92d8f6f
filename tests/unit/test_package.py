"""The package boundary: the logic imports without gradio, the CLI dispatches."""

import subprocess
import sys

from tests.conftest import ROOT


def test_import_playground_does_not_import_gradio():
    code = (
        "import sys, playground, playground.device, playground.limits\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(playground.__path__):\n"
        "    if m.name not in ('ui', '__main__'): importlib.import_module('playground.' + m.name)\n"
        "sys.exit('gradio' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or "importing playground pulled in gradio"


def test_cli_lists_commands():
    r = subprocess.run([sys.executable, "-m", "playground", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("tokenizer", "pretrain", "align", "eval", "bench"):
        assert cmd in r.stdout
