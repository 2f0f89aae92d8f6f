"""ORPO: align a language model on preference pairs, with no reference model (Hong, Lee & Thorne, EMNLP 2024).

One pair is a prompt x, a chosen reply y_w and a rejected reply y_l. The model reads prompt + reply; only the
reply's tokens are scored (the prompt and the padding get label -100). From the average per-token log-prob of each
reply, `losses.orpo_loss` builds P, the odds P/(1-P), the log odds ratio, L_OR = -log sigmoid(log odds ratio)
and L = NLL(chosen) + lambda * L_OR. So ORPO is supervised fine-tuning on the chosen reply plus a push that
raises its odds against the rejected one (course notes sections 78-99).

Here:
- chat formatting: `render_prompt` / `encode_example` (the tokenizer's own chat template; ours is the course's
  `<|user|>` / `<|assistant|>` one, `tokenizer.CHAT_TEMPLATE`), and `collate` for batches;
- one example with every number visible: `example_breakdown`, and `orpo_steps` (a few optimizer steps on it);
- a batched training loop, `orpo_train` (warmup + cosine schedule and AdamW from train.py, gradient clipping,
  evaluation on held-out pairs), and the CLI `python -m playground align`.

Notation: B pairs in a batch, T positions, V vocabulary size.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from playground import distributed, losses
from playground.losses import IGNORE_INDEX
from playground.models import context_length, device_of, eval_mode

log = logging.getLogger(__name__)

COURSE_LAMBDA = 0.5  # the course's `alpha`
TRL_LAMBDA = 0.1  # TRL's ORPOConfig.beta default


# -------------------------------------------------------------------------------------------- chat format
def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A prompt given as text becomes one user message; a list of role/content messages is kept as it is."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("The prompt is empty: write a question or instruction first.")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                   for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise ValueError(f"A prompt is a string or a non-empty list of role/content messages, got {prompt!r:.200}")


def render_prompt(tokenizer, prompt: str | list[dict]) -> str:
    """The prompt as the model sees it: chat template + the generation prompt that opens the assistant's turn."""
    return tokenizer.render_chat(as_messages(prompt), add_generation_prompt=True)


def prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(as_messages(prompt), add_generation_prompt=True))


def reply_ids(tokenizer, prompt: str | list[dict], reply: str, head: list[int] | None = None) -> list[int]:
    """The ids the model must produce after the prompt: the reply and the template's end of turn (eos for ours).

    Taken from the rendered whole conversation, so the reply is tokenized exactly as in a chat. If a tokenizer
    merges tokens across the prompt/reply boundary, the reply's text is encoded on its own instead.
    `head`: the prompt's ids if already known (saves rendering the template again).
    """
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError("A reply is empty: both the chosen and the rejected reply need some text.")
    messages = as_messages(prompt)
    head = prompt_ids(tokenizer, messages) if head is None else head
    whole = list(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}]))
    if whole[: len(head)] == head and len(whole) > len(head):
        return whole[len(head):]
    head_text = tokenizer.render_chat(messages, add_generation_prompt=True)
    whole_text = tokenizer.render_chat(messages + [{"role": "assistant", "content": reply}])
    if whole_text.startswith(head_text):
        return list(tokenizer.encode_structured(whole_text[len(head_text):]))
    return list(tokenizer.encode(reply)) + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])


@dataclass
class EncodedExample:
    """One pair as token ids. chosen_* and rejected_* have the same length (padded), so the two stack into one
    forward pass. Labels are the ids on the reply and -100 on the prompt and on the padding."""

    prompt_len: int
    chosen_input_ids: list[int]
    chosen_labels: list[int]
    rejected_input_ids: list[int]
    rejected_labels: list[int]
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.chosen_input_ids)


