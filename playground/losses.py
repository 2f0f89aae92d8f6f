"""Losses, in nats per token: cross-entropy three ways (naive by hand, log-sum-exp by hand, PyTorch) and ORPO.

Notation: B batch, T positions, V vocabulary size. Logits are raw scores `z` of shape [..., V]; targets are
token ids of shape [...]. For one position with target y,

    p(y) = exp(z_y) / sum_j exp(z_j)          (softmax)
    -log p(y) = logsumexp(z) - z_y             (the same number, computed without ever forming exp(z_j))

and the cross-entropy loss is the mean of -log p(y) over the positions that count (targets != ignore_index).

Sections: `# ---- cross-entropy` (the Cross-entropy tab, training) and `# ---- ORPO` (the alignment tab).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------- cross-entropy
IGNORE_INDEX = -100  # PyTorch's default: targets equal to this are left out of the mean (padding, prompts)
BREAK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _flatten(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and ids (ids equal to ignore_index are allowed) and flatten to logits [N, V], targets [N]."""
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocabulary dimension"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"targets must be integer token ids, got {targets.dtype}")
    V = logits.shape[-1]
    flat_targets = targets.reshape(-1).long()  # (N,)
    bad = (flat_targets != ignore_index) & ((flat_targets < 0) | (flat_targets >= V))
    if bad.any():
        raise ValueError(f"target id {int(flat_targets[bad][0])} is outside the vocabulary [0, {V})")
    return logits.reshape(-1, V), flat_targets  # (N, V), (N,)


