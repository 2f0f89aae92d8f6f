"""Tensors -> plain data for the views: parameter counts, attention maps, top-k tables.

Nothing here changes a model: attention maps come from `attention.capture_weights()`, which makes the
current thread's forward pass take the written-out path and keep the weights it computed anyway.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from playground.attention import capture_weights
from playground.gpt import GPT
from playground.llama import Transformer


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


def context_length(model: nn.Module) -> int:
    cfg = model.config
    return cfg.context_length if isinstance(model, GPT) else cfg.max_seq_len


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
    if idx.shape[1] > context_length(model):
        raise ValueError(f"{idx.shape[1]} tokens is longer than the model's context of {context_length(model)}")
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
