"""ORPO: align a language model on preference pairs, with no reference model (Hong, Lee & Thorne, EMNLP 2024).

One pair is a prompt x, a chosen reply y_w and a rejected reply y_l. The model reads prompt + reply; only the
reply's tokens are scored (the prompt and the padding get label -100). From the average per-token log-prob of each
reply, `losses.orpo_loss` builds P, the odds P/(1-P), the log odds ratio, L_OR = -log sigmoid(log odds ratio)
and L = NLL(chosen) + lambda * L_OR. So ORPO is supervised fine-tuning on the chosen reply plus a push that
raises its odds against the rejected one (course notes sections 78-99).

Here:
- the chat format (prompt + reply -> ids and labels, batches) lives in `chat.py`;
- one example with every number visible: `example_breakdown`, and `orpo_steps` (a few optimizer steps on it);
- a batched training loop, `orpo_train` (warmup + cosine schedule and AdamW from train.py, gradient clipping,
  evaluation on held-out pairs); its command line, `python -m playground align`, is align.py.

Notation: B pairs in a batch, T positions, V vocabulary size.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from playground import distributed, losses
from playground.chat import EncodedExample, collate, encode_example
from playground.models import context_length, device_of, eval_mode

log = logging.getLogger(__name__)

COURSE_LAMBDA = 0.5  # the course's `alpha`
TRL_LAMBDA = 0.1  # TRL's ORPOConfig.beta default


# --------------------------------------------------------------------------------------- the ORPO forward
@dataclass
class PairScores:
    """What one forward pass over B pairs gives: the loss with every intermediate, and per-token log-probs."""

    out: losses.ORPOLoss
    token_logps: torch.Tensor  # (2B, T-1) log p of each labelled token (0 elsewhere): chosen rows, then rejected
    mask: torch.Tensor  # (2B, T-1) which positions are reply tokens


def score_pairs(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, lam: float) -> PairScores:
    """ORPO on a collated batch. NLL is the mean over all chosen reply tokens of the batch (nats per token), as
    nn.CrossEntropyLoss would give; for one pair it equals -(chosen average log-prob).

    (TRL's trainer computes its NLL over the prompt AND the reply; the paper's L_SFT and this code score the reply
    only, so the model learns to answer, not to write prompts.)
    """
    logits = model(ids)  # (2B, T, V)
    logps, mask = losses.token_logps(logits, labels)  # (2B, T-1) each, float32
    B = ids.shape[0] // 2
    counts = mask.sum(-1)  # (2B,)
    if (counts == 0).any():
        raise ValueError("a reply has no tokens left to score (the prompt fills the whole context?)")
    avg = logps.sum(-1) / counts  # (2B,) average log-prob per reply
    nll = -logps[:B].sum() / counts[:B].sum()  # () token mean over the chosen replies
    return PairScores(losses.orpo_loss(avg[:B], avg[B:], nll, lam), logps, mask)


# ---------------------------------------------------------------------------------------- one example, shown
@dataclass
class ReplyView:
    """One reply's numbers, as plain Python values for a view."""

    tokens: list[str]  # the reply's pieces (▁ marks a space), eos included
    token_ids: list[int]
    token_logps: list[float]  # log p of each token given everything before it, nats
    avg_logp: float  # log P: the average of token_logps
    p: float  # P = exp(avg_logp), the geometric-mean token probability
    odds: float  # P / (1 - P)
    log_odds: float  # log(P / (1 - P))


