"""`python -m playground bench`: the speed figures, each beside a reference measured in the same run.

    python -m playground bench [--device cpu|cuda] [--quick] [--out docs/benchmarks.md]

Machines are noisy, so every row pairs OUR figure with a PEER's figure taken minutes apart in the same
process, and the ratio is what counts (the column "x" is always "how many times better ours is": a
speed ratio for throughputs, the inverse ratio for times).

Rows (see docs/benchmarks.md for a run and what it means):
- train   tokens/s and MFU of a training step (forward, backward, clipping, AdamW) for the course's GPT at
          batch 4 and 64 (context 512) and a GPT-2-small-sized GPT, ours (fused QKV, SDPA, bf16 autocast on
          CUDA, fused AdamW, no host syncs, optionally torch.compile) beside "the course's way": CourseGPT
          below, the notes' model (sections 36-43) with one Head module per head, written-out attention,
          torch.cat of the heads, no fusion, no compile, in the notes' dtype (bf16 weights on CUDA).
          MFU = tokens/s x FLOPs/token / peak, FLOPs/token = 6 N + 12 L T C (PaLM appendix B / nanoGPT),
          N = the parameters that take part in matrix products: every parameter except the token and
          position embedding tables, with the output matrix (lm_head) counted even when it is tied.
          The 12 L T C term counts the full T x T attention matrix although causal kernels skip half.
          The peak is MEASURED here: an 8192^3 bf16 matmul on CUDA, a 2048^3 fp32 matmul on the CPU.
- decode  tokens/s at batch 1, greedy, for a SmolLM2-135M-shaped Llama with random weights: ours (the
          app's eager KV-cache path, sampling.generate; and decode.FastDecoder) beside transformers'
          LlamaForCausalLM.generate on the SAME weights and dtype (dynamic and static cache), and the
          memory-bandwidth limit: bytes of weights read per token / measured copy bandwidth.
- app     (CPU) time to first streamed token and tokens/s of the bundled models (a same-shaped random
          model when a checkpoint is not built yet, labelled so), `python app.py` cold start beside a
          hello-world gradio app, and Tokenize / Cross-entropy response times through gradio_client beside
          that app's echo endpoint.
- burst   (CPU) the Train tab's tiny preset on Austen for 60 s on one torch thread, evaluation included: the
          held-out nats/token the tab shows at the end of the burst (issue 22: < 5.0), beside the tiny preset it
          replaced (a 300-step schedule), run in the same process with the same bound.

Each row runs in its own try/except: a failure is recorded in the table, never ends the run. gradio and
datasets are never imported here (the app rows start servers in subprocesses and use gradio_client).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground import decode, sampling
from playground.course_gpt import CourseGPT
from playground.gpt import GPT, GPTConfig
from playground.gpt import PRESETS as GPT_PRESETS
from playground.llama import Transformer
from playground.server import start_server, stop_server

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ rows
LOWER_IS_BETTER = ("s", "nats/token")  # units whose x is ref / ours


@dataclass
class Row:
    section: str  # "train" | "decode" | "app" | "burst"
    name: str  # what is measured, and how ours runs it
    unit: str  # "tok/s" (higher is better), "s" or "nats/token" (lower is better)
    reference: str  # what the peer is
    ours: float | None = None
    ref: float | None = None
    note: str = ""  # MFU, targets, agreement, which fallback ran
    error: str | None = None  # why the row has no numbers

    @property
    def x(self) -> float | None:
        """How many times better ours is: ours/ref for throughputs, ref/ours for times."""
        if not self.ours or not self.ref:
            return None
        return self.ref / self.ours if self.unit in LOWER_IS_BETTER else self.ours / self.ref

    def to_dict(self) -> dict:
        return {**asdict(self), "x": self.x}


@dataclass
class Bench:
    device: torch.device
    quick: bool = False
    tiny: bool = False  # tiny shapes (tests)
    compile: bool = True
    budget_s: float = 600.0  # after this, remaining optional rows (compiled training) are skipped
    rows: list[Row] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    later: list[Callable[[], object]] = field(default_factory=list)  # rows to run at the very end
    on_row: Callable[[], None] | None = None  # called after every row (the CLI rewrites --out: a run cut
    # short by a timeout still leaves every row measured so far)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def run(self, row: Row, measure: Callable[[Row], None]) -> Row:
        """Fill `row` with measure(row); an exception becomes the row's error, and the run goes on."""
        t = time.perf_counter()
        try:
            measure(row)
        except Exception as err:  # noqa: BLE001 - one broken row must not lose the others
            row.error = f"{type(err).__name__}: {str(err)[:300]}"
            log.warning("bench row %r failed: %s", row.name, row.error)
        self.rows.append(row)
        x = f"{row.x:.2f}x" if row.x else "-"
        log.info("[%6.1fs] %-7s %-58s ours %s  ref %s  %s (%.1fs) %s", self.elapsed(), row.section, row.name,
                 _fmt(row.ours), _fmt(row.ref), x, time.perf_counter() - t, row.error or row.note)  # fmt: skip
        if self.on_row is not None:
            try:
                self.on_row()
            except Exception as err:  # noqa: BLE001 - a failed partial write must not end the run
                log.warning("could not write the partial table: %s", err)
        return row


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "nats/token":  # a loss near its target: three decimals
        return f"{v:.3f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, iters: int, warmup: int = 1) -> float:
    """Seconds per call of fn, after `warmup` calls; one device sync at each end, none inside."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t) / iters


# ---------------------------------------------------------------------------------------- the machine
def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        text = f"{torch.cuda.get_device_name(device)} ({text})"
    return text


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("transformers", "gradio", "gradio_client"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


def matmul_peak(device: torch.device, tiny: bool = False) -> tuple[float, str]:
    """FLOP/s of a large square matmul: 8192^3 bf16 on CUDA, 2048^3 fp32 on the CPU (the best of a few)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048 if not tiny else 512, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    iters = 20 if device.type == "cuda" else 3
    best = min(timed(lambda: a @ b, device, iters, warmup=2) for _ in range(2))
    return 2 * n**3 / best, f"{n}^3 {str(dtype).removeprefix('torch.')} matmul"


