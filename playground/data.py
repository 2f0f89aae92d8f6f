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
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from playground import ASSETS, CHECKPOINTS
from playground.chat import encode_example, render_prompt
from playground.checkpoints import atomic_write
from playground.hub import hub_offline

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
    """Load the ids at `path` (.npy), or make them and write the file atomically (checkpoints.atomic_write)."""
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
        atomic_write(path, lambda tmp: _save_npy(tmp, array))
    except OSError as exc:  # a read-only disk only costs the next run an encode
        log.warning("could not write token cache %s (%s)", path, exc)
    return ids


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save given a name would append ".npy" to it
        np.save(f, array, allow_pickle=False)


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


# -------------------------------------------------------------------------------------------- preference data
# Preference pairs for ORPO, through `datasets` (imported lazily: it is slow to import and only alignment needs it).
# Every source is normalised to one shape, TRL's "conversational preference" format:
#     prompt:   list of {"role", "content"} messages (the conversation so far, ending with the user's turn)
#     chosen:   [{"role": "assistant", "content": the better reply}]
#     rejected: [{"role": "assistant", "content": the worse reply}]
#     source:   where the pair came from
# Accepted inputs: JSON Lines with flat `prompt` / `chosen` / `rejected` strings (our bigbench_pairs.jsonl), or with
# `chosen` / `rejected` as whole conversations (lists of messages, like mlabonne/orpo-dpo-mix-40k), where the prompt is
# every message but the last; or a Hub dataset id of either shape when online.
PREFERENCES_DIR = ASSETS / "preferences"
PREFERENCE_FILES = {
    "chatterbot": PREFERENCES_DIR / "chatterbot_qa.jsonl",  # questions and answers, turned into pairs below
    "bigbench": PREFERENCES_DIR / "bigbench_pairs.jsonl",  # ready-made pairs (helpful/honest/harmless, right/wrong)
}
# "choices" is built from bigbench_pairs.jsonl by `choice_pairs` (no file of its own): the multiple-choice questions
# with their options written into the prompt, so that "answer with one of the offered options" is something the
# prompt itself shows, which a 5M-parameter model can learn (knowing WHICH option is right it mostly cannot).
DEFAULT_PREFERENCES = "chatterbot,choices"
PAIR_KINDS = ("both", "mismatch", "runon")
CHOICE_SPLIT = (0.05, 1337)  # the align command's default (val_fraction, seed): a question's side stays put


def load_preferences(source: str = DEFAULT_PREFERENCES, pair_kind: str = "both", seed: int = 0):
    """Preference pairs from `source` as a normalised `datasets.Dataset` (columns above).

    `source` is a bundled name (`chatterbot`, `bigbench`), a local .jsonl/.json file, a Hub dataset id
    (`org/name`, online only), or several of these joined by commas, concatenated in that order.
    """
    import datasets

    parts = [s.strip() for s in str(source).split(",") if s.strip()]
    if not parts:
        raise ValueError(f"No preference data named in {source!r}: give a bundled name, a .jsonl file or a Hub id.")
    loaded = [_load_one_preference_source(p, pair_kind, seed) for p in parts]
    return loaded[0] if len(loaded) == 1 else datasets.concatenate_datasets(loaded)


def _load_one_preference_source(source: str, pair_kind: str, seed: int):
    if source == "chatterbot":
        return chatterbot_pairs(PREFERENCE_FILES["chatterbot"], kind=pair_kind, seed=seed)
    if source == "choices":
        return choice_pairs(seed=seed)
    path = PREFERENCE_FILES.get(source) or Path(source).expanduser()
    if path.is_file():
        raw = _read_json_lines(path)
        name = source if source in PREFERENCE_FILES else path.name
    elif _looks_like_hub_id(source):
        raw, name = _load_hub_dataset(source), source
    else:
        raise ValueError(
            f"Preference data {source!r} is neither a bundled name ({', '.join(PREFERENCE_FILES)}), "
            "an existing .jsonl file, nor a Hub dataset id (org/name)."
        )
    return normalise_preferences(raw, default_source=name)


