"""The course's GPT, the way the notes write it (sections 36-43): one `Head` module per head, attention written
out, the heads joined by `torch.cat`. It is the "before" that gpt.py's docstring describes: read it beside gpt.py to
see what fusing the heads into one `c_attn` changes (nothing in the maths, a lot in speed). The bench measures it as
"the course's way", and the tests prove it computes our GPT's logits when it holds our weights (`course_from_gpt`).

A faithful reimplementation, with the config passed in instead of globals and the notes' typos fixed
(`nn.linear`, `head+size`, `torch.cat()(...)`, `s.shape`). Its forward returns logits only: the notes' forward also
computes a second, by-hand softmax loss on every call, which we leave out, so this reference is a little FASTER than
the course's own code.

Notation: BS batch, SL sequence length, C width (n_embd), hs head size, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground.gpt import GPT, GPTConfig


class Head(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hs = cfg.head_size
        self.queries = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.keys = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.values = nn.Linear(cfg.n_embd, hs, bias=cfg.bias)
        self.register_buffer("tril", torch.tril(torch.ones(cfg.context_length, cfg.context_length)))
        self.dropout = nn.Dropout(cfg.dropout)  # defined, never applied: as in the notes

    def forward(self, x):
        BS, SL, _ = x.shape
        q, k, v = self.queries(x), self.keys(x), self.values(x)  # (BS, SL, hs) each
        attn_w = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (BS, SL, SL)
        attn_w = attn_w.masked_fill(self.tril[:SL, :SL] == 0, float("-inf"))
        attn_w = F.softmax(attn_w, dim=-1)
        return attn_w @ v  # (BS, SL, hs)


class Multihead(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList([Head(cfg) for _ in range(cfg.n_head)])
        self.combine = nn.Linear(cfg.head_size * cfg.n_head, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        x = torch.cat([head(x) for head in self.heads], dim=-1)  # (BS, SL, nh * hs)
        return self.dropout(self.combine(x))


class ForwardLayer(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x):
        return self.network(x)


class CourseBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ma = Multihead(cfg)
        self.feed_forward = ForwardLayer(cfg)
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)

    def forward(self, x):
        x = x + self.ma(self.ln1(x))
        return x + self.feed_forward(self.ln2(x))


class CourseGPT(nn.Module):
    """The notes' GPT: model(input (BS, SL)) -> logits (BS, SL, V)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = nn.Embedding(cfg.context_length, cfg.n_embd)
        self.blocks = nn.Sequential(*[CourseBlock(cfg) for _ in range(cfg.n_layer)])
        self.ln = nn.LayerNorm(cfg.n_embd)
        self.final_linear = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=cfg.bias)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    def forward(self, input):
        BS, SL = input.shape
        x = self.embeddings(input) + self.positions(torch.arange(SL, device=input.device))  # (BS, SL, C)
        return self.final_linear(self.ln(self.blocks(x)))  # (BS, SL, V)


@torch.no_grad()
def course_from_gpt(ours: GPT) -> CourseGPT:
    """A CourseGPT holding exactly our weights: head h's queries/keys/values are rows h*hs:(h+1)*hs of the
    q, k and v blocks of our fused c_attn (tests prove the two compute the same logits)."""
    cfg = ours.config
    course = CourseGPT(cfg).to(next(ours.parameters()).device, next(ours.parameters()).dtype)
    A, hs = cfg.n_head * cfg.head_size, cfg.head_size
    course.embeddings.weight.copy_(ours.wte.weight)
    course.positions.weight.copy_(ours.wpe.weight)
    for ob, cb in zip(ours.h, course.blocks, strict=True):
        w, b = ob.attn.c_attn.weight, ob.attn.c_attn.bias  # (3A, C), (3A,)
        for h, head in enumerate(cb.ma.heads):
            for part, lin in enumerate((head.queries, head.keys, head.values)):
                rows = slice(part * A + h * hs, part * A + (h + 1) * hs)
                lin.weight.copy_(w[rows])
                if b is not None:
                    lin.bias.copy_(b[rows])
        pairs = [(cb.ma.combine, ob.attn.c_proj), (cb.feed_forward.network[0], ob.mlp.c_fc),
                 (cb.feed_forward.network[2], ob.mlp.c_proj), (cb.ln1, ob.ln_1), (cb.ln2, ob.ln_2)]  # fmt: skip
        for dst, src in pairs:
            dst.load_state_dict(src.state_dict())
    course.ln.load_state_dict(ours.ln_f.state_dict())
    course.final_linear.load_state_dict(ours.lm_head.state_dict())
    return course
