"""Every bound that keeps a shared CPU Space alive, in one place (documented in the README).

Each can be raised for a private machine with an environment variable of the same name prefixed
`PLAYGROUND_` (e.g. `PLAYGROUND_MAX_TRAIN_STEPS=5000`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 100_000  # any text box (tokenize, cross-entropy, prompts)
    max_train_text_chars: int = 2_000_000  # pasted or uploaded training text / tokenizer training text
    max_eval_tokens: int = 1024  # tokens scored in the cross-entropy table
    max_train_steps: int = 2000  # steps in one training burst
    max_train_seconds: float = 120.0  # seconds in one training burst
    max_new_tokens: int = 512  # tokens per generated answer
    max_answers: int = 4  # answers per sampling request
    max_orpo_steps: int = 50  # ORPO steps on one example
    max_vocab_size: int = 16_000  # a tokenizer trained in the app
    max_model_params: int = 200_000_000  # Hub models loaded on a CPU machine
    max_train_params: int = 30_000_000  # models trained in the app
    # one training step's memory (weights, gradients, AdamW moments, activations of one batch), estimated from
    # the shapes before a model is built (playground/memory.py): batch x context x width x layers must fit
    max_train_memory_bytes: int = 3_000_000_000
    max_live_train_params: int = 500_000_000  # all learners' trainable models alive at once (runs, ORPO copies)
    max_client_train_params: int = 250_000_000  # the same, for one address: a class of 30 behind one school NAT fits
    trust_proxy: bool = False  # read the visitor's address from X-Forwarded-For (always on a Space: SPACE_ID set)
    reclaim_idle_seconds: int = 600  # past half of max_live_train_params, models unused this long are taken back
    load_timeout_seconds: float = 90.0  # a visitor waits this long for a Hub model / tokenizer (it loads on)
    max_download_bytes: int = 1_000_000_000  # a Hub download
    session_ttl_seconds: int = 3600  # per-user state (trained model, optimizer) lives this long
    # sessions Gradio keeps in memory: each costs ~0.4 MB of per-session config even after its state expired,
    # and Gradio's own default (10,000) would let that alone reach 4 GB; the least recently used go first
    max_sessions: int = 2000
    max_queue: int = 200  # jobs waiting in Gradio's queue, all visitors together (then "queue full")
    max_session_jobs: int = 8  # jobs one session may have waiting, running or unread at once
    max_upload_bytes: int = 100_000_000  # an uploaded checkpoint or text file
    # Local folders as model / tokenizer sources typed into the app. Off on a public Space: a visitor must not
    # read arbitrary server folders. Tests and `make run` set PLAYGROUND_ALLOW_LOCAL_PATHS=1.
    allow_local_paths: bool = False


def _from_env() -> Limits:
    values = {}
    for f in fields(Limits):
        raw = os.environ.get(f"PLAYGROUND_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(f.name, type(f.default), raw)
    return Limits(**values)


def _parse(name: str, kind: type, raw: str):
    if kind is bool:  # bool("0") is True: read the usual spellings instead
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"PLAYGROUND_{name.upper()} must be 1 or 0, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"PLAYGROUND_{name.upper()} must be a {kind.__name__}, got {raw!r}") from None


LIMITS = _from_env()


def check_text(text: str, what: str = "text", limit: int | None = None) -> str:
    """Return `text` if it is non-empty and within the limit, else raise ValueError saying which."""
    limit = LIMITS.max_text_chars if limit is None else limit
    if text is None or not str(text).strip():
        raise ValueError(f"The {what} is empty: type or paste some text first.")
    if len(text) > limit:
        raise ValueError(f"The {what} has {len(text):,} characters; the limit here is {limit:,}.")
    return text


def check_int(value, what: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from a UI number (which may be float, NaN or None), else ValueError."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}.") from None
    if f != f or not lo <= f <= hi or f != int(f):
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, got {value!r}.")
    return int(f)


def check_float(value, what: str, lo: float, hi: float) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}.") from None
    if f != f or not lo <= f <= hi:
        raise ValueError(f"{what} must be between {lo} and {hi}, got {value!r}.")
    return f
