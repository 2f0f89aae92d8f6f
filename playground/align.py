"""`python -m playground align`: ORPO on preference pairs from the command line, on one device or under torchrun.

It loads a base checkpoint and the preference data (bundled names, .jsonl files or Hub datasets), filters prompts
by length, tokenizes and splits the pairs (`prepare_data`), trains with `orpo.orpo_train`, evaluates on held-out
pairs before and during training, and writes the aligned checkpoint, `train_log.json` and a model card with
greedy answers to held-out prompts (`sample_answers`). The loss itself and the training loop live in orpo.py.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
import torch.nn as nn

from playground import distributed
from playground.chat import as_messages, prompt_ids
from playground.models import context_length
from playground.orpo import ORPOConfig, evaluate_pairs, orpo_train

log = logging.getLogger(__name__)


def prepare_data(source: str, tokenizer, cfg: ORPOConfig):
    """Load, filter (prompt length), tokenize and split the preference data: (train rows, validation rows)."""
    from playground import data

    pairs = data.load_preferences(source, seed=cfg.seed)
    kept = data.filter_by_prompt_length(pairs, tokenizer, cfg.prompt_max_tokens)
    log.info(
        "preference pairs: %d loaded, %d with prompts under %d tokens", len(pairs), len(kept), cfg.prompt_max_tokens
    )
    if len(kept) < 2:
        raise ValueError(
            f"only {len(kept)} of {len(pairs)} pairs have prompts under {cfg.prompt_max_tokens} tokens: "
            "raise --prompt-max-tokens (and --max-len) or use shorter prompts"
        )
    train_rows, val_rows = data.split_preferences(kept, cfg.val_fraction, seed=cfg.seed)
    return data.tokenize_preferences(train_rows, tokenizer, cfg.max_len), data.tokenize_preferences(
        val_rows, tokenizer, cfg.max_len
    )


def build_parser() -> argparse.ArgumentParser:
    d = ORPOConfig()
    p = argparse.ArgumentParser(
        prog="python -m playground align",
        description=(
            "Align a checkpoint with ORPO on preference pairs (L = NLL(chosen) + lam * L_OR). Writes a checkpoint, "
            "train_log.json and a model card to --out."
        ),
    )
    p.add_argument("--base", required=True, help="checkpoint to align: bundled name, folder, or Hub id")
    p.add_argument(
        "--data",
        default="chatterbot,choices",
        help="preference data: bundled names (chatterbot, bigbench), .jsonl files, Hub ids; comma-separated",
    )
    p.add_argument("--out", required=True, help="folder for the aligned checkpoint")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (warmup, then cosine to lr/10)")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help="end of the cosine (default lr/10)")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warmup steps")
    p.add_argument("--lam", type=float, default=d.lam, help="weight of the odds-ratio loss (course 0.5, TRL 0.1)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0 = off)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay on matrices")
    p.add_argument("--max-len", type=int, default=d.max_len, help="tokens per prompt + reply (<= model context)")
    p.add_argument("--prompt-max-tokens", type=int, default=d.prompt_max_tokens, help="drop pairs with longer prompts")
    p.add_argument("--eval-interval", type=int, default=d.eval_interval, help="evaluate every this many steps")
    p.add_argument("--eval-pairs", type=int, default=d.eval_pairs, help="held-out pairs per evaluation")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of prompts held out")
    p.add_argument("--save-every", type=int, default=0, help="also save the checkpoint every this many steps")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for data order, split and init")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default=d.dtype, help="autocast dtype: float32, bfloat16, float16")
    return p


def cli(argv: list[str] | None = None) -> int:
    from playground import device as devices

    args = build_parser().parse_args(argv)
    cfg = ORPOConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup,
        lam=args.lam,
        grad_clip=args.grad_clip,
        weight_decay=args.weight_decay,
        max_len=args.max_len,
        prompt_max_tokens=args.prompt_max_tokens,
        eval_interval=args.eval_interval,
        eval_pairs=args.eval_pairs,
        val_fraction=args.val_fraction,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
    )
    dev = devices.pick_device(None if cfg.device == "auto" else cfg.device)
    group = distributed.setup(dev)  # under torchrun: cuda:LOCAL_RANK with NCCL, or the CPU with gloo
    try:
        return _align(args, cfg, group)
    finally:
        distributed.teardown()


def _align(args, cfg: ORPOConfig, group) -> int:
    """The align command on this rank (alone: group.world_size == 1). Every rank loads the same base and data and
    trains its DDP replica; rank 0 alone evaluates, logs, samples and writes."""
    from tqdm import tqdm

    from playground import checkpoints
    from playground import device as devices

    dev, main = group.device, group.main
    devices.seed_everything(cfg.seed)
    # float32 master weights whatever the file stores (bundled files are float16): autocast does the bf16 part
    bundle = checkpoints.load(args.base, device=str(dev), dtype=torch.float32)
    model, tokenizer = bundle.model, bundle.tokenizer
    ctx = context_length(model)
    if ctx is not None and cfg.max_len > ctx:
        raise SystemExit(f"--max-len {cfg.max_len} is longer than the model's context ({ctx})")
    distributed.check_divisible(cfg.batch_size, group.world_size)  # --batch-size is the global batch
    with distributed.main_first():
        train_rows, val_rows = prepare_data(args.data, tokenizer, cfg)
    log.info(
        "ORPO on %s: %d train / %d held-out pairs, %d steps of %d pairs, device %s, dtype %s",
        args.base,
        len(train_rows),
        len(val_rows),
        cfg.steps,
        cfg.batch_size,
        devices.describe(dev),
        cfg.dtype,
    )
    out = Path(args.out)
    before = (
        evaluate_pairs(model, val_rows, tokenizer.pad_id, cfg.lam, cfg.batch_size, cfg.eval_pairs, cfg.dtype)
        if main
        else {}
    )
    log.info("before: %s", _fmt(before))
    records = []
    steps = orpo_train(distributed.wrap(model, group), train_rows, val_rows, cfg, tokenizer.pad_id)
    bar = tqdm(steps, total=cfg.steps, dynamic_ncols=True, disable=not main)
    for rec in bar:
        records.append(rec.to_dict())
        bar.set_postfix(loss=f"{rec.loss:.3f}", log_or=f"{rec.log_odds_ratio:.2f}", lr=f"{rec.lr:.1e}")
        if rec.val:
            log.info("step %d: val %s", rec.step, _fmt(rec.val))
        if main and args.save_every and rec.step % args.save_every == 0 and rec.step < cfg.steps:
            _save(checkpoints, bundle, out, args, cfg, before, records)
    if not main:  # rank 0 alone writes the checkpoint, samples and the card
        return 0
    _save(checkpoints, bundle, out, args, cfg, before, records)
    prompts = list({_prompt_text(p): p for p in val_rows["prompt"]}.values())[:16]  # distinct held-out prompts
    samples = sample_answers(model, tokenizer, prompts)
    log.info(
        "held-out prompts answered and stopped (eos) within %d tokens: %d / %d",
        SAMPLE_TOKENS,
        sum(s["stopped"] for s in samples),
        len(samples),
    )
    write_model_card(out, args, cfg, before, records, samples)
    log.info("saved the aligned model to %s", out)
    return 0


SAMPLE_TOKENS = 64


def _prompt_text(prompt) -> str:
    return json.dumps(as_messages(prompt), sort_keys=True)


@torch.no_grad()
def sample_answers(model: nn.Module, tokenizer, prompts: list, max_new_tokens: int = SAMPLE_TOKENS) -> list[dict]:
    """Greedy answers to chat prompts: {prompt, answer, stopped}; stopped = the model ended its turn with eos.
    An aligned model should answer and stop; a base model tends to run on to the token limit."""
    from playground.sampling import generate

    out = []
    for prompt in prompts:
        ids = prompt_ids(tokenizer, prompt)
        new = list(generate(model, ids, max_new_tokens, temperature=0.0, eos_id=tokenizer.eos_id))
        stopped = bool(new) and new[-1] == tokenizer.eos_id
        text = tokenizer.decode(new[:-1] if stopped else new)
        out.append({"prompt": as_messages(prompt)[-1]["content"], "answer": text, "stopped": stopped})
    return out


def write_model_card(out: Path, args, cfg: ORPOConfig, before: dict, records: list[dict], samples: list[dict]) -> Path:
    """README.md beside the weights: what was aligned on what, how, the held-out figures and a few answers."""
    after = next((r["val"] for r in reversed(records) if r.get("val")), {})
    rows = "\n".join(
        f"| {k} | {before.get(k, float('nan')):.4f} | {after.get(k, float('nan')):.4f} |"
        for k in ("loss", "nll", "or_loss", "log_odds_ratio", "chosen_logp", "rejected_logp", "accuracy")
    )
    answers = "\n".join(
        f"- **{s['prompt']}** -> {s['answer'].strip()!r}{'' if s['stopped'] else ' (no eos)'}" for s in samples
    )
    text = f"""# {out.name}: {args.base} aligned with ORPO

