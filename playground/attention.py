"""The attention kernels both models share, and the KV cache they write into.

Notation (used in the shape comments here, in gpt.py and in llama.py):
    B   batch size                     T   tokens in this call (new tokens when decoding with a cache)
    S   keys visible to the queries (cache position + T)
    C   model width (n_embd / dim)     V   vocabulary size
    nh  query heads                    nkv key/value heads (nkv < nh is grouped-query attention)
    hs  head size (C // nh)

Three ways to compute the same thing, softmax(Q K^T / sqrt(hs) + causal mask) V:
    "math"   written out step by step in float32; the only path that can hand back the weights
    "sdpa"   torch.nn.functional.scaled_dot_product_attention (fused kernels, incl. its own flash kernels)
    "flash"  the flash-attn package, when it is installed and the tensors are fp16/bf16 on a CUDA device
"auto" picks the fastest that works here: flash if usable, else sdpa. A test proves that they agree.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

IMPLS = ("auto", "math", "sdpa", "flash")

try:  # optional: only on GPU machines where someone compiled it
    from flash_attn import flash_attn_func  # type: ignore[import-not-found]
except Exception:  # ImportError, or a broken CUDA build
    flash_attn_func = None

_warned: set[str] = set()


def _note_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.info(msg)


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"attn_impl must be one of {IMPLS}, got {impl!r}")
    return impl


# ---------------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Keys and values of the tokens seen so far, one preallocated buffer per layer, plus a position counter.

    Buffers are [B, nkv, max_len, hs]. They are allocated on the first write, with the dtype and device of
    the keys written (so a cache made before `model.to(...)` or used under autocast still fits).
    The model reads `pos` (where the new tokens go), each layer calls `update`, then the model calls `advance`.
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int, head_size: int):
        for name, value in (
            ("n_layers", n_layers),
            ("batch_size", batch_size),
            ("n_kv_heads", n_kv_heads),
            ("max_len", max_len),
            ("head_size", head_size),
        ):
            if value < 1:
                raise ValueError(f"KVCache {name} must be >= 1, got {value}")
        self.shape = (batch_size, n_kv_heads, max_len, head_size)
        self.max_len = max_len
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.pos = 0

    def reset(self) -> None:
        """Forget the tokens (keeps the buffers, so a new prompt reuses the memory)."""
        self.pos = 0

    def check_room(self, t: int) -> None:
        if self.pos + t > self.max_len:
            raise ValueError(f"KV cache full: {self.pos} tokens cached + {t} new > max_len {self.max_len}")

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new k, v [B, nkv, T, hs] at `pos`; return all keys/values so far [B, nkv, pos+T, hs]."""
        t = k.shape[2]
        self.check_room(t)
        if k.shape[0] != self.shape[0] or k.shape[1] != self.shape[1] or k.shape[3] != self.shape[3]:
            raise ValueError(
                f"KVCache expects [B, nkv, T, hs] = {self.shape[:2]} x T x {self.shape[3]}, got {tuple(k.shape)}"
            )
        if self.k[layer] is None or self.k[layer].dtype != k.dtype or self.k[layer].device != k.device:
            self.k[layer] = torch.zeros(self.shape, dtype=k.dtype, device=k.device)
            self.v[layer] = torch.zeros(self.shape, dtype=v.dtype, device=v.device)
        end = self.pos + t
        self.k[layer][:, :, self.pos : end] = k.detach()
        self.v[layer][:, :, self.pos : end] = v.detach()
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, t: int) -> None:
        """Called once per forward, after every layer wrote its t new keys."""
        self.check_room(t)
        self.pos += t


# ------------------------------------------------------------------------------------ capturing weights
# Thread-local so that one learner asking for attention maps of a shared model does not switch the
# other learners' forward passes (running in other threads) to the slow path.
_capture = threading.local()


@contextlib.contextmanager
def capture_weights():
    """Inside this block, attention in the current thread runs the math path and appends each layer's
    weights [B, nh, T, S] (float32, detached) to the list this yields, in the order the layers run."""
    previous = getattr(_capture, "store", None)
    store: list[torch.Tensor] = []
    _capture.store = store
    try:
        yield store
    finally:
        _capture.store = previous


def _capturing() -> list[torch.Tensor] | None:
    return getattr(_capture, "store", None)


# ------------------------------------------------------------------------------------------- kernels
def causal_mask(t: int, s: int, device: torch.device) -> torch.Tensor:
    """[T, S] booleans, True where query i may look at key j. The T queries are the LAST T of the S positions
    (positions S-T .. S-1), so query i sees keys 0 .. S-T+i: the usual triangle shifted right by S-T."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def math_attention(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """softmax(Q K^T / sqrt(hs) + mask) V written out. q [B, nh, T, hs], k/v [B, nh, S, hs].
    Returns (out [B, nh, T, hs] in q's dtype, weights [B, nh, T, S] float32)."""
    t, s, hs = q.shape[2], k.shape[2], q.shape[3]
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, hs) @ (B, nh, hs, S) -> (B, nh, T, S)
    scores = scores.masked_fill(~causal_mask(t, s, q.device), float("-inf"))  # no peeking at the future
    weights = F.softmax(scores, dim=-1)  # (B, nh, T, S), each row sums to 1; float32 for a stable softmax
    dropped = F.dropout(weights, p=dropout_p, training=training) if dropout_p > 0 else weights
    out = dropped.to(v.dtype) @ v  # (B, nh, T, S) @ (B, nh, S, hs) -> (B, nh, T, hs)
    return out, weights


def sdpa_attention(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """PyTorch's fused kernel. is_causal is the top-left triangle, right only when T == S (no cache offset);
    one query sees every key; otherwise an explicit shifted mask."""
    t, s = q.shape[2], k.shape[2]
    p = dropout_p if training else 0.0
    if t == s:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    if t == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t, s, q.device), dropout_p=p)


def flash_usable(q: torch.Tensor) -> bool:
    return flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def flash_attention(q, k, v, dropout_p: float = 0.0, training: bool = False):
    """flash-attn wants [B, T, nh, hs]; with T < S its causal mask is aligned bottom-right (flash-attn >= 2.1),
    which is our shifted triangle."""
    out = flash_attn_func(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=dropout_p if training else 0.0, causal=True
    )  # (B, T, nh, hs)
    return out.transpose(1, 2)  # (B, nh, T, hs)


def resolve_impl(impl: str, q: torch.Tensor) -> str:
    """The kernel that will actually run for `impl` on tensors like q (flash falls back with a logged note)."""
    if impl == "auto":
        return "flash" if flash_usable(q) else "sdpa"
    if impl == "flash" and not flash_usable(q):
        why = "flash-attn is not installed" if flash_attn_func is None else f"device {q.device} / dtype {q.dtype}"
        _note_once(f"attn_impl='flash' not usable ({why}); using PyTorch SDPA instead")
        return "sdpa"
    return impl


def attention(q, k, v, impl: str = "auto", dropout_p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Causal attention of q [B, nh, T, hs] over k, v [B, nh, S, hs] (S >= T; the queries are the last T
    positions). Returns [B, nh, T, hs]. Inside `capture_weights()` always the math path, storing the weights."""
    store = _capturing()
    if store is not None:
        out, weights = math_attention(q, k, v, dropout_p, training)
        store.append(weights.detach())
        return out
    kind = resolve_impl(impl, q)
    if kind == "math":
        return math_attention(q, k, v, dropout_p, training)[0]
    if kind == "flash":
        return flash_attention(q, k, v, dropout_p, training)
    return sdpa_attention(q, k, v, dropout_p, training)