def cross_entropy_manual(
    logits: torch.Tensor, targets: torch.Tensor, stable: bool = True, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean -log p(target) in nats per token, by hand; a 0-dim tensor in the logits' dtype.

    stable=False is the course's first version: exp, normalise, take -log, all in the logits' own dtype, so
    exp(z) overflows to inf once z > 88.7 in float32/bfloat16 or z > 11.1 in float16, and inf/inf gives nan.
    stable=True subtracts the row maximum before exp (log-sum-exp) and works in float32 (float64 stays float64):
    every exp(z_j - max) is in (0, 1], so nothing overflows. Positions whose target is `ignore_index` are left
    out of the mean; if every position is ignored the mean is nan, as with F.cross_entropy.
    """
    z, y = _flatten(logits, targets, ignore_index)  # (N, V), (N,)
    keep = y != ignore_index  # (N,)
    z, y = z[keep], y[keep]  # (n, V), (n,)
    if stable:
        nll = _nll_logsumexp(z, y)
    else:
        counts = z.exp()  # (n, V) the course's "counts": overflows to inf for large logits
        probs = counts / counts.sum(-1, keepdim=True)  # (n, V) inf / inf = nan
        nll = -probs.gather(-1, y[:, None]).squeeze(-1).log()  # (n,) log(0) = -inf when p underflows
    return nll.mean().to(logits.dtype)


def _nll_logsumexp(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log softmax(z)[y] per row, max-subtracted, in float32 or wider: logsumexp(z) - z_y. z (n, V), y (n,)."""
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    m = z.max(-1, keepdim=True).values  # (n, 1) the largest logit: exp(z - m) <= 1, no overflow
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row must not become -inf - -inf
    lse = m.squeeze(-1) + (z - m).exp().sum(-1).log()  # (n,) log sum_j exp(z_j)
    return lse - z.gather(-1, y[:, None]).squeeze(-1)  # (n,)


def cross_entropy_torch(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """PyTorch's fused version (log_softmax + nll_loss), the reference the manual ones must match."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=ignore_index)


def perplexity(loss: float) -> float:
    """exp(loss): the number of equally likely tokens the model is as unsure as; inf if it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def uniform_loss(vocab_size: int) -> float:
    """ln V: the loss of a model that spreads its probability evenly (an untrained one is close to it)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
    return math.log(vocab_size)


@dataclass
class TokenStats:
    """Per-position statistics, each a tensor of shape [...] (the targets' shape)."""

    p_target: torch.Tensor  # float64, p(target) in [0, 1]
    nll: torch.Tensor  # float64, -log p(target) in nats; its mean is the loss
    rank: torch.Tensor  # int64, 1 = the target was the model's top choice
    entropy: torch.Tensor  # float64, H(p) = -sum_j p_j log p_j in nats: how unsure the model was before seeing y


@torch.no_grad()
def token_stats(logits: torch.Tensor, targets: torch.Tensor) -> TokenStats:
    """p(target), -log p(target), rank of the target and entropy of the prediction at every position.

    log_softmax runs in float32 (float64 logits stay float64): exact enough for a table and light on memory
    for a 50k vocabulary; the per-position results are returned as float64 so their mean reproduces the loss.
    """
    z, y = _flatten(logits, targets, ignore_index=-(2**62))  # every position must hold a real target id
    logp = F.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)  # (N, V)
    logp_y = logp.gather(-1, y[:, None]).squeeze(-1)  # (N,)
    # rank: 1 + how many tokens the model scored strictly higher than the target (ties count in its favour)
    rank = (logp > logp_y[:, None]).sum(-1) + 1  # (N,)
    entropy = torch.special.entr(logp.exp()).sum(-1)  # (N,) entr(p) = -p log p, and 0 for p = 0
    shape = targets.shape
    return TokenStats(
        p_target=logp_y.exp().double().reshape(shape),
        nll=(-logp_y).double().reshape(shape),
        rank=rank.reshape(shape),
        entropy=entropy.double().reshape(shape),
    )


@torch.no_grad()
def windowed_logits(model: torch.nn.Module, ids: list[int], window: int | None) -> tuple[torch.Tensor, int]:
    """Logits predicting ids[1:], shape (len(ids) - 1, V) on the CPU, and how many forward passes it took.

    A text longer than the context is read in windows of `window` tokens that overlap by half: every target
    after the first window still sees at least window/2 tokens before it (strided evaluation; chunks that
    do not overlap would leave the first tokens of each chunk with no context at all).
    """
    device = next(model.parameters()).device
    x = torch.tensor(ids, dtype=torch.long, device=device)  # (n,)
    n = len(ids)
    if window is None or n <= window:
        return model(x[None])[0, :-1].cpu(), 1  # (n-1, V): row t predicts token t+1
    if window < 2:
        raise ValueError(f"the model's context ({window}) is too short to score a text")
    stride = window // 2
    parts = [model(x[None, :window])[0, :-1]]  # targets 1 .. window-1
    next_t = window  # the first target not scored yet
    while next_t < n:
        s = min(next_t - window + stride, n - window)  # window start: next_t keeps >= window - stride context
        out = model(x[None, s : s + window])[0]  # (window, V): row i predicts token s+i+1
        end = min(s + window, n)
        parts.append(out[next_t - 1 - s : end - 1 - s])  # targets next_t .. end-1
        next_t = end
    return torch.cat(parts).cpu(), len(parts)


@dataclass
class BreakResult:
    """The three computations on logits scaled by `scale` and cast to `dtype`, beside a float64 reference."""

    scale: float
    dtype: str
    max_abs_logit: float  # the largest |scaled logit| (inf if the cast itself overflowed)
    logits_finite: bool  # False: some scaled logits overflowed to +-inf in the cast
    naive: float
    stable: float
    torch: float
    reference: float  # float64 log-sum-exp on the same (already cast) logits: the right answer for them
    n: int = 0  # positions scored
    pos_inf: int = 0  # logits that became +inf in the cast
    neg_inf: int = 0  # logits that became -inf in the cast
    target_neg_inf: int = 0  # positions whose TARGET logit is -inf: probability exactly 0, loss inf
    max_logit: float = 0.0  # the largest scaled logit (after the cast)
    exp_overflows: bool = False  # exp(max_logit) is inf in the dtype: the naive sum cannot be formed

    @property
    def finite(self) -> dict[str, bool]:
        return {name: math.isfinite(getattr(self, name)) for name in ("naive", "stable", "torch")}


BREAK_NAMES = {"naive": "naive manual", "stable": "stable manual (log-sum-exp)", "torch": "F.cross_entropy"}
AGREE_ULPS = 8  # "agrees": within 8 units of the dtype's precision (eps) of the reference, relative to max(1, |ref|)


def break_tolerance(r: BreakResult) -> float:
    """How far from the float64 reference a result of this dtype may be and still agree with it."""
    return AGREE_ULPS * torch.finfo(BREAK_DTYPES[r.dtype]).eps * max(1.0, abs(r.reference))


def break_judgement(r: BreakResult) -> dict[str, tuple[str, str]]:
    """Each computation's status ("agrees", "off", "inf", "nan") and, unless it agrees, why, from the numbers.

    The reasons are checked, not assumed: exp of the largest logit overflowing the dtype; a target probability
    rounding to 0; +-inf logits from the cast; the mean's running sum passing the largest number of the dtype
    it is added in (float32 for the manual log-sum-exp, the logits' own dtype for F.cross_entropy on the CPU).
    """
    biggest = torch.finfo(BREAK_DTYPES[r.dtype]).max
    out = {}
    for key in ("naive", "stable", "torch"):
        v = getattr(r, key)
        if math.isfinite(v):
            ok = math.isfinite(r.reference) and abs(v - r.reference) <= break_tolerance(r)
            out[key] = ("agrees", "") if ok else ("off", f"{v - r.reference:+.4g} from the reference")
            continue
        status = "nan" if math.isnan(v) else "inf"
        out[key] = (status, _why_not_finite(r, key, biggest))
    return out


def _why_not_finite(r: BreakResult, key: str, biggest: float) -> str:
    if r.pos_inf:
        return f"{r.pos_inf} logit(s) became +inf in the cast to {r.dtype}"
    if r.target_neg_inf:
        return f"{r.target_neg_inf} target logit(s) became -inf in the cast: p = 0 exactly, the loss is infinite"
    if key == "naive":
        if r.exp_overflows:
            over = f"exp({r.max_logit:,.4g}) is inf in {r.dtype} (above e^{math.log(biggest):.1f}), so the sum is inf"
            if math.isnan(getattr(r, key)):
                return f"{over} and an overflowed token's p = inf / inf = nan"
            return f"{over}, a target's p = e^z / inf = 0 and -log 0 = inf"
        return f"a target's probability rounded to 0 in {r.dtype}, and -log 0 = inf"
    sum_max = biggest if key == "torch" else torch.finfo(torch.float32).max
    if math.isfinite(r.reference) and r.reference * r.n > sum_max:
        where = r.dtype if key == "torch" else "float32"
        return (
            f"the mean adds the per-token losses in {where}: their sum "
            f"({r.reference * r.n:,.4g}) passes {where}'s largest number ({sum_max:,.4g})"
        )
    if math.isfinite(r.reference) and r.reference > biggest:
        return f"the mean ({r.reference:,.4g}) is larger than {r.dtype}'s largest number ({biggest:,.4g})"
    return "not finite"


@torch.no_grad()
def break_it(logits: torch.Tensor, targets: torch.Tensor, scale: float, dtype: str | torch.dtype) -> BreakResult:
    """Scale the logits (as a sharper, more confident model would), cast them, and compute the loss three ways.

    A big scale pushes the largest logit past ln(max float) (88.7 in float32/bfloat16, 11.1 in float16): the
    naive exp overflows to inf and its loss becomes nan. Log-sum-exp (in float32) and F.cross_entropy shift by
    the maximum first and stay right much further, until the mean's sum or the logits themselves overflow:
    `break_judgement` says which happened.
    """
    name, dt = _break_dtype(dtype)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    z = (logits.double() * scale).to(dt)  # scale in float64, then round into the chosen dtype
    zf, yf = _flatten(z, targets)
    keep = yf != IGNORE_INDEX
    picked = zf[keep].gather(-1, yf[keep][:, None]) if keep.any() else zf[:0, :1]
    top = float(z.max()) if z.numel() else 0.0
    return BreakResult(
        scale=float(scale),
        dtype=name,
        max_abs_logit=float(z.abs().max()) if z.numel() else 0.0,
        logits_finite=bool(torch.isfinite(z).all()),
        naive=float(cross_entropy_manual(z, targets, stable=False)),
        stable=float(cross_entropy_manual(z, targets, stable=True)),
        torch=float(cross_entropy_torch(z, targets)),
        reference=float(cross_entropy_manual(z.double(), targets, stable=True)),
        n=int(keep.sum()),
        pos_inf=int((z == math.inf).sum()),
        neg_inf=int((z == -math.inf).sum()),
        target_neg_inf=int((picked == -math.inf).sum()),
        max_logit=top,
        exp_overflows=bool(torch.isinf(torch.tensor(top, dtype=dt).exp())),
    )


def scale_for_largest(logits: torch.Tensor, largest: float) -> float:
    """The factor that makes the largest logit equal `largest` (the break-it slider sets that, not the factor: the
    same x then means the same for every model, and exp overflows at the same x). Logits that are all <= 0 are
    scaled by their largest magnitude instead."""
    z = logits.double()
    top = float(z.max()) if z.numel() else 0.0
    m = top if top > 0 else (float(z.abs().max()) if z.numel() else 0.0)
    if not math.isfinite(m) or m == 0.0:
        raise ValueError("these logits are all zero or not finite: there is nothing to scale")
    return largest / m


def _break_dtype(dtype: str | torch.dtype) -> tuple[str, torch.dtype]:
    for name, dt in BREAK_DTYPES.items():
        if dtype == name or dtype == dt:
            return name, dt
    raise ValueError(f"dtype must be one of {list(BREAK_DTYPES)}, got {dtype!r}")


# ----------------------------------------------------------------------------------------------------- ORPO
# ORPO (Hong, Lee & Thorne, "ORPO: Monolithic Preference Optimization without Reference Model", EMNLP 2024).
# For a prompt x with a chosen response y_w and a rejected one y_l, P(y|x) is the geometric mean of the response's
# token probabilities, i.e. exp of the AVERAGE per-token log-prob (eq. 2 of the paper). Then
#     odds(y) = P / (1 - P)                                 (eq. 3)
#     log OR  = log odds(y_w) - log odds(y_l)
#             = (logP_w - logP_l) - (log(1 - P_w) - log(1 - P_l)),  log(1 - P) = log1mexp(logP)
#     L_OR    = -log sigmoid(log OR)                        (eq. 7)
#     L       = NLL(y_w) + lambda * L_OR                    (eq. 6; both terms >= 0, so lower is better)
# TRL writes the loss as `nll - (beta * logsigmoid(log_odds)).mean()` with beta = lambda (default 0.1; the course
# used 0.5), the same odds-ratio term; its nll covers prompt + reply, ours (as the paper's) the reply only.
# Everything runs in float32 (or wider), as TRL upcasts.
LN2 = math.log(2.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate everywhere (Maechler 2012, "Accurately computing log(1 - exp(-|a|))").

    The naive log(1 - exp(x)) loses every digit when x is near 0 (exp(x) rounds to 1, 1 - 1 = 0, log 0 = -inf)
    and log1p(-exp(x)) loses them there too; log(-expm1(x)) is exact near 0 but not for very negative x. So:
    x > -ln 2 -> log(-expm1(x)); x <= -ln 2 -> log1p(-exp(x)). Each branch sees its input clamped to its own
    side, so the branch torch.where discards stays finite and cannot send nan into the gradient.
    x = 0 gives -inf (P = 1 has infinite odds); x > 0 is not a log-probability and gives nan.
    """
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    near_zero = torch.log(-torch.expm1(x.clamp(min=-LN2)))
    far = torch.log1p(-torch.exp(x.clamp(max=-LN2)))
    return torch.where(x > -LN2, near_zero, far)


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label) at every position, next-token aligned, and the mask of positions that count.

    logits (B, T, V) from `model(ids)`; labels (B, T) are the ids themselves with IGNORE_INDEX (-100) on the
    prompt and the padding. Position t's logits predict token t+1, so labels are shifted left by one.
    Returns logps (B, T-1) in float32 (0 where masked) and mask (B, T-1) bool.
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be (B, T, V) with labels {tuple(labels.shape)} = (B, T)")
    targets = labels[:, 1:]  # (B, T-1) the token each position must predict
    mask = targets != IGNORE_INDEX  # (B, T-1)
    logp = F.log_softmax(logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (B, T-1, V)
    safe = torch.where(mask, targets, torch.zeros_like(targets))  # -100 is no index: gather a dummy, zero it after
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return picked * mask, mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, average: bool = True) -> torch.Tensor:
    """Per-sequence log-prob of the labelled tokens (B,): their mean (nats per token) or, average=False, their sum.

    A row with no labelled token has no response to score: its mean is nan, so a caller cannot miss it.
    """
    logps, mask = token_logps(logits, labels)  # (B, T-1), (B, T-1)
    total = logps.sum(-1)  # (B,)
    return total / mask.sum(-1) if average else total


class ORPOLoss(NamedTuple):
    """Every intermediate of ORPO for a batch. Per-example tensors have shape (B,); loss and nll are scalars."""

    loss: torch.Tensor  # () nll + lam * mean(or_loss)
    nll: torch.Tensor  # () the supervised term on the chosen responses, as given
    or_loss: torch.Tensor  # (B,) -log sigmoid(log_odds) >= 0
    log_odds: torch.Tensor  # (B,) log odds ratio: log odds(chosen) - log odds(rejected)
    ratio: torch.Tensor  # (B,) sigmoid(log_odds) in (0, 1): how strongly the model prefers chosen
    chosen_logps: torch.Tensor  # (B,) average per-token log-prob of the chosen response (log P_w)
    rejected_logps: torch.Tensor  # (B,) the same for the rejected response (log P_l)
    chosen_log_odds: torch.Tensor  # (B,) log(P_w / (1 - P_w))
    rejected_log_odds: torch.Tensor  # (B,) log(P_l / (1 - P_l))
    chosen_p: torch.Tensor  # (B,) P_w = exp(log P_w), the geometric-mean token probability
    rejected_p: torch.Tensor  # (B,) P_l


def orpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, nll: torch.Tensor, lam: float) -> ORPOLoss:
    """ORPO on average log-probs: L = NLL + lam * L_OR, L_OR = -log sigmoid(log odds ratio) (see the banner above).

    chosen_logps, rejected_logps: (B,) average per-token log-probs (<= 0) of each response, e.g. from
    `sequence_logps`. nll: the chosen responses' negative log-likelihood (a scalar, or (B,) which is averaged).
    lam: the weight of the odds-ratio term (the paper's lambda, TRL's beta), >= 0.
    """
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if chosen_logps.shape != rejected_logps.shape:
        raise ValueError(f"chosen {tuple(chosen_logps.shape)} and rejected {tuple(rejected_logps.shape)} differ")
    # Upcast as TRL does. An average log-prob of exactly 0 (every token certain after rounding) has infinite odds
    # and would make the gradient inf * 0 = nan; it is clamped to -1e-30 (odds e^69). The clamp also ZEROES that
    # entry's gradient (clamp passes no gradient where it clips): such a reply gets no push from the odds-ratio
    # term in that step (a chosen reply still gets one from the NLL term, which does not use this average).
    # Entries below -1e-30 are untouched, value and gradient.
    lw = chosen_logps.to(torch.promote_types(chosen_logps.dtype, torch.float32)).clamp(max=-1e-30)
    ll = rejected_logps.to(torch.promote_types(rejected_logps.dtype, torch.float32)).clamp(max=-1e-30)
    chosen_log_odds = lw - log1mexp(lw)  # log P - log(1 - P)
    rejected_log_odds = ll - log1mexp(ll)
    log_odds = chosen_log_odds - rejected_log_odds  # (B,)
    or_loss = -F.logsigmoid(log_odds)  # (B,) softplus(-log_odds): never log(sigmoid(.)) which underflows
    nll = nll.to(lw.dtype).mean()
    return ORPOLoss(
        loss=nll + lam * or_loss.mean(),
        nll=nll,
        or_loss=or_loss,
        log_odds=log_odds,
        ratio=torch.sigmoid(log_odds),
        chosen_logps=lw,
        rejected_logps=ll,
        chosen_log_odds=chosen_log_odds,
        rejected_log_odds=rejected_log_odds,
        chosen_p=lw.exp(),
        rejected_p=ll.exp(),
    )