def copy_bandwidth(device: torch.device, tiny: bool = False) -> float:
    """Bytes/s moved by a large tensor copy, counting the read and the write (the best of a few)."""
    n = (1 << 28 if device.type == "cuda" else 1 << 26) if not tiny else 1 << 22  # floats: 1 GiB / 256 MiB
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    best = min(timed(lambda: dst.copy_(src), device, 5, warmup=1) for _ in range(3))
    return 2 * n * 4 / best


# --------------------------------------------------------------------------------------------- training
def matmul_params(model: nn.Module) -> int:
    """N of the FLOPs formula: parameters in matrix products (all but the embedding tables; the output
    matrix counts once, even when tied to the token embedding)."""
    cfg = model.config
    total = sum(p.numel() for p in model.parameters())
    tables = cfg.vocab_size * cfg.n_embd + cfg.context_length * cfg.n_embd  # wte + wpe
    tied = getattr(cfg, "tie_weights", False)
    return total - tables + (cfg.vocab_size * cfg.n_embd if tied else 0)


def flops_per_token(model: nn.Module, T: int) -> float:
    cfg = model.config
    return 6 * matmul_params(model) + 12 * cfg.n_layer * T * cfg.n_embd


def _loss(forward, x, y) -> torch.Tensor:
    logits = forward(x)  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def _train_step_fn(model: nn.Module, forward, opt, x, y, autocast_dtype, clip: float = 1.0, loss_fn=None):
    """One optimizer step (the shape of train._train_step): no .item(), so no host sync inside. loss_fn(x, y)
    replaces forward + cross-entropy (e.g. both compiled as one graph, so the loss fuses with the logits)."""

    def step():
        ctx = torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else _null()
        with ctx:
            if loss_fn is not None:
                loss = loss_fn(x, y)
            else:
                logits = forward(x)  # (B, T, V)
        if loss_fn is None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return step


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _ours_optimizer(model: nn.Module):
    from playground.train import TrainConfig, make_optimizer

    return make_optimizer(model, TrainConfig(lr=3e-4, device=str(next(model.parameters()).device)))


def _course_optimizer(model: nn.Module):
    """The notes' section 45: two groups, plain torch.optim.AdamW (not fused), betas (0.9, 0.99)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.99))


def train_cases(bench: Bench) -> list[tuple[str, GPTConfig, int, bool]]:
    """(label, config, batch, with a compiled row) for this device and mode."""
    course, gpt2 = GPT_PRESETS["course"], GPT_PRESETS["gpt2-small"]
    if bench.tiny:
        return [("tiny GPT b2", replace(GPT_PRESETS["tiny"], context_length=32, n_layer=2), 2, False)]
    if bench.cuda:
        return [("course GPT b4 T512", course, 4, False), ("course GPT b64 T512", course, 64, True),
                ("GPT-2-small-sized b16 T1024", gpt2, 16, True)]  # fmt: skip
    cases = [("course GPT b4 T512", course, 4, False)]
    if not bench.quick:
        cases.append(("GPT-2-small-sized b1 T1024", gpt2, 1, False))
    return cases


def train_rows(bench: Bench, peak: float) -> None:
    """Every case's eager row first, then the compiled rows (the optional ones --budget may skip): first
    compile(forward + loss) of each case, then compile(model) of each (measured in earlier runs too)."""
    steps = 2 if not bench.cuda else (5 if bench.quick else 10)
    cases = []
    for label, cfg, batch, with_compile in train_cases(bench):
        case = _train_case(bench, label, cfg, batch, steps, peak)
        if case is not None and with_compile and bench.compile:
            cases.append(case)
    for case, compiled in [(c, "loss") for c in cases] + [(c, "model") for c in cases]:
        _train_row(bench, case, compiled, steps, peak)


_COMPILE_NAMES = {"": "", "model": " + torch.compile", "loss": " + torch.compile(forward + loss)"}


def _train_case(bench: Bench, label: str, cfg: GPTConfig, batch: int, steps: int, peak: float) -> tuple | None:
    """The course's way and our eager row for one config; returns what the compiled rows need (or None)."""
    T = cfg.context_length
    torch.manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, T), device=bench.device)
    y = torch.randint(0, cfg.vocab_size, (batch, T), device=bench.device)
    ref = _measure_course(bench, cfg, x, y, steps)
    if ref.get("error"):
        error_row(bench, "train", f"{label}: course's way", ref["error"])
        return None
    case = (label, cfg, x, y, ref)
    _train_row(bench, case, "", steps, peak)
    return case


