"""`python -m playground pretrain`: the training loop of train.py from the command line, as nanoGPT keeps its
`train.py` apart from `model.py`: a progress bar, periodic evaluation and samples, checkpoints (`--save-every`),
`--resume`, bf16 autocast, torch.compile, and torchrun/DDP (only rank 0 prints and writes). Each run folder gets
the checkpoint, `train_log.json` (the command, the curves, the throughput) and a model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from playground import device as devices
from playground import distributed
from playground.checkpoints import atomic_write
from playground.data import TokenData
from playground.models import require_context
from playground.train import (
    RECIPES,
    SHAPE_FIELDS,
    StepLog,
    TrainConfig,
    TrainState,
    build_model,
    estimate_loss,
    load_run,
    new_state,
    save_run,
    train_steps,
)

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from playground.corpus import corpus_names

    p = argparse.ArgumentParser(
        prog="python -m playground pretrain",
        description="Pretrain a GPT or Llama on a shipped corpus with the bundled tokenizer (the Train tab's loop).",
    )
    p.add_argument("--arch", choices=["gpt", "llama"], default="gpt", help="model family")
    p.add_argument("--preset", default="tiny", help="model preset (gpt: tiny, small, course, gpt2-small)")
    for flag, kind, what in (
        ("--n-layer", int, "transformer blocks"),
        ("--n-head", int, "attention heads"),
        ("--n-embd", int, "embedding width"),
        ("--context", int, "context length (tokens per window)"),
        ("--dropout", float, "dropout probability"),
    ):
        p.add_argument(flag, type=kind, help=f"override the preset's {what}")
    p.add_argument("--corpus", choices=corpus_names(), default="austen", help="training text")
    p.add_argument("--steps", type=int, help="total optimizer steps of the run (the LR schedule's length)")
    p.add_argument("--max-seconds", type=float, help="stop after this many seconds (evaluation included)")
    p.add_argument("--batch-size", type=int, help="windows per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--min-lr", type=float, help="final learning rate (default lr/10)")
    p.add_argument("--warmup", type=int, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay on matrices")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    p.add_argument("--eval-interval", type=int, help="evaluate every N steps (and at the end)")
    p.add_argument("--eval-iters", type=int, help="batches per split per evaluation")
    p.add_argument("--final-eval-iters", type=int, default=50, help="batches per split for the final figures")
    p.add_argument("--log-interval", type=int, help="read the loss back every N steps (1 on CPU, 10+ on GPU)")
    p.add_argument("--sample-prompt", help="prompt sampled at each evaluation")
    p.add_argument("--sample-tokens", type=int, help="tokens sampled at each evaluation (0: none)")
    p.add_argument("--out", help="run folder (model, optimizer state, train_log.json); default runs/<arch>-<preset>")
    p.add_argument("--save-every", type=int, default=0, help="also save the run every N steps (0: only at the end)")
    p.add_argument("--resume", help="continue the run saved in this folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="float32", help="autocast dtype: float32, bf16/bfloat16 (GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--seed", type=int, help="seed for weights, batches and dropout")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is faster on a busy shared CPU)")
    return p


_CONFIG_FLAGS = {  # CLI flag -> TrainConfig field
    "steps": "steps",
    "max_seconds": "max_seconds",
    "batch_size": "batch_size",
    "lr": "lr",
    "min_lr": "min_lr",
    "warmup": "warmup_steps",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "eval_interval": "eval_interval",
    "eval_iters": "eval_iters",
    "log_interval": "log_interval",
    "sample_prompt": "sample_prompt",
    "sample_tokens": "sample_tokens",
    "seed": "seed",
    "device": "device",
}


def _config_from_args(args, base: dict) -> TrainConfig:
    values = dict(base)
    for flag, name in _CONFIG_FLAGS.items():
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    values["dtype"] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(args.dtype, args.dtype)
    values["compile"] = bool(args.compile)
    return TrainConfig(**values)


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    command = "python -m playground pretrain " + shlex.join(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.pick_device(None if args.device == "auto" else args.device)
    ctx = distributed.setup(device)  # under torchrun: cuda:LOCAL_RANK with NCCL, or the CPU with gloo
    try:
        return _pretrain(args, command, ctx)
    finally:
        distributed.teardown()


def _pretrain(args, command: str, ctx: distributed.Dist) -> int:
    """The pretrain command on this rank (one process: ctx.world_size == 1). Every rank builds or loads the same
    model (same seed, same run folder); rank 0 alone reports and writes (_Reporter)."""
    device = ctx.device
    if args.resume:
        bundle, state, saved = load_run(args.resume, device)
        model, tokenizer = bundle.model, bundle.tokenizer
        arch, preset = bundle.info.get("arch", args.arch), bundle.info.get("preset", args.preset)
        cfg = _config_from_args(args, {**saved.to_dict(), "max_seconds": None})
    else:
        from playground.tokenizer import load_tokenizer

        tokenizer = load_tokenizer("bundled")
        arch, preset = args.arch, args.preset
        cfg = _config_from_args(args, RECIPES.get(preset, {}).get("train", {}))
        torch.manual_seed(cfg.seed)  # the initial weights
        shape = {k: getattr(args, k, None) for k in SHAPE_FIELDS}
        model = build_model(arch, preset, tokenizer.vocab_size, **shape).to(device)
        state = new_state(model, cfg)
    from playground.data import corpus_data

    distributed.check_divisible(cfg.batch_size, ctx.world_size)  # --batch-size is the global batch
    with distributed.main_first():  # rank 0 encodes the corpus into the disk cache, the others read it
        data = corpus_data(args.corpus, tokenizer)
    out = Path(args.out or f"runs/{arch}-{preset}")
    reporter = _Reporter(out, command, model, data, cfg, arch, preset, args.corpus, device)
    if ctx.enabled:
        reporter.meta["processes"] = f"{ctx.world_size} ({ctx.backend}, DDP)"
    reporter.start(state)
    trained = distributed.wrap(model, ctx)  # DDP under torchrun; the reporter evaluates and saves the plain model
    try:
        for record in train_steps(trained, data, cfg, state):
            reporter.step(record)
            if args.save_every and record.step % args.save_every == 0 and not record.last:
                reporter.save(model, tokenizer, state)
    except KeyboardInterrupt:
        log.warning("interrupted at step %d: saving the run so that --resume continues it", state.step)
    reporter.finish(model, tokenizer, state, args.final_eval_iters)
    return 0


class _Reporter:
    """Everything the CLI prints or writes, in one place, and only on rank 0 (so torchrun/DDP can be added
    by wrapping the model and sharding the batches, without touching this)."""

    def __init__(self, out: Path, command: str, model, data: TokenData, cfg: TrainConfig, arch, preset, corpus, device):
        self.main = distributed.rank() == 0
        self.out, self.command, self.cfg, self.data = out, command, cfg, data
        self.meta = {"arch": arch, "preset": preset, "corpus": corpus, "device": devices.describe(device)}
        self.meta["params"] = sum(p.numel() for p in model.parameters())
        self.meta["model_config"] = asdict(model.config)
        self.history: dict[str, list] = {"losses": [], "evals": [], "rates": []}  # rates: [step, recent tok/s]
        self.bar = None
        self.t0 = time.perf_counter()

    def start(self, state: TrainState) -> None:
        if not self.main:
            return
        from tqdm import tqdm

        previous = self.out / "train_log.json"
        if state.step > 0 and previous.exists():  # a resumed run keeps the curves it already drew
            old = json.loads(previous.read_text(encoding="utf-8"))
            self.history = {k: [r for r in old.get(k, []) if _step_of(r) <= state.step] for k in self.history}
        log.info("command: %s", self.command)
        log.info(
            "%s %s: %.2fM parameters on %s; %s: %s train + %s val tokens",
            self.meta["arch"],
            self.meta["preset"],
            self.meta["params"] / 1e6,
            self.meta["device"],
            self.data.source,
            f"{len(self.data.train):,}",
            f"{len(self.data.val):,}",
        )
        self.bar = tqdm(
            total=self.cfg.steps, initial=state.step, unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=2.0
        )

    def step(self, r: StepLog) -> None:
        if not self.main:
            return
        self.bar.update(1)
        if r.loss is not None:
            self.history["losses"].append([r.step, round(r.loss, 5), r.lr])
            self.history["rates"].append([r.step, round(r.tokens_per_s)])
            self.bar.set_postfix(loss=f"{r.loss:.3f}", lr=f"{r.lr:.2e}", tok_s=f"{r.tokens_per_s:,.0f}")
        if r.val_loss is not None:
            self.history["evals"].append(
                {
                    "step": r.step,
                    "train_loss": r.train_loss,
                    "val_loss": r.val_loss,
                    "tokens_seen": r.tokens_seen,
                    "elapsed": round(time.perf_counter() - self.t0, 2),
                    "sample": r.sample,
                }
            )
            self.bar.write(f"step {r.step}: train {r.train_loss:.3f}, val {r.val_loss:.3f} nats/token")
            if r.sample:
                self.bar.write(f"  sample: {r.sample!r}")

    def save(self, model, tokenizer, state: TrainState, final: dict | None = None) -> None:
        if not self.main:
            return
        info = {k: v for k, v in self.meta.items() if k != "model_config"}
        save_run(self.out, model, tokenizer, state, self.cfg, info={**info, **(final or {})})
        record = {
            "command": self.command,
            **self.meta,
            "train_config": self.cfg.to_dict(),
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "train_seconds": round(state.train_seconds, 2),
            "train_tokens": len(self.data.train),
            "val_tokens": len(self.data.val),
            "final": final,
            **self.history,
        }
        text = json.dumps(record, indent=1)
        atomic_write(self.out / "train_log.json", lambda p: Path(p).write_text(text, encoding="utf-8"))
        card = model_card(record)
        atomic_write(self.out / "README.md", lambda p: Path(p).write_text(card, encoding="utf-8"))
        log.info("saved the run at step %d to %s", state.step, self.out)

    def finish(self, model, tokenizer, state: TrainState, final_iters: int) -> None:
        if not self.main:
            return
        self.bar.close()
        final = {}
        if final_iters > 0:
            context = require_context(model)
            final = estimate_loss(model, self.data, self.cfg.batch_size, context, final_iters, self.cfg.seed + 3)
            final = {
                "train_loss": round(final["train"], 4),
                "val_loss": round(final["val"], 4),
                "eval_tokens": final_iters * self.cfg.batch_size * context,
            }
            log.info(
                "final: train %.3f, val %.3f nats/token over %d windows per split",
                final["train_loss"],
                final["val_loss"],
                final_iters * self.cfg.batch_size,
            )
        self.save(model, tokenizer, state, final)
        log.info(
            "%d steps, %.1f s of training, %s tokens seen", state.step, state.train_seconds, f"{state.tokens_seen:,}"
        )


def model_card(record: dict) -> str:
    """A README.md for a run folder: data, shape, steps, losses, samples and the command that made it."""
    final, evals = record.get("final") or {}, record.get("evals") or []
    shape = ", ".join(f"{k}={v}" for k, v in record["model_config"].items())
    lines = [
        f"# {record['arch']} ({record['preset']}) pretrained on {record['corpus']}",
        "",
        f"- parameters: {record['params']:,}; shape: {shape}",
        f"- data: corpus `{record['corpus']}` with the bundled tokenizer: {record['train_tokens']:,} training and "
        f"{record['val_tokens']:,} held-out tokens",
        f"- training: {record['step']:,} steps, {record['tokens_seen']:,} tokens seen, "
        f"{record['train_seconds']:.0f} s on {record['device']}",
    ]
    if final:
        lines.append(
            f"- final loss: train {final['train_loss']:.3f}, validation {final['val_loss']:.3f} nats/token "
            f"({final['eval_tokens']:,} tokens per split)"
        )
    lines += ["", "Made with:", "", "```", record["command"], "```"]
    if evals:
        lines += ["", "| step | train | validation | sample |", "|---:|---:|---:|---|"]
        for e in evals[-8:]:
            sample = (e.get("sample") or "").replace("\n", " ").replace("|", "\\|")[:120]
            lines.append(f"| {e['step']} | {e['train_loss']:.3f} | {e['val_loss']:.3f} | {sample} |")
    return "\n".join(lines) + "\n"


def _step_of(row) -> int:
    return row["step"] if isinstance(row, dict) else row[0]
