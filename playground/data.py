"""Data for training: corpora -> token ids -> random batches (and, below, preference pairs for alignment).

Pretraining needs nothing more than one long row of token ids per split. A batch is `batch_size` random
windows of `context + 1` consecutive ids: the first `context` are the input `x`, the last `context` are the
targets `y` (the same window shifted by one), so every position learns to predict the token after it
(course notes, section 25).

Encoding a whole corpus takes seconds, so the ids are cached under checkpoints/cache/ (git-ignored), keyed
by the corpus text and the tokenizer's own bytes: a new tokenizer or an edited corpus never reuses stale ids.

Notation: B batch size, T context length (tokens per window).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from playground import CHECKPOINTS

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------- pretraining corpora
CACHE_DIR = CHECKPOINTS / "cache"
TEXT_VAL_FRACTION = 0.1  # pasted / uploaded text: the last 10% is held out, as the course split its data 90/10


@dataclass
class TokenData:
    """The token ids of one text, split into a training row and a held-out (validation) row.

    `train` and `val` are 1-D int64 tensors on the CPU; batches move to the training device one at a time,
    so a 40 MB corpus never sits twice in GPU memory. Read-only once built: shared by every user of the app.
    """

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    source: str = "text"  # what the ids came from, for logs and model cards ("austen", "pasted text", ...)
    tokenizer: Any = field(default=None, repr=False, compare=False)  # the Tokenizer that made the ids

    def __post_init__(self):
        for name in ("train", "val"):
            ids = getattr(self, name)
            if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
                raise ValueError(f"TokenData.{name} must be a 1-D tensor of token ids, got {type(ids).__name__}")
            if ids.dtype != torch.long:
                setattr(self, name, ids.long())

    @property
    def n_tokens(self) -> int:
        return len(self.train) + len(self.val)

    def split(self, name: str) -> torch.Tensor:
        if name == "train":
            return self.train
        if name in ("val", "eval"):  # the course calls the held-out split "eval"
            return self.val
        raise ValueError(f"split must be 'train' or 'val', got {name!r}")

    def check_fits(self, context: int) -> None:
        """Raise ValueError unless both splits hold at least one window of `context + 1` tokens."""
        need = context + 1
        if len(self.train) < need or len(self.val) < need:
            total = tokens_needed(context)
            raise ValueError(
                f"The training data ({self.source}) gives {self.n_tokens:,} tokens "
                f"({len(self.train):,} train, {len(self.val):,} held out); "
                f"training with a context of {context} tokens needs windows of {need} tokens in both splits: "
                f"about {total:,} tokens in all. Add more text or lower the context length."
            )

    def get_batch(
        self,
        split: str,
        batch_size: int,
        context: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` random windows of the split: x (B, T) and the targets y (B, T), y = x shifted by one."""
        return get_batch(self.split(split), batch_size, context, generator, device)


def tokens_needed(context: int, val_fraction: float = TEXT_VAL_FRACTION) -> int:
    """How many tokens a text must give so that its held-out part still holds one window of context + 1."""
    return int(np.ceil((context + 1) / val_fraction))