def _train_row(bench: Bench, case: tuple, compiled: str, steps: int, peak: float) -> None:
    label, cfg, x, y, ref = case

    def measure(row):
        if compiled and bench.elapsed() > bench.budget_s:
            raise TimeoutError(f"skipped: the run passed its {bench.budget_s:.0f} s budget")
        tps, mfu, how = _measure_ours(bench, cfg, x, y, steps, compiled, peak)
        row.ours, row.ref = tps, ref["tps"]
        row.note = f"ours MFU {mfu:.1%}, course MFU {ref['mfu']:.1%}; ours: {how}"

    bench.run(Row("train", f"{label}: ours{_COMPILE_NAMES[compiled]}", "tok/s", f"course's way ({ref['how']})"),
              measure)  # fmt: skip


def error_row(bench: Bench, section: str, name: str, msg: str) -> None:
    bench.run(Row(section, name, "-", "-"), lambda row: _raise(msg))


def _raise(msg: str):
    raise RuntimeError(msg)


def _measure_course(bench: Bench, cfg: GPTConfig, x, y, steps: int) -> dict:
    try:
        model = CourseGPT(cfg).to(bench.device)
        how = "fp32"
        if bench.cuda:
            model = model.to(torch.bfloat16)  # the notes: model.to(dtype) with dtype = torch.bfloat16
            how = "bf16 weights"
        step = _train_step_fn(model, model, _course_optimizer(model), x, y, None)
        sec = timed(step, bench.device, steps, warmup=1)
        tps = x.numel() / sec
        mfu = tps * flops_per_token(model, cfg.context_length) / bench.meta["peak_flops"]  # same N as ours
        del model, step
        _free(bench)
        return {"tps": tps, "mfu": mfu, "how": f"{how}, separate heads, masked_fill softmax, AdamW"}
    except Exception as err:  # noqa: BLE001
        _free(bench)
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


def _measure_ours(bench: Bench, cfg: GPTConfig, x, y, steps: int, compiled: str, peak: float):
    """compiled: "" (eager), "model" (torch.compile(model)) or "loss" (forward and cross-entropy compiled as
    one function, so the float32 logits never round-trip through memory in separate kernels)."""
    model = GPT(cfg).to(bench.device)
    forward = torch.compile(model) if compiled == "model" else model
    loss_fn = torch.compile(functools.partial(_loss, model)) if compiled == "loss" else None
    dtype = torch.bfloat16 if bench.cuda else None  # autocast on CUDA; fp32 on the CPU (its peak is fp32)
    opt = _ours_optimizer(model)
    step = _train_step_fn(model, forward, opt, x, y, dtype, loss_fn=loss_fn)
    warm = 3 if compiled else 1
    sec = timed(step, bench.device, steps, warmup=warm)
    if bench.cuda and compiled == "loss":  # the fastest variant: where its step time goes
        _profile_train(bench, f"{cfg.n_layer}x{cfg.n_embd} b{x.shape[0]} T{x.shape[1]}", step)
    tps = x.numel() / sec
    mfu = tps * flops_per_token(model, cfg.context_length) / peak
    fused = any(g.get("fused") for g in opt.param_groups)
    from playground.attention import resolve_impl

    q = torch.empty(1, 1, 1, 8, device=bench.device, dtype=dtype or torch.float32)
    how = f"{'bf16 autocast' if dtype else 'fp32'}, fused QKV, {resolve_impl(cfg.attn_impl, q)}, " \
          f"{'fused ' if fused else ''}AdamW, {sec * 1000:.1f} ms/step"  # fmt: skip
    del model, forward, opt, step, loss_fn
    _free(bench)
    return tps, mfu, how


def _kernel_table(prof, rows: int = 15) -> str:
    for key in ("self_device_time_total", "self_cuda_time_total"):  # the name changed across torch versions
        try:
            return prof.key_averages().table(sort_by=key, row_limit=rows)
        except Exception:  # noqa: BLE001, S112 - try the older name
            continue
    return prof.key_averages().table(row_limit=rows)


