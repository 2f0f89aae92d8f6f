"""The Hub path with no network: a populated local HF cache, offline messages, refusals before downloading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from playground import checkpoints, hub
from tests.unit._tiny import VOCAB, hf_llama, tiny_tokenizer

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    """A fresh, empty HF cache for each test, and the Hub offline (as in every test run)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def cache_repo(tmp_path, repo="tiny-org/tiny-llama", **hf_kw) -> Path:
    """Lay out models--org--name/{snapshots/<sha>/..., refs/main} the way huggingface_hub does."""
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / SHA
    hf_llama(**hf_kw).save_pretrained(snap, safe_serialization=True)
    tiny_tokenizer().save(snap)
    refs = snap.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text(SHA)
    return snap


def test_cached_repo_loads_offline_by_name_and_revision(tmp_path):
    snap = cache_repo(tmp_path, tie_word_embeddings=True)
    ref = hf_llama(tie_word_embeddings=True)
    idx = torch.randint(0, VOCAB, (1, 12))
    for source in ("tiny-org/tiny-llama", f"tiny-org/tiny-llama@{SHA}", "tiny-org/tiny-llama@main"):
        b = checkpoints.load(source)
        assert b.info["source"] == source and b.info["folder"] == str(snap)
        with torch.no_grad():
            torch.testing.assert_close(b.model(idx), ref(idx).logits, atol=1e-4, rtol=1e-4)


def test_offline_uncached_fails_with_a_clear_message():
    with pytest.raises(ValueError, match="offline.*bundled models"):
        checkpoints.load("HuggingFaceTB/SmolLM2-135M")


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "https://huggingface.co/org/name", "org name/x", "org/na me", "org/../x", "a/b/c", "org/"]
)
def test_bad_ids_are_refused(bad):
    with pytest.raises(ValueError, match="not a bundled name|no such folder"):
        checkpoints.load(bad)


def test_parse_hub_id():
    assert hub.parse_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        None,
    )
    assert hub.parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")


def test_corrupt_cached_weights_are_a_clear_error(tmp_path):
    snap = cache_repo(tmp_path)
    data = (snap / "model.safetensors").read_bytes()
    (snap / "model.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        checkpoints.load("tiny-org/tiny-llama")


def test_non_llama_architecture_is_refused(tmp_path):
    snap = cache_repo(tmp_path)
    cfg = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'|'gpt2'"):
        checkpoints.load("tiny-org/tiny-llama")


# ---- the online path, with the network calls replaced by fakes (nothing here touches the network)
@pytest.fixture
def online(monkeypatch, tmp_path):
    """Pretend the Hub answers: listing from `files`, config.json/snapshot from a local source folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(checkpoints, "hub_offline", lambda: False)
    state = {"source": None, "downloads": []}

    def listing(repo, revision, text):
        src = state["source"]
        files = {p.name: p.stat().st_size for p in src.iterdir()} if src else {}
        return {**files, **state.get("extra", {}), "__sha__": SHA}

    def download(repo, sha, filename):
        return str(state["source"] / filename)

    def snapshot(repo, revision=None, cache_dir=None, allow_patterns=None, local_files_only=False, **kw):
        if local_files_only:  # nothing cached yet
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("not cached")
        state["downloads"].append(sorted(allow_patterns))
        dest = Path(tmp_path / "fetched")
        dest.mkdir(exist_ok=True)
        for name in allow_patterns:
            shutil.copy(state["source"] / name, dest / name)
        return str(dest)

    import huggingface_hub

    monkeypatch.setattr(checkpoints, "_hub_files", listing)
    monkeypatch.setattr(checkpoints, "_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return state


def test_online_download_fetches_only_safe_files(online, tmp_path):
    src = tmp_path / "src"
    hf_llama().save_pretrained(src, safe_serialization=True)
    tiny_tokenizer().save(src)
    (src / "pytorch_model.bin").write_bytes(b"pickle!")
    online["source"] = src
    b = checkpoints.load("org/fresh")
    assert b.info["arch"] == "llama"
    fetched = online["downloads"][0]
    assert "model.safetensors" in fetched and "config.json" in fetched and "pytorch_model.bin" not in fetched


def test_pickle_only_repo_is_refused(online, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"x")
    online["source"] = src
    with pytest.raises(ValueError, match="only pickle weights"):
        checkpoints.load("org/pickled")
    assert not online["downloads"]


def test_size_and_param_limits_refuse_before_downloading(online, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    smollm2_shape = checkpoints.LlamaConfig.from_hf(
        {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
         "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True}
    )  # fmt: skip
    (src / "config.json").write_text(json.dumps(smollm2_shape.to_hf()))
    online["source"] = src
    online["extra"] = {"model.safetensors": 5 * 10**9}
    with pytest.raises(ValueError, match="would download 5.00 GB"):
        checkpoints.load("org/huge")
    online["extra"] = {"model.safetensors": 10**6}
    with pytest.raises(ValueError, match=r"134.5M parameters; the limit here is 100.0M"):
        checkpoints.load("org/big", max_params=100_000_000)
    assert not online["downloads"]
