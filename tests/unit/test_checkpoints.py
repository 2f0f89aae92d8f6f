"""Save/load: round trips for both models, dtypes, tied weights, bundled names, and refusals of bad files."""

from __future__ import annotations

import json

import pytest
import torch

from playground import checkpoints, models
from tests.unit._tiny import VOCAB, tiny_model, tiny_tokenizer

SHAPE = {"vocab_size": VOCAB, "context": 32}  # the tiny tokenizer's ids; TINY_SHAPES otherwise


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_round_trip_same_logits_and_info(arch, tied, tmp_path):
    model = tiny_model(arch, **SHAPE, tie_weights=tied)
    folder = checkpoints.save(checkpoints.Bundle(model, tiny_tokenizer(), {"preset": "x", "step": 7}), tmp_path)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files
    b = checkpoints.load(str(folder))
    idx = torch.randint(0, VOCAB, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(b.model(idx), model(idx), atol=0, rtol=0)
    info = b.info
    assert info["arch"] == arch and info["step"] == 7 and info["preset"] == "x"
    assert info["params"] == models.count_params(model) and info["vocab_size"] == VOCAB
    assert info["context"] == 32 and info["dtype"] == "float32" and info["chat"] is True
    assert b.tokenizer.encode("the quick fox") == tiny_tokenizer().encode("the quick fox")
    if tied:  # still one matrix after loading, so training keeps them tied
        head, emb = (b.model.lm_head, b.model.wte) if arch == "gpt" else (b.model.output, b.model.tok_embeddings)
        assert head.weight is emb.weight


def test_bf16_weights_load_as_float32_on_cpu(tmp_path):
    model = tiny_model("llama", **SHAPE).to(torch.bfloat16)
    checkpoints.save(checkpoints.Bundle(model, tiny_tokenizer(), {}), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    b = checkpoints.load(str(tmp_path))
    assert b.info["dtype"] == "float32" and b.info["stored_dtype"] == "bfloat16"
    assert next(b.model.parameters()).dtype == torch.float32
    assert checkpoints.load(str(tmp_path), dtype="bfloat16").info["dtype"] == "bfloat16"


def saved(tmp_path, model=None):
    return checkpoints.save(checkpoints.Bundle(model or tiny_model("gpt", **SHAPE), tiny_tokenizer(), {}), tmp_path)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    folder = saved(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        checkpoints.load(str(folder))


@pytest.mark.parametrize(
    "garbage",
    [b"", b"abc", b"\xff" * 64, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}!!!!"],
    ids=["empty", "short", "huge-header", "bad-json"],
)
def test_corrupt_safetensors_is_a_clear_error(tmp_path, garbage):
    folder = saved(tmp_path)
    (folder / "model.safetensors").write_bytes(garbage)
    with pytest.raises(ValueError, match="safetensors|corrupt"):
        checkpoints.load(str(folder))


def test_shape_mismatch_names_the_tensor(tmp_path):
    folder = saved(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["n_embd"] = 44
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"has shape \[\d+.*the config needs"):
        checkpoints.load(str(folder))


def test_pickle_only_folder_is_refused(tmp_path):
    folder = saved(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        checkpoints.load(str(folder))


def test_other_architectures_and_bad_sources(tmp_path):
    folder = saved(tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(ValueError, match="gpt_neox"):
        checkpoints.load(str(folder))
    with pytest.raises(ValueError, match="no such folder"):
        checkpoints.load(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no model"):
        checkpoints.load("  ")


def test_param_limit_is_checked_before_loading(tmp_path):
    folder = saved(tmp_path)
    with pytest.raises(ValueError, match="limit here"):
        checkpoints.load(str(folder), max_params=1000)


def test_bundled_registry_and_missing_bundled_model(tmp_path, monkeypatch):
    assert set(checkpoints.BUNDLED) >= {"gpt-tiny", "llama-base", "llama-aligned"}
    for meta in checkpoints.BUNDLED.values():
        assert meta["arch"] in ("gpt", "llama") and meta["description"]
    monkeypatch.setitem(
        checkpoints.BUNDLED, "test-missing", {"arch": "gpt", "folder": tmp_path / "x", "description": "-"}
    )
    with pytest.raises(ValueError, match="not in"):
        checkpoints.load("test-missing")
    monkeypatch.setitem(
        checkpoints.BUNDLED, "test-here", {"arch": "gpt", "folder": saved(tmp_path / "y"), "description": "d"}
    )
    b = checkpoints.load("test-here")
    assert b.info["source"] == "test-here" and b.info["description"] == "d"


def test_hf_name_map_covers_every_llama_parameter():
    model = tiny_model("llama", **SHAPE, attention_bias=True, mlp_bias=True)
    names = {checkpoints.hf_name(k) for k in model.state_dict()}
    assert len(names) == len(model.state_dict())
    with pytest.raises(ValueError, match="no Hugging Face name"):
        checkpoints.hf_name("layers.0.attention.wx.weight")
