"""Tokenizers: text <-> integer ids, with one face over SentencePiece and any `transformers` tokenizer.

    text --encode--> ids (list[int])  --decode--> text
    pieces(text) = the vocabulary strings behind encode(text); `▁` (U+2581) marks a space,
    `<0xE2>`-style pieces are raw UTF-8 bytes (byte fallback: no character is ever "unknown").

Two implementations share the `Tokenizer` interface:
- `SentencePieceTokenizer`: our own, trained by `train_tokenizer` with the course's settings (notes §52) and
  bundled under checkpoints/tokenizer/ (built by `python -m playground tokenizer`, see its README.md card).
- `HFTokenizer`: anything `transformers.AutoTokenizer` loads from a local folder or a Hub id.

`apply_chat_template` renders a Jinja chat template (ours: `CHAT_TEMPLATE`) and encodes it so that special-token
strings in the rendered text (`</s>`, `<|user|>`) become their ids rather than being spelled out letter by letter.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import re
import time
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

from playground import CHECKPOINTS
from playground.hub import hub_offline, is_hub_id
from playground.sp_proto import piece_types, trainer_settings, without_dummy_prefix

log = logging.getLogger(__name__)

BUNDLED_DIR = CHECKPOINTS / "tokenizer"
BUNDLED = "bundled"
CHAT_SYMBOLS = ("<|system|>", "<|user|>", "<|assistant|>")
MODEL_TYPES = ("bpe", "unigram", "char", "word")

# The course's chat template (notes §83-84), cleaned. Each message is `<|role|>\n` + content + eos_token, and the
# generation prompt is `<|assistant|>\n`. The notes' version put `\n` after every `}}`; Jinja's trim_blocks only
# eats newlines after `%}` tags, so those became stray newlines after each eos_token (and the generation prompt
# only got its `\n` by accident). This one has no literal text outside the expressions, so it renders the same
# with or without trim_blocks. Unknown roles are an error rather than silently dropped.
# Role tokens are unforgeable: a message's content cannot contain `<|user|>`, `</s>` & co. as such, because the
# template puts a WORD JOINER (U+2060, invisible) after their `<`, so what a user types stays text in every
# encoder that renders this template (ours, and transformers' apply_chat_template with its defaults).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role'] + ' (use system, user or assistant)') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + (message['content'] | replace('<|', '<\u2060|') | replace('</s>', "
    "'<\u2060/s>') | replace('<s>', '<\u2060s>') | replace('<unk>', '<\u2060unk>')) + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# The course's SentencePiece settings (notes §52), applied exactly. `unk_surface` there is written
# r" \342\201\207 ", which is protobuf's octal escape of the UTF-8 bytes of U+2047 "⁇" (SentencePiece's default);
# passed as a Python raw string it would be the literal backslash digits, so we give the character itself.
COURSE_SETTINGS: dict = {
    "model_type": "bpe",
    "character_coverage": 0.995,
    "split_digits": True,
    "allow_whitespace_only_pieces": True,
    "byte_fallback": True,
    "unk_surface": " \u2047 ",
    "normalization_rule_name": "identity",
}
# Our additions, each for a reason:
# - remove_extra_whitespaces=False: SentencePiece's default collapses runs of spaces and drops leading ones, which
#   makes decode(encode(text)) lossy and makes allow_whitespace_only_pieces pointless (there would be no runs).
# - num_threads=1 and a fixed seed: same text + settings = byte-identical model file.
# - max_sentence_length: lines longer than this many bytes are skipped by SentencePiece, so we cut long lines
#   (a State of the Union address is one line) at sentence ends first; see `training_sentences`.
# - add_dummy_prefix=False: SentencePiece's default prepends a space ("▁") to every encoded string, even one that
#   starts with a space (" a" -> "▁", "▁a"), which transformers' tokenizers (Metaspace) do not do, so the two
#   disagreed on leading spaces. Without it text encodes the same wherever it is cut, a chunk of corpus lines
#   or a prompt, and decode(encode(text)) == text still holds (the first word simply has no "▁", as in GPT-2).
PLAYGROUND_SETTINGS: dict = {
    "remove_extra_whitespaces": False,
    "add_dummy_prefix": False,
    "num_threads": 1,
    "max_sentence_length": 4192,
}
SEED = 1234

# The bundled tokenizer's preset: every character in the training text gets a piece (character_coverage=1.0)
# and so does every printable ASCII character and common punctuation, even those the corpus lacks (`#`, `<`,
# `{`, `~`, curly quotes), so code, maths and chat text never fall back to bytes. The course's 0.995 leaves the
# rarest characters out (digits 2-9, `!`, `?`, capitals such as P): they encode as byte pieces and cannot merge.
# (U+2060, the WORD JOINER that defuses special-token strings in chat messages, gets a piece too.)
REQUIRED_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + (
    "\u2014\u2013\u2018\u2019\u201c\u201d\u2026\u00b0\u00a3\u20ac\u2022\u00e9\u2060"
)
PRINTABLE_ASCII = " " + "".join(chr(c) for c in range(0x21, 0x7F))
PRESETS: dict[str, dict] = {
    "course": {},  # COURSE_SETTINGS exactly (character_coverage=0.995)
    "full": {"character_coverage": 1.0, "required_chars": REQUIRED_CHARS},
}
BUNDLED_PRESET = "full"


# --------------------------------------------------------------------------------------- the interface
class Tokenizer(ABC):
    """What every part of the playground uses: ids in, ids out, and the pieces in between."""

    name: str = "tokenizer"
    chat_template: str | None = None

    @abstractmethod
    def encode(self, text: str, specials: bool = False) -> list[int]:
        """Ids of `text`. With specials=True, special-token strings in the text (`</s>`) become their ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def id_to_piece(self, i: int) -> str: ...

    @abstractmethod
    def is_byte(self, i: int) -> bool:
        """True for a byte-fallback piece such as `<0xE2>`."""

    @abstractmethod
    def is_special(self, i: int) -> bool:
        """True for control / added special tokens (`<s>`, `</s>`, `<unk>`, `<|user|>`)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Special-token strings and their ids, longest first (the order to match them in text)."""

    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    _pad_id: int | None = None

    @property
    def pad_id(self) -> int:
        """The padding id: the tokenizer's own, else eos (as the course does: `pad_token = eos_token`)."""
        pad = self._pad_id if self._pad_id is not None and self._pad_id >= 0 else self.eos_id
        if pad is None:
            raise ValueError(f"tokenizer {self.name!r} has neither a pad nor an eos token")
        return pad

    def token_string(self, i: int | None) -> str:
        return "" if i is None or i < 0 else self.id_to_piece(i)

    def pieces(self, text: str) -> list[str]:
        return [self.id_to_piece(i) for i in self.encode(text)]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The chat as text, through this tokenizer's template (ours when it has none).

        Special-token strings inside a message's content (a user typing `<|assistant|>`) are defused first, so
        only the template itself can write a role or end-of-turn token, whatever the template (see `defuse`).
        """
        if isinstance(messages, list):
            messages = [
                {**m, "content": defuse(m["content"], self.special_tokens)}
                if isinstance(m, dict) and isinstance(m.get("content"), str)
                else m
                for m in messages
            ]
        return render_chat_template(
            self.chat_template or CHAT_TEMPLATE,
            messages,
            add_generation_prompt,
            bos_token=self.token_string(self.bos_id),
            eos_token=self.token_string(self.eos_id),
            unk_token=self.token_string(self.unk_id),
            pad_token=self.token_string(self.pad_id),
        )

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        """Ids of the rendered chat; `</s>` and friends in the rendered text map to their ids."""
        return self.encode_structured(self.render_chat(messages, add_generation_prompt))

    def encode_structured(self, text: str) -> list[int]:
        """Encode template output: special strings become ids. Subclasses may differ from encode(specials=True)."""
        return self.encode(text, specials=True)

    @abstractmethod
    def save(self, folder: str | Path) -> Path: ...

    @abstractmethod
    def to_bytes(self) -> bytes:
        """One file to download: the `.model` file for SentencePiece, a zip of the saved folder otherwise."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


