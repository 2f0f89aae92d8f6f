"""The Space configuration builds on every hardware a Space offers, ZeroGPU (free) included, and local set-up
keeps the CPU wheel on this disk.

ZeroGPU's list (Hugging Face's Spaces documentation, 2026): Python 3.12.12 or 3.10.13; PyTorch 2.8.0, 2.9.1,
2.10.0 or 2.11.0, anything else fails the build ("No candidate PyTorch version found for ZeroGPU"). Files over
10 MB, and binary files, must go through Git LFS / Xet on the Hub. What only a real Space can check (that the
build picks 2.11.0, that the preloaded files exist on the Hub) is listed in README's deployment section.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from playground import spaces_support
from playground.checkpoints import HUB_ALLOW

ROOT = Path(__file__).resolve().parents[2]
ZEROGPU_PYTHON = {"3.10", "3.12", "3.10.13", "3.12.12"}
ZEROGPU_TORCH = ["2.8.0", "2.9.1", "2.10.0", "2.11.0"]
GPU_SUITE_TORCH = "2.11.0"  # the torch of the GPU machine, where scripts/gpu_suite.sh runs the suite
LOCAL_TORCH = "2.13.0"  # the CPU wheel on this machine's disk
HUB_MAX_PLAIN_BYTES = 10_000_000


def front_matter() -> dict:
    from huggingface_hub import SpaceCard

    return SpaceCard.load(ROOT / "README.md").data.to_dict()


def requirements(name: str) -> dict[str, Requirement]:
    out = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = req
    return out


def test_front_matter_is_a_gradio_space_zero_gpu_accepts():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert str(meta["python_version"]) in ZEROGPU_PYTHON
    assert (ROOT / meta["app_file"]).is_file()
    gradio_pin = requirements("requirements.txt")["gradio"].specifier
    assert [str(s) for s in gradio_pin] == [f"=={meta['sdk_version']}"]  # the Space's gradio is the one we test


def test_requirements_admit_zero_gpu_torch_and_the_local_wheel():
    reqs = requirements("requirements.txt")
    torch_spec = reqs["torch"].specifier
    admitted = [v for v in ZEROGPU_TORCH if torch_spec.contains(v)]
    assert admitted, f"no ZeroGPU PyTorch in {torch_spec}"
    assert max(admitted, key=Version) == GPU_SUITE_TORCH  # ZeroGPU gets the version the GPU suite runs on
    assert torch_spec.contains(LOCAL_TORCH) and torch_spec.contains(f"{LOCAL_TORCH}+cpu")
    assert not torch_spec.contains("2.14.0")  # a newer release would pull a multi-GB CUDA build locally
    assert not {"torchvision", "torchaudio", "spaces"} & set(reqs)  # ZeroGPU brings its own spaces
    for req in reqs.values():  # nothing is limited to a Python other than ZeroGPU's
        assert req.marker is None or req.marker.evaluate({"python_version": "3.12"})
    dev = requirements("requirements-dev.txt")
    assert "torch" not in dev and "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_local_installs_pin_the_cpu_wheel_through_constraints():
    constraints = requirements("constraints.txt")
    assert [str(s) for s in constraints["torch"].specifier] == [f"=={LOCAL_TORCH}"]
    assert requirements("requirements.txt")["torch"].specifier.contains(LOCAL_TORCH)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pip = [line for line in makefile.splitlines() if line.startswith("PIP")]
    assert pip and "-c constraints.txt" in pip[0]
    installs = [line for line in makefile.splitlines() if "-r requirements" in line]
    assert len(installs) == 2 and all("$(PIP)" in line for line in installs)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_preload_from_hub_is_the_compare_tabs_hub_pair():
    entries = [str(e).split() for e in front_matter()["preload_from_hub"]]
    assert [e[0] for e in entries] == list(spaces_support.HUB_PAIR)
    assert set(front_matter()["models"]) >= set(spaces_support.HUB_PAIR)
    from fnmatch import fnmatch

    for entry in entries:
        files = entry[1].split(",")
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
        assert all(any(fnmatch(f, p) for p in HUB_ALLOW) for f in files)  # only what our loader reads


def _repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


def _lfs_tracked(files: list[str]) -> set[str]:
    out = subprocess.run(
        ["git", "check-attr", "filter", "-z", "--stdin"], cwd=ROOT, input="\0".join(files).encode(),
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return {out[i] for i in range(0, len(out) - 2, 3) if out[i + 2] == "lfs"}


def _git_checkout() -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return False
    done = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "true"


@pytest.mark.skipif(not _git_checkout(), reason="needs a git checkout (a copied tree has no index to ask)")
def test_binary_and_big_files_go_through_lfs():
    files = _repo_files()
    tracked = _lfs_tracked(files)
    must = []
    for f in files:
        path = ROOT / f
        with open(path, "rb") as fh:
            binary = b"\0" in fh.read(8000)  # git's own test for a binary file
        if binary or os.path.getsize(path) > HUB_MAX_PLAIN_BYTES:
            must.append(f)
    assert any(f.endswith(".safetensors") for f in must)  # the checkpoints are among them
    assert sorted(set(must) - tracked) == []
    assert not {f for f in tracked if f.endswith((".py", ".md", ".json", ".txt"))}  # text stays plain


def test_compare_tab_opens_on_the_hub_pair_only_when_both_are_cached(tmp_path, monkeypatch):
    from tests.unit._tiny import cache_hub_repo

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert spaces_support.compare_pair() == spaces_support.BUNDLED_PAIR  # offline, nothing cached
    cache_hub_repo(tmp_path / "hub", spaces_support.HUB_PAIR[0])
    assert spaces_support.compare_pair() == spaces_support.BUNDLED_PAIR  # half a pair is no pair
    cache_hub_repo(tmp_path / "hub", spaces_support.HUB_PAIR[1], hf_llama_seed(1))
    assert spaces_support.compare_pair() == spaces_support.HUB_PAIR


def hf_llama_seed(seed: int):
    from tests.unit._tiny import hf_llama

    return hf_llama(seed=seed, tie_word_embeddings=True)
