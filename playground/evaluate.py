"""`python -m playground eval`: the figures that the bundled checkpoints' model cards and issue targets quote.

- Validation loss (nats/token, and bits per UTF-8 byte, which compares models with different tokenizers) on the
  held-out split: the last 5% of each shipped corpus file, scored in full
  (consecutive non-overlapping windows of the model's context, every held-out token counted once), not on a
  random sample, so the figure is exact and repeatable.
- Preference figures on held-out pairs (the same split as `python -m playground align` with the same seed):
  mean log odds ratio, accuracy (share of pairs whose chosen reply has the higher average log-prob), on the align
  command's default data (chatterbot + choices: relevance, stopping, answering with an offered option) and, apart,
  on the bigbench right-vs-wrong pairs (knowing the answer), which a 5M-parameter model mostly cannot do.
- End-of-sequence rate: on held-out prompts in the chat template, the share of greedy answers that end with
  eos within 64 new tokens (an aligned model answers and stops; a base model runs on).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from playground.models import count_params, device_of, eval_mode, require_context

log = logging.getLogger(__name__)


@torch.no_grad()
def heldout_loss(
    model: nn.Module,
    ids: torch.Tensor,
    context: int,
    batch_size: int = 32,
    max_tokens: int | None = None,
    tokenizer=None,
) -> dict:
    """Mean cross-entropy over every target of `ids` (1-D) in consecutive windows of `context` tokens.

    Each window predicts its tokens 1..T from 0..T-1; windows overlap by one token so that every token after
    the first is a target exactly once. Returns nats/token, perplexity and the number of targets; with the
    `tokenizer`, also bits per UTF-8 byte of the scored text (see `target_bytes`), which compares models
    whatever their tokenizers: the same text costs the same bytes, not the same tokens.
    """
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise ValueError("need at least two tokens to score")
    device = device_of(model)
    starts = list(range(0, n_targets, context))
    total = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model):
        for i in range(0, len(starts), batch_size):
            group = starts[i : i + batch_size]
            # full windows batch together; the last, shorter one goes on its own
            full = [s for s in group if s + context <= n_targets]
            rest = [s for s in group if s + context > n_targets]
            if full:
                x = torch.stack([ids[s : s + context] for s in full]).to(device)  # (B, T)
                y = torch.stack([ids[s + 1 : s + context + 1] for s in full]).to(device)  # (B, T)
                total += F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(), reduction="sum").double()
            for s in rest:
                x = ids[s:n_targets].unsqueeze(0).to(device)  # (1, t)
                y = ids[s + 1 : n_targets + 1].unsqueeze(0).to(device)  # (1, t)
                total += F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(), reduction="sum").double()
    loss = float(total) / n_targets
    out = {"val_loss": loss, "perplexity": math.exp(loss), "targets": n_targets, "context": context}
    if tokenizer is not None:
        n_bytes = target_bytes(tokenizer, ids[: n_targets + 1])
        out |= {
            "bytes": n_bytes,
            "bits_per_byte": float(total) / math.log(2) / n_bytes,
            "bytes_per_token": n_bytes / n_targets,
        }
    return out


def target_bytes(tokenizer, ids: torch.Tensor) -> int:
    """UTF-8 bytes of the text that the targets ids[1:] spell: the whole decoded text less the first token's."""
    ids = [int(i) for i in ids]
    whole = len(tokenizer.decode(ids).encode("utf-8"))
    return whole - len(tokenizer.decode(ids[:1]).encode("utf-8"))


KNOWLEDGE_PAIRS = "bigbench"  # right vs wrong answer, no options in the prompt: knowing facts, beyond a 5M model


def preference_rows(tokenizer, data: str = "chatterbot,choices"):
    """The held-out tokenized pairs of the align command's split (same defaults, same seed)."""
    from playground.align import prepare_data
    from playground.orpo import ORPOConfig

    _, val_rows = prepare_data(data, tokenizer, ORPOConfig())
    return val_rows


def eos_rate(model: nn.Module, tokenizer, val_rows, n_prompts: int, max_new_tokens: int = 64) -> dict:
    """Share of held-out chat prompts whose greedy answer ends with eos within `max_new_tokens`."""
    from playground.align import sample_answers

    prompts, seen = [], set()
    for row in val_rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            prompts.append(row["prompt"])
        if len(prompts) >= n_prompts:
            break
    answers = sample_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    stopped = sum(a["stopped"] for a in answers)
    return {"eos_rate": stopped / max(1, len(answers)), "prompts": len(answers), "examples": answers[:3]}


def evaluate(
    names: list[str], device: str = "cpu", max_val_tokens: int | None = None, n_prompts: int = 100, pairs: bool = True
) -> dict:
    from playground import checkpoints, data, orpo
    from playground import device as devices

    dev = devices.pick_device(device)
    results: dict[str, dict] = {}
    val_rows = knowledge_rows = None
    for name in names:
        t0 = time.perf_counter()
        bundle = checkpoints.load(name, device=str(dev))
        model, tok = bundle.model, bundle.tokenizer
        res: dict = {"params": count_params(model), "arch": bundle.info.get("arch")}
        ids = data.corpus_data("all", tok).val
        res |= heldout_loss(model, ids, require_context(model), max_tokens=max_val_tokens, tokenizer=tok)
        if pairs and bundle.info.get("arch") == "llama":
            val_rows = val_rows if val_rows is not None else preference_rows(tok)
            res["pairs"] = orpo.evaluate_pairs(model, val_rows, tok.pad_id, lam=orpo.COURSE_LAMBDA)
            knowledge_rows = knowledge_rows if knowledge_rows is not None else preference_rows(tok, KNOWLEDGE_PAIRS)
            res["pairs_bigbench"] = orpo.evaluate_pairs(model, knowledge_rows, tok.pad_id, lam=orpo.COURSE_LAMBDA)
            res["eos"] = eos_rate(model, tok, val_rows, n_prompts)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        log.info("%s: %s", name, {k: v for k, v in res.items() if k != "eos"})
        results[name] = res
    return results


def markdown(results: dict) -> str:
    rows = [
        "| model | params | val loss (nats/token) | bits/byte | perplexity | held-out log odds ratio | "
        "pref. accuracy | right answer (bigbench pairs) | eos within 64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        p, e = r.get("pairs"), r.get("eos")
        bpb = f"{r['bits_per_byte']:.3f}" if "bits_per_byte" in r else "-"
        rows.append(
            f"| {name} | {r['params'] / 1e6:.2f}M | {r['val_loss']:.3f} | {bpb} | {r['perplexity']:.1f} | "
            + (f"{p['log_odds_ratio']:+.3f} | {p['accuracy']:.1%} | " if p else "- | - | ")
            + (f"{r['pairs_bigbench']['accuracy']:.1%} | " if r.get("pairs_bigbench") else "- | ")
            + (f"{e['eos_rate']:.0%} of {e['prompts']} |" if e else "- |")
        )
    return "\n".join(rows)


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m playground eval", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        default="gpt-tiny,llama-base,llama-aligned",
        help="comma-separated checkpoints: bundled names, folders or Hub ids",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--max-val-tokens", type=int, default=None, help="score only the first N held-out tokens")
    p.add_argument("--prompts", type=int, default=100, help="held-out chat prompts for the eos rate")
    p.add_argument("--no-pairs", action="store_true", help="skip the preference and eos figures")
    p.add_argument("--out", default=None, help="write the results as JSON here (and a .md table beside it)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = evaluate(names, args.device, args.max_val_tokens, args.prompts, pairs=not args.no_pairs)
    table = markdown(results)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(table + "\n")
    return 0