def split_on_specials(text: str, specials: dict[str, int]) -> list[str | int]:
    """`text` cut into plain strings and the ids of the special-token strings found in it (longest match wins)."""
    if not specials:
        return [text] if text else []
    pattern = "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True))
    out: list[str | int] = []
    for part in re.split(f"({pattern})", text):
        if part in specials:
            out.append(specials[part])
        elif part:
            out.append(part)
    return out


WORD_JOINER = "\u2060"  # invisible; what defuse() puts after the first character of a special-token string


def defuse(text: str, specials: dict[str, int] | Sequence[str]) -> str:
    """`text` with every special-token string in it broken by a WORD JOINER after its first character.

    The result renders the same on screen but can no longer be read as the special token by any encoder, ours or
    transformers', so text a user types cannot forge a chat turn (`<|assistant|>`) or end one (`</s>`).
    """
    for s in sorted(specials, key=len, reverse=True):
        if len(s) > 1 and s in text:
            text = text.replace(s, s[0] + WORD_JOINER + s[1:])
    return text


def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool = False, **tokens) -> str:
    """Render a Hugging Face-style chat template with Jinja, in the same sandbox settings transformers uses."""
    import jinja2

    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {messages!r:.200}")
    if template != CHAT_TEMPLATE:  # someone else's program: bounded in time, memory and output, in a worker
        from playground import template_sandbox

        return template_sandbox.render(template, messages, add_generation_prompt, tokens)
    try:
        return _compiled_template(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **tokens
        )
    except jinja2.TemplateError as exc:
        raise ValueError(f"chat template failed to render: {exc}") from exc


