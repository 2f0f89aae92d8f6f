"""Tensors -> plain data for the views: parameter counts, attention maps, top-k tables.

Nothing here changes a model: attention maps come from `attention.capture_weights()`, which makes the
current thread's forward pass take the written-out path and keep the weights it computed anyway.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from playground.attention import capture_weights
from playground.gpt import GPT, GPTConfig
from playground.llama import LlamaConfig, Transformer
from playground.models import require_context


class ParamCount(NamedTuple):
    total: int  # distinct parameters (a tied matrix counts once)
    embedding: int  # token table, position table, and the output head when it is its own matrix
    non_embedding: int  # what scaling laws count: the blocks and the final norm

    def describe(self) -> str:
        return f"{self.total / 1e6:.2f}M parameters ({self.non_embedding / 1e6:.2f}M outside the embeddings)"


def _embedding_params(model: nn.Module) -> list[nn.Parameter]:
    if isinstance(model, GPT):
        return [model.wte.weight, model.wpe.weight, model.lm_head.weight]
    if isinstance(model, Transformer):
        return [model.tok_embeddings.weight, model.output.weight]
    raise ValueError(f"not a playground model: {type(model).__name__}")


def count_params(model: nn.Module) -> ParamCount:
    total = sum(p.numel() for p in model.parameters())
    unique = {id(p): p for p in _embedding_params(model)}  # tied: the same Parameter twice, counted once
    embedding = sum(p.numel() for p in unique.values())
    return ParamCount(total, embedding, total - embedding)


def param_count_of(config: GPTConfig | LlamaConfig) -> ParamCount:
    """The ParamCount a model of `config` would have, from the shapes alone (no tensors built).

    The Train tab shows it live as the knobs move and refuses oversized models with it; building even a
    meta-device model for that costs seconds (weight init on meta imports torch's compiler stack).
    A test checks it equals count_params(model) for every preset and for biases/tying on and off.
    """
    if isinstance(config, GPTConfig):
        C, V, L, r = config.n_embd, config.vocab_size, config.n_layer, config.mlp_ratio
        A = config.n_head * config.head_size  # the concatenated heads' width (378 for the course)
        b = int(config.bias)
        block = 2 * 2 * C  # ln_1, ln_2: weight and bias
        block += C * 3 * A + b * 3 * A + A * C + b * C  # c_attn (q, k, v of every head), c_proj
        block += C * r * C + b * r * C + r * C * C + b * C  # MLP c_fc, c_proj
        head = 0 if config.tie_weights else V * C
        embedding = V * C + config.context_length * C + head
        non_embedding = L * block + 2 * C + b * V  # + ln_f; the head's bias sits outside the tied matrix
        return ParamCount(embedding + non_embedding, embedding, non_embedding)
    D, V, L, F, hd = config.dim, config.vocab_size, config.n_layers, config.ffn_dim, config.head_size
    H, K = config.n_heads, config.kv_heads
    block = 2 * D  # attention_norm, ffn_norm
    block += D * H * hd + 2 * D * K * hd + H * hd * D  # wq, wk, wv, wo
    block += int(config.attention_bias) * (H * hd + 2 * K * hd + D)
    block += 3 * D * F + int(config.mlp_bias) * (2 * F + D)  # w1, w3, w2
    embedding = V * D + (0 if config.tie_word_embeddings else V * D)
    non_embedding = L * block + D  # + the final norm
    return ParamCount(embedding + non_embedding, embedding, non_embedding)


@torch.no_grad()
def attention_maps(model: nn.Module, idx: torch.Tensor | list[int]) -> torch.Tensor:
    """Attention weights of one sequence, every layer and head: [L, nh, T, T] float32 on the CPU.
    Row i of map [l, h] is how much token i attends to each earlier token j (each row sums to 1).
    `idx` is (T,) or (1, T) token ids."""
    device = next(model.parameters()).device
    idx = torch.as_tensor(idx, dtype=torch.long, device=device)
    if idx.dim() == 1:
        idx = idx[None]  # (1, T)
    if idx.dim() != 2 or idx.shape[0] != 1 or idx.shape[1] == 0:
        raise ValueError(f"attention_maps needs one non-empty sequence of ids, got shape {tuple(idx.shape)}")
    if idx.shape[1] > require_context(model):
        raise ValueError(f"{idx.shape[1]} tokens is longer than the model's context of {require_context(model)}")
    with capture_weights() as store:
        model(idx)
    return torch.stack([w[0] for w in store]).float().cpu()  # L x (nh, T, T) -> (L, nh, T, T)


def top_k_table(probs: torch.Tensor, tokenizer, k: int = 10) -> list[tuple[str, int, float]]:
    """The k most likely next tokens as rows (token piece, id, probability), most likely first.
    `probs` is a (V,) distribution (or (1, V)); k is clamped to the vocabulary."""
    probs = probs.detach().float().reshape(-1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values, ids = probs.topk(min(k, probs.numel()))
    return [
        (tokenizer.token_string(int(i)), int(i), float(p)) for p, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]