def encode_example(tokenizer, prompt: str | list[dict], chosen: str, rejected: str, max_len: int) -> EncodedExample:
    """Token ids and labels of one pair, at most `max_len` tokens each (the model's context).

    Too long: the prompt keeps its last tokens (the end holds the question and the assistant marker), as many as
    leave room for the longer reply but at least max_len // 2; then the replies are cut to what is left, and
    `truncated` is set.
    """
    if not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be a whole number >= 2, got {max_len!r}")
    head = prompt_ids(tokenizer, prompt)
    good, bad = reply_ids(tokenizer, prompt, chosen, head), reply_ids(tokenizer, prompt, rejected, head)
    truncated = len(head) + max(len(good), len(bad)) > max_len
    if truncated:
        keep = max(max_len // 2, max_len - max(len(good), len(bad)))
        head = head[-keep:] if len(head) > keep else head
        room = max_len - len(head)
        good, bad = good[:room], bad[:room]
    length = len(head) + max(len(good), len(bad))
    pad = tokenizer.pad_id

    def row(reply: list[int]) -> tuple[list[int], list[int]]:
        n_pad = length - len(head) - len(reply)
        return head + reply + [pad] * n_pad, [IGNORE_INDEX] * len(head) + reply + [IGNORE_INDEX] * n_pad

    chosen_ids, chosen_labels = row(good)
    rejected_ids, rejected_labels = row(bad)
    return EncodedExample(len(head), chosen_ids, chosen_labels, rejected_ids, rejected_labels, truncated)


def collate(examples: Sequence[EncodedExample | dict], pad_id: int, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """B pairs -> input_ids (2B, T) and labels (2B, T): the B chosen rows first, then the B rejected rows.

    Rows are right-padded to the longest (pad_id, label -100). Right padding needs no attention mask in a causal
    model: a real token never attends to the padding that comes after it.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    rows = [e if isinstance(e, dict) else asdict(e) for e in examples]
    seqs = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
    labs = [r["chosen_labels"] for r in rows] + [r["rejected_labels"] for r in rows]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (2B, T)
    labels = torch.full((len(seqs), T), IGNORE_INDEX, dtype=torch.long)  # (2B, T)
    for i, (s, lab) in enumerate(zip(seqs, labs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return ids.to(device), labels.to(device)


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
def example_breakdown(model: nn.Module, tokenizer, example: dict | EncodedExample, lam: float = COURSE_LAMBDA
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


def orpo_steps(model: nn.Module, tokenizer, examples: dict | EncodedExample | Sequence, n: int,
               lr: float = 1e-3, lam: float = COURSE_LAMBDA) -> Iterator[StepRecord]:
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
        yield StepRecord(step, float(o.loss), float(o.log_odds.mean()), float(o.chosen_logps.mean()),
                         float(o.rejected_logps.mean()), time.perf_counter() - start,
                         _breakdown(tokenizer, encoded[0], shown, lam))
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
            raise ValueError(f"warmup_steps and eval_interval must be >= 0, got {self.warmup_steps}, "
                             f"{self.eval_interval}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"ORPOConfig.lr must be a positive number, got {self.lr!r}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"ORPOConfig.lam must be >= 0, got {self.lam!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError(f"grad_clip and weight_decay must be >= 0, got {self.grad_clip}, {self.weight_decay}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"ORPOConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.prompt_max_tokens >= self.max_len:
            raise ValueError(f"prompt_max_tokens ({self.prompt_max_tokens}) must be below max_len ({self.max_len}) "
                             "to leave room for the reply")

    def schedule(self):
        """The same warmup + cosine schedule and AdamW groups as pretraining: a train.TrainConfig with our values."""
        from playground.train import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, min_lr=self.min_lr,
                           warmup_steps=self.warmup_steps, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                           betas=self.betas, dtype=self.dtype, device=self.device, eval_interval=0, sample_tokens=0)

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
    return {"loss": float(o.loss), "nll": float(o.nll), "or_loss": float(o.or_loss.mean()),
            "log_odds_ratio": float(o.log_odds.mean()), "chosen_logp": float(o.chosen_logps.mean()),
            "rejected_logp": float(o.rejected_logps.mean()),
            "accuracy": float((o.chosen_logps > o.rejected_logps).float().mean())}


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


def _global_terms(scores: PairScores, weight: torch.Tensor, lam: float, world: int
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """This rank's share of the global batch's loss, and the global batch's figures (one all-reduce).

    Global loss = (sum of -log p over ALL chosen tokens) / (all chosen tokens) + lam * (sum of L_OR) / (all pairs).
    Each rank returns world * (its sums / the global counts): DDP divides the summed gradients by `world`, so the
    update is exactly that of the global loss, even when ranks hold different numbers of pairs or tokens.
    """
    o, B = scores.out, weight.shape[0]
    nll_sum = -(scores.token_logps[:B].sum(-1) * weight).sum()  # chosen rows come first
    or_sum = (o.or_loss * weight).sum()
    sums = torch.stack([nll_sum, (scores.mask[:B].sum(-1) * weight).sum(), or_sum, (o.log_odds * weight).sum(),
                        (o.chosen_logps * weight).sum(), (o.rejected_logps * weight).sum(),
                        ((o.chosen_logps > o.rejected_logps).float() * weight).sum(), weight.sum()])
    total = distributed.all_sum(sums.detach().float()).tolist()  # (8,) over the ranks
    tokens, pairs = total[1], total[7]
    loss = world * (nll_sum / tokens + lam * or_sum / pairs)
    figures = {"nll": total[0] / tokens, "or_loss": total[2] / pairs, "log_odds_ratio": total[3] / pairs,
               "chosen_logp": total[4] / pairs, "rejected_logp": total[5] / pairs, "accuracy": total[6] / pairs}
    return loss, {"loss": figures["nll"] + lam * figures["or_loss"], **figures}


def _batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled epochs of row indices, batch_size at a time (the last short batch of an epoch is kept)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n, batch_size):
            yield order[i: i + batch_size]


@torch.no_grad()
def evaluate_pairs(model: nn.Module, rows, pad_id: int, lam: float, batch_size: int = 16, max_pairs: int | None = None,
                   dtype: str = "float32") -> dict:
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


# ------------------------------------------------------------------------------------------------------ CLI
def prepare_data(source: str, tokenizer, cfg: ORPOConfig):
    """Load, filter (prompt length), tokenize and split the preference data: (train rows, validation rows)."""
    from playground import data

    pairs = data.load_preferences(source, seed=cfg.seed)
    kept = data.filter_by_prompt_length(pairs, tokenizer, cfg.prompt_max_tokens)
    log.info("preference pairs: %d loaded, %d with prompts under %d tokens", len(pairs), len(kept),
             cfg.prompt_max_tokens)
    if len(kept) < 2:
        raise ValueError(f"only {len(kept)} of {len(pairs)} pairs have prompts under {cfg.prompt_max_tokens} tokens: "
                         "raise --prompt-max-tokens (and --max-len) or use shorter prompts")
    train_rows, val_rows = data.split_preferences(kept, cfg.val_fraction, seed=cfg.seed)
    return data.tokenize_preferences(train_rows, tokenizer, cfg.max_len), \
        data.tokenize_preferences(val_rows, tokenizer, cfg.max_len)


def build_parser() -> argparse.ArgumentParser:
    d = ORPOConfig()
    p = argparse.ArgumentParser(prog="python -m playground align", description=(
        "Align a checkpoint with ORPO on preference pairs (L = NLL(chosen) + lam * L_OR). Writes a checkpoint, "
        "train_log.json and a model card to --out."))
    p.add_argument("--base", required=True, help="checkpoint to align: bundled name, folder, or Hub id")
    p.add_argument("--data", default="chatterbot,choices",
                   help="preference data: bundled names (chatterbot, bigbench), .jsonl files, Hub ids; comma-separated")
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
    cfg = ORPOConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                     warmup_steps=args.warmup, lam=args.lam, grad_clip=args.grad_clip, weight_decay=args.weight_decay,
                     max_len=args.max_len, prompt_max_tokens=args.prompt_max_tokens, eval_interval=args.eval_interval,
                     eval_pairs=args.eval_pairs, val_fraction=args.val_fraction, seed=args.seed, dtype=args.dtype,
                     device=args.device)
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
    log.info("ORPO on %s: %d train / %d held-out pairs, %d steps of %d pairs, device %s, dtype %s", args.base,
             len(train_rows), len(val_rows), cfg.steps, cfg.batch_size, devices.describe(dev), cfg.dtype)
    out = Path(args.out)
    before = (evaluate_pairs(model, val_rows, tokenizer.pad_id, cfg.lam, cfg.batch_size, cfg.eval_pairs, cfg.dtype)
              if main else {})
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
    log.info("held-out prompts answered and stopped (eos) within %d tokens: %d / %d", SAMPLE_TOKENS,
             sum(s["stopped"] for s in samples), len(samples))
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
    rows = "\n".join(f"| {k} | {before.get(k, float('nan')):.4f} | {after.get(k, float('nan')):.4f} |"
                     for k in ("loss", "nll", "or_loss", "log_odds_ratio", "chosen_logp", "rejected_logp", "accuracy"))
    answers = "\n".join(f"- **{s['prompt']}** -> {s['answer'].strip()!r}{'' if s['stopped'] else ' (no eos)'}"
                        for s in samples)
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
    info = {**dict(bundle.info or {}), "source": str(out), "base": args.base, "alignment": "ORPO",
            "orpo": cfg.to_dict(), "data": args.data, "steps_done": len(records), "val_before": before,
            "val_after": after}
    checkpoints.save(checkpoints.Bundle(bundle.model, bundle.tokenizer, info), out)
    log_doc = {"command": "python -m playground align " + " ".join(_argv_of(args)), "config": cfg.to_dict(),
               "base": args.base, "data": args.data, "val_before": before, "val_after": after, "records": records}
    (out / "train_log.json").write_text(json.dumps(log_doc, indent=1) + "\n", encoding="utf-8")


def _argv_of(args) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None]


# -------------------------------------------------------------------------------------- examples for the tab
def shipped_examples(limit: int = 40, max_chars: int = 220) -> list[dict]:
    """Pairs from the shipped files whose prompts the bundled aligned model never trained on (held out with the
    CLI's defaults), short enough to read at a glance: {label, prompt, chosen, rejected, source}.

    Plain JSON reading (no `datasets`), so the app starts fast. Chatterbot answers are paired as `data.py` pairs
    them: with an answer from another category (mismatch) and with the answer running on (run-on).
    """
    from playground import data

    d = ORPOConfig()
    held = lambda prompt: data.is_held_out(prompt, d.val_fraction, d.seed)  # noqa: E731
    qa = [r for r in _jsonl(data.PREFERENCE_FILES["chatterbot"])
          if len(r["prompt"].strip()) >= 2 and r["answer"].strip()]  # as data.chatterbot_pairs: no junk rows
    out = []
    for i, r in enumerate(qa):
        if held(r["prompt"]) and len(r["prompt"]) + len(r["answer"]) < max_chars:
            other = next(o for o in qa[i + 1:] + qa[:i] if o["category"] != r["category"])
            nxt = qa[(i + 7) % len(qa)]
            out.append(_example(r["prompt"], r["answer"], other["answer"], "chatterbot/mismatch"))
            out.append(_example(r["prompt"], r["answer"], f"{r['answer']}\n{nxt['prompt']}\n{nxt['answer']}",
                                "chatterbot/runon"))
    for r in _jsonl(data.PREFERENCE_FILES["bigbench"]):
        if held(r["prompt"]) and len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]) < max_chars:
            out.append(_example(r["prompt"], r["chosen"], r["rejected"], r["source"]))
    # interleave the sources so the first entries of the dropdown show every kind
    by_source: dict[str, list[dict]] = {}
    for e in out:
        by_source.setdefault(e["source"].split("/")[0] + e["source"].split("/")[-1], []).append(e)
    mixed = [e for group in _zip_longest(list(by_source.values())) for e in group]
    for n, e in enumerate(mixed[:limit], 1):
        e["label"] = f"{n}. [{e['source']}] {e['prompt'][:60]}"
    return mixed[:limit]


def demo_questions(limit: int = 24, max_chars: int = 300) -> list[dict]:
    """Held-out multiple-choice questions (`data.choice_questions`: the kind of prompt the bundled aligned model
    was tuned on, none of them trained on), short enough to read, sources interleaved: {label, prompt, options,
    answer, source}. What the Aligned-vs-base tab offers; tests/app/test_compare_demo.py checks the aligned model's
    greedy answers to them."""
    from playground import data

    held = [q for q in data.choice_questions() if q["held_out"] and len(q["prompt"]) <= max_chars]
    by_source: dict[str, list[dict]] = {}
    for q in held:
        by_source.setdefault(q["source"], []).append(q)
    mixed = [q for group in _zip_longest(list(by_source.values())) for q in group][:limit]
    return [{**q, "label": f"{n}. [{q['source'].split('/')[-1]}] {q['question'][:70]}"} for n, q in enumerate(mixed, 1)]


def on_topic(answer: str, options: list[str]) -> bool:
    """Whether an answer is one of the offered options (case, surrounding spaces and final punctuation ignored)."""
    norm = lambda t: t.strip().strip(".!").strip().lower()  # noqa: E731
    return norm(answer) in {norm(o) for o in options}


def _example(prompt: str, chosen: str, rejected: str, source: str) -> dict:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "source": source}


def _jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _zip_longest(groups: list[list]) -> Iterator[list]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]