@functools.lru_cache(maxsize=16)
def _compiled_template(template: str):
    """Compile a template once: compiling costs ~5 ms, rendering a few µs, and datasets render thousands."""
    from playground import template_sandbox

    return template_sandbox.compile_template(template, bounded=False)


# ------------------------------------------------------------------------------------ SentencePiece
class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (from a .model file or its bytes), with an optional chat template."""

    def __init__(self, model_proto: bytes, name: str = "sentencepiece", chat_template: str | None = CHAT_TEMPLATE):
        import sentencepiece as spm

        if not isinstance(model_proto, bytes | bytearray) or not model_proto:
            raise ValueError("a SentencePiece model needs the bytes of a .model file")
        self._proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self._proto)
            # Text that continues right after a special token must not get the implicit leading space (▁).
            self._sp_cont = spm.SentencePieceProcessor()
            self._sp_cont.LoadFromSerializedProto(without_dummy_prefix(self._proto))
        except (RuntimeError, OSError, IndexError) as exc:
            raise ValueError(f"not a valid SentencePiece model ({exc})") from None
        self.name = name
        self.chat_template = chat_template
        self._types = piece_types(self._proto)
        self.bos_id, self.eos_id, self.unk_id = (
            self._opt(self.sp.bos_id()),
            self._opt(self.sp.eos_id()),
            self._opt(self.sp.unk_id()),
        )
        self._pad_id = self._opt(self.sp.pad_id())
        self._specials = {
            self.sp.id_to_piece(i): i for i, t in enumerate(self._types) if t in ("control", "unknown", "user_defined")
        }
        self._specials = dict(sorted(self._specials.items(), key=lambda kv: -len(kv[0])))

    @staticmethod
    def _opt(i: int) -> int | None:
        return None if i < 0 else i

    @classmethod
    def from_file(cls, path: str | Path, **kw) -> SentencePieceTokenizer:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"SentencePiece model file not found: {path}")
        kw.setdefault("name", path.parent.name if path.name == "tokenizer.model" else path.stem)
        return cls(path.read_bytes(), **kw)

    @classmethod
    def from_folder(cls, folder: str | Path, name: str | None = None) -> SentencePieceTokenizer:
        folder = Path(folder)
        config = _read_json(folder / "tokenizer_config.json")
        return cls.from_file(
            folder / "tokenizer.model",
            name=name or folder.name,
            chat_template=config.get("chat_template", CHAT_TEMPLATE),
        )

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def model_proto(self) -> bytes:
        return self._proto

    def settings(self) -> dict:
        return trainer_settings(self._proto)

    def encode(self, text: str, specials: bool = False) -> list[int]:
        if not specials:
            return list(self.sp.encode(text))
        return self._encode_parts(split_on_specials(text, self._specials), continued=False)

    def encode_structured(self, text: str) -> list[int]:
        # Template output starts with a token like <|user|>, not prose: no implicit leading space anywhere.
        return self._encode_parts(split_on_specials(text, self._specials), continued=True)

    def _encode_parts(self, parts: list[str | int], continued: bool) -> list[int]:
        ids: list[int] = []
        for part in parts:
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend((self._sp_cont if continued or ids else self.sp).encode(part))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids out of range for a vocabulary of {self.vocab_size}: {bad[:5]}")
        # SentencePiece drops control tokens (<s>, </s>) when decoding; we spell them out, as transformers does
        # with skip_special_tokens=False, so a decoded chat shows its structure. Text after a control token is
        # decoded without removing a leading space (that removal is only for the dummy prefix at the start).
        out, run, first = [], [], True
        for i in ids + [-1]:
            if i >= 0 and self._types[i] != "control":
                run.append(i)
                continue
            if run:
                out.append((self.sp if first else self._sp_cont).decode(run))
            if i >= 0:
                out.append(self.sp.id_to_piece(i))
            run, first = [], False
        return "".join(out)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def is_byte(self, i: int) -> bool:
        return self._types[i] == "byte"

    def is_special(self, i: int) -> bool:
        return self._types[i] in ("control", "unknown", "user_defined")

    def save(self, folder: str | Path) -> Path:
        """Write tokenizer.model + tokenizer_config.json (+ special_tokens_map.json) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.model").write_bytes(self._proto)
        tok = {
            name: self.token_string(i) or None
            for name, i in (
                ("bos_token", self.bos_id),
                ("eos_token", self.eos_id),
                ("unk_token", self.unk_id),
                ("pad_token", self.pad_id),
            )
        }
        added = {
            str(i): {
                "content": s,
                "special": True,
                "normalized": False,
                "lstrip": False,
                "rstrip": False,
                "single_word": False,
            }
            for s, i in sorted(self._specials.items(), key=lambda kv: kv[1])
        }
        fast = self.tokenizers_json()
        if fast is not None:
            (folder / "tokenizer.json").write_text(fast, encoding="utf-8")
        else:
            (folder / "tokenizer.json").unlink(missing_ok=True)
        config = {
            # with tokenizer.json: load exactly that pipeline; without: transformers converts tokenizer.model
            "tokenizer_class": "PreTrainedTokenizerFast" if fast is not None else "LlamaTokenizer",
            "playground_tokenizer": "sentencepiece",  # tells load_tokenizer this folder is ours
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": True,
            "legacy": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1_000_000,
            "chat_template": self.chat_template,
            "added_tokens_decoder": added,
            **tok,
        }
        _write_json(folder / "tokenizer_config.json", config)
        _write_json(folder / "special_tokens_map.json", {k: v for k, v in tok.items() if v})
        return folder

    def to_bytes(self) -> bytes:
        return self._proto

    def tokenizers_json(self) -> str | None:
        """This model as a `tokenizers` pipeline (tokenizer.json) that encodes exactly as SentencePiece does.

        Only for a BPE model without the dummy prefix (ours): spaces become "▁", then BPE with SentencePiece's
        merges (a piece's rank is its id) and byte fallback; special tokens are matched in the raw text. None for
        other models: transformers then converts tokenizer.model itself (it needs protobuf for that).
        """
        settings = self.settings()
        if settings.get("model_type") != "bpe" or settings.get("add_dummy_prefix", True):
            return None
        from tokenizers import AddedToken, decoders, models, normalizers
        from tokenizers import Tokenizer as FastTokenizer

        vocab = {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}
        merges = []
        for piece, rank in vocab.items():
            if self._types[rank] != "normal" or len(piece) < 2:
                continue
            for cut in range(1, len(piece)):
                left, right = piece[:cut], piece[cut:]
                if left in vocab and right in vocab:
                    merges.append((rank, vocab[left], vocab[right], left, right))
        merges.sort()
        unk = self.token_string(self.unk_id) or None
        fast = FastTokenizer(
            models.BPE(vocab, [(m[3], m[4]) for m in merges], unk_token=unk, fuse_unk=True, byte_fallback=True)
        )
        fast.normalizer = normalizers.Replace(" ", "\u2581")
        fast.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
        specials = sorted(self._specials.items(), key=lambda kv: kv[1])
        fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in specials])
        return fast.to_str(pretty=True)


