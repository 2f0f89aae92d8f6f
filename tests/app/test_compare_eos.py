"""Aligned vs base: the p(end-of-sequence) curve of each model's first answer, checked against a plain greedy loop
written here (full forward pass per token, softmax in float64) on the bundled base and aligned models."""

from __future__ import annotations

import pytest
import torch

from playground import checkpoints
from playground.ui.compare_tab import BUNDLED_PAIR, build_prompt
from tests.app.test_sample_app import stream

PROMPT = "What is a food recipe using apple?"
MAX_NEW = 24


def greedy_eos_curve(name: str, chat: bool) -> list[float]:
    bundle = checkpoints.load(name)
    bundle.model.eval()
    ids, _ = build_prompt(bundle, PROMPT, chat)
    eos, curve = bundle.tokenizer.eos_id, []
    with torch.no_grad():
        for _ in range(MAX_NEW):
            p = torch.softmax(bundle.model(torch.tensor([ids]))[0, -1].double(), -1)
            curve.append(float(p[eos]))
            ids.append(int(p.argmax()))
            if ids[-1] == eos:
                break
    return curve


def test_eos_curve_matches_a_greedy_loop(client):
    base, aligned = BUNDLED_PAIR
    out = stream(client, "/compare_generate", base, aligned, PROMPT, False, True, 0.0, 0, 1.0, MAX_NEW, 1, 0)[-1]
    plot = out[5]
    rows = plot["value"]["data"] if "value" in plot else plot["data"]
    for label, chat, name in ((f"left: {base}", False, base), (f"right: {aligned}", True, aligned)):
        shown = [r[1] for r in sorted((r for r in rows if r[2] == label), key=lambda r: r[0])]
        want = greedy_eos_curve(name, chat)
        assert shown == pytest.approx(want, abs=2e-4), label
