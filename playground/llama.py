"""Llama, the course's "advanced LLM" (notes sections 66-73), with Meta's names and skeleton.

Notation: B batch, T tokens, C = dim, V = vocab, nh = n_heads, nkv = n_kv_heads, hs = head_dim,
n_rep = nh // nkv (query heads that share one key/value head), H = hidden_dim of the feed-forward.

    tokens (B, T) -> tok_embeddings -> n_layers x Block -> norm -> output -> logits (B, T, V)
    Block: h = x + attention(attention_norm(x));  out = h + feed_forward(ffn_norm(h))

What changed from the course's GPT: RMSNorm instead of LayerNorm (no mean, no bias), rotary position
embeddings applied to q and k instead of a learned position table, grouped-query attention (fewer k/v
heads, shared by groups of query heads), and a SwiGLU feed-forward instead of GELU.

RoPE layout. Meta's code rotates ADJACENT pairs (dims 2i, 2i+1) with complex numbers; Hugging Face's
Llama rotates dims (i, i + hs/2) ("rotate_half"). The two are the same rotation up to a fixed permutation
of each head's q/k rows, and HF's conversion script permutes Meta's wq/wk to switch layouts. We use the
HF layout, so Hub weights load by renaming alone (tests/unit/test_llama.py checks the permutation claim).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground.attention import KVCache, attention, check_impl

# transformers' LlamaConfig defaults, for the keys a Hub config.json may leave out: a missing key must mean what it
# means to transformers (rms_norm_eps 1e-6, max_position_embeddings 2048, ...), not our presets' values.
# num_key_value_heads and head_dim default to None there and here (num_attention_heads, hidden_size // heads);
# rope_theta 10000 is read in from_hf. tests/unit/test_hub_configs.py checks this table against transformers itself.
HF_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 2048,
    "attention_dropout": 0.0,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
}


@dataclass
class LlamaConfig:
    vocab_size: int = 4096
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: same as n_heads (plain multi-head attention)
    head_dim: int | None = None  # None: dim // n_heads
    hidden_dim: int | None = None  # None: 8/3 * dim rounded up to a multiple of 32 (SwiGLU keeps ~8 dim^2 params)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 256
    dropout: float = 0.0
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    attn_impl: str = "auto"

    def __post_init__(self):
        # The three None-able fields stay None here (as in Meta's ModelArgs) and are resolved by the properties
        # below, so that dataclasses.replace(preset, dim=...) re-derives them instead of keeping stale values.
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "kv_heads", "head_size", "ffn_dim", "max_seq_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LlamaConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})")
        if self.head_size % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LlamaConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ValueError(f"rope_theta and norm_eps must be > 0, got {self.rope_theta}, {self.norm_eps}")
        check_impl(self.attn_impl)

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads if self.head_dim is None else self.head_dim

    @property
    def ffn_dim(self) -> int:
        return -(-8 * self.dim // 3 // 32) * 32 if self.hidden_dim is None else self.hidden_dim

    def to_dict(self) -> dict:
        return asdict(self)

    # Hugging Face config.json <-> ours: one explicit table (ours: theirs)
    HF_KEYS = {
        "vocab_size": "vocab_size",
        "dim": "hidden_size",
        "n_layers": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "n_kv_heads": "num_key_value_heads",
        "head_dim": "head_dim",
        "hidden_dim": "intermediate_size",
        "norm_eps": "rms_norm_eps",
        "max_seq_len": "max_position_embeddings",
        "dropout": "attention_dropout",
        "attention_bias": "attention_bias",
        "mlp_bias": "mlp_bias",
        "tie_word_embeddings": "tie_word_embeddings",
    }

    @classmethod
    def from_hf(cls, hf: dict, **overrides) -> LlamaConfig:
        """From a transformers LlamaConfig dict (config.json). Refuses what this model does not implement."""
        if hf.get("model_type") not in (None, "llama"):
            raise ValueError(f"only Llama checkpoints load here; this one is model_type {hf.get('model_type')!r}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"only SiLU (SwiGLU) feed-forwards are supported, got hidden_act {hf['hidden_act']!r}")
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"RoPE scaling {rope_type!r} is not supported (only plain rotary embeddings)")
        hf = {**HF_DEFAULTS, **{k: v for k, v in hf.items() if v is not None}}  # a missing key: transformers' default
        kw = {ours: hf[theirs] for ours, theirs in cls.HF_KEYS.items() if hf.get(theirs) is not None}
        kw["rope_theta"] = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
        return cls(**{**kw, **overrides})

    def to_hf(self) -> dict:
        resolved = {"n_kv_heads": self.kv_heads, "head_dim": self.head_size, "hidden_dim": self.ffn_dim}
        hf = {theirs: resolved.get(ours, getattr(self, ours)) for ours, theirs in self.HF_KEYS.items()}
        hf.update(
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            hidden_act="silu",
            rope_theta=self.rope_theta,  # transformers 4.x reads this; 5.x reads rope_parameters
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            initializer_range=0.02,
            use_cache=True,
        )
        return hf


PRESETS: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(vocab_size=4096, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, hidden_dim=352, max_seq_len=128),
    # the bundled base model: ~5.4M parameters, small enough to ship (bf16 file ~11 MB) and train on one GPU in minutes
    "base": LlamaConfig(
        vocab_size=4096,
        dim=256,
        n_layers=6,
        n_heads=8,
        n_kv_heads=4,
        hidden_dim=688,
        max_seq_len=512,
        tie_word_embeddings=True,
    ),
    # HuggingFaceTB/SmolLM2-135M's shape: 9 query heads share 3 k/v heads (n_rep 3), tied embeddings
    "smollm2-135m": LlamaConfig(
        vocab_size=49152,
        dim=576,
        n_layers=30,
        n_heads=9,
        n_kv_heads=3,
        hidden_dim=1536,
        rope_theta=100000.0,
        max_seq_len=8192,
        tie_word_embeddings=True,
    ),
}


# ------------------------------------------------------------------------------------------ helpers
def precompute_freqs_cis(head_dim: int, end: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [end, head_dim] for positions 0..end-1 (HF layout: the hs/2 frequencies twice).
    Frequency i is theta^(-2i/hs): pair i turns by angle pos * theta^(-2i/hs). Always float32."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hs/2,)
    angles = torch.outer(torch.arange(end, dtype=torch.float32), freqs)  # (end, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (end, hs): dim i and dim i + hs/2 turn together
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim: a 90-degree turn of every (i, i+hs/2) pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary_emb(xq, xk, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q [B, nh, T, hs] and k [B, nkv, T, hs] by their positions' angles; cos/sin are [T, hs].
    Computed in float32, cast back: x*cos + rotate_half(x)*sin is the 2-D rotation of each pair."""
    q, k = xq.float(), xk.float()
    q_out = q * cos + rotate_half(q) * sin
    k_out = k * cos + rotate_half(k) * sin
    return q_out.type_as(xq), k_out.type_as(xk)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, nkv, S, hs] -> [B, nkv * n_rep, S, hs]: each k/v head serves n_rep consecutive query heads."""
    if n_rep == 1:
        return x
    B, nkv, S, hs = x.shape
    return x[:, :, None].expand(B, nkv, n_rep, S, hs).reshape(B, nkv * n_rep, S, hs)


# ------------------------------------------------------------------------------------------- modules
class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, in float32 and cast back (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # (B, T, C)
        return self.weight * normed.type_as(x)


class Attention(nn.Module):
    def __init__(self, args: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_size
        self.n_rep = self.n_heads // self.n_kv_heads
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=args.attention_bias)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=args.attention_bias)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=args.attention_bias)
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=args.attention_bias)
        self.resid_dropout = nn.Dropout(args.dropout)
        self.dropout, self.attn_impl = args.dropout, args.attn_impl

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        xq = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        xk = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        xv = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        xq, xk = apply_rotary_emb(xq, xk, cos, sin)  # positions enter here, nowhere else
        if cache is not None:
            xk, xv = cache.update(layer, xk, xv)  # (B, nkv, S, hs): the cache stores the small nkv heads
        keys, values = repeat_kv(xk, self.n_rep), repeat_kv(xv, self.n_rep)  # (B, nh, S, hs)
        y = attention(xq, keys, values, self.attn_impl, self.dropout, self.training)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_heads * self.head_dim)  # (B, T, nh*hs)
        return self.resid_dropout(self.wo(y))  # (B, T, C)


class FeedForward(nn.Module):
    """SwiGLU (Shazeer 2020): w2(silu(w1 x) * w3 x). w1 is HF's gate_proj, w3 up_proj, w2 down_proj."""

    def __init__(self, args: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.ffn_dim, bias=args.mlp_bias)
        self.w2 = nn.Linear(args.ffn_dim, args.dim, bias=args.mlp_bias)
        self.w3 = nn.Linear(args.dim, args.ffn_dim, bias=args.mlp_bias)
        self.dropout = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))  # (B, T, C) -> (B, T, H) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, args: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # RoPE tables kept out of the parameters/buffers on purpose: `model.to(torch.bfloat16)` would round
        # them, and bf16 angles for position 500 are off by a whole turn fraction. Float32, one copy per device.
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [max_seq_len, hs] in float32 on `device` (computed once per device)."""
        if device not in self._rope:
            c = self.config
            cos, sin = precompute_freqs_cis(c.head_size, c.max_seq_len, c.rope_theta)
            self._rope[device] = (cos.to(device), sin.to(device))
        return self._rope[device]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        c = self.config
        max_len = c.max_seq_len if max_len is None else max_len
        if max_len > c.max_seq_len:
            raise ValueError(f"cache max_len {max_len} > max_seq_len {c.max_seq_len}")
        return KVCache(c.n_layers, batch_size, c.kv_heads, max_len, c.head_size)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, V). With a cache, tokens holds only the new tokens."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T) token ids, got shape {tuple(tokens.shape)}")
        T = tokens.shape[1]
        start = cache.pos if cache is not None else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {start + T} tokens ({start} cached + {T} new) is longer than "
                f"max_seq_len {self.config.max_seq_len}"
            )
        cos, sin = self.rope_tables(tokens.device)
        cos, sin = cos[start : start + T], sin[start : start + T]  # (T, hs) each
        h = self.tok_embeddings(tokens)  # (B, T, C)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, cache, i)
        if cache is not None:
            cache.advance(T)
        return self.output(self.norm(h))  # (B, T, V)


Llama = Transformer  # the course's name for it


def new_llama(preset: str = "tiny", **overrides) -> Transformer:
    if preset not in PRESETS:
        raise ValueError(f"unknown Llama preset {preset!r}; choose one of {sorted(PRESETS)}")
    return Transformer(LlamaConfig(**{**PRESETS[preset].to_dict(), **overrides}))