# ------------------------------------------------------------------------------------- transformers


class HFTokenizer(Tokenizer):
    """Any tokenizer `transformers.AutoTokenizer` loads, behind the playground's interface."""

    def __init__(self, hf_tokenizer, name: str):
        self.hf = hf_tokenizer
        self.name = name
        self.chat_template = getattr(hf_tokenizer, "chat_template", None)
        self.bos_id, self.eos_id, self.unk_id = (
            hf_tokenizer.bos_token_id,
            hf_tokenizer.eos_token_id,
            hf_tokenizer.unk_token_id,
        )
        self._pad_id = hf_tokenizer.pad_token_id
        added = {tok.content: i for i, tok in hf_tokenizer.added_tokens_decoder.items() if tok.special}
        for s, i in zip(hf_tokenizer.all_special_tokens, hf_tokenizer.all_special_ids, strict=False):
            added.setdefault(s, i)
        self._specials = dict(sorted(added.items(), key=lambda kv: -len(kv[0])))
        self._special_ids = set(self._specials.values())

    @classmethod
    def load(cls, source: str) -> HFTokenizer:
        from transformers import AutoTokenizer

        is_dir = Path(source).is_dir()
        repo, _, revision = source.partition("@")
        if not is_dir and not is_hub_id(source):
            raise ValueError(f"{source!r} is neither a folder nor a Hub id like 'org/name' or 'org/name@revision'")
        offline = hub_offline()
        try:
            # Local files first: instant when cached, and never touches the network.
            hf = AutoTokenizer.from_pretrained(
                source if is_dir else repo, revision=revision or None, local_files_only=True
            )
        except Exception as local_exc:  # noqa: BLE001 - transformers raises OSError / ValueError / others
            if is_dir or offline:
                where = "this folder" if is_dir else "the local cache (the Hub is offline here: HF_HUB_OFFLINE=1)"
                raise ValueError(
                    f"could not load a tokenizer from {source!r}: not found in {where} "
                    f"({type(local_exc).__name__}: {str(local_exc)[:200]})"
                ) from None
            try:
                hf = AutoTokenizer.from_pretrained(repo, revision=revision or None)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(
                    f"could not load the tokenizer {source!r} from the Hugging Face Hub "
                    f"(offline, a typo, or a private repo?): {type(exc).__name__}: {str(exc)[:200]}"
                ) from None
        return cls(hf, name=source)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    def encode(self, text: str, specials: bool = False) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False, split_special_tokens=not specials))

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def id_to_piece(self, i: int) -> str:
        return self.hf.convert_ids_to_tokens(int(i))

    def is_byte(self, i: int) -> bool:
        return bool(re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", self.id_to_piece(i) or ""))

    def is_special(self, i: int) -> bool:
        return int(i) in self._special_ids

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.hf.save_pretrained(str(folder))
        return folder

    def to_bytes(self) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for f in sorted(Path(tmp).iterdir()):
                    z.write(f, f.name)
        return buf.getvalue()


# -------------------------------------------------------------------------------------------- loading
_CACHE: dict[str, Tokenizer] = {}


def load_tokenizer(source: str | Path = BUNDLED) -> Tokenizer:
    """ "bundled", a folder (ours or a transformers one), a SentencePiece .model file, or a Hub id `org/name[@rev]`."""
    source = str(source).strip()
    if not source:
        raise ValueError("no tokenizer given: use 'bundled', a folder, a .model file or a Hub id")
    if source == BUNDLED:
        if BUNDLED not in _CACHE:  # read-only, shared by every user
            if not (BUNDLED_DIR / "tokenizer.model").exists():
                raise ValueError(
                    f"the bundled tokenizer is missing from {BUNDLED_DIR}: run `python -m playground "
                    "tokenizer` to build it"
                )
            _CACHE[BUNDLED] = SentencePieceTokenizer.from_folder(BUNDLED_DIR, name="bundled BPE 4096")
        return _CACHE[BUNDLED]
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".model":
            raise ValueError(f"{source!r} is a file but not a SentencePiece .model file")
        return SentencePieceTokenizer.from_file(path)
    if path.is_dir():
        config = _read_json(path / "tokenizer_config.json")
        ours = config.get("playground_tokenizer") == "sentencepiece" or not (
            (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()
        )
        if (path / "tokenizer.model").exists() and ours:
            return SentencePieceTokenizer.from_folder(path)
        return HFTokenizer.load(str(path))
    if source.startswith((".", "/", "~")) or os.sep in source.replace("/", ""):
        raise ValueError(f"no such file or folder: {source!r}")
    return HFTokenizer.load(source)


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- training
def training_sentences(text: str, max_bytes: int = 4000) -> Iterator[str]:
    """The non-empty lines of `text`, long ones cut at sentence ends so each stays under `max_bytes` of UTF-8.

    SentencePiece silently skips any line longer than max_sentence_length bytes (4192 by default).
    """
    for line in text.splitlines():
        line = line.rstrip()
        if not line.strip():
            continue
        if len(line.encode("utf-8")) <= max_bytes:
            yield line
            continue
        chunk = ""
        for sentence in re.split(r"(?<=[.!?;:])\s+", line):
            while len(sentence.encode("utf-8")) > max_bytes:  # one giant "sentence": cut it by characters
                if chunk:
                    yield chunk
                    chunk = ""
                cut = max_bytes // 4  # a character is at most 4 bytes, so this many always fit
                yield sentence[:cut]
                sentence = sentence[cut:]
            candidate = f"{chunk} {sentence}" if chunk else sentence
            if len(candidate.encode("utf-8")) > max_bytes:
                yield chunk
                candidate = sentence
            chunk = candidate
        if chunk:
            yield chunk


def train_tokenizer(
    text: str,
    vocab_size: int = 4096,
    model_type: str = "bpe",
    control_symbols: Sequence[str] = CHAT_SYMBOLS,
    name: str | None = None,
    preset: str = "course",
    **overrides,
) -> SentencePieceTokenizer:
    """Train a SentencePiece tokenizer on `text` in memory with the course's settings (plus ours, see above).

    `preset` "course" keeps the course's settings exactly; "full" (the bundled tokenizer's) gives every printable
    ASCII character a piece (PRESETS). The chat roles are control symbols: they have ids, but encoding text never
    produces them; only the chat template's rendering (`encode_structured`) does.
    Deterministic: same text + arguments = byte-identical model. `overrides` are any SentencePiece trainer
    options (e.g. input_sentence_size=200_000 to sample that many lines with the fixed seed).
    """
    import sentencepiece as spm

    if not isinstance(text, str) or not text.strip():
        raise ValueError("the training text is empty")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive whole number, got {vocab_size!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    settings = {
        **COURSE_SETTINGS,
        **PLAYGROUND_SETTINGS,
        **PRESETS[preset],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "control_symbols": list(control_symbols),
        **overrides,
    }
    if model_type == "word":
        # A word model falls back to bytes for a whole unseen word, spaces marker (▁) included, which then decodes
        # as a literal "▁": so words it never saw become <unk> (shown as ⁇), the classic word-level weakness.
        settings["byte_fallback"] = overrides.get("byte_fallback", False)
    max_bytes = min(settings["max_sentence_length"], 4000)
    sentences = list(training_sentences(text, max_bytes=max_bytes))
    if not sentences:
        raise ValueError("the training text has no non-blank lines")
    model = io.BytesIO()
    spm.set_random_generator_seed(SEED)  # sampling/shuffling of input sentences
    start = time.perf_counter()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            minloglevel=0 if log.isEnabledFor(logging.DEBUG) else 2,
            **settings,
        )
    except (RuntimeError, OSError) as exc:
        raise ValueError(_readable_trainer_error(str(exc), vocab_size, len(text))) from None
    log.info(
        "trained a %s tokenizer of %d pieces on %d lines in %.1f s",
        model_type,
        vocab_size,
        len(sentences),
        time.perf_counter() - start,
    )
    return SentencePieceTokenizer(model.getvalue(), name=name or f"my {model_type} {vocab_size}")


def _readable_trainer_error(message: str, vocab_size: int, n_chars: int) -> str:
    """SentencePiece's C++ error (with source file and line) as a sentence a learner can act on."""
    too_high = re.search(r"Vocabulary size (?:is )?too high \((\d+)\).*?<= (\d+)", message)
    if too_high:
        return (
            f"vocabulary size {vocab_size} is too big for this text ({n_chars:,} characters): it supports at "
            f"most {too_high.group(2)} pieces. Use more text or a smaller vocabulary."
        )
    needed = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if needed:
        return (
            f"vocabulary size {vocab_size} is too small for this text: it needs at least {needed.group(2)} pieces "
            "(the special tokens, the 256 byte pieces of byte fallback and every character the coverage keeps)."
        )
    if (
        "smaller than required_chars" in message
        or "Vocabulary size is smaller" in message
        or re.search(r"\(vocab_size\) >= \(0\)", message)
    ):
        return (
            f"vocabulary size {vocab_size} is too small: it must hold every distinct character of the text, "
            "the special tokens and (with byte fallback) the 256 byte pieces. Choose a larger vocabulary."
        )
    short = re.sub(r"^.*?\] ", "", message.strip().splitlines()[-1] if message.strip() else message)
    return f"SentencePiece could not train on this text: {short[:300]}"


# ------------------------------------------------------------------------------------------------ CLI
def build_bundled(
    corpus_name: str = "all",
    vocab_size: int = 4096,
    out: str | Path = BUNDLED_DIR,
    val_fraction: float = 0.05,
    input_sentence_size: int = 0,
) -> tuple[SentencePieceTokenizer, dict]:
    """Train the bundled tokenizer on the TRAIN split of the shipped corpus and save it to `out`; return stats."""
    from playground import corpus

    train, val = corpus.split_corpus(corpus_name, val_fraction)
    overrides = {"input_sentence_size": input_sentence_size} if input_sentence_size else {}
    start = time.perf_counter()
    tok = train_tokenizer(
        train, vocab_size, "bpe", CHAT_SYMBOLS, name="bundled BPE 4096", preset=BUNDLED_PRESET, **overrides
    )
    seconds = time.perf_counter() - start
    tok.save(out)
    val_ids = tok.encode(val)
    stats = {
        "train_chars": len(train),
        "val_chars": len(val),
        "val_tokens": len(val_ids),
        "val_chars_per_token": round(len(val) / max(1, len(val_ids)), 3),
        "val_byte_pieces": sum(tok.is_byte(i) for i in val_ids),
        "printable_ascii_byte_pieces": sum(tok.is_byte(i) for c in PRINTABLE_ASCII for i in tok.encode(c)),
        "seconds": round(seconds, 1),
    }
    return tok, stats


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m playground tokenizer",
        description="Train the bundled SentencePiece BPE tokenizer (course settings) on the train split of the "
        "shipped corpus (the last 5% of each file is held out) and write tokenizer.model + config to --out.",
    )
    parser.add_argument("--corpus", default="all", help="corpus to train on: austen, sotu, kjv or all (default all)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="number of pieces (default 4096)")
    parser.add_argument("--out", default=str(BUNDLED_DIR), help="output folder (default checkpoints/tokenizer)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="held-out tail of each corpus file, never seen in training (default 0.05)",
    )
    parser.add_argument(
        "--input-sentence-size",
        type=int,
        default=0,
        help="sample this many lines (fixed seed) instead of using all of them (default 0 = all)",
    )
    args = parser.parse_args(argv)
    tok, stats = build_bundled(args.corpus, args.vocab_size, args.out, args.val_fraction, args.input_sentence_size)
    import hashlib

    sha = hashlib.sha256(tok.to_bytes()).hexdigest()
    log.info("wrote %s (sha256 %s): %s", Path(args.out) / "tokenizer.model", sha, stats)
    print(json.dumps({"out": str(args.out), "sha256": sha, **stats}, indent=2))
    return 0
