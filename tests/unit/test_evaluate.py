"""`python -m playground eval`'s held-out figures against a plain re-computation: nats/token over every target once,
and bits per UTF-8 byte of the text those targets spell (the figure that compares models with different tokenizers)."""

import math

import torch
import torch.nn.functional as F

from playground import evaluate
from tests.unit import _tiny


def test_bits_per_byte_matches_a_direct_computation():
    tok = _tiny.tiny_tokenizer()
    model = _tiny.hf_llama(seed=3)
    text = "the lazy dog jumps. café naïve 東京 😀\nthe quick brown fox 12 jumps over the lazy dog number 84."
    ids = torch.tensor(tok.encode(text))
    assert tok.decode(ids.tolist()) == text  # lossless, so the bytes below are the text's own

    class Logits(torch.nn.Module):  # heldout_loss wants logits out, as our models give
        def __init__(self, m):
            super().__init__()
            self.m, self.config = m, m.config

        def forward(self, x):
            return self.m(x).logits

    got = evaluate.heldout_loss(Logits(model), ids, context=16, batch_size=3, tokenizer=tok)
    # reference: every target scored with all the tokens before it in its own 16-token window, summed by hand
    total, n = 0.0, len(ids) - 1
    with torch.no_grad():
        for start in range(0, n, 16):
            x = ids[start : min(start + 16, n)]
            y = ids[start + 1 : min(start + 17, n + 1)]
            total += F.cross_entropy(model(x[None]).logits[0], y, reduction="sum").item()
    first = tok.decode(ids[:1].tolist())
    n_bytes = len(text.encode("utf-8")) - len(first.encode("utf-8"))
    assert got["targets"] == n and got["bytes"] == n_bytes
    assert math.isclose(got["val_loss"], total / n, rel_tol=1e-5)
    assert math.isclose(got["bits_per_byte"], total / math.log(2) / n_bytes, rel_tol=1e-5)
    assert math.isclose(got["bytes_per_token"], n_bytes / n)
    assert "bits_per_byte" not in evaluate.heldout_loss(Logits(model), ids, context=16)  # without a tokenizer


def test_markdown_table_shows_bits_per_byte():
    row = {"params": 5.4e6, "val_loss": 3.5, "bits_per_byte": 1.234, "perplexity": 33.1}
    table = evaluate.markdown({"m": row})
    assert "bits/byte" in table.splitlines()[0] and "| 1.234 |" in table
