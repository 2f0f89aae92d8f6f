"""Helpers shared by the model/checkpoint tests: a tiny tokenizer and tiny random Hugging Face Llamas."""

from __future__ import annotations

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
    model = LlamaForCausalLM(LlamaConfig(**cfg)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return model


# Tiny random models of both architectures, for the tests that hold for every model (shapes, causality, the
# KV cache, overfitting one batch). Sizes are chosen so heads, GQA groups and MLPs are all non-trivial.
TINY_SHAPES = {
    "gpt": dict(vocab_size=61, context_length=32, n_embd=42, n_layer=2, n_head=4, dropout=0.0),  # hs 10, A 40
    "llama": dict(vocab_size=67, max_seq_len=40, dim=48, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=80),
}


def tiny_model(arch: str, seed: int = 0, **kw):
    """A tiny random GPT or Llama in eval mode; keyword arguments override the config fields."""
    from playground.gpt import GPT, GPTConfig
    from playground.llama import LlamaConfig, Transformer

    torch.manual_seed(seed)
    if arch == "gpt":
        return GPT(GPTConfig(**{**TINY_SHAPES["gpt"], **kw})).eval()
    return Transformer(LlamaConfig(**{**TINY_SHAPES["llama"], **kw})).eval()


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
