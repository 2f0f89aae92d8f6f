"""Hub configs read right: a missing config.json key means what it means to transformers, and a tied checkpoint
that also stores lm_head.weight loads. The reference is transformers itself: its LlamaConfig for the defaults, and
its LlamaForCausalLM, loaded from the very folder we load, for the logits (within 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from playground import checkpoints
from playground.llama import HF_DEFAULTS, LlamaConfig
from tests.unit._tiny import VOCAB, hf_llama, tiny_tokenizer

# a config where every key differs from transformers' default, so that dropping any one of them changes something
FULL = {
    "model_type": "llama", "vocab_size": 1000, "hidden_size": 512, "intermediate_size": 1000,
    "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 32,
    "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "attention_dropout": 0.1, "attention_bias": True,
    "mlp_bias": True, "tie_word_embeddings": True, "rope_theta": 500000.0, "hidden_act": "silu",
}  # fmt: skip


def test_defaults_table_is_transformers_own():
    from transformers import LlamaConfig as HFLlamaConfig

    reference = HFLlamaConfig()
    for key, value in HF_DEFAULTS.items():
        assert getattr(reference, key) == value, key
    assert reference.rope_parameters["rope_theta"] == 10000.0
    assert LlamaConfig.from_hf({}).to_hf()["rms_norm_eps"] == 1e-6


@pytest.mark.parametrize("dropped", sorted(set(LlamaConfig.HF_KEYS.values()) | {"rope_theta"}))
def test_every_missing_key_resolves_as_in_transformers(dropped):
    from transformers import LlamaConfig as HFLlamaConfig

    config = {k: v for k, v in FULL.items() if k != dropped}
    reference = HFLlamaConfig(**{k: v for k, v in config.items() if k != "model_type"})
    ours = LlamaConfig.from_hf(config)
    hf = ours.to_hf()
    for theirs in LlamaConfig.HF_KEYS.values():
        assert hf[theirs] == getattr(reference, theirs), (dropped, theirs)
    assert ours.rope_theta == reference.rope_parameters["rope_theta"]
    assert FULL[dropped] != (getattr(reference, dropped, None) or reference.rope_parameters["rope_theta"])


def _save(model, folder: Path, drop=(), extra_tensors=None) -> Path:
    """transformers' save_pretrained, then config keys removed / tensors added, as Hub repos come."""
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save(folder)
    config = json.loads((folder / "config.json").read_text())
    for key in drop:
        config.pop(key, None)
        if key == "rope_theta":
            config.pop("rope_parameters", None)
    (folder / "config.json").write_text(json.dumps(config))
    if extra_tensors:
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        tensors.update({k: v.clone() for k, v in extra_tensors(tensors).items()})
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _same_logits_as_transformers(folder: Path, length: int = 24):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    bundle = checkpoints.load(str(folder))
    idx = torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = bundle.model(idx), reference(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    return bundle, reference


def test_missing_rms_norm_eps_is_transformers_1e_6(tmp_path):
    """An adversarial model: token embeddings so small that the norm's eps decides the output (1e-5 vs 1e-6)."""
    model = hf_llama(rms_norm_eps=1e-6)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(3e-3)
    bundle, reference = _same_logits_as_transformers(_save(model, tmp_path / "m", drop=["rms_norm_eps"]))
    assert reference.config.rms_norm_eps == 1e-6
    assert bundle.model.layers[0].attention_norm.eps == 1e-6


def test_missing_max_position_embeddings_gives_2048(tmp_path):
    folder = _save(hf_llama(), tmp_path / "m", drop=["max_position_embeddings"])
    bundle, reference = _same_logits_as_transformers(folder)
    assert bundle.info["context"] == reference.config.max_position_embeddings == 2048


@pytest.mark.parametrize(
    "drop, kw",
    [
        (["rope_theta", "attention_bias", "mlp_bias", "attention_dropout", "hidden_act", "head_dim"], {}),
        (["num_key_value_heads", "tie_word_embeddings", "pretraining_tp"], {"num_key_value_heads": 6}),
        (["bos_token_id", "eos_token_id", "pad_token_id", "dtype", "initializer_range", "use_cache"], {}),
    ],
    ids=["rope-bias-head-dim", "kv-heads-tie", "token-ids-dtype"],
)
def test_keys_removed_load_like_transformers(tmp_path, drop, kw):
    _same_logits_as_transformers(_save(hf_llama(**kw), tmp_path / "m", drop=drop))


def test_tied_checkpoint_that_stores_lm_head_loads(tmp_path):
    folder = _save(
        hf_llama(tie_word_embeddings=True),
        tmp_path / "m",
        extra_tensors=lambda t: {"lm_head.weight": t["model.embed_tokens.weight"]},
    )
    bundle, _ = _same_logits_as_transformers(folder)
    assert bundle.model.output.weight is bundle.model.tok_embeddings.weight  # still one matrix


def test_tied_checkpoint_with_a_wrong_shaped_lm_head_is_refused(tmp_path):
    folder = _save(
        hf_llama(tie_word_embeddings=True),
        tmp_path / "m",
        extra_tensors=lambda t: {"lm_head.weight": t["model.embed_tokens.weight"][:-1]},
    )
    with pytest.raises(ValueError, match="lm_head.weight has shape"):
        checkpoints.load(str(folder))


USUAL = {
    # SmolLM2's shape: tied, 3 query heads per k/v head, rope_theta 1e5
    "smollm2-like": dict(num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=100000.0),
    # TinyLlama / Llama-2's: untied, multi-query (one k/v head)
    "tinyllama-like": dict(num_attention_heads=6, num_key_value_heads=1, rms_norm_eps=1e-5),
    # Llama-3's rope_theta; head_dim other than hidden/heads; biases on (as some Llama-architecture repos have)
    "llama3-like": dict(rope_theta=500000.0, head_dim=16, attention_bias=True, mlp_bias=True),
}


@pytest.mark.parametrize("name", sorted(USUAL))
def test_usual_configs_load_like_transformers(tmp_path, name):
    _same_logits_as_transformers(_save(hf_llama(**USUAL[name]), tmp_path / name), length=40)
