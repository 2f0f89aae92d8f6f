"""Sampling: from a model's logits to the next token, and streaming generation.

Pure functions on logits (temperature, top-k, top-p, greedy), a view of each stage of that pipeline, and
`generate()`, which yields one token id at a time so a UI can stream the text and stop it.

Notation: V = vocabulary size, T = tokens in the sequence, B = batch size (generation here uses B = 1).

The pipeline, in the order Hugging Face's `generate` also applies it (course notes 68, 74-76):

    logits (V,) --/ temperature--> --keep top-k--> --keep top-p (nucleus)--> softmax --> draw one token

- temperature t: p_i = exp(z_i / t) / sum_j exp(z_j / t). t < 1 sharpens, t > 1 flattens, t -> 0 is the
  argmax, so t = 0 means greedy decoding: the limit of softmax(z / t), a one-hot on the argmax, or equal
  shares among tokens tied for the largest logit.
- top-k: keep the k most likely tokens and every token tied with the k-th, zero the rest, renormalise (k is
  clamped to V; None or 0 = off). This is Hugging Face's TopKLogitsWarper rule; with it k = 1 keeps exactly
  what t = 0 keeps.
- top-p (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration"): keep the smallest set of the
  most likely tokens whose probabilities sum to at least p, zero the rest, renormalise (p = 1 keeps all).
  Computed as Hugging Face's TopPLogitsWarper does (drop the least likely tokens while their running total is
  <= 1 - p), so a set at a rounding boundary is the same as theirs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from playground.models import context_length, eval_mode

log = logging.getLogger(__name__)

__all__ = [
    "Stage",
    "Step",
    "check_settings",
    "next_token_probs",
    "distribution_stages",
    "draw",
    "sample_step",
    "generate",
    "generate_steps",
    "crop_prompt",
    "context_length",
]


# ------------------------------------------------------------------------------------------- settings
def check_settings(temperature: float, top_k: int | None, top_p: float) -> tuple[float, int | None, float]:
    """Validate the sampling knobs; return them normalised (top_k 0 -> None). Bad values raise ValueError."""
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}") from None
    if math.isnan(temperature) or temperature < 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None:
        if isinstance(top_k, float) and (math.isnan(top_k) or top_k != int(top_k)):
            raise ValueError(f"top_k must be a whole number >= 0 (0 or None = off), got {top_k!r}")
        if int(top_k) < 0:
            raise ValueError(f"top_k must be a whole number >= 0 (0 or None = off), got {top_k!r}")
        top_k = int(top_k) or None
    try:
        top_p = float(top_p)
    except (TypeError, ValueError):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}") from None
    if not 0.0 < top_p <= 1.0:  # also False for NaN
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    return temperature, top_k, top_p


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a vocabulary dimension, got shape {tuple(logits.shape)}")
    logits = logits.float()  # softmax in float32 even when the model runs in bf16 (STYLE rule 9)
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf: the model's output is broken (diverged or a bad checkpoint?)")
    if torch.isneginf(logits).all(dim=-1).any():
        raise ValueError("every logit is -inf: no token is possible")
    return logits


def is_greedy(temperature: float) -> bool:
    """t = 0 is greedy; so is a t too small for float32 (below its smallest normal number, z / t overflows)."""
    return temperature < torch.finfo(torch.float32).tiny


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(z - max z) / t: the same softmax as z / t, but a tiny t cannot overflow to inf (and inf - inf = NaN)."""
    return (logits - logits.amax(dim=-1, keepdim=True)) / temperature


# ------------------------------------------------------------------------------------- the pipeline
def _greedy(logits: torch.Tensor) -> torch.Tensor:
    """The limit of softmax(z / t) as t -> 0: a one-hot on the argmax, or equal shares among tied maxima
    (the same set as top-k with k = 1, which keeps every token tied with the first)."""
    top = logits == logits.amax(dim=-1, keepdim=True)  # (..., V)
    return top.float() / top.sum(dim=-1, keepdim=True)