def get_batch(
    ids: torch.Tensor,
    batch_size: int,
    context: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of one row of ids: x (B, T), y (B, T) with y[b, t] = ids[start_b + t + 1].

    The starts come from `generator` (a CPU torch.Generator), so a seeded generator gives the same batches
    on any device. One gather instead of the course's Python loop over `torch.stack`.
    """
    if batch_size < 1 or context < 1:
        raise ValueError(f"batch_size and context must be at least 1, got {batch_size} and {context}")
    if len(ids) < context + 1:
        raise ValueError(f"{len(ids):,} tokens cannot fill one window of context {context} + 1 target")
    starts = torch.randint(len(ids) - context, (batch_size,), generator=generator)  # (B,)
    windows = ids[starts[:, None] + torch.arange(context + 1)]  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T) each
    device = torch.device(device)
    if device.type == "cuda":  # pinned memory lets the copy overlap with the GPU's work
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ------------------------------------------------------------------------------------------- encoding
def encode_text(tokenizer, text: str, progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Token ids of `text` as a 1-D int64 tensor, encoded in chunks of whole lines (progress in [0, 1])."""
    chunk = 1 << 20  # ~1 MB of characters per call keeps memory flat and lets a progress bar move
    parts, start = [], 0
    while start < len(text):
        end = len(text) if start + chunk >= len(text) else text.rfind("\n", start, start + chunk) + 1
        if end <= start:  # one line longer than a chunk: cut it at the chunk size
            end = start + chunk
        parts.append(np.asarray(tokenizer.encode(text[start:end]), dtype=np.int64))
        start = end
        if progress is not None:
            progress(start / len(text))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(ids)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash that changes whenever the tokenizer would encode differently (its model bytes, else its name)."""
    h = hashlib.sha256()
    to_bytes = getattr(tokenizer, "to_bytes", None)
    payload = to_bytes() if callable(to_bytes) else None
    if isinstance(payload, (bytes, bytearray)):
        h.update(bytes(payload))
    else:
        h.update(f"{getattr(tokenizer, 'name', type(tokenizer).__name__)}:{tokenizer.vocab_size}".encode())
    return h.hexdigest()[:16]


def _text_fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _cached_ids(path: Path, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Load the ids at `path` (.npy), or make them and write the file atomically (temp file + os.replace)."""
    if path.exists():
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.int64))
        except (OSError, ValueError) as exc:  # a damaged cache file is re-made, never trusted
            log.warning("ignoring unreadable token cache %s (%s)", path, exc)
    ids = make()
    # uint16 halves the file for vocabularies up to 65,536 pieces (the bundled one has 4,096).
    small = ids.numel() == 0 or int(ids.max()) < 2**16
    array = ids.numpy().astype(np.uint16 if small else np.int32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only disk only costs the next run an encode
        log.warning("could not write token cache %s (%s)", path, exc)
    return ids


_CORPUS_LOCK = threading.Lock()
_CORPUS_DATA: dict[tuple, TokenData] = {}


def corpus_data(
    name: str,
    tokenizer=None,
    val_fraction: float = 0.05,
    cache_dir: Path | None = CACHE_DIR,
    progress: Callable[[float], None] | None = None,
) -> TokenData:
    """The token ids of a shipped corpus ("austen", "sotu", "kjv" or "all"), train and held-out splits.

    The held-out split is the corpus module's (the last 5% of each file). Encoded ids are cached on disk
    (`cache_dir`, None for no disk cache) and in memory, so only the first learner pays for the encoding.
    """
    from playground import corpus

    if tokenizer is None:
        from playground.tokenizer import load_tokenizer

        tokenizer = load_tokenizer("bundled")
    key = (name, val_fraction, tokenizer_fingerprint(tokenizer), None if cache_dir is None else str(cache_dir))
    with _CORPUS_LOCK:  # two learners asking at once encode once
        if key not in _CORPUS_DATA:
            _CORPUS_DATA[key] = _encode_corpus(corpus, name, tokenizer, val_fraction, cache_dir, progress)
        return _CORPUS_DATA[key]


def _encode_corpus(corpus, name, tokenizer, val_fraction, cache_dir, progress) -> TokenData:
    t0 = time.perf_counter()
    train_text, val_text = corpus.split_corpus(name, val_fraction)
    splits = {}
    for i, (split, text) in enumerate((("train", train_text), ("val", val_text))):
        share = (0.0, 0.95)[i], (0.95, 0.05)[i]  # the train split is ~95% of the work

        def step(frac, share=share):
            if progress is not None:
                progress(share[0] + share[1] * frac)

        make = lambda text=text, step=step: encode_text(tokenizer, text, step)
        if cache_dir is None:
            splits[split] = make()
        else:
            fname = f"{name}-{split}-{_text_fingerprint(text)}-{tokenizer_fingerprint(tokenizer)}.npy"
            splits[split] = _cached_ids(Path(cache_dir) / fname, make)
    log.info(
        "corpus %s: %d train + %d val tokens in %.1f s",
        name,
        len(splits["train"]),
        len(splits["val"]),
        time.perf_counter() - t0,
    )
    return TokenData(splits["train"], splits["val"], source=f"corpus {name}", tokenizer=tokenizer)


def text_data(
    text: str,
    tokenizer=None,
    context: int | None = None,
    val_fraction: float = TEXT_VAL_FRACTION,
    source: str = "your text",
) -> TokenData:
    """Pasted or uploaded text -> TokenData: the first 90% of the tokens train, the last 10% are held out.

    With `context` given, a text too small for one window in each split raises ValueError with the count needed.
    """
    if tokenizer is None:
        from playground.tokenizer import load_tokenizer

        tokenizer = load_tokenizer("bundled")
    if not text or not text.strip():
        raise ValueError("The training text is empty: paste some text or upload a .txt file.")
    ids = encode_text(tokenizer, text)
    cut = len(ids) - max(1, int(len(ids) * val_fraction))
    data = TokenData(ids[:cut].clone(), ids[cut:].clone(), source=source, tokenizer=tokenizer)
    if context is not None:
        data.check_fits(context)
    return data