def _read_json_lines(path: Path):
    import datasets

    if path.suffix not in (".jsonl", ".json"):
        raise ValueError(f"Preference files must be JSON Lines (.jsonl) or .json, got {path.name!r}")
    # keep_in_memory: small files, and no cache files left behind that could go stale when the file changes
    return datasets.load_dataset("json", data_files=str(path), split="train", keep_in_memory=True)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and " " not in source


def _load_hub_dataset(name: str):
    import datasets

    if hub_offline() or os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ValueError(
            f"{name!r} is a Hub dataset, but this machine is offline (HF_HUB_OFFLINE=1). Use the bundled "
            f"preference data ({', '.join(PREFERENCE_FILES)}) or a local .jsonl file in either shape."
        )
    try:
        return datasets.load_dataset(name, split="train")
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all become one readable message
        raise ValueError(f"Could not load the Hub dataset {name!r}: {type(exc).__name__}: {exc}") from exc


def normalise_preferences(raw, default_source: str = "local"):
    """Either input shape -> prompt (messages) / chosen / rejected ([assistant message]) / source."""
    cols = set(raw.column_names)
    if not {"chosen", "rejected"} <= cols:
        raise ValueError(f"Preference data needs 'chosen' and 'rejected' columns, found {sorted(cols)}")
    if len(raw) == 0:
        raise ValueError("The preference data has no rows.")

    def normalise(batch: dict) -> dict:
        n = len(batch["chosen"])
        prompts, sources = batch.get("prompt") or [None] * n, batch.get("source") or [None] * n
        out = {"prompt": [], "chosen": [], "rejected": [], "source": []}
        for prompt, chosen, rejected, source in zip(prompts, batch["chosen"], batch["rejected"], sources, strict=True):
            messages, chosen, rejected = _normalise_row(prompt, chosen, rejected)
            out["prompt"].append(messages)
            out["chosen"].append([{"role": "assistant", "content": chosen}])
            out["rejected"].append([{"role": "assistant", "content": rejected}])
            out["source"].append(str(source or default_source))
        return out

    out = raw.map(normalise, batched=True, remove_columns=raw.column_names, keep_in_memory=True)
    kept = out.filter(
        lambda b: [
            bool(c[0]["content"].strip() and r[0]["content"].strip())
            for c, r in zip(b["chosen"], b["rejected"], strict=True)
        ],
        batched=True,
        keep_in_memory=True,
    )
    if len(kept) < len(out):
        log.warning("%s: dropped %d pairs with an empty chosen or rejected reply", default_source, len(out) - len(kept))
    return kept


def _normalise_row(prompt, chosen, rejected) -> tuple[list[dict], str, str]:
    """One row of either shape -> (prompt messages, chosen reply text, rejected reply text)."""
    if isinstance(chosen, str) and isinstance(rejected, str):  # flat shape
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"A flat preference row needs a non-empty 'prompt' string, got {prompt!r}")
        return [{"role": "user", "content": prompt}], chosen, rejected
    if isinstance(chosen, list) and isinstance(rejected, list) and chosen and rejected:  # conversation shape
        for conv in (chosen, rejected):
            if conv[-1].get("role") != "assistant":
                raise ValueError(f"The last message of a conversation must be the assistant's, got {conv[-1]!r}")
        messages = [{"role": m["role"], "content": m["content"]} for m in chosen[:-1]]
        if not messages:
            raise ValueError("A conversation row needs at least one message before the reply (the prompt).")
        return messages, chosen[-1]["content"], rejected[-1]["content"]
    raise ValueError(
        "Each row needs chosen/rejected as two strings (with a 'prompt' string) or as two lists of "
        f"role/content messages; got {type(chosen).__name__} and {type(rejected).__name__}"
    )