def _profile_train(bench: Bench, what: str, step: Callable[[], None]) -> None:
    """Top CUDA kernels (by their own time) of 3 training steps, kept in the JSON as meta.train_profile."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            sync(bench.device)
        table = _kernel_table(prof, 20)
    except Exception as err:  # noqa: BLE001
        table = f"profiler failed: {type(err).__name__}: {err}"
    bench.meta.setdefault("train_profile", {})[what] = table
    print(f"\ntraining {what}, compiled forward + loss, 3 steps, top kernels:\n{table}", file=sys.stderr)


def _free(bench: Bench) -> None:
    if bench.cuda:
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------- decoding
def _decode_model(bench: Bench, dtype: torch.dtype):
    from playground.llama import new_llama

    torch.manual_seed(0)
    if bench.tiny:
        return new_llama("tiny", vocab_size=512, n_layers=2).to(dtype), "tiny Llama"
    return new_llama("smollm2-135m").to(dtype), "SmolLM2-135M-shaped Llama"


def _hf_from_ours(model: nn.Module, dtype: torch.dtype, device: torch.device):
    """transformers' LlamaForCausalLM with our weights: saved by checkpoints.save, read by from_pretrained."""
    from transformers import AutoModelForCausalLM

    from playground import checkpoints

    with tempfile.TemporaryDirectory() as folder:
        checkpoints.save(checkpoints.Bundle(model, None, {}), folder)  # no tokenizer: no eos, all N tokens come
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf


def _hf_generate(hf, prompt: torch.Tensor, n: int, static: bool, streamer=None) -> list[int]:
    kw = {"cache_implementation": "static"} if static else {}
    with torch.inference_mode():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, streamer=streamer, **kw)  # fmt: skip
    return out[0, prompt.shape[1] :].tolist()


class _Stamps:
    """A transformers streamer that only notes WHEN each new token reaches the host (put() gets the prompt
    first, then every new token once it is on the host): the same clock as our yielded tokens."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value) -> None:
        if self.prompt_seen:
            self.times.append(time.perf_counter())  # batch 1: one token per put
        self.prompt_seen = True

    def end(self) -> None:
        pass


def _tok_per_s(fn: Callable[[], list[int]], n: int, device: torch.device, reps: int,
               warmup: Callable[[], object] | None = None) -> tuple[float, list[int]]:  # fmt: skip
    """Best of `reps` timed runs after one warm-up (fn itself unless given); prefill included, as a user
    waits for it."""
    tokens = (warmup or fn)()
    best = math.inf
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        tokens = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return n / best, tokens


def _stamped(tokens) -> tuple[list[int], list[float]]:
    """Drain a token iterator, noting when each token arrived on the host."""
    out, times = [], []
    for t in tokens:
        out.append(int(t))
        times.append(time.perf_counter())
    return out, times


def _rates(run: Callable[[], tuple[list[int], list[float]]], n: int, device: torch.device, reps: int,
           warmup: Callable[[], object] | None = None) -> tuple[float, float, list[int]]:  # fmt: skip
    """(steady-state tok/s, end-to-end tok/s, tokens), each the best of `reps` runs after one warm-up.
    run() returns the tokens and the host time at which each arrived. Steady state = tokens n/4+1 .. n over
    the time between token n/4 and token n (no prefill, no first-call costs); end to end = n over the whole
    call, prefill included, as a user waits for it. Both sides of a decode row are measured this way."""
    (warmup or run)()
    k = max(1, n // 4)
    steady = e2e = 0.0
    tokens: list[int] = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        tokens, times = run()
        sync(device)
        e2e = max(e2e, n / (time.perf_counter() - t))
        if len(times) == n and n > k and times[-1] > times[k - 1]:
            steady = max(steady, (n - k) / (times[-1] - times[k - 1]))
    return steady or e2e, e2e, tokens


def _agree(a: list[int], b: list[int]) -> int:
    """Length of the common prefix (greedy decodes of the same weights should agree until a near-tie)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _DecodeCase:
    """One decode comparison: our decoders and transformers' generate on the same weights, prompt and length."""

    bench: Bench
    model: nn.Module
    hf: nn.Module
    prompt: torch.Tensor  # (1, 32)
    n: int
    reps: int
    figures: dict = field(default_factory=dict)  # transformers' figures by cache kind, measured once
    holder: dict = field(default_factory=dict)  # the default FastDecoder, its mode and figures

    def hf_run(self, static: bool) -> tuple[float, float, list[int]]:
        key = "hf-static" if static else "hf-dynamic"
        if key not in self.figures:  # the dynamic cache warms up on a short run (it is slow on a GPU: ~40 tok/s)
            warm = None if static else (lambda: _hf_generate(self.hf, self.prompt, 8, False))

            def run():
                stamps = _Stamps()
                return _hf_generate(self.hf, self.prompt, self.n, static, stamps), stamps.times

            reps = 1 if not static and self.bench.cuda else self.reps
            self.figures[key] = _rates(run, self.n, self.bench.device, reps, warmup=warm)
        return self.figures[key]

    def note(self, ours: tuple, ref: tuple, mode: str = "") -> str:
        n = self.n
        return (f"{mode}tokens agree with transformers for {_agree(ours[2], ref[2])}/{n}; steady state "
                f"(tokens {n // 4 + 1}-{n}); end to end incl. prefill: ours {_fmt(ours[1])}, ref {_fmt(ref[1])} "
                "tok/s")  # fmt: skip

    def fast_rates(self, dec) -> tuple[float, float, list[int]]:
        return _rates(lambda: _stamped(decode.greedy(dec, self.prompt, self.n)), self.n, self.bench.device, self.reps)

    def eager(self, row: Row) -> None:
        ids = self.prompt[0].tolist()
        run = lambda: _stamped(sampling.generate(self.model, ids, self.n, temperature=0))
        ours, ref = _rates(run, self.n, self.bench.device, 1), self.hf_run(False)
        row.ours, row.ref, row.note = ours[0], ref[0], self.note(ours, ref)

    def fast(self, row: Row, static: bool) -> None:
        if "ours" not in self.holder:
            dec = decode.FastDecoder(self.model, 32 + self.n)
            self.holder.update(mode=f"{dec.mode}, {dec.attn} attention", ours=self.fast_rates(dec), dec=dec)
        ours, ref = self.holder["ours"], self.hf_run(static)
        row.ours, row.ref, row.note = ours[0], ref[0], self.note(ours, ref, f"mode {self.holder['mode']}; ")

    def variant(self, row: Row, what: str, **decoder_kw) -> None:
        """A FastDecoder variant (the two-product attention, or layers compiled with max-autotune) against
        transformers' static cache; skipped once the run is past its budget."""
        if self.bench.elapsed() > self.bench.budget_s:
            raise TimeoutError(f"skipped: the run passed its {self.bench.budget_s:.0f} s budget")
        dec = decode.FastDecoder(self.model, 32 + self.n, **decoder_kw)
        ours, ref = self.fast_rates(dec), self.hf_run(True)
        row.ours, row.ref = ours[0], ref[0]
        row.note = self.note(ours, ref, f"mode {dec.mode}{what}, {dec.attn} attention; ")

    def limit(self, row: Row) -> None:
        if "ours" not in self.holder:
            raise RuntimeError("no FastDecoder figure (its row failed)")
        weight_bytes = _bytes_per_token(self.model)
        row.ref = self.bench.meta["copy_bandwidth"] / weight_bytes
        row.ours = self.holder["ours"][0]
        row.note = f"{weight_bytes / 1e6:.0f} MB of weights read per token; ours reaches {row.ours / row.ref:.0%}"


