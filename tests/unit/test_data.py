"""playground.data, pretraining section: batches, pasted text, the encoded-corpus cache."""

from __future__ import annotations

import pytest
import torch

from playground import data


class ByteTokenizer:
    """A stand-in tokenizer (one id per UTF-8 byte): independent of the bundled SentencePiece model."""

    vocab_size, name, bos_id, eos_id = 256, "bytes", 0, 0

    def __init__(self, tag: bytes = b"v1"):
        self.tag = tag

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def to_bytes(self) -> bytes:
        return b"byte-tokenizer-" + self.tag


def test_get_batch_windows_are_shifted_by_one():
    ids = torch.arange(1000)
    g = torch.Generator().manual_seed(0)
    x, y = data.get_batch(ids, batch_size=8, context=16, generator=g)
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    # ids are their own positions, so each row must be consecutive and y = x + 1 everywhere
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 15, dtype=torch.long))
    assert int(y.max()) <= 999


def test_get_batch_is_reproducible_with_a_seeded_generator():
    ids = torch.randint(100, (5000,))
    a = data.get_batch(ids, 4, 32, torch.Generator().manual_seed(7))
    b = data.get_batch(ids, 4, 32, torch.Generator().manual_seed(7))
    c = data.get_batch(ids, 4, 32, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_get_batch_covers_the_last_window():
    ids = torch.arange(17)  # exactly one window of context 16 + its target
    x, y = data.get_batch(ids, 3, 16)
    assert torch.equal(x[0], torch.arange(16)) and torch.equal(y[0], torch.arange(1, 17))
    with pytest.raises(ValueError, match="cannot fill one window"):
        data.get_batch(ids, 3, 17)


def test_text_data_splits_90_10_and_names_the_size_needed():
    text = "the quick brown fox jumps over the lazy dog\n" * 50
    d = data.text_data(text, ByteTokenizer(), context=32)
    assert d.n_tokens == len(text.encode())
    assert len(d.val) == int(d.n_tokens * 0.1)
    assert torch.equal(torch.cat([d.train, d.val]), torch.tensor(list(text.encode())))
    with pytest.raises(ValueError, match=r"needs windows of 65 tokens.*about 650 tokens"):
        data.text_data("too short to train on, surely", ByteTokenizer(), context=64)
    with pytest.raises(ValueError, match="empty"):
        data.text_data("   \n", ByteTokenizer())


def test_token_data_splits_and_checks():
    d = data.TokenData(torch.arange(100, dtype=torch.int32), torch.arange(50))
    assert d.train.dtype == torch.long  # converted
    assert d.split("eval") is d.val
    with pytest.raises(ValueError, match="split"):
        d.split("test")
    with pytest.raises(ValueError, match="1-D"):
        data.TokenData(torch.zeros(2, 2), torch.zeros(3))


def test_corpus_ids_are_cached_on_disk_and_keyed_by_tokenizer(tmp_path, monkeypatch):
    first = data.corpus_data("kjv", ByteTokenizer(), cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(files) == 2 and all(f.startswith("kjv-") for f in files)
    # A fresh process (empty memory cache) must read the files, not encode again.
    monkeypatch.setattr(data, "_CORPUS_DATA", {})
    monkeypatch.setattr(data, "encode_text", lambda *a, **k: pytest.fail("re-encoded despite the cache"))
    again = data.corpus_data("kjv", ByteTokenizer(), cache_dir=tmp_path)
    assert torch.equal(first.train, again.train) and torch.equal(first.val, again.val)
    assert again.train.dtype == torch.long
    # Another tokenizer gets its own files.
    assert data.tokenizer_fingerprint(ByteTokenizer(b"v2")) != data.tokenizer_fingerprint(ByteTokenizer())


def test_corpus_split_matches_the_corpus_module():
    from playground import corpus

    d = data.corpus_data("kjv", ByteTokenizer(), cache_dir=None)
    train_text, val_text = corpus.split_corpus("kjv")
    assert len(d.train) == len(train_text.encode()) and len(d.val) == len(val_text.encode())


def test_a_damaged_cache_file_is_remade(tmp_path, monkeypatch):
    data.corpus_data("kjv", ByteTokenizer(), cache_dir=tmp_path)
    for p in tmp_path.glob("*.npy"):
        p.write_bytes(b"not numpy")
    monkeypatch.setattr(data, "_CORPUS_DATA", {})
    d = data.corpus_data("kjv", ByteTokenizer(), cache_dir=tmp_path)
    assert len(d.train) > 1000


def test_bundled_tokenizer_text_data():
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled")
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune.\n" * 40
    d = data.text_data(text, tok, context=64)
    assert d.tokenizer is tok and len(d.val) >= 65
    assert tok.decode(d.train[:20].tolist()).startswith("It is a truth")
