"""The course's GPT: parameter count, init, config checks (shapes, causality, the context bound, the KV cache and
overfitting are in test_models.py, for both architectures)."""

from __future__ import annotations

import pytest
import torch

from playground.gpt import GPT, PRESETS, GPTConfig, new_gpt
from playground.models import count_params
from tests.unit._tiny import tiny_model


def test_course_preset_is_19_8M_params():
    n = count_params(GPT(PRESETS["course"]))
    print(f"course GPT: {n:,} parameters")
    assert n == 19_837_954
    assert round(n / 1e6, 1) == 19.8


def test_course_heads_concatenate_to_378():
    attn = GPT(PRESETS["course"]).h[0].attn
    assert attn.head_size == 54 and attn.attn_dim == 378
    assert attn.c_proj.weight.shape == (384, 378)


def test_tiny_preset_is_about_a_million_non_embedding_params():
    m = new_gpt("tiny")
    embed = m.wte.weight.numel() + m.wpe.weight.numel() + m.lm_head.weight.numel()
    assert 0.8e6 < count_params(m) - embed < 1.3e6


def test_init_normal_002_for_linear_and_embedding():
    m = new_gpt("tiny")
    for w in (m.wte.weight, m.wpe.weight, m.h[0].attn.c_attn.weight, m.lm_head.weight):
        assert abs(w.std().item() - 0.02) < 0.002
    assert torch.all(m.h[0].mlp.c_fc.bias == 0)


def test_bad_config():
    with pytest.raises(ValueError, match="n_layer"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="attn_impl"):
        GPTConfig(attn_impl="fast")


def test_tied_weights_share_one_matrix():
    m = tiny_model("gpt", tie_weights=True)
    assert m.lm_head.weight is m.wte.weight
    assert count_params(m) == count_params(tiny_model("gpt")) - 61 * 42