def _decode_case(bench: Bench) -> tuple[_DecodeCase, str] | None:
    dtype = torch.bfloat16 if bench.cuda else torch.float32
    if bench.tiny:  # the tiny Llama's context is 128: prompt 32 + 8 fits on any device
        n = 8
    else:
        n = (128 if bench.quick else 256) if bench.cuda else (16 if bench.quick else 48)
    try:
        model, label = _decode_model(bench, dtype)
        hf = _hf_from_ours(model, dtype, bench.device)
        model = model.to(bench.device).eval()
    except Exception as err:  # noqa: BLE001
        error_row(bench, "decode", "decode setup", f"{type(err).__name__}: {err}")
        return None
    prompt = torch.randint(0, model.config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))
    case = _DecodeCase(bench, model, hf, prompt.to(bench.device), n, reps=2 if bench.cuda else 1)
    return case, f"{label} b1 {str(dtype).removeprefix('torch.')}, prompt 32 + {n} new"


def decode_rows(bench: Bench) -> None:
    made = _decode_case(bench)
    if made is None:
        return
    case, label = made
    static_ref = "transformers generate, static cache"
    bench.run(Row("decode", f"{label}: ours, eager KV cache (sampling.generate)", "tok/s",
                  "transformers generate, dynamic cache"), case.eager)  # fmt: skip
    for static in (False, True):
        ref_name = f"transformers generate, {'static' if static else 'dynamic'} cache"
        bench.run(Row("decode", f"{label}: ours, decode.FastDecoder", "tok/s", ref_name),
                  lambda r, s=static: case.fast(r, s))  # fmt: skip
    if bench.cuda:  # the two-product attention (bf16 products, fp32 softmax): which is faster is measured
        bench.run(Row("decode", f"{label}: ours, decode.FastDecoder(attn='matmul')", "tok/s", static_ref),
                  lambda r: case.variant(r, "", attn="matmul"))  # fmt: skip
    if bench.cuda and not bench.tiny:  # last row of a CUDA run (its compile may be long): run by run_bench
        name = f"{label}: ours, decode.FastDecoder, layers compiled with max-autotune"
        autotuned = lambda r: case.variant(r, " (max-autotune)", compile_mode="max-autotune-no-cudagraphs")
        bench.later.append(lambda: bench.run(Row("decode", name, "tok/s", static_ref), autotuned))
    bench.run(Row("decode", f"{label}: ours, decode.FastDecoder", "tok/s",
                  "memory-bandwidth limit (weight bytes/token / copy bandwidth)"), case.limit)  # fmt: skip
    if bench.cuda and "dec" in case.holder:
        _profile_decode(bench, case.holder["dec"])


def _bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights a decode step reads: every parameter but the embedding table (one row of it is read),
    with the output matrix read in full even when tied to the embedding."""
    c = model.config
    emb = model.tok_embeddings.weight
    total = sum(p.numel() * p.element_size() for p in model.parameters()) - emb.numel() * emb.element_size()
    if c.tie_word_embeddings:
        total += emb.numel() * emb.element_size()
    return total


def _profile_decode(bench: Bench, dec) -> None:
    """Top CUDA kernels of 20 fast decode steps (printed and kept in the JSON, to explain a gap)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        dec.reset()
        dec.prefill(torch.zeros(1, 8, dtype=torch.long, device=bench.device))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                dec.step(None)
            sync(bench.device)
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)
        bench.meta["decode_profile"] = table
        print("\nfast decode, 20 steps, top kernels:\n" + table, file=sys.stderr)
    except Exception as err:  # noqa: BLE001
        bench.meta["decode_profile"] = f"profiler failed: {type(err).__name__}: {err}"