@dataclass
class Breakdown:
    """Every intermediate of ORPO on one pair, plain floats (what the ORPO tab shows)."""

    lam: float
    chosen: ReplyView
    rejected: ReplyView
    log_odds_ratio: float  # log odds(chosen) - log odds(rejected)
    sigmoid: float  # sigmoid(log_odds_ratio): the model's "preference" for chosen, in (0, 1)
    or_loss: float  # -log sigmoid(log_odds_ratio)
    nll: float  # -avg_logp of chosen
    loss: float  # nll + lam * or_loss
    prompt_tokens: int
    truncated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def example_breakdown(
    model: nn.Module, tokenizer, example: dict | EncodedExample, lam: float = COURSE_LAMBDA
) -> Breakdown:
    """ORPO on one pair with every number exposed. `example`: {prompt, chosen, rejected} (strings, or a messages
    prompt) or an EncodedExample. Runs in eval mode (no dropout), as TRL's ORPO disables dropout."""
    enc = _encoded(tokenizer, example, model)
    with eval_mode(model):
        ids, labels = collate([enc], tokenizer.pad_id, device_of(model))
        scores = score_pairs(model, ids, labels, lam)
    return _breakdown(tokenizer, enc, scores, lam)


def _encoded(tokenizer, example: dict | EncodedExample, model: nn.Module) -> EncodedExample:
    if isinstance(example, EncodedExample):
        return example
    if not isinstance(example, dict) or not {"prompt", "chosen", "rejected"} <= set(example):
        raise ValueError(f"An example needs prompt, chosen and rejected, got {example!r:.200}")
    chosen, rejected = (_reply_text(example[k]) for k in ("chosen", "rejected"))
    return encode_example(tokenizer, example["prompt"], chosen, rejected, context_length(model) or 1024)


def _reply_text(reply: str | list[dict]) -> str:
    return reply[-1]["content"] if isinstance(reply, list) and reply else reply


def _breakdown(tokenizer, enc: EncodedExample, scores: PairScores, lam: float, row: int = 0) -> Breakdown:
    o, B = scores.out, scores.token_logps.shape[0] // 2

    def view(r: int, ids: list[int], which: int) -> ReplyView:
        m = scores.mask[r]  # (T-1,)
        reply = [ids[t + 1] for t in range(len(m)) if m[t]]  # position t predicts token t+1
        avg = float((o.chosen_logps if which == 0 else o.rejected_logps)[row])
        log_odds = float((o.chosen_log_odds if which == 0 else o.rejected_log_odds)[row])
        return ReplyView(
            tokens=[tokenizer.id_to_piece(i) for i in reply],
            token_ids=reply,
            token_logps=scores.token_logps[r][m].tolist(),
            avg_logp=avg,
            p=math.exp(avg),
            odds=math.exp(log_odds) if log_odds < 700 else math.inf,
            log_odds=log_odds,
        )

    return Breakdown(
        lam=lam,
        chosen=view(row, enc.chosen_input_ids, 0),
        rejected=view(B + row, enc.rejected_input_ids, 1),
        log_odds_ratio=float(o.log_odds[row]),
        sigmoid=float(o.ratio[row]),
        or_loss=float(o.or_loss[row]),
        nll=float(-o.chosen_logps[row]),
        loss=float(-o.chosen_logps[row] + lam * o.or_loss[row]),
        prompt_tokens=enc.prompt_len,
        truncated=enc.truncated,
    )


# ------------------------------------------------------------------------------------ a few steps on it
@dataclass
class StepRecord:
    """After `step` optimizer steps (0 = before any): the first pair's breakdown and the batch's figures."""

    step: int
    loss: float
    log_odds_ratio: float  # mean over the pairs
    chosen_logp: float
    rejected_logp: float
    seconds: float
    breakdown: Breakdown = field(repr=False)


