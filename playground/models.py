"""What every model shares, whatever its family: how many tokens it reads at once, where its weights live, how
many parameters it has, and a way to run it in eval mode and put it back as it was.

One home for these, so that the GPT, our Llama and a Hub Llama answer the same question the same way.
Depends on torch only (every other module may import it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn

# The config field that holds the context length, by family: our GPT, our Llama, a Hugging Face config.
CONTEXT_FIELDS = ("context_length", "max_seq_len", "max_position_embeddings")


def context_length(model: nn.Module) -> int | None:
    """The most tokens the model reads in one forward pass; None when its config does not say."""
    config = getattr(model, "config", None)
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return None


def require_context(model: nn.Module) -> int:
    """`context_length`, for callers that cannot go on without it (training windows, evaluation)."""
    n = context_length(model)
    if n is None:
        raise ValueError(f"cannot tell the context length of {type(model).__name__}")
    return n


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def count_params(model: nn.Module) -> int:
    """Distinct parameters: `parameters()` yields a tied matrix once, so it counts once."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (no dropout) and restore its training flag afterwards, even on an error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
