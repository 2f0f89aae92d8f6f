"""introspect.param_count_of (shapes only) equals counting a built model's parameters."""

import dataclasses
import itertools

import pytest

from playground import gpt, introspect, llama, train


@pytest.mark.parametrize("preset", ["tiny", "small", "course"])
@pytest.mark.parametrize("bias,tie", list(itertools.product([True, False], [True, False])))
def test_gpt_count_from_config(preset, bias, tie):
    config = dataclasses.replace(gpt.PRESETS[preset], bias=bias, tie_weights=tie)
    assert introspect.param_count_of(config) == introspect.count_params(gpt.GPT(config))


@pytest.mark.parametrize("preset", ["tiny", "base"])
@pytest.mark.parametrize("attn_bias,mlp_bias,tie", list(itertools.product([True, False], repeat=3)))
def test_llama_count_from_config(preset, attn_bias, mlp_bias, tie):
    config = dataclasses.replace(
        llama.PRESETS[preset], attention_bias=attn_bias, mlp_bias=mlp_bias, tie_word_embeddings=tie, n_kv_heads=2
    )
    assert introspect.param_count_of(config) == introspect.count_params(llama.Transformer(config))


def test_course_config_is_19_8m_without_building_it():
    config = train.model_config("gpt", "course", 4096)
    assert introspect.param_count_of(config).total == 19_837_954