def chatterbot_pairs(path: Path = PREFERENCE_FILES["chatterbot"], kind: str = "both", seed: int = 0):
    """The bundled chatterbot questions and answers turned into preference pairs (a `datasets.Dataset` of
    `chatterbot_pair_list`)."""
    import datasets

    return datasets.Dataset.from_list(chatterbot_pair_list(chatterbot_rows(path), kind, seed))


def chatterbot_rows(path: Path = PREFERENCE_FILES["chatterbot"]) -> list[dict]:
    """The chatterbot file's usable rows: {prompt, answer, category}. chatterbot-corpus 1.3.3's trivia file has a
    stretch of one-character "questions" (a string split letter by letter: 'I' -> 'n', 'n' -> ' ', ...); no real
    question is one character long, so those rows are dropped, and so are empty answers."""
    rows = read_jsonl(path)
    usable = [r for r in rows if len(r["prompt"].strip()) >= 2 and r["answer"].strip()]
    if len(usable) < len(rows):
        log.info("chatterbot: dropped %d rows with a one-character prompt or an empty answer", len(rows) - len(usable))
    return usable


def chatterbot_pair_list(rows: list[dict], kind: str = "both", seed: int = 0) -> list[dict]:
    """Chatterbot rows as preference pairs. chosen is always the real answer; rejected, by `kind`:
    "mismatch": an answer to a question from ANOTHER category (fluent but off-topic): teaches relevance;
    "runon":    the same answer that does not stop, running on into another question and its answer, as a
                base model runs on into a made-up next turn: the pair differs right after the answer, where
                the chosen reply has the end-of-sequence token, so ORPO teaches the model to stop there;
    "both":     two pairs per answer, one of each. This is what the bundled aligned model is trained on: a model
                that answers the question asked and then ends with eos.
    """
    if kind not in PAIR_KINDS:
        raise ValueError(f"kind must be one of {PAIR_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    pairs = []
    for i, row in enumerate(rows):
        prompt = [{"role": "user", "content": row["prompt"]}]
        chosen = [{"role": "assistant", "content": row["answer"]}]
        if kind in ("both", "mismatch"):
            other = _pick_other(rows, rng, lambda r, row=row: r["category"] != row["category"])
            pairs.append(_pair(prompt, chosen, other["answer"], "chatterbot/mismatch"))
        if kind in ("both", "runon"):
            other = _pick_other(rows, rng, lambda r, row=row: r["prompt"] != row["prompt"], avoid=i)
            runon = f"{row['answer']}\n{other['prompt']}\n{other['answer']}"
            pairs.append(_pair(prompt, chosen, runon, "chatterbot/runon"))
    return pairs


def read_jsonl(path: Path) -> list[dict]:
    """A JSON-lines file as a list of dicts (plain json: no `datasets`, fast enough for the app's start-up)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _pick_other(rows: list[dict], rng: np.random.Generator, ok: Callable[[dict], bool], avoid: int = -1) -> dict:
    for _ in range(1000):  # rejection sampling: categories are many and small, so this ends in a few draws
        j = int(rng.integers(len(rows)))
        if j != avoid and ok(rows[j]):
            return rows[j]
    raise ValueError("could not find a different row to pair with: the data has a single category or question")


def choice_prompt(question: str, options: list[str]) -> str:
    """A multiple-choice question with its options in the text, as the "choices" pairs and the demo show it."""
    return question.strip() + "\nOptions:\n" + "\n".join(f"- {o}" for o in options)


def choice_questions(path: Path = PREFERENCE_FILES["bigbench"], split: tuple[float, int] = CHOICE_SPLIT) -> list[dict]:
    """The multiple-choice questions behind bigbench_pairs.jsonl: {question, options, answer, prompt, source,
    held_out}. A question's options are its right answer and every wrong answer paired with it in the file, in an
    order fixed by a hash (so the right one is not always first). hhh_alignment rows (replies, not options) are left
    out. `held_out` is the side `split_preferences` puts the prompt with options on. A question whose bare prompt is
    held out of the bigbench pairs is dropped unless its prompt with options is held out too, so nothing the
    bigbench held-out figure scores is trained on here.
    Plain JSON reading (no `datasets`): the app lists held-out questions from it at start-up."""
    import json

    val_fraction, seed = split
    groups: dict[tuple[str, str], dict] = {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r["source"].startswith("bigbench/hhh") or not r["prompt"].strip():
                continue
            g = groups.setdefault((r["source"], r["prompt"]), {"answer": r["chosen"].strip(), "wrong": []})
            wrong = r["rejected"].strip()
            if g["answer"] == r["chosen"].strip() and wrong and wrong not in g["wrong"] and wrong != g["answer"]:
                g["wrong"].append(wrong)
    out = []
    for (source, question), g in groups.items():
        if not g["wrong"] or not g["answer"]:
            continue
        options = sorted(
            [g["answer"], *g["wrong"]], key=lambda o, q=question: hashlib.sha256(f"{q}|{o}".encode()).hexdigest()
        )
        prompt = choice_prompt(question, options)
        held = is_held_out(prompt, val_fraction, seed)
        if is_held_out(question, val_fraction, seed) and not held:
            continue
        out.append(
            {
                "question": question,
                "options": options,
                "answer": g["answer"],
                "prompt": prompt,
                "source": source,
                "held_out": held,
            }
        )
    return out


def choice_pairs(path: Path = PREFERENCE_FILES["bigbench"], seed: int = 0):
    """Preference pairs from `choice_questions`; chosen is always the right option. rejected:
    "choices/offtopic": an option of ANOTHER question (fluent but not one of those offered): teaches the model to
                        answer with one of the options in the prompt;
    "choices/runon":    the right option running on into another question, as a base model runs on: teaches it to
                        stop (end-of-sequence) after the option.
    """
    import datasets

    questions = choice_questions(path)
    rng = np.random.default_rng(seed)
    pairs = []
    for i, q in enumerate(questions):
        prompt = [{"role": "user", "content": q["prompt"]}]
        chosen = [{"role": "assistant", "content": q["answer"]}]
        other = _pick_other(questions, rng, lambda r, q=q: not set(r["options"]) & set(q["options"]), avoid=i)
        pairs.append(
            _pair(prompt, chosen, other["options"][int(rng.integers(len(other["options"])))], "choices/offtopic")
        )
        nxt = _pick_other(questions, rng, lambda r, q=q: r["question"] != q["question"], avoid=i)
        pairs.append(_pair(prompt, chosen, f"{q['answer']}\n{nxt['question']}", "choices/runon"))
    return datasets.Dataset.from_list(pairs)


def _pair(prompt: list[dict], chosen: list[dict], rejected: str, source: str) -> dict:
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": [{"role": "assistant", "content": rejected}],
        "source": source,
    }


# ------------------------------------------------------------------------- examples the ORPO and compare tabs offer
def shipped_examples(limit: int = 40, max_chars: int = 220) -> list[dict]:
    """Pairs from the shipped files whose prompts the bundled aligned model never trained on (held out with the
    align command's defaults), short enough to read at a glance: {label, prompt, chosen, rejected, source}, the
    ORPO tab's examples. Chatterbot pairs are made by `chatterbot_pair_list`, as for training (a mismatched and a
    run-on rejected reply for each answer); plain JSON reading (no `datasets`), so the app starts fast."""
    held = lambda prompt: is_held_out(prompt, *CHOICE_SPLIT)  # noqa: E731
    text = lambda messages: messages[0]["content"]  # noqa: E731
    out = []
    for p in chatterbot_pair_list(chatterbot_rows(), "both", seed=0):
        prompt, chosen, rejected = text(p["prompt"]), text(p["chosen"]), text(p["rejected"])
        if held(prompt) and len(prompt) + len(chosen) < max_chars:
            out.append(_example(prompt, chosen, rejected, p["source"]))
    for r in read_jsonl(PREFERENCE_FILES["bigbench"]):
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
    held = [q for q in choice_questions() if q["held_out"] and len(q["prompt"]) <= max_chars]
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


def _zip_longest(groups: list[list]) -> Iterator[list]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]


def filter_by_prompt_length(dataset, tokenizer, max_prompt_tokens: int):
    """Keep the rows whose prompt, as the model will see it (chat template + generation prompt), has fewer than
    `max_prompt_tokens` tokens, so prompt + reply fit the context. (The course's version assigned the filtered
    dataset to a misspelled name, `datatset`, and so kept every row: here the result is returned and used.)
    """
    if max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be at least 1, got {max_prompt_tokens}")

    def short_enough(batch: dict) -> list[bool]:
        return [len(tokenizer.encode(render_prompt(tokenizer, p))) < max_prompt_tokens for p in batch["prompt"]]

    return dataset.filter(
        short_enough,
        batched=True,
        keep_in_memory=True,
        new_fingerprint=_derived_fingerprint(dataset, tokenizer, "prompt<", max_prompt_tokens),
    )


def tokenize_preferences(dataset, tokenizer, max_len: int):
    """Add token ids and labels to every pair (`chat.encode_example`), batched through `datasets.map`.

    New columns: prompt_len, chosen_input_ids, chosen_labels, rejected_input_ids, rejected_labels (chosen and
    rejected padded to the same length; labels are -100 on the prompt and the padding).
    """

    def encode(batch: dict) -> dict:
        out = {
            k: [] for k in ("prompt_len", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
        }
        for p, c, r in zip(batch["prompt"], batch["chosen"], batch["rejected"], strict=True):
            ex = encode_example(tokenizer, p, c[-1]["content"], r[-1]["content"], max_len)
            for k in out:
                out[k].append(getattr(ex, k))
        return out

    return dataset.map(
        encode,
        batched=True,
        keep_in_memory=True,
        new_fingerprint=_derived_fingerprint(dataset, tokenizer, "orpo-tokens", max_len),
    )


def split_preferences(dataset, val_fraction: float = 0.05, seed: int = 42):
    """(train, validation), split by PROMPT with a seeded hash (`is_held_out`): pairs that share a prompt stay on
    the same side, so the held-out accuracy measures prompts the model never trained on; and whether a prompt is
    held out depends only on the prompt and the seed, so the ORPO tab can list held-out examples without loading
    the whole set, and adding data never moves an old prompt across."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    keys = [_prompt_key(p) for p in dataset["prompt"]]
    if len(set(keys)) < 2:
        raise ValueError(f"Need at least two different prompts to hold some out, got {len(set(keys))}")
    score = {k: _held_out_score(k, seed) for k in set(keys)}
    held = {k for k, v in score.items() if v < val_fraction}
    if not held:  # a small set can miss the fraction entirely: hold out the lowest-scoring prompt
        held = {min(score, key=score.get)}
    elif len(held) == len(score):
        held.discard(max(score, key=score.get))
    val_idx = [i for i, k in enumerate(keys) if k in held]
    train_idx = [i for i, k in enumerate(keys) if k not in held]
    return dataset.select(train_idx), dataset.select(val_idx)


def is_held_out(prompt: str | list[dict], val_fraction: float = 0.05, seed: int = 42) -> bool:
    """Whether `split_preferences` puts this prompt (text = one user message, or messages) in the validation side
    (up to the small-set fallbacks there)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return _held_out_score(_prompt_key(messages), seed) < val_fraction


def _held_out_score(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from the prompt and the seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "big") / 2**64


def _prompt_key(prompt: list[dict]) -> str:
    return "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in prompt)


def _derived_fingerprint(dataset, tokenizer, what: str, value) -> str:
    """A cache key for a transform, given explicitly: datasets would otherwise try to hash the tokenizer object."""
    base = getattr(dataset, "_fingerprint", "") or ""
    return hashlib.sha256(f"{base}|{tokenizer_fingerprint(tokenizer)}|{what}|{value}".encode()).hexdigest()[:16]
