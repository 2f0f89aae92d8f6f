"""The shipped pretraining corpora (assets/corpus/*.gz): read them, split them, sample them.

Three plain-prose corpora ship with the playground (provenance in assets/README.md):

    austen  six Jane Austen novels                     ~4.0 MB
    sotu    US State of the Union addresses 1790-2021  ~10.8 MB (one address per line)
    kjv     the King James Bible, one verse per line   ~4.1 MB

`"all"` means the three together. The held-out (validation) text is the LAST `val_fraction` of EACH
file, cut at a line boundary, so every corpus is represented in validation and no line is shared
between the two splits. The tokenizer is trained on the train split only, so validation text is
genuinely unseen by both the tokenizer and the model.
"""

from __future__ import annotations

import functools
import gzip
import logging
from pathlib import Path

from playground import ASSETS

log = logging.getLogger(__name__)

CORPUS_DIR = ASSETS / "corpus"
CORPORA: dict[str, Path] = {
    "austen": CORPUS_DIR / "austen.txt.gz",
    "sotu": CORPUS_DIR / "state_of_the_union.txt.gz",
    "kjv": CORPUS_DIR / "kjv_bible.txt.gz",
}
DESCRIPTIONS: dict[str, str] = {
    "austen": "Jane Austen: six novels (~4 MB)",
    "sotu": "State of the Union addresses 1790-2021 (~11 MB)",
    "kjv": "King James Bible, one verse per line (~4 MB)",
    "all": "all three corpora (~19 MB)",
}
ALL = "all"


def corpus_names(include_all: bool = True) -> list[str]:
    return list(CORPORA) + ([ALL] if include_all else [])


def _check_name(name: str) -> list[str]:
    """The file names `name` stands for (one corpus, or all of them)."""
    if name == ALL:
        return list(CORPORA)
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {corpus_names()}")
    return [name]


@functools.cache
def _read_one(name: str) -> str:
    path = CORPORA[name]
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} is missing (it ships with the repository under assets/corpus/)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = f.read()
    # Every file ends with exactly one newline, so concatenating files never glues two lines together.
    return text.rstrip("\n") + "\n"


def read_corpus(name: str) -> str:
    """The whole text of one corpus, or of all three concatenated (`"all"`). Cached: read once per process."""
    return "".join(_read_one(n) for n in _check_name(name))


def split_text(text: str, val_fraction: float = 0.05) -> tuple[str, str]:
    """Split one text into (train, val): val is the last `val_fraction` of the characters, cut at a line start.

    The cut moves back to the start of the line holding the nominal cut point, so val is never smaller than
    asked for; a text with no line break before that point is cut at the character.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    cut = len(text) - max(1, int(len(text) * val_fraction))
    line_start = text.rfind("\n", 0, cut) + 1  # 0 when there is no earlier line break
    if line_start > 0:
        cut = line_start
    return text[:cut], text[cut:]


@functools.lru_cache(maxsize=16)
def split_corpus(name: str, val_fraction: float = 0.05) -> tuple[str, str]:
    """(train_text, val_text) of a corpus; for `"all"` each file is split on its own and the parts concatenated."""
    trains, vals = [], []
    for n in _check_name(name):
        train, val = split_text(_read_one(n), val_fraction)
        trains.append(train)
        vals.append(val)
        log.debug("corpus %s: %d train chars, %d val chars", n, len(train), len(val))
    return "".join(trains), "".join(vals)


def _trim_to_boundary(head: str) -> str:
    """`head` cut after its last whole line, else after its last sentence end, else as it is."""
    if "\n" in head:
        return head[: head.rfind("\n")]
    if ". " in head:
        return head[: head.rfind(". ") + 1]
    return head


def sample_corpus(name: str, max_chars: int, val_fraction: float = 0.05) -> str:
    """At most `max_chars` characters of a corpus's TRAIN split, whole lines only, shared evenly among its files.

    Used where a small, quick sample is enough (training a tokenizer in the app). Lines longer than a file's
    share (State of the Union addresses are one line each) are cut at the last sentence end within it.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars!r}")
    names = _check_name(name)
    share = max_chars // len(names)
    parts = []
    for n in names:
        train, _ = split_text(_read_one(n), val_fraction)
        head = train[:share]
        parts.append(_trim_to_boundary(head) + "\n")
    return "".join(parts)[:max_chars]
