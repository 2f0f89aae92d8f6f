"""Issue 23 (10): messages shown to visitors carry no server folder and no C++ source location."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from playground.redact import redact


@pytest.mark.parametrize(
    "raw, needle",
    [
        ("Internal: src/sentencepiece_processor.cc(109) [model_proto->ParseFromArray()] failed", "ParseFromArray"),
        ("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory", "not enough memory"),
    ],
)
def test_native_source_locations_are_dropped(raw, needle):
    out = redact(raw)
    assert needle in out and ".cc" not in out and ".cpp" not in out


def test_server_folders_are_rewritten(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snap = f"{cache}/models--evil-org--model/snapshots/0123abcd"
    assert redact(f"{snap}/model.safetensors is corrupt") == "evil-org/model/model.safetensors is corrupt"
    moved = redact(f"Cannot move {os.getcwd()}/file:/etc/passwd to the cache")
    assert moved == "Cannot move ./file:/etc/passwd to the cache"
    tmp = tempfile.gettempdir()
    assert redact(f"{tmp}/gradio/x.txt") == "<tmp>/gradio/x.txt"
    assert str(Path.home()) not in redact(f"{Path.home()}/.ssh/id_rsa missing")
    assert redact("/etc/passwd is not allowed") == "/etc/passwd is not allowed"  # what the visitor typed stays
