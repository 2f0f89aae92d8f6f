"""Fast decoding: one new token per step with STATIC shapes, so that a GPU can replay a whole step as one
CUDA graph instead of launching a few hundred small kernels from Python.

Why the teaching path is slow to decode. `model(idx, cache=KVCache)` (gpt.py, llama.py) is written to be
read: per layer it launches ~30 small kernels (norm, three projections, RoPE, cache write, attention,
...), each from Python, and the attended key range grows every step, so nothing can be recorded once and
replayed. At batch 1 the GPU spends most of a step waiting for the host; on a CPU the same Python work is
a smaller share, because there the step is bound by reading every weight once from memory.

What this module does instead (the same function, proven equal in tests/unit/test_fastpaths.py):
- Fused weights: q, k, v of a layer become one matrix (Llama's wq|wk|wv; GPT already has c_attn) and the
  SwiGLU gate and up projections one matrix (w1|w3): fewer, larger matrix-vector products. They are COPIES
  made when the decoder is built: a decoder is a snapshot of the model, built per generation.
- A static KV cache: per layer [B, nkv, L, hs] allocated once, and the position as a DEVICE tensor.
  A step writes its keys at `pos` (index_put_), attends over all L slots with a mask (slot <= pos), and
  gathers the RoPE angles at `pos`: every shape is the same at every step, nothing is allocated anew.
- Attention in the model's dtype: by default one SDPA kernel over the grouped query rows (the r query heads
  sharing a k/v head become r*T rows of one "head", so the cache is never copied r times) with an additive
  bias made once per step; or (attn="matmul") two products in the cache's dtype and a float32 softmax.
- On CUDA: each layer compiled with torch.compile (inductor fuses the norm/RoPE/SiLU element-wise work;
  one compiled graph serves every layer) and the whole step, greedy argmax included, captured in a
  torch.cuda.CUDAGraph and replayed. Each layer also applies the NEXT layer's input norm (or the final
  norm) to its output, so the residual add and that norm fuse across the layer boundary.
  `whole_step=True` compiles the whole step as one graph instead (a little more fusion, a longer compile).
  The chosen token is written back into the graph's input and into a token history on the device; the
  host reads the history in chunks (1, 2, 4, ... 16 tokens), one chunk behind, so the GPU never waits for
  Python and there is no sync per token. Never compiled or captured on ZeroGPU (SPACES_ZERO_GPU set),
  where each call may get a different GPU.
- On the CPU: plain eager under inference_mode, the same static step. Decoding there is bound by memory
  bandwidth (bench.py prints the limit beside the figures).

Notation as in attention.py: B batch, T new tokens, L cache slots (max_len), C width, V vocabulary,
nh query heads, nkv key/value heads, r = nh // nkv query heads per k/v head, hs head size.

Use: `generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator, eos_id)` takes the same
arguments and yields the same tokens as `sampling.generate` (it uses sampling's own next_token_probs and
draw); `supports(model)` says whether this module can decode that model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from playground import sampling
from playground.gpt import GPT
from playground.llama import Transformer, apply_rotary_emb
from playground.models import context_length, eval_mode
from playground.spaces_support import on_zero_gpu

log = logging.getLogger(__name__)

__all__ = ["FastDecoder", "supports", "generate", "greedy"]


def supports(model: torch.nn.Module) -> bool:
    return isinstance(model, (Transformer, GPT))


# ------------------------------------------------------------------------------------- the step's math
def grouped_attention(q, k_cache, v_cache, mask, scale: float) -> torch.Tensor:
    """Causal attention of q [B, nh, T, hs] over ALL L cache slots [B, nkv, L, hs]; mask [T, L] is True
    where a query may look (slot <= its position). Query heads g*r .. g*r+r-1 share k/v head g (the order
    of llama.repeat_kv), so we group them instead of copying the keys r times. The two products run in the
    cache's dtype (bf16 on a GPU: casting the whole cache to float32 every step cost a copy and an fp32 GEMM
    per layer); only the softmax is float32."""
    B, nh, T, hs = q.shape
    nkv, L = k_cache.shape[1], k_cache.shape[2]
    r = nh // nkv
    qg = q.reshape(B, nkv, r * T, hs)  # (B, nkv, r*T, hs): rows ordered (head in group, query)
    scores = (qg @ k_cache.transpose(-2, -1)).float() * scale  # (B, nkv, r*T, L)
    scores = scores.view(B, nkv, r, T, L).masked_fill(~mask, float("-inf"))  # mask (T, L) broadcasts
    weights = F.softmax(scores, dim=-1).to(v_cache.dtype).view(B, nkv, r * T, L)
    return (weights @ v_cache).view(B, nh, T, hs)  # (B, nkv, r*T, L) @ (B, nkv, L, hs) -> (B, nh, T, hs)


def attention_bias(mask: torch.Tensor, r: int, dtype: torch.dtype) -> torch.Tensor:
    """The bool mask [T, L] as SDPA's additive bias [r*T, L] (0 where allowed, -inf elsewhere), its rows
    repeated for the r query heads of a group (row j*T + t is head j of the group, query t). Made once per
    step and shared by every layer."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return bias.repeat(r, 1)  # (r*T, L)