# ------------------------------------------------------------------------------------------ CPU burst
BURST_SECONDS, BURST_TARGET = 60.0, 5.0  # issue 22: held-out < 5.0 nats/token within 60 s on one CPU thread


def _burst(recipe: dict, seconds: float, d, tokenizer, full_tokens: int | None = None) -> dict:
    """One burst of the Train tab on one torch thread: its model (seed 0, as `train_tab._build`), its config
    (`train.TAB_BURST`: an evaluation every 25 steps, 2 batches per split, a sample) bounded by `seconds`,
    evaluation included. `val` is the last held-out figure exactly as the tab shows it; `full` scores the
    whole held-out split (evaluate.heldout_loss) as a check on those two batches."""
    from playground import evaluate, train

    cfg = train.TrainConfig(**{**recipe["train"], **train.TAB_BURST, "max_seconds": seconds})
    torch.manual_seed(0)  # the same knobs give the same starting weights (train_tab._build)
    model = GPT(train.model_config("gpt", "tiny", tokenizer.vocab_size, **recipe["model"]))
    t0, cpu0 = time.perf_counter(), time.process_time()
    train.evaluate(model, d, cfg)  # the step-0 point the tab draws before the burst
    val = last = None
    for last in train.train_steps(model, d, cfg):
        val = last.val_loss if last.val_loss is not None else val  # a step cut by the bound has no evaluation
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0  # cpu < wall: the core was shared
    full = evaluate.heldout_loss(model, d.split("val"), model.config.context_length, max_tokens=full_tokens)
    return {"val": val, "full": full["val_loss"], "steps": last.step, "of": cfg.steps, "wall": wall, "cpu": cpu,
            "tok_s": last.tokens_seen / wall, "recent_tok_s": last.tokens_per_s}  # fmt: skip


def burst_rows(bench: Bench) -> None:
    """The Train tab's "tiny, 1 minute" preset on Austen for BURST_SECONDS (the whole schedule if it ends first),
    beside the tiny preset (its 300-step schedule, the one issue 22 measured at 5.34), in the same run: the held-out
    figure the tab shows at the end of the burst."""
    from playground import data, train
    from playground.tokenizer import load_tokenizer

    seconds = 3.0 if bench.tiny else BURST_SECONDS
    old = {"model": train.RECIPES["tiny"]["model"], "train": train.RECIPES["tiny"]["train"]}
    new = {"model": old["model"], "train": {**old["train"], **train.TINY_MINUTE}}
    if bench.tiny:  # the smoke test: a few steps of each
        new, old = ({**r, "train": {**r["train"], "steps": 4, "warmup_steps": 1}} for r in (new, old))

    def measure(row):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the app trains (device.configure_threads)
        try:
            tokenizer = load_tokenizer("bundled")
            d = data.corpus_data("austen", tokenizer)
            full_tokens = 2048 if bench.tiny else None
            ref = _burst(old, seconds, d, tokenizer, full_tokens)  # first: it also warms PyTorch up
            ours = _burst(new, seconds, d, tokenizer, full_tokens)
        finally:
            torch.set_num_threads(threads)
        row.ours, row.ref = ours["val"], ref["val"]
        met = "met" if ours["val"] < BURST_TARGET else "NOT met"
        row.note = (f"target < {BURST_TARGET} ({met}); ours {ours['steps']}/{ours['of']} steps in {ours['wall']:.1f} s "
                    f"wall, {ours['cpu']:.1f} s CPU ({ours['tok_s']:,.0f} tok/s over the burst, evaluation included; "
                    f"{ours['recent_tok_s']:,.0f} over its last 20 steps), whole held-out split {ours['full']:.3f}; "
                    f"ref {ref['steps']}/{ref['of']} steps in {ref['wall']:.1f} s wall, {ref['cpu']:.1f} s CPU, whole "
                    f"split {ref['full']:.3f}; 1-minute load average {os.getloadavg()[0]:.1f} (2 cores)")  # fmt: skip

    name = f"CPU burst: 'tiny, 1 minute' preset, Austen, {seconds:.0f} s, 1 thread -> held-out nats/token"
    bench.run(Row("burst", name, "nats/token", "the tiny preset (300-step schedule)"), measure)


# ------------------------------------------------------------------------------------ bundled models
def _bundled(name: str, info: dict):
    """(model, tokenizer or None, label): the checkpoint if built, else a same-shaped random model."""
    from playground import checkpoints
    from playground.gpt import new_gpt
    from playground.llama import new_llama

    if Path(info["folder"]).is_dir():
        b = checkpoints.load(name)
        return b.model.eval(), b.tokenizer, name
    torch.manual_seed(0)
    model = new_llama("base") if info["arch"] == "llama" else new_gpt("tiny")
    return model.eval(), None, f"{name} (not built yet: random weights, same shape)"