def orpo_steps(
    model: nn.Module,
    tokenizer,
    examples: dict | EncodedExample | Sequence,
    n: int,
    lr: float = 1e-3,
    lam: float = COURSE_LAMBDA,
) -> Iterator[StepRecord]:
    """Take `n` AdamW steps of ORPO on `examples`, yielding a StepRecord before the first step and after each.

    Trains `model` IN PLACE: give it the learner's own deep copy, never a shared model. Constant learning rate
    (a handful of steps has no room for a warmup), no dropout (eval mode, as TRL), gradients clipped to norm 1.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    batch = [examples] if isinstance(examples, (dict, EncodedExample)) else list(examples)
    encoded = [_encoded(tokenizer, e, model) for e in batch]
    ids, labels = collate(encoded, tokenizer.pad_id, device_of(model))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.eval()
    start = time.perf_counter()
    for step in range(n + 1):
        scores = score_pairs(model, ids, labels, lam)  # the state after `step` updates
        shown = _detached(scores)
        o = shown.out
        yield StepRecord(
            step,
            float(o.loss),
            float(o.log_odds.mean()),
            float(o.chosen_logps.mean()),
            float(o.rejected_logps.mean()),
            time.perf_counter() - start,
            _breakdown(tokenizer, encoded[0], shown, lam),
        )
        if step == n:
            break
        optimizer.zero_grad(set_to_none=True)
        scores.out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def _detached(s: PairScores) -> PairScores:
    return PairScores(losses.ORPOLoss(*(t.detach() for t in s.out)), s.token_logps.detach(), s.mask)


# ------------------------------------------------------------------------------------------ the training loop
@dataclass
class ORPOConfig:
    """An ORPO run on many pairs. Defaults suit the bundled llama-base on the bundled pairs on one GPU."""

    steps: int = 1500
    batch_size: int = 16  # pairs per step (each is two sequences: chosen and rejected)
    lr: float = 1e-4  # peak; the course used 6e-5 for its 138M model with batch size 1
    min_lr: float | None = None  # end of the cosine; None = lr / 10 (train.py's rule)
    warmup_steps: int = 50
    lam: float = COURSE_LAMBDA  # the weight of L_OR (course 0.5; TRL's default is 0.1)
    grad_clip: float = 1.0
    weight_decay: float = 0.0  # the course's alignment used none
    betas: tuple[float, float] = (0.9, 0.95)  # the course's alignment optimizer
    max_len: int = 256  # tokens per prompt + reply (at most the model's context)
    prompt_max_tokens: int = 128  # longer prompts are filtered out, so prompt + reply fit
    eval_interval: int = 100  # evaluate on the held-out pairs every this many steps (and at the end); 0 = end only
    eval_pairs: int = 256  # held-out pairs per evaluation (all of them if fewer)
    val_fraction: float = 0.05
    seed: int = 1337
    dtype: str = "float32"  # autocast dtype: "bfloat16" on a GPU
    device: str = "auto"

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("steps", "batch_size", "max_len", "prompt_max_tokens", "eval_pairs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ORPOConfig.{name} must be at least 1, got {getattr(self, name)!r}")
        if self.warmup_steps < 0 or self.eval_interval < 0:
            raise ValueError(
                f"warmup_steps and eval_interval must be >= 0, got {self.warmup_steps}, {self.eval_interval}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"ORPOConfig.lr must be a positive number, got {self.lr!r}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"ORPOConfig.lam must be >= 0, got {self.lam!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError(f"grad_clip and weight_decay must be >= 0, got {self.grad_clip}, {self.weight_decay}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"ORPOConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.prompt_max_tokens >= self.max_len:
            raise ValueError(
                f"prompt_max_tokens ({self.prompt_max_tokens}) must be below max_len ({self.max_len}) "
                "to leave room for the reply"
            )

    def schedule(self):
        """The same warmup + cosine schedule and AdamW groups as pretraining: a train.TrainConfig with our values."""
        from playground.train import TrainConfig

        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            betas=self.betas,
            dtype=self.dtype,
            device=self.device,
            eval_interval=0,
            sample_tokens=0,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ORPOLog:
    """One optimizer step of `orpo_train`; `val` holds the held-out figures at evaluation steps."""

    step: int  # steps done, 1-based
    lr: float
    loss: float
    nll: float
    or_loss: float
    log_odds_ratio: float
    chosen_logp: float
    rejected_logp: float
    accuracy: float  # share of the batch's pairs where chosen's average log-prob beats rejected's
    grad_norm: float
    seconds: float
    val: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def orpo_train(model: nn.Module, train_rows, val_rows, cfg: ORPOConfig, pad_id: int) -> Iterator[ORPOLog]:
    """ORPO over tokenized pairs (rows with chosen/rejected input_ids and labels, e.g. `data.tokenize_preferences`).

    Shuffled epochs with a seeded generator; each step: lr from train.lr_at, one forward over the 2B sequences
    (autocast to cfg.dtype), L = NLL + lam * L_OR, backward, clip, AdamW step. Trains `model` in place.

    Under torchrun pass the DDP-wrapped model (`distributed.wrap`): every rank draws the same global batch of
    cfg.batch_size pairs and scores its own slice; the loss is weighted so that DDP's average of the ranks'
    gradients is the gradient of the global batch's loss, and the logged figures are the global batch's. Only
    rank 0 evaluates (on the plain model).
    """
    from playground import device as devices
    from playground.train import lr_at, make_optimizer

    if len(train_rows) == 0:
        raise ValueError("no training pairs (all filtered out? raise prompt_max_tokens)")
    sched = cfg.schedule()
    optimizer = make_optimizer(model, sched)
    net, world = distributed.unwrap(model), distributed.world_size()
    dev, dtype = device_of(model), devices.parse_dtype(cfg.dtype)
    batches = _batches(len(train_rows), cfg.batch_size, cfg.seed)
    model.eval()  # no dropout (as TRL disables it); gradients flow all the same
    start = time.perf_counter()
    for step in range(cfg.steps):
        lr = lr_at(step, sched)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch, weight = _my_share(next(batches), world, dev)
        ids, labels = collate([train_rows[i] for i in batch], pad_id, dev)
        with devices.autocast(dev, dtype):
            scores = score_pairs(model, ids, labels, cfg.lam)
        loss, figures = (scores.out.loss, None) if world == 1 else _global_terms(scores, weight, cfg.lam, world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        figures = figures or _batch_figures(_detached(scores).out)
        record = ORPOLog(step + 1, lr, **figures, grad_norm=float(norm), seconds=time.perf_counter() - start)
        last = step + 1 == cfg.steps
        due = last or (cfg.eval_interval and (step + 1) % cfg.eval_interval == 0)
        if due and distributed.is_main():  # the other ranks wait for rank 0 in the next step's all-reduce
            record.val = evaluate_pairs(net, val_rows, pad_id, cfg.lam, cfg.batch_size, cfg.eval_pairs, cfg.dtype)
        yield record


def _batch_figures(o: losses.ORPOLoss) -> dict[str, float]:
    """The logged figures of one batch (one process): means over its pairs, nll over its chosen tokens."""
    return {
        "loss": float(o.loss),
        "nll": float(o.nll),
        "or_loss": float(o.or_loss.mean()),
        "log_odds_ratio": float(o.log_odds.mean()),
        "chosen_logp": float(o.chosen_logps.mean()),
        "rejected_logp": float(o.rejected_logps.mean()),
        "accuracy": float((o.chosen_logps > o.rejected_logps).float().mean()),
    }


def _my_share(batch: list[int], world: int, device) -> tuple[list[int], torch.Tensor | None]:
    """This rank's contiguous slice of a global batch of pair indices, and each pair's weight (1 = counts).

    A slice can be empty (an epoch's last short batch with fewer pairs than ranks): the rank then scores the
    batch's first pair with weight 0, because DDP needs every rank in every backward."""
    if world == 1:
        return batch, None
    lo, hi = distributed.shard_bounds(len(batch), world)
    mine = batch[lo:hi]
    if not mine:
        return batch[:1], torch.zeros(1, device=device)
    return mine, torch.ones(len(mine), device=device)


def _global_terms(
    scores: PairScores, weight: torch.Tensor, lam: float, world: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """This rank's share of the global batch's loss, and the global batch's figures (one all-reduce).

    Global loss = (sum of -log p over ALL chosen tokens) / (all chosen tokens) + lam * (sum of L_OR) / (all pairs).
    Each rank returns world * (its sums / the global counts): DDP divides the summed gradients by `world`, so the
    update is exactly that of the global loss, even when ranks hold different numbers of pairs or tokens.
    """
    o, B = scores.out, weight.shape[0]
    nll_sum = -(scores.token_logps[:B].sum(-1) * weight).sum()  # chosen rows come first
    or_sum = (o.or_loss * weight).sum()
    sums = torch.stack(
        [
            nll_sum,
            (scores.mask[:B].sum(-1) * weight).sum(),
            or_sum,
            (o.log_odds * weight).sum(),
            (o.chosen_logps * weight).sum(),
            (o.rejected_logps * weight).sum(),
            ((o.chosen_logps > o.rejected_logps).float() * weight).sum(),
            weight.sum(),
        ]
    )
    total = distributed.all_sum(sums.detach().float()).tolist()  # (8,) over the ranks
    tokens, pairs = total[1], total[7]
    loss = world * (nll_sum / tokens + lam * or_sum / pairs)
    figures = {
        "nll": total[0] / tokens,
        "or_loss": total[2] / pairs,
        "log_odds_ratio": total[3] / pairs,
        "chosen_logp": total[4] / pairs,
        "rejected_logp": total[5] / pairs,
        "accuracy": total[6] / pairs,
    }
    return loss, {"loss": figures["nll"] + lam * figures["or_loss"], **figures}


def _batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled epochs of row indices, batch_size at a time (the last short batch of an epoch is kept)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n, batch_size):
            yield order[i : i + batch_size]


@torch.no_grad()
def evaluate_pairs(
    model: nn.Module,
    rows,
    pad_id: int,
    lam: float,
    batch_size: int = 16,
    max_pairs: int | None = None,
    dtype: str = "float32",
) -> dict:
    """Held-out figures with the training loss's own definitions (`score_pairs`): nll is the token mean over ALL
    chosen reply tokens (not a mean of per-pair means), loss = nll + lam * or_loss; or_loss, log odds ratio,
    chosen/rejected average log-probs and accuracy (share of pairs whose chosen reply beats the rejected one)
    are means over pairs. So the validation curve plots the same quantity as the training curve."""
    from playground import device as devices

    n = len(rows) if max_pairs is None else min(len(rows), max_pairs)
    if n == 0:
        raise ValueError("no held-out pairs to evaluate on")
    dev = device_of(model)
    sums = dict.fromkeys(("or_loss", "log_odds_ratio", "chosen_logp", "rejected_logp", "accuracy"), 0.0)
    nll_sum, tokens = 0.0, 0
    with eval_mode(model):
        for i in range(0, n, batch_size):
            ids, labels = collate([rows[j] for j in range(i, min(n, i + batch_size))], pad_id, dev)
            with devices.autocast(dev, devices.parse_dtype(dtype)):
                scores = score_pairs(model, ids, labels, lam)
            o, B = scores.out, ids.shape[0] // 2
            nll_sum -= float(scores.token_logps[:B].double().sum())  # chosen rows first, 0 where masked
            tokens += int(scores.mask[:B].sum())
            sums["or_loss"] += float(o.or_loss.sum())
            sums["log_odds_ratio"] += float(o.log_odds.sum())
            sums["chosen_logp"] += float(o.chosen_logps.sum())
            sums["rejected_logp"] += float(o.rejected_logps.sum())
            sums["accuracy"] += float((o.chosen_logps > o.rejected_logps).sum())
    out = {k: v / n for k, v in sums.items()}
    nll = nll_sum / tokens
    return {"loss": nll + lam * out["or_loss"], "nll": nll, **out, "pairs": n}
