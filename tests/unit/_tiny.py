"""Helpers shared by the tests: a tiny tokenizer, tiny random GPTs and Llamas (ours and Hugging Face's), a Hub cache."""

from __future__ import annotations

import dataclasses
import functools

import torch

TEXT = "\n".join(f"the quick brown fox {i} jumps over the lazy dog number {i * 7}." for i in range(200))
VOCAB = 320  # the tiny tokenizer's size; models here have at least this many rows


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    from playground.tokenizer import train_tokenizer

    return train_tokenizer(TEXT, vocab_size=VOCAB)


def hf_llama(seed=0, **kw):
    """A random transformers LlamaForCausalLM in float32, every tensor (norms, biases too) randomised."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=3, max_position_embeddings=64, rope_theta=10000.0, attention_bias=False,
        mlp_bias=False, tie_word_embeddings=False,
    )  # fmt: skip
    cfg.update(kw)
    torch.manual_seed(seed)
    return randomise_(LlamaForCausalLM(LlamaConfig(**cfg)).float().eval())


def randomise_(model, scale: float = 0.1):
    """Every tensor random, in place: norm gains 1 + N(0, 0.1), the rest (biases too) N(0, scale), so that a mix-up
    of any tensor between two implementations shows in their outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else scale * torch.randn_like(p))
    return model


# Tiny random models of both architectures, for the tests that hold for every model (shapes, causality, the
# KV cache, overfitting one batch). Sizes are chosen so heads, GQA groups and MLPs are all non-trivial.
TINY_SHAPES = {
    "gpt": dict(vocab_size=61, context_length=32, n_embd=42, n_layer=2, n_head=4, dropout=0.0),  # hs 10, A 40
    "llama": dict(vocab_size=67, max_seq_len=40, dim=48, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=80),
}


def tiny_model(arch: str, seed: int = 0, **kw):
    """A tiny random GPT or Llama in eval mode, its weights seeded by `seed`. Keyword arguments override
    TINY_SHAPES[arch]: a field of that model's config (`hidden_dim`, `mlp_ratio`, ...), or a name both models share
    (train.SHAPE_FIELDS: `context`, `n_layer`, `n_head`, `n_embd`, `dropout`, `tie_weights`), so that a test
    parametrised over both architectures asks for the same shape in the same words."""
    from playground.gpt import GPT, GPTConfig
    from playground.llama import LlamaConfig, Transformer
    from playground.train import SHAPE_FIELDS

    config_cls, model_cls = (GPTConfig, GPT) if arch == "gpt" else (LlamaConfig, Transformer)
    names = {f.name for f in dataclasses.fields(config_cls)}
    fields = dict(TINY_SHAPES[arch])
    for key, value in kw.items():
        name = key if key in names else next((f for f in SHAPE_FIELDS.get(key, ()) if f in names), None)
        if name is None:
            raise TypeError(f"the {arch} config has no field {key!r}")
        fields[name] = value
    torch.manual_seed(seed)
    return model_cls(config_cls(**fields)).eval()


def tiny_bundle(arch: str = "gpt", seed: int = 0, **kw):
    """A checkpoints.Bundle of tiny_model(arch, seed, **kw) over the tiny tokenizer's vocabulary, with the tokenizer."""
    from playground import checkpoints

    model = tiny_model(arch, seed, **{"vocab_size": VOCAB, **kw})
    return checkpoints.Bundle(model, tiny_tokenizer(), {"arch": arch})


def tiny_vocab(arch: str) -> int:
    return TINY_SHAPES[arch]["vocab_size"]


HUB_SHA = "0123456789abcdef0123456789abcdef01234567"


def cache_hub_repo(cache, repo: str, model=None, sha: str = HUB_SHA):
    """Save a tiny Llama (transformers' save_pretrained) + the tiny tokenizer under `repo` in a Hugging Face cache
    folder, laid out as huggingface_hub lays it out: models--org--name/{snapshots/<sha>/..., refs/main}."""
    from pathlib import Path

    snap = Path(cache) / f"models--{repo.replace('/', '--')}" / "snapshots" / sha
    (model if model is not None else hf_llama()).save_pretrained(snap, safe_serialization=True)
    tiny_tokenizer().save(snap)
    refs = snap.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(sha)
    return snap