def _course_generate(model: nn.Module, ids: list[int], n: int) -> list[int]:
    """The notes' generate (section 43): the whole window recomputed for every token, input[:, -context:]."""
    ctx = model.config.context_length
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            logits = model(x[:, -ctx:])[:, -1]
            x = torch.cat([x, logits.argmax(-1, keepdim=True)], dim=1)  # greedy, to compare like with like
    return x[0, len(ids) :].tolist()


def bundled_rows(bench: Bench) -> None:
    from playground import checkpoints

    n = 8 if bench.tiny else 32
    names = list(checkpoints.BUNDLED)[:1] if bench.tiny else list(checkpoints.BUNDLED)
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    for name in names:
        try:
            model, tok, label = _bundled(name, checkpoints.BUNDLED[name])
        except Exception as err:  # noqa: BLE001
            error_row(bench, "app", f"{name}: load", f"{type(err).__name__}: {err}")
            continue
        ids = tok.encode(text) if tok is not None else list(range(5, 25))
        _bundled_case(bench, model.float(), label, ids, n)  # the CPU rows compare float32 with float32


def _bundled_case(bench: Bench, model: nn.Module, label: str, ids: list[int], n: int) -> None:
    hf = _hf_from_ours(model, torch.float32, torch.device("cpu")) if isinstance(model, Transformer) else None
    prompt = torch.tensor([ids])
    ref_name = "transformers generate (dynamic cache)" if hf is not None else "the course's generate (recompute)"

    def ref_gen(k: int) -> list[int]:
        return _hf_generate(hf, prompt, k, False) if hf is not None else _course_generate(model, ids, k)

    def first(row):
        row.ours = timed(lambda: next(iter(sampling.generate(model, ids, n, temperature=0))), bench.device, 3)
        row.ref = timed(lambda: ref_gen(1), bench.device, 3)
        row.note = "target < 0.5 s on the 2-core CPU"

    def rate(row, fast: bool):
        gen = decode.generate if fast else sampling.generate
        row.ours, toks = _tok_per_s(lambda: list(gen(model, ids, n, temperature=0)), n, bench.device, 1)
        row.ref, ref_toks = _tok_per_s(lambda: ref_gen(n), n, bench.device, 1)
        row.note = f"{n} tokens; agree with the reference for {_agree(toks, ref_toks)}/{n}"

    bench.run(Row("app", f"{label}: first token (sampling.generate)", "s", ref_name), first)
    bench.run(Row("app", f"{label}: tok/s (sampling.generate)", "tok/s", ref_name), lambda r: rate(r, False))
    bench.run(Row("app", f"{label}: tok/s (decode.generate)", "tok/s", ref_name), lambda r: rate(r, True))


# ------------------------------------------------------------------------------------------- the app
HELLO_APP = """
import gradio as gr
with gr.Blocks() as demo:
    t, o = gr.Textbox(), gr.Textbox()
    gr.Button().click(lambda s: s, t, o, api_name="echo")
demo.launch()
"""


def _median_call(fn: Callable[[], object], n: int) -> float:
    fn()  # the first call warms the session (and loads a model into the app's cache)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _ce_source(folder: Path) -> str:
    """The bundled "gpt-tiny" if built; else a tiny random GPT with the bundled tokenizer, saved to `folder`."""
    from playground import CHECKPOINTS, checkpoints
    from playground import tokenizer as tk
    from playground.gpt import new_gpt

    if (CHECKPOINTS / "gpt-tiny").is_dir():
        return "gpt-tiny"
    tok = tk.load_tokenizer("bundled")
    torch.manual_seed(0)
    model = new_gpt("tiny", vocab_size=tok.vocab_size)
    checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "gpt", "source": "bench"}), folder)
    return str(folder)


def app_rows(bench: Bench) -> None:
    procs: list[subprocess.Popen] = []
    try:
        hello, hello_url, hello_s = start_server(["-c", HELLO_APP])
        procs.append(hello)
        app, app_url, app_s = start_server(["app.py"])
        procs.append(app)

        def cold(row):
            row.ours, row.ref, row.note = app_s, hello_s, "python app.py to the first HTTP 200; target < 10 s"

        bench.run(Row("app", "cold start", "s", "hello-world gradio Blocks app"), cold)
        _client_rows(bench, app_url, hello_url)
    except Exception as err:  # noqa: BLE001
        error_row(bench, "app", "app server", f"{type(err).__name__}: {err}")
    finally:
        for p in procs:
            stop_server(p)


def _client_rows(bench: Bench, app_url: str, hello_url: str) -> None:
    import contextlib
    import io

    from gradio_client import Client

    with contextlib.redirect_stdout(io.StringIO()):  # gradio_client prints "Loaded as API" banners
        app, hello = Client(app_url), Client(hello_url)
    echo = _median_call(lambda: hello.predict("hello", api_name="/echo"), 5)
    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife. ") * 8  # fmt: skip

    def tokenize(row):
        row.ours = _median_call(lambda: app.predict(text, "bundled BPE 4096", "(none)", api_name="/tokenize"), 5)
        row.ref, row.note = echo, f"{len(text)} characters, bundled tokenizer; median of 5"

    def ce(row):
        with tempfile.TemporaryDirectory() as folder:
            source = _ce_source(Path(folder) / "gpt")
            row.ours = _median_call(lambda: app.predict(source, text, api_name="/ce_score"), 5)
        row.ref, row.note = echo, f"model {Path(source).name}, {len(text)} characters; median of 5"

    bench.run(Row("app", "Tokenize response (/tokenize)", "s", "echo endpoint of the hello-world app"), tokenize)
    bench.run(Row("app", "Cross-entropy response (/ce_score)", "s", "echo endpoint of the hello-world app"), ce)