def _keep_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set to -inf every logit below the k-th largest: the k largest AND every token tied with the k-th stay
    (Hugging Face's TopKLogitsWarper: which tied token to drop would be arbitrary, so none is)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest value
    return logits.masked_fill(logits < kth, float("-inf"))


def _keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Set to -inf every logit outside the smallest most-likely set whose probability reaches p.

    The same operations as Hugging Face's TopPLogitsWarper: sort ascending, and drop tokens while the running
    total from the least likely one is <= 1 - p; the most likely token always stays. At a rounding boundary
    ([0.9, 0.09, 0.01] with p = 0.99) this keeps what transformers keeps (two tokens).
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)  # (..., V) least likely first
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - p)
    drop_sorted[..., -1:] = False  # the most likely token is always kept
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0
) -> torch.Tensor:
    """Next-token probabilities (..., V) float32 from logits (..., V): temperature, then top-k, then top-p.

    temperature 0 is greedy (one-hot on the argmax); top_k None/0 is off and is clamped to V; top_p 1 is off.
    Tokens cut by top-k / top-p get exactly 0; the rest sum to 1.
    """
    temperature, top_k, top_p = check_settings(temperature, top_k, top_p)
    logits = _check_logits(logits)
    if is_greedy(temperature):
        return _greedy(logits)
    z = _keep_top_p(_keep_top_k(_scaled(logits, temperature), top_k), top_p)
    return z.softmax(dim=-1)


# ----------------------------------------------------------------------------- the view of the stages
@dataclass
class Stage:
    """One stage of the pipeline for one position: its distribution over the vocabulary and its entropy."""

    name: str
    probs: torch.Tensor  # (V,) float32, sums to 1
    entropy: float  # nats: H = -sum p ln p (0 for a one-hot; ln V for uniform)
    kept: int  # tokens with non-zero probability

    def top(self, ids: Sequence[int]) -> list[float]:
        """The probabilities of the given token ids (for bars that line up across stages)."""
        return [float(self.probs[i]) for i in ids]


def _stage(name: str, probs: torch.Tensor) -> Stage:
    entropy = float(torch.special.entr(probs).sum())  # entr(0) = 0, so cut tokens add nothing
    return Stage(name=name, probs=probs, entropy=max(entropy, 0.0), kept=int((probs > 0).sum()))


def distribution_stages(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0
) -> list[Stage]:
    """The four distributions a learner compares for one position (logits (V,)), each renormalised:

    raw softmax (t = 1) -> after temperature -> after top-k -> after top-p. The last one is exactly
    `next_token_probs(logits, temperature, top_k, top_p)`, the distribution `generate` draws from.
    All four are monotone in the logits, so the raw top candidates are every stage's top candidates.
    """
    temperature, top_k, top_p = check_settings(temperature, top_k, top_p)
    logits = _check_logits(logits)
    if logits.ndim != 1:
        raise ValueError(f"distribution_stages takes one position's logits (V,), got shape {tuple(logits.shape)}")
    if is_greedy(temperature):  # every later stage is the same one-hot
        greedy = _greedy(logits)
        after_t, after_k, after_p = greedy, greedy, greedy
    else:
        z = _scaled(logits, temperature)
        after_t = z.softmax(-1)
        z = _keep_top_k(z, top_k)
        after_k = z.softmax(-1)
        after_p = _keep_top_p(z, top_p).softmax(-1)
    k_name = f"top-k (k={min(top_k, logits.shape[-1])})" if top_k else "top-k (off)"
    p_name = f"top-p (p={top_p:g})" if top_p < 1 else "top-p (off)"
    return [
        _stage("raw softmax", logits.softmax(-1)),
        _stage(f"temperature {temperature:g}", after_t),
        _stage(k_name, after_k),
        _stage(p_name, after_p),
    ]


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """One token id drawn from probs (V,). Drawn on the CPU so one CPU generator reproduces runs on any device."""
    return int(torch.multinomial(probs.detach().float().cpu(), num_samples=1, generator=generator))


@dataclass
class Step:
    """One generated token with what it was drawn from (for "step through")."""

    token_id: int
    prob: float  # its probability in the distribution it was drawn from (after all the filters)
    raw_prob: float  # its probability under the plain softmax of the logits
    rank: int  # 0 = the model's most likely token
    stages: list[Stage] = field(repr=False)


def sample_step(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float, generator: torch.Generator | None
) -> Step:
    """Draw one token from logits (V,) and keep every stage for the view."""
    stages = distribution_stages(logits, temperature, top_k, top_p)
    token = draw(stages[-1].probs, generator)
    raw = stages[0].probs
    rank = int((raw > raw[token]).sum())
    return Step(
        token_id=token, prob=float(stages[-1].probs[token]), raw_prob=float(raw[token]), rank=rank, stages=stages
    )


# --------------------------------------------------------------------------------------- generation
def crop_prompt(ids: Sequence[int], context: int | None) -> tuple[list[int], int]:
    """Keep the last `context` prompt tokens (the model sees no more); return (kept ids, tokens dropped)."""
    ids = [int(i) for i in ids]
    if context is None or len(ids) <= context:
        return ids, 0
    return ids[-context:], len(ids) - context


