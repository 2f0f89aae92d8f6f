"""The shipped corpora: readable, split per file at line boundaries, held-out text really held out."""

import pytest

from playground import corpus


@pytest.mark.parametrize("name", list(corpus.CORPORA))
def test_each_corpus_reads_and_splits_at_a_line_boundary(name):
    text = corpus.read_corpus(name)
    assert len(text) > 1_000_000 and text.endswith("\n") and not text.endswith("\n\n")
    train, val = corpus.split_corpus(name)
    assert train + val == text  # nothing lost, nothing duplicated
    assert train.endswith("\n")  # the cut is at a line start
    frac = len(val) / len(text)
    assert 0.05 <= frac < 0.07, frac  # at least the fraction asked for, moved back at most one line


def test_all_is_each_file_split_on_its_own():
    train, val = corpus.split_corpus("all")
    parts = [corpus.split_corpus(n) for n in corpus.CORPORA]
    assert train == "".join(t for t, _ in parts)
    assert val == "".join(v for _, v in parts)
    assert corpus.read_corpus("all") == "".join(corpus.read_corpus(n) for n in corpus.CORPORA)
    # the tail of every file is in val, and no val line leaks into train (checked on the longest lines)
    for _, v in parts:
        longest = max(v.splitlines(), key=len)
        assert longest not in train


def test_split_text_rules():
    text = "".join(f"line {i:03d}\n" for i in range(100))  # 100 lines of 9 characters
    train, val = corpus.split_text(text, 0.05)
    assert train + val == text and train.endswith("\n")
    assert val.count("\n") == 5  # exactly 5% of lines, cut on a boundary
    train, val = corpus.split_text("no line breaks at all, just one long line", 0.1)
    assert len(val) == 4  # no boundary to move to: cut at the character
    with pytest.raises(ValueError, match="val_fraction"):
        corpus.split_text(text, 0.0)
    with pytest.raises(ValueError, match="1.5"):
        corpus.split_text(text, 1.5)


def test_unknown_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="'shakespeare'"):
        corpus.read_corpus("shakespeare")
    with pytest.raises(ValueError, match="austen"):
        corpus.split_corpus("nope")


def test_sample_corpus_is_small_whole_lines_from_train_only():
    sample = corpus.sample_corpus("all", 30_000)
    assert 20_000 < len(sample) <= 30_000
    _, val = corpus.split_corpus("all")
    for line in sample.splitlines():
        if len(line) > 40:
            assert line not in val
    sotu = corpus.sample_corpus("sotu", 5_000)  # one address is one ~50k-character line: cut at a sentence
    assert sotu.rstrip("\n").endswith(".") and len(sotu) <= 5_000
    with pytest.raises(ValueError):
        corpus.sample_corpus("kjv", 0)