def sdpa_grouped_attention(q, k_cache, v_cache, bias, scale: float) -> torch.Tensor:
    """grouped_attention in ONE fused kernel: PyTorch's scaled_dot_product_attention over the grouped query
    rows [B, nkv, r*T, hs] with the additive bias [r*T, L] from attention_bias (no k/v copies, no fp32
    cache). The same function: tests compare the two."""
    B, nh, T, hs = q.shape
    nkv = k_cache.shape[1]
    qg = q.reshape(B, nkv, (nh // nkv) * T, hs)  # (B, nkv, r*T, hs)
    y = F.scaled_dot_product_attention(qg, k_cache, v_cache, attn_mask=bias, scale=scale)  # (B, nkv, r*T, hs)
    return y.reshape(B, nh, T, hs)  # SDPA on CUDA may return (B, nkv, r*T, hs) non-contiguous


ATTENTION = {"sdpa": sdpa_grouped_attention, "matmul": grouped_attention}


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """llama.RMSNorm, the same operations in the same order (float32, cast back, then the gain)."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


def input_norm(arch: str, h: torch.Tensor, params: tuple, eps: float) -> torch.Tensor:
    """A block's input norm (and the final one): llama.RMSNorm (params = (weight,)) or GPT's LayerNorm
    (params = (weight, bias))."""
    if arch == "llama":
        return _rms(h, params[0], eps)
    return F.layer_norm(h, (h.shape[-1],), params[0], params[1], eps)


def llama_layer(h, x, w: tuple, k_cache, v_cache, cos, sin, idx, mask, dims: tuple, attend, nxt: tuple):
    """One Llama block for the T new tokens at positions idx [T]; writes their k/v into the cache.
    h [B, T, C] is the residual stream, x = attention_norm(h) (made by the previous layer, see nxt).
    Returns (h', nxt_norm(h')): the NEXT block's input norm (or the final norm) is applied here, so the
    residual add and that norm are one fused kernel even when each layer is compiled on its own.
    w = (attention_norm, wqkv, bqkv, wo, bo, ffn_norm, w13, b13, w2, b2); dims = (nh, nkv, hs, eps);
    attend: grouped_attention (mask: bool [T, L]) or sdpa_grouped_attention (mask: attention_bias)."""
    _, wqkv, bqkv, wo, bo, ffn_norm, w13, b13, w2, b2 = w
    nh, nkv, hs, eps = dims
    B, T, _ = h.shape
    qkv = F.linear(x, wqkv, bqkv)  # (B, T, (nh + 2 nkv) hs): one product for q, k, v
    q, k, v = qkv.split([nh * hs, nkv * hs, nkv * hs], dim=-1)
    q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
    v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
    q, k = apply_rotary_emb(q, k, cos, sin)  # llama.py's own rotation: same numbers
    k_cache[:, :, idx] = k  # slots idx <- the new keys; static shapes, no host-side position. index_put_:
    v_cache[:, :, idx] = v  # inductor writes it in place (a functional index_copy may copy the whole cache)
    y = attend(q, k_cache, v_cache, mask, 1.0 / math.sqrt(hs))  # (B, nh, T, hs)
    h = h + F.linear(y.transpose(1, 2).reshape(B, T, nh * hs), wo, bo)  # (B, T, C)
    gate, up = F.linear(_rms(h, ffn_norm, eps), w13, b13).chunk(2, dim=-1)  # (B, T, H) each: w1 x and w3 x
    h = h + F.linear(F.silu(gate) * up, w2, b2)  # SwiGLU, (B, T, C)
    return h, input_norm("llama", h, nxt, eps)


def gpt_layer(h, x, w: tuple, k_cache, v_cache, cos, sin, idx, mask, dims: tuple, attend, nxt: tuple):
    """One GPT block (pre-LayerNorm, fused c_attn, GELU MLP); cos/sin unused (GPT adds learned positions).
    h, x = ln_1(h), nxt and the result as in llama_layer.
    w = (ln_1 w, b, c_attn w, b, attn c_proj w, b, ln_2 w, b, c_fc w, b, mlp c_proj w, b); dims = (nh, nh, hs, eps)."""
    _, _, aw, ab, pw, pb, ln2w, ln2b, fw, fb, mw, mb = w
    nh, _, hs, eps = dims
    B, T, C = h.shape
    q, k, v = F.linear(x, aw, ab).split(nh * hs, dim=-1)  # 3 x (B, T, A)
    q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k_cache[:, :, idx] = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs) into slots idx
    v_cache[:, :, idx] = v.view(B, T, nh, hs).transpose(1, 2)
    y = attend(q, k_cache, v_cache, mask, 1.0 / math.sqrt(hs))  # (B, nh, T, hs)
    h = h + F.linear(y.transpose(1, 2).reshape(B, T, nh * hs), pw, pb)  # (B, T, C)
    x = F.layer_norm(h, (C,), ln2w, ln2b, eps)
    h = h + F.linear(F.gelu(F.linear(x, fw, fb)), mw, mb)  # (B, T, C) -> (B, T, rC) -> (B, T, C)
    return h, input_norm("gpt", h, nxt, eps)


def _cat(*tensors):
    """Concatenate weights (or biases) along the output dim; None when they are None (no bias)."""
    return None if tensors[0] is None else torch.cat([t.detach() for t in tensors], dim=0)


def _d(t):
    return None if t is None else t.detach()


def _llama_weights(model: Transformer) -> list[tuple]:
    out = []
    for b in model.layers:
        a, f = b.attention, b.feed_forward
        out.append((
            _d(b.attention_norm.weight), _cat(a.wq.weight, a.wk.weight, a.wv.weight),
            _cat(a.wq.bias, a.wk.bias, a.wv.bias), _d(a.wo.weight), _d(a.wo.bias), _d(b.ffn_norm.weight),
            _cat(f.w1.weight, f.w3.weight), _cat(f.w1.bias, f.w3.bias), _d(f.w2.weight), _d(f.w2.bias),
        ))  # fmt: skip
    return out


def _gpt_weights(model: GPT) -> list[tuple]:
    out = []
    for b in model.h:
        mods = (b.ln_1, b.attn.c_attn, b.attn.c_proj, b.ln_2, b.mlp.c_fc, b.mlp.c_proj)
        out.append(tuple(t for m in mods for t in (_d(m.weight), _d(m.bias))))
    return out


# ------------------------------------------------------------------------------------- the whole step
def forward_tokens(m, arch: str, tokens, pos, tables: tuple, weights: list, ks: list, vs: list, dims: tuple,
                   attend, layer) -> torch.Tensor:  # fmt: skip
    """tokens [B, T] at positions pos..pos+T-1 -> logits [B, V] of the last one; advances pos (a device
    tensor) by T. tables = (cos, sin [L, hs], slot numbers [L], norms: every block's input norm and the
    final norm); layer = llama_layer or gpt_layer, plain or compiled."""
    cos_all, sin_all, slots, norms = tables
    T = tokens.shape[1]
    idx = pos + torch.arange(T, device=tokens.device)  # (T,) positions of the new tokens
    mask = slots[None, :] <= idx[:, None]  # (T, L): causal, and hides slots not yet written
    cos, sin = cos_all.index_select(0, idx), sin_all.index_select(0, idx)  # (T, hs) each
    if arch == "llama":
        h = F.embedding(tokens, m.tok_embeddings.weight)  # (B, T, C)
    else:
        h = F.embedding(tokens, m.wte.weight) + F.embedding(idx, m.wpe.weight)  # (B, T, C) + (T, C)
    if attend is sdpa_grouped_attention:
        mask = attention_bias(mask, dims[0] // dims[1], h.dtype)  # (r*T, L), once for all layers
    x = input_norm(arch, h, norms[0], dims[3])  # the first block's input norm; each block makes the next
    for i in range(len(weights)):
        h, x = layer(h, x, weights[i], ks[i], vs[i], cos, sin, idx, mask, dims, attend, norms[i + 1])
    pos.add_(T)
    head = m.output if arch == "llama" else m.lm_head
    return head(x[:, -1])  # x = final norm(h); only the last position's logits pick the next token: (B, V)


def step_body(m, arch: str, tok, pos, tables, weights, ks, vs, dims, attend, layer, hist) -> torch.Tensor:
    """One decode step of the token in tok [B, 1] -> logits [B, V]. The greedy choice goes back into tok (the
    next step's input) and into hist[:, pos] (every token so far, read by the host in chunks): nothing
    leaves the device, so steps can be replayed back to back."""
    logits = forward_tokens(m, arch, tok, pos, tables, weights, ks, vs, dims, attend, layer)
    choice = logits.argmax(-1, keepdim=True)  # (B, 1)
    tok.copy_(choice)
    hist[:, pos.view(1)] = choice  # pos has advanced: the slot of the token just chosen
    return logits


_COMPILED: dict[str, object] = {}


def _compiled(name: str, mode: str | None = None):
    """torch.compile of a layer function ("llama", "gpt") or of the whole step ("step"), made once per process:
    every layer (same shapes) and every later decoder reuses the same kernels. dynamic=False: decode shapes
    never change, so no symbolic shapes. A layer compiles in seconds and serves all layers; the whole step
    (every layer, output and argmax in one graph) fuses a little more but compiles every layer anew."""
    key = f"{name}:{mode}"
    if key not in _COMPILED:
        fn = {"llama": llama_layer, "gpt": gpt_layer, "step": step_body}[name]
        _COMPILED[key] = torch.compile(fn, dynamic=False, fullgraph=True, mode=mode)
    return _COMPILED[key]


# ------------------------------------------------------------------------------------------- decoder
class FastDecoder:
    """Static-shape decoding of one model for up to `max_len` tokens (prompt + new) of `batch_size` rows.

    `prefill(ids [B, T])` runs the prompt (eager) and returns the last position's logits [B, V];
    `step(tokens [B] or None)` feeds one token per row and returns the next logits [B, V] (None: feed the
    greedy choice of the previous step, already on the device). `mode` says what runs a step:
    "eager", "compiled", "cuda-graph" or "compiled+cuda-graph"; `attn` which attention ran ("sdpa": one
    fused kernel over the grouped heads; "matmul": two products in the cache dtype, softmax in float32).
    `hist[:, i]` is the greedy choice made after position i-1 (prefill and every step write it).
    """

    def __init__(self, model, max_len: int, batch_size: int = 1, compile: bool | None = None,
                 cuda_graph: bool | None = None, attn: str = "sdpa", whole_step: bool = False,
                 compile_mode: str | None = None):  # fmt: skip
        if not supports(model):
            raise ValueError(f"FastDecoder decodes playground GPT and Llama models, not {type(model).__name__}")
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size and max_len must be >= 1, got {batch_size}, {max_len}")
        if attn not in ATTENTION:
            raise ValueError(f"attn must be one of {sorted(ATTENTION)}, got {attn!r}")
        self.model, self.arch, self.attn = model, "llama" if isinstance(model, Transformer) else "gpt", attn
        c = model.config
        limit = c.max_seq_len if self.arch == "llama" else c.context_length
        if max_len > limit:
            raise ValueError(f"max_len {max_len} is longer than the model's context {limit}")
        p = next(model.parameters())
        self.device, self.dtype, self.B, self.L = p.device, p.dtype, batch_size, max_len
        # cache slots: max_len rounded up to a multiple of 16 (within the context), so every row of the
        # attention bias starts 16-aligned, as fused SDPA kernels want; the extra slots are always masked
        self.slots = min(-(-max_len // 16) * 16, limit)
        with torch.inference_mode():
            self._setup(c)
        on_cuda = self.device.type == "cuda" and not on_zero_gpu()
        self.compile = on_cuda if compile is None else bool(compile) and not on_zero_gpu()
        self.graph = None
        want_graph = on_cuda if cuda_graph is None else bool(cuda_graph) and on_cuda
        # compile_mode: torch.compile's mode, e.g. "max-autotune-no-cudagraphs" (we capture the graph ourselves)
        self.whole_step, self.compile_mode = bool(whole_step), compile_mode
        self._use(self.compile, self.attn)
        if want_graph:
            self._capture()
        self.mode = "+".join(m for m, on in (("compiled", self.compile), ("cuda-graph", self.graph)) if on) or "eager"

    def _setup(self, c) -> None:
        if self.arch == "llama":
            self.weights, self.plain_layer = _llama_weights(self.model), llama_layer
            self.dims, nkv, hs = (c.n_heads, c.kv_heads, c.head_size, c.norm_eps), c.kv_heads, c.head_size
            cos, sin = self.model.rope_tables(self.device)  # float32 [max_seq_len, hs]
            cos, sin = cos[: self.slots], sin[: self.slots]
        else:
            self.weights, self.plain_layer = _gpt_weights(self.model), gpt_layer
            eps = self.model.h[0].ln_1.eps
            self.dims, nkv, hs = (c.n_head, c.n_head, c.head_size, eps), c.n_head, c.head_size
            cos = sin = torch.zeros(self.slots, 1, device=self.device)  # unused; keeps one signature
        shape = (self.B, nkv, self.slots, hs)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.weights]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.weights]
        self.pos = torch.zeros((), dtype=torch.long, device=self.device)  # where the next token goes, on device
        self.tables = (cos, sin, torch.arange(self.slots, device=self.device), self._norms())  # slot numbers (L,)
        self.tok = torch.zeros(self.B, 1, dtype=torch.long, device=self.device)  # the graph's input token
        self.hist = torch.zeros(self.B, self.slots + 1, dtype=torch.long, device=self.device)  # greedy choices
        self.n = 0  # tokens fed so far, counted on the host (bounds checks without reading `pos` back)

    def _norms(self) -> list[tuple]:
        """Every block's input norm, then the final norm (weights, and biases for GPT's LayerNorm)."""
        m = self.model
        if self.arch == "llama":
            return [(_d(b.attention_norm.weight),) for b in m.layers] + [(_d(m.norm.weight),)]
        return [(_d(b.ln_1.weight), _d(b.ln_1.bias)) for b in m.h] + [(_d(m.ln_f.weight), _d(m.ln_f.bias))]

    def _use(self, compiled: bool, attn: str) -> None:
        """What a step runs: compiled layers in an eager step (default), or the whole step compiled."""
        self.compile, self.attn = compiled, attn
        self.step_fn = _compiled("step", self.compile_mode) if compiled and self.whole_step else step_body
        self.layer = _compiled(self.arch, self.compile_mode) if compiled and not self.whole_step else self.plain_layer

    def _body(self) -> None:
        self.logits = self.step_fn(self.model, self.arch, self.tok, self.pos, self.tables, self.weights, self.k,
                                   self.v, self.dims, ATTENTION[self.attn], self.layer, self.hist)  # fmt: skip

    def _capture(self) -> None:
        """Record one step as a CUDA graph. If that fails, retry with the matmul attention, then with the plain
        (not compiled) step; if every try fails, decode eagerly (logged) rather than fail the generation."""
        tries = [(self.compile, self.attn), (self.compile, "matmul"), (False, "matmul")]
        for compiled, attn in dict.fromkeys(tries):  # in order, without repeats
            self._use(compiled, attn)
            try:
                self.graph = self._record()
                return
            except Exception as err:  # noqa: BLE001 - e.g. no triton, or a kernel that cannot be captured
                kind = "compiled" if compiled else "plain"
                log.warning("CUDA graph capture (%s step, %s attention) failed: %s: %s", kind, attn,
                            type(err).__name__, err)  # fmt: skip
                self.graph = None
                with torch.inference_mode():
                    self.pos.zero_()

    @torch.inference_mode()
    def _record(self):
        """Warm up (compiling, if asked) on a side stream, then record one step. The warm-up steps write
        garbage into slots 0..2; prefill overwrites them, and `pos` is reset."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.pos.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body()
        self.pos.zero_()
        return graph

    # ------------------------------------------------------------------------------------ the API
    def _room(self, t: int) -> None:
        if self.n + t > self.L:
            raise ValueError(f"FastDecoder full: {self.n} tokens + {t} new > max_len {self.L}")
        self.n += t

    def reset(self) -> None:
        """Start a new sequence (the cache memory and the captured graph are kept)."""
        with torch.inference_mode():
            self.pos.zero_()
        self.n = 0

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt ids [B, T] (eager: prompt lengths vary); returns the last logits [B, V]."""
        if ids.dim() != 2 or ids.shape[0] != self.B:
            raise ValueError(f"prefill takes ids [B={self.B}, T], got shape {tuple(ids.shape)}")
        self._room(ids.shape[1])
        logits = forward_tokens(self.model, self.arch, ids.to(self.device), self.pos, self.tables, self.weights,
                                self.k, self.v, self.dims, ATTENTION[self.attn], self.plain_layer)  # fmt: skip
        choice = logits.argmax(-1, keepdim=True)  # (B, 1)
        self.tok.copy_(choice)
        self.hist[:, self.pos.view(1)] = choice
        return logits

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one token per row (tokens [B]; None = the greedy choice of the last call) -> logits [B, V].
        With a CUDA graph the returned tensor is the graph's output buffer: read it before the next step."""
        self._room(1)
        if tokens is not None:
            self.tok.copy_(tokens.reshape(self.B, 1))
        if self.graph is not None:
            self.graph.replay()
            return self.logits
        self._body()
        return self.logits


# ------------------------------------------------------------------------------------------ generation
def greedy(decoder: FastDecoder, prompt: torch.Tensor, max_new_tokens: int, chunk: int | None = None) -> Iterator[int]:
    """Greedy tokens after prompt [1, T], yielded one by one. The choices never leave the device between
    steps (each step feeds the last argmax and records it in decoder.hist); the host reads them back in
    chunks of 1, 2, 4, ... up to `chunk` tokens, each chunk only after the next one is queued, so the GPU
    never waits for Python and there is no sync per token. The first token still comes at once.
    chunk=None: 16 on CUDA; 0 (the default on the CPU, where every step finishes before the host goes on):
    no read-ahead, each token is yielded as soon as it exists."""
    if max_new_tokens <= 0:
        return
    decoder.reset()
    decoder.prefill(prompt)
    start, size = prompt.shape[1], 1
    if chunk is None:
        chunk = 16 if decoder.device.type == "cuda" else 0
    if chunk < 1:  # the CPU: nothing runs ahead of the host, so each token is yielded as soon as it exists
        for i in range(max_new_tokens):
            if i > 0:
                decoder.step(None)
            yield int(decoder.hist[0, start + i])
        return
    pending = _read_back(decoder, start, 1)  # token 0 comes from the prefill
    made = 1
    while made < max_new_tokens:
        k = min(size, max_new_tokens - made)
        for _ in range(k):
            decoder.step(None)
        queued = _read_back(decoder, start + made, k)
        yield from _tokens(pending)
        pending, made, size = queued, made + k, min(2 * size, chunk)
    yield from _tokens(pending)


def _read_back(decoder: FastDecoder, first: int, k: int):
    """Start copying hist[0, first:first+k] to the host: (pinned buffer, event) on CUDA; the ids on the CPU."""
    with torch.inference_mode():
        ids = decoder.hist[0, first : first + k]
        if decoder.device.type != "cuda":
            return ids.tolist(), None
        host = torch.empty(k, dtype=torch.long, pin_memory=True)
        host.copy_(ids, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def _tokens(pending) -> list[int]:
    values, event = pending
    if event is None:
        return values
    event.synchronize()
    return values.tolist()


def generate(
    model: torch.nn.Module,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    compile: bool | None = None,
    cuda_graph: bool | None = None,
) -> Iterator[int]:
    """`sampling.generate` on the fast decoder: the same arguments, the same tokens (it uses sampling's own
    next_token_probs and draw). When the prompt plus the new tokens do not fit the model's context, it hands
    over to `sampling.generate`, whose sliding window this static cache does not do."""
    settings = sampling.check_settings(temperature, top_k, top_p)
    max_new_tokens = sampling.check_max_new(max_new_tokens)
    context = context_length(model)
    prompt, _ = sampling.crop_prompt(sampling.prompt_ids(idx), context)
    need = len(prompt) + max_new_tokens - 1  # the last drawn token is never fed back
    if not supports(model) or max_new_tokens == 0 or (context is not None and need > context):
        return sampling.generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator, eos_id)
    return _generate(model, prompt, max_new_tokens, settings, generator, eos_id, need, compile, cuda_graph)


def _generate(model, prompt, max_new_tokens, settings, generator, eos_id, need, compile, cuda_graph):
    with eval_mode(model):
        decoder = FastDecoder(model, max(need, len(prompt)), 1, compile=compile, cuda_graph=cuda_graph)
        ids = torch.tensor([prompt], dtype=torch.long, device=decoder.device)  # (1, T)
        if sampling.is_greedy(settings[0]):
            tokens = greedy(decoder, ids, max_new_tokens)
        else:
            tokens = _sampled(decoder, ids, max_new_tokens, settings, generator)
        for token in tokens:
            yield token
            if token == eos_id:
                return


def _sampled(decoder: FastDecoder, ids, max_new_tokens, settings, generator) -> Iterator[int]:
    logits = decoder.prefill(ids)
    for i in range(max_new_tokens):
        token = sampling.draw(sampling.next_token_probs(logits[0], *settings), generator)
        yield token
        if i < max_new_tokens - 1:
            logits = decoder.step(torch.tensor([token], device=decoder.device))
