"""A tiny reader (and one rewrite) of SentencePiece's .model file, without the protobuf package.

A SentencePiece .model file is a protobuf `ModelProto` (sentencepiece_model.proto). protobuf is not a dependency of
the library, so we read the few fields we need straight from the wire format: field 1 = pieces (piece=1, score=2,
type=3), field 2 = trainer_spec, field 3 = normalizer_spec. Used by tokenizer.py for piece types (byte pieces shown
dashed), the trainer settings the cards and the Tokenize tab show, and a copy of a model without the dummy prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

PIECE_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in field {number}")
        yield number, wire, value


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def piece_types(model_proto: bytes) -> list[str]:
    """The type of every piece (normal, unknown, control, user_defined, unused, byte), by id."""
    types = []
    for number, _, value in proto_fields(model_proto):
        if number == 1:
            kind = 1  # proto default NORMAL
            for n, _, v in proto_fields(value):
                if n == 3:
                    kind = v
            types.append(PIECE_TYPES.get(kind, str(kind)))
    return types


def without_dummy_prefix(model_proto: bytes) -> bytes:
    """The same model with normalizer_spec.add_dummy_prefix = false (for text that continues after a token)."""
    out = bytearray()
    for number, wire, value in proto_fields(model_proto):
        if number == 3:  # normalizer_spec: drop field 3 (add_dummy_prefix), then set it to 0
            spec = bytearray()
            for n, w, v in proto_fields(value):
                if n != 3:
                    spec += _reencode(n, w, v)
            spec += _reencode(3, 0, 0)
            value = bytes(spec)
        out += _reencode(number, wire, value)
    return bytes(out)


def _reencode(number: int, wire: int, value) -> bytes:
    key = _encode_varint((number << 3) | wire)
    if wire == 0:
        return key + _encode_varint(value)
    if wire == 2:
        return key + _encode_varint(len(value)) + value
    return key + value  # fixed 32/64-bit: raw bytes


def trainer_settings(model_proto: bytes) -> dict:
    """A few trainer_spec and normalizer_spec fields, for the model card and the UI (field numbers from the proto)."""
    names = {
        3: "model_type",
        4: "vocab_size",
        10: "character_coverage",
        11: "input_sentence_size",
        16: "num_threads",
        25: "split_digits",
        26: "allow_whitespace_only_pieces",
        35: "byte_fallback",
        44: "unk_surface",
        30: "control_symbols",
        31: "user_defined_symbols",
        36: "required_chars",
    }
    model_types = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
    out: dict = {"control_symbols": [], "user_defined_symbols": [], "add_dummy_prefix": True}
    for number, _, value in proto_fields(model_proto):
        if number == 2:
            for n, w, v in proto_fields(value):
                if n not in names:
                    continue
                if w == 5:
                    v = round(struct.unpack("<f", v)[0], 6)
                elif w == 2:
                    v = v.decode("utf-8")
                elif n == 3:
                    v = model_types.get(v, v)
                elif n in (25, 26, 35):
                    v = bool(v)
                if n in (30, 31):
                    out[names[n]].append(v)
                else:
                    out[names[n]] = v
        elif number == 3:
            for n, _, v in proto_fields(value):
                if n == 1:
                    out["normalization_rule_name"] = v.decode("utf-8")
                elif n == 3:
                    out["add_dummy_prefix"] = bool(v)
                elif n == 4:
                    out["remove_extra_whitespaces"] = bool(v)
    return out