# ------------------------------------------------------------------------------------------- output
HEADER = ("section", "what (ours)", "ours", "reference", "ref", "x", "notes")


def table_lines(rows: list[Row]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        unit = f" {r.unit}"
        x = f"{r.x:.2f}x" if r.x else "-"
        notes = (f"ERROR {r.error}" if r.error else r.note).replace("|", "/")
        cells = [r.section, r.name, _fmt(r.ours, r.unit) + unit if r.ours else "-", r.reference,
                 _fmt(r.ref, r.unit) + unit if r.ref else "-", x, notes]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(bench: Bench) -> str:
    m = bench.meta
    head = [
        f"### `{m['command']}`",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['machine']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- measured peaks: {m['peak_flops'] / 1e12:.2f} TFLOP/s ({m['peak_how']}), "
        f"copy bandwidth {m['copy_bandwidth'] / 1e9:.1f} GB/s (read + write)",
        f"- wall time: {m['wall_s']:.0f} s. `x` = how many times better ours is (speed ratio; time ratio for `s`, "
        "loss ratio for `nats/token`).",
        "",
    ]
    return "\n".join(head + table_lines(bench.rows)) + "\n"


def write_outputs(bench: Bench, out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(bench)
    js = out.with_suffix(".json")
    js.write_text(json.dumps({"meta": bench.meta, "rows": [r.to_dict() for r in bench.rows]}, indent=2) + "\n")
    if out.exists() and "<!-- bench:" in out.read_text(encoding="utf-8"):
        md = _replace_section(out.read_text(encoding="utf-8"), bench.device.type, md)
    out.write_text(md, encoding="utf-8")
    return out, js


def _replace_section(doc: str, kind: str, md: str) -> str:
    """docs/benchmarks.md keeps prose around generated tables between <!-- bench:cpu --> markers."""
    start, end = f"<!-- bench:{kind} -->", f"<!-- /bench:{kind} -->"
    if start in doc and end in doc:
        before, rest = doc.split(start, 1)
        return before + start + "\n" + md + rest[rest.index(end) :]
    return doc.rstrip() + f"\n\n{start}\n{md}{end}\n"


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m playground bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    p.add_argument("--quick", action="store_true", help="small step and token counts (CPU: ~2 min + 80 s of burst)")
    p.add_argument("--out", default=None, help="Markdown file to write (JSON beside it); default: print only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile training rows")
    p.add_argument("--budget", type=float, default=200.0, help="seconds after which optional rows are skipped")
    p.add_argument("--only", default="train,decode,app,burst", help="sections to run, comma-separated")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny shapes for the smoke test
    return p.parse_args(argv)


def run_bench(args: argparse.Namespace, command: str, on_row: Callable[[Bench], None] | None = None) -> Bench:
    from playground.device import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    bench = Bench(device, quick=args.quick, tiny=args.tiny, compile=not args.no_compile, budget_s=args.budget)
    only = set(args.only.split(","))
    peak, how = matmul_peak(device, args.tiny)
    bench.meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(device),
        "versions": versions(),
        "device": device.type,
        "peak_flops": peak,
        "peak_how": how,
        "copy_bandwidth": copy_bandwidth(device, args.tiny),
        "torch_threads": torch.get_num_threads(),
    }
    log.info("peak %.2f TFLOP/s (%s), copy %.1f GB/s", peak / 1e12, how, bench.meta["copy_bandwidth"] / 1e9)
    if on_row is not None:
        bench.on_row = lambda: on_row(bench)
    # decoding first: its rows are never skipped, while the optional compiled training rows at the end are
    # skipped once the run passes --budget
    if "decode" in only:
        decode_rows(bench)
    if "train" in only:
        train_rows(bench, peak)
    for row in bench.later:  # optional rows with long compiles: a timeout there loses nothing else
        row()
    if "app" in only and device.type == "cpu":
        bundled_rows(bench)
        if not args.tiny:
            app_rows(bench)
    if "burst" in only and device.type == "cpu":
        burst_rows(bench)
    bench.meta["wall_s"] = bench.elapsed()
    return bench


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    command = "python -m playground bench " + " ".join(shlex.quote(a) for a in (argv or []))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    partial = None
    if args.out:

        def partial(b: Bench) -> None:
            b.meta["wall_s"] = b.elapsed()
            write_outputs(b, Path(args.out))

    bench = run_bench(args, command.strip(), partial)
    print(markdown(bench))
    if args.out:
        md, js = write_outputs(bench, Path(args.out))
        log.info("wrote %s and %s", md, js)
    return 0