class _Decoder:
    """Feeds a model token by token: the prompt once, then each new token through the KV cache while the
    context has room; past it (or for models without `new_cache`), recomputes the last `context` tokens
    each step, as the course's `generate` does (`input[:, -context:]`). Both routes give the same logits."""

    def __init__(self, model: torch.nn.Module, prompt: list[int], max_new_tokens: int, use_cache: bool):
        self.model = model
        self.context = context_length(model)
        self.device = next(model.parameters()).device
        self.ids = list(prompt)
        self.pending = list(prompt)  # tokens not yet in the cache
        self.cache, self.cache_len, self.pos = None, 0, 0
        if use_cache and hasattr(model, "new_cache"):
            self.cache_len = len(prompt) + max_new_tokens - 1  # the last drawn token is never fed back
            if self.context is not None:
                self.cache_len = min(self.cache_len, self.context)
            self.cache = model.new_cache(1, self.cache_len)

    def next_logits(self) -> torch.Tensor:
        """Logits (V,) for the token after `self.ids`."""
        if self.cache is not None and self.pos + len(self.pending) <= self.cache_len:
            x = torch.tensor([self.pending], dtype=torch.long, device=self.device)  # (1, T_new)
            logits = self.model(x, cache=self.cache)  # (1, T_new, V)
            self.pos += len(self.pending)
            self.pending = []
            return logits[0, -1]
        if self.cache is not None:
            log.info("context of %s tokens full: recomputing a sliding window from here on", self.context)
            self.cache = None
        window = self.ids if self.context is None else self.ids[-self.context :]
        x = torch.tensor([window], dtype=torch.long, device=self.device)  # (1, T)
        return self.model(x)[0, -1]

    def append(self, token: int) -> None:
        self.ids.append(token)
        self.pending.append(token)


def prompt_ids(idx) -> list[int]:
    if isinstance(idx, torch.Tensor):
        if idx.ndim == 2 and idx.shape[0] != 1:
            raise ValueError(f"generate takes one prompt (batch size 1), got shape {tuple(idx.shape)}")
        if idx.ndim > 2:
            raise ValueError(f"prompt ids must be (T,) or (1, T), got shape {tuple(idx.shape)}")
        idx = idx.reshape(-1).tolist()
    ids = [int(i) for i in idx]
    if not ids:
        raise ValueError("the prompt has no tokens: give at least one (e.g. the tokenizer's bos_id)")
    return ids


def check_max_new(max_new_tokens) -> int:
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    return int(max_new_tokens)


def generate(
    model: torch.nn.Module,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids after the prompt `idx` ((T,) or (1, T) ids), one at a time.

    Stops after `eos_id` (which is yielded, so callers see why it stopped). A prompt longer than the model's
    context keeps its last tokens (logged; `crop_prompt` tells a caller beforehand). Uses the KV cache when
    the model has `new_cache` and `use_cache`; the same `generator` seed gives the same tokens.
    Bad settings raise ValueError here, at the call, not at the first token.
    """
    settings = check_settings(temperature, top_k, top_p)

    def pick(logits: torch.Tensor) -> tuple[int, int]:
        token = draw(next_token_probs(logits, *settings), generator)
        return token, token

    return _loop(model, idx, max_new_tokens, pick, eos_id, use_cache)


def generate_steps(
    model: torch.nn.Module,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> Iterator[Step]:
    """Like `generate` (the same tokens for the same seed), but yields a `Step` per token: the token, its
    probability, and every stage's distribution, for the "step through" view."""
    settings = check_settings(temperature, top_k, top_p)

    def pick(logits: torch.Tensor) -> tuple[int, Step]:
        step = sample_step(logits, *settings, generator)
        return step.token_id, step

    return _loop(model, idx, max_new_tokens, pick, eos_id, use_cache)


def _loop(model, idx, max_new_tokens, pick, eos_id, use_cache) -> Iterator:
    max_new_tokens = check_max_new(max_new_tokens)
    prompt, dropped = crop_prompt(prompt_ids(idx), context_length(model))
    if dropped:
        log.warning("prompt longer than the context: kept its last %d tokens, dropped %d", len(prompt), dropped)
    return _decode(model, prompt, max_new_tokens, pick, eos_id, use_cache)


@torch.inference_mode()  # on a generator function torch enters the mode only while it runs, not between yields
def _decode(model, prompt: list[int], max_new_tokens: int, pick, eos_id: int | None, use_cache: bool):
    if max_new_tokens == 0:
        return
    with eval_mode(model):  # no dropout while sampling
        decoder = _Decoder(model, prompt, max_new_tokens, use_cache)
        for i in range(max_new_tokens):
            token, item = pick(decoder.next_logits())
            yield item
            if token == eos_id or i == max_new_tokens - 1:
                return
            decoder.append(token)
