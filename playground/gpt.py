"""The course's GPT (notes sections 27-43), written the nanoGPT way with GPT-2 names.

Notation: B batch, T tokens, C = n_embd, V = vocab, nh = n_head, hs = head size = C // nh,
A = nh * hs (the width of the concatenated heads; 378 for the course config, not 384).

    idx (B, T) -> wte(idx) + wpe(positions) -> n_layer x Block -> ln_f -> lm_head -> logits (B, T, V)
    Block: x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))          (pre-LayerNorm, residual connections)

Differences from the course code, and why:
- The course builds one `Head` module per head, each with its own q/k/v Linear layers, and concatenates
  their outputs. Here one Linear `c_attn` computes q, k and v of ALL heads in a single matrix product
  (C -> 3A), which we then split and view per head: the same numbers (one head's q is a slice of the
  fused output), far fewer kernel launches. The parameter count is identical.
- The notes nest the Embedding init inside the Linear branch, so embeddings never get N(0, 0.02).
  Here both do, as the text intends.
- The course defines attention-weight dropout in `Head` but never applies it; here it is applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from playground.attention import KVCache, attention, check_impl


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    context_length: int = 128  # the longest sequence the learned position table covers
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    mlp_ratio: int = 6  # the course's MLP is 6x wide (GPT-2 uses 4x)
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers (the course's BIAS = True)
    tie_weights: bool = False  # share wte and lm_head (off in the course)
    attn_impl: str = "auto"

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "n_embd", "n_layer", "n_head", "mlp_ratio"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_head > self.n_embd:
            raise ValueError(f"GPTConfig.n_head ({self.n_head}) cannot exceed n_embd ({self.n_embd})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        check_impl(self.attn_impl)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head  # 384 // 7 = 54: the course rounds down

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GPTConfig] = {
    # ~1.06M non-embedding parameters (2.1M in all): a 2-core CPU shows the loss falling within seconds
    "tiny": GPTConfig(vocab_size=4096, context_length=128, n_embd=128, n_layer=4, n_head=4),
    "small": GPTConfig(vocab_size=4096, context_length=256, n_embd=256, n_layer=6, n_head=8),
    # the course: vocab 4096, context 512, embed 384, 7 layers, 7 heads -> 19.8M parameters
    "course": GPTConfig(vocab_size=4096, context_length=512, n_embd=384, n_layer=7, n_head=7, dropout=0.05),
    # GPT-2 small's shape (4x MLP like GPT-2, vocab padded to a multiple of 64 as in nanoGPT)
    "gpt2-small": GPTConfig(vocab_size=50304, context_length=1024, n_embd=768, n_layer=12, n_head=12, mlp_ratio=4),
}


class CausalSelfAttention(nn.Module):
    """The course's Multihead + Head, with the per-head q/k/v layers fused into one Linear."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_size = config.n_head, config.head_size
        self.attn_dim = config.n_head * config.head_size  # A = 378 for the course: heads concatenate to this
        self.c_attn = nn.Linear(config.n_embd, 3 * self.attn_dim, bias=config.bias)  # q, k, v of every head
        self.c_proj = nn.Linear(self.attn_dim, config.n_embd, bias=config.bias)  # the course's `combine`
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout, self.attn_impl = config.dropout, config.attn_impl

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(self.attn_dim, dim=2)  # 3 x (B, T, A)
        # per-head view: head h owns columns h*hs:(h+1)*hs of each, exactly the course's Head number h
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, S, hs): every token so far
        y = attention(q, k, v, self.attn_impl, self.dropout, self.training)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, self.attn_dim)  # concatenate heads: (B, T, A)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    """The course's ForwardLayer: widen, GELU, narrow back, dropout."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_ratio * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(config.mlp_ratio * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 6C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)  # communication: tokens look at earlier tokens
        x = x + self.mlp(self.ln_2(x))  # computation: each token on its own
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings (V, C)
        self.wpe = nn.Embedding(config.context_length, config.n_embd)  # learned positions (context, C)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=config.bias)
        self.apply(self._init_weights)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # one (V, C) matrix reads tokens in and writes them out

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # N(0, 0.02) for Linear AND Embedding (the notes nest the Embedding branch under Linear by mistake)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        max_len = self.config.context_length if max_len is None else max_len
        if max_len > self.config.context_length:
            raise ValueError(f"cache max_len {max_len} > context_length {self.config.context_length}")
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, max_len, c.head_size)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V). With a cache, idx holds only the new tokens."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.context_length:
            raise ValueError(
                f"sequence of {start + T} tokens ({start} cached + {T} new) is longer than "
                f"the context_length {self.config.context_length}"
            )
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C) + (T, C) -> (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache, i)  # (B, T, C)
        if cache is not None:
            cache.advance(T)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def new_gpt(preset: str = "tiny", **overrides) -> GPT:
    """A freshly initialised GPT from a named preset, with fields overridden (e.g. vocab_size=tok.vocab_size)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown GPT preset {preset!r}; choose one of {sorted(PRESETS)}")
    return GPT(GPTConfig(**{**PRESETS[preset].to_dict(), **overrides}))
