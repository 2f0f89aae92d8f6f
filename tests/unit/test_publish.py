"""`python -m playground publish`, offline: the dry run writes exactly the files that would be uploaded (the
checkpoint's own bytes plus a model card), the card's metadata validates with huggingface_hub's ModelCard /
ModelCardData, and what is staged still loads (ours and transformers').

The upload itself (create_repo + upload_folder on huggingface.co) needs the network and a write token: it is not
tested here. `test_upload_sends_the_staged_folder` only records which huggingface_hub calls `upload` makes, with
which arguments, through a stand-in for HfApi (the one object that would reach the network).
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import torch

from playground import checkpoints, publish

CHECKPOINT_FILES = {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"}


def load_card(folder: Path):
    from huggingface_hub import ModelCard, ModelCardData

    card = ModelCard.load(folder / "README.md", ignore_metadata_errors=False)
    data = card.data.to_dict()
    ModelCardData(**data, ignore_metadata_errors=False)  # the metadata builds a ModelCardData without complaint
    return card, data


@pytest.mark.parametrize("name", ["llama-aligned", "llama-base", "gpt-tiny"])
def test_dry_run_writes_the_checkpoint_and_a_valid_card(tmp_path, name):
    out = tmp_path / "out"
    rc = publish.cli([name, "--repo-id", f"pg-org/{name}", "--dry-run", str(out), "--dataset", "pg-org/pg-data"])
    assert rc == 0
    source = Path(checkpoints.BUNDLED[name]["folder"])
    written = {p.name for p in out.iterdir()}
    assert CHECKPOINT_FILES | {"README.md"} <= written
    assert not {n for n in written if n.endswith(checkpoints.PICKLE_SUFFIXES)}
    assert written - {"README.md"} == {n for n in publish.UPLOAD_FILES if (source / n).is_file()}
    for n in written - {"README.md"}:  # the checkpoint's own bytes, untouched
        assert filecmp.cmp(source / n, out / n, shallow=False), n
    card, data = load_card(out)
    arch = "gpt" if name.startswith("gpt") else "llama"
    assert data["license"] == "mit" and data["pipeline_tag"] == "text-generation"
    assert data["datasets"] == ["pg-org/pg-data"]
    assert data["library_name"] == ("transformers" if arch == "llama" else "pytorch")
    assert {"llm-playground", arch} <= set(data["tags"])
    if name == "llama-aligned":
        assert data["base_model"] == "pg-org/llama-base" and "orpo" in data["tags"]
    else:
        assert "base_model" not in data
    assert f'checkpoints.load("pg-org/{name}")' in card.text
    assert "](../" not in card.text  # links into this repository would break on the Hub


def test_the_staged_folder_loads_like_the_original(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    publish.stage("llama-aligned", out, "pg-org/llama-aligned", base_model="HuggingFaceTB/SmolLM2-135M")
    ours = checkpoints.load(str(out))
    original = checkpoints.load("llama-aligned")
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    idx = torch.tensor([original.tokenizer.encode("It is a truth universally acknowledged")])
    with torch.no_grad():
        torch.testing.assert_close(ours.model(idx), original.model(idx))
        torch.testing.assert_close(theirs(idx).logits, original.model(idx), atol=1e-4, rtol=1e-4)
    assert load_card(out)[1]["base_model"] == "HuggingFaceTB/SmolLM2-135M"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["llama-base", "--repo-id", "not a repo"], "not a bundled name"),
        (["llama-base", "--repo-id", "org/name@v1"], "--revision"),
        (["/nonexistent/folder", "--repo-id", "org/name"], "not a checkpoint folder"),
        (["llama-aligned", "--repo-id", "org/name", "--base-model", "https://x/y"], "not a bundled name"),
        (["llama-base", "--repo-id", "org/name", "--license", "no-such-licence-format!"], "licen"),
    ],
)
def test_bad_input_is_a_clear_message(tmp_path, capsys, argv, message):
    assert publish.cli([*argv, "--dry-run", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().out


def test_a_dry_run_never_mixes_into_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"\0")
    assert publish.cli(["llama-base", "--repo-id", "org/name", "--dry-run", str(out)]) == 2
    assert "not empty" in capsys.readouterr().out


class RecordingHfApi:
    """Records the calls `publish.upload` makes and what the staged folder holds at upload time."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        files = sorted(p.name for p in Path(kw["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kw["repo_id"], kw["revision"], files))
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/x/commit/1"})()


def test_upload_sends_the_staged_folder(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    RecordingHfApi.calls = []
    staged = tmp_path / "staged"
    names = publish.stage("llama-base", staged, "pg-org/llama-base")
    assert publish.upload(staged, "pg-org/llama-base", "v1", private=True).endswith("/commit/1")
    kinds = [c[0] for c in RecordingHfApi.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"]
    assert RecordingHfApi.calls[1][2] == {"repo_type": "model", "private": True, "exist_ok": True}
    assert RecordingHfApi.calls[2][2]["branch"] == "v1"
    assert RecordingHfApi.calls[3] == ("upload_folder", "pg-org/llama-base", "v1", names)
    RecordingHfApi.calls = []
    publish.upload(staged, "pg-org/llama-base", None, private=False)
    assert [c[0] for c in RecordingHfApi.calls] == ["init", "create_repo", "upload_folder"]  # main: no branch