ORPO (Hong, Lee & Thorne, EMNLP 2024): L = NLL(chosen reply) + lambda * L_OR, L_OR = -log sigmoid(log odds ratio),
on the average per-token log-prob of each reply (prompt and padding masked out). No reference model.

- base checkpoint: `{args.base}`
- preference data: `{args.data}` (how each source makes its pairs: `playground/data.py`), prompts under
  {cfg.prompt_max_tokens} tokens, {cfg.val_fraction:.0%} of the distinct prompts held out
- steps: {len(records)} of {cfg.batch_size} pairs, lr {cfg.lr} (warmup {cfg.warmup_steps}, cosine to
  {cfg.min_lr if cfg.min_lr is not None else cfg.lr / 10}), lambda {cfg.lam}, clip {cfg.grad_clip}, dtype {cfg.dtype}
- command: `python -m playground align {" ".join(_argv_of(args))}`

## Held-out pairs ({before.get("pairs", 0)} pairs), before -> after

| figure | before | after |
|---|---|---|
{rows}

accuracy = share of pairs whose chosen reply has the higher average log-prob.

## Greedy answers to held-out prompts (up to {SAMPLE_TOKENS} tokens)

{answers}

Stopped with eos: {sum(s["stopped"] for s in samples)} / {len(samples)}.
"""
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def _fmt(m: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())


def _save(checkpoints, bundle, out: Path, args, cfg: ORPOConfig, before: dict, records: list[dict]) -> None:
    after = next((r["val"] for r in reversed(records) if r.get("val")), None)
    info = {
        **dict(bundle.info or {}),
        "source": str(out),
        "base": args.base,
        "alignment": "ORPO",
        "orpo": cfg.to_dict(),
        "data": args.data,
        "steps_done": len(records),
        "val_before": before,
        "val_after": after,
    }
    checkpoints.save(checkpoints.Bundle(bundle.model, bundle.tokenizer, info), out)
    log_doc = {
        "command": "python -m playground align " + " ".join(_argv_of(args)),
        "config": cfg.to_dict(),
        "base": args.base,
        "data": args.data,
        "val_before": before,
        "val_after": after,
        "records": records,
    }
    (out / "train_log.json").write_text(json.dumps(log_doc, indent=1) + "\n", encoding="utf-8")


def _argv_of(args) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None]
