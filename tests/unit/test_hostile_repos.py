"""Issue 23: hostile Hub repos, built in a local Hugging Face cache (as the online path reads them after download).

A config with absurd dimensions is refused before any model is built (in milliseconds, no memory kept), a
cached snapshot is held to the parameter limit, an index cannot make the loader read a file outside its folder,
and a chat template cannot loop forever or build gigabytes.
"""

from __future__ import annotations

import json
import resource
import time

import pytest

from playground import checkpoints, limits, template_sandbox
from playground.tokenizer import CHAT_TEMPLATE, render_chat_template
from tests.unit._tiny import hf_llama, tiny_tokenizer

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def cache_repo(tmp_path, repo="evil-org/model", **hf_kw):
    snap = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / SHA
    hf_llama(**hf_kw).save_pretrained(snap, safe_serialization=True)
    tiny_tokenizer().save(snap)
    refs = snap.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text(SHA)
    return snap


def _edit_config(snap, **changes):
    cfg = json.loads((snap / "config.json").read_text())
    cfg.update(changes)
    (snap / "config.json").write_text(json.dumps(cfg))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"num_hidden_layers": 100_000}, "layers = 100000 is out of bounds"),
        ({"max_position_embeddings": 5_000_000}, "context = 5000000 is out of bounds"),
        ({"hidden_size": 10**9, "head_dim": 8}, "width = 1000000000 is out of bounds"),
        ({"vocab_size": 10**8}, "vocab = 100000000 is out of bounds"),
        ({"intermediate_size": 10**7}, "ffn = 10000000 is out of bounds"),
        ({"num_hidden_layers": [1, 2]}, "wrong type|out of bounds"),
        ({"num_hidden_layers": 1e5}, "out of bounds"),
    ],
)
def test_absurd_dimensions_are_refused_before_anything_is_built(tmp_path, change, needle):
    snap = cache_repo(tmp_path)
    _edit_config(snap, **change)
    before, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(ValueError, match=needle):
        checkpoints.load("evil-org/model")
    # it took 1,012 s and kept 4.5 GB (100,000 layers) or 1.24 GB (5e6 positions) before
    assert time.perf_counter() - t0 < 5 and _rss_mb() - before < 50


def test_a_cached_snapshot_is_held_to_the_parameter_limit(tmp_path, monkeypatch):
    cache_repo(tmp_path)  # 2 layers of 48: about 60k parameters
    monkeypatch.setattr(checkpoints, "LIMITS", limits.Limits(max_model_params=10_000))
    with pytest.raises(ValueError, match=r"parameters; the limit here is 0.0M"):
        checkpoints.load("evil-org/model")
    monkeypatch.setattr(checkpoints, "LIMITS", limits.Limits())
    assert checkpoints.load("evil-org/model").info["arch"] == "llama"


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", ".git/config", "../refs/main",
                                    "sub/../../x.safetensors", "C:\\x.safetensors", "app.py", ""])  # fmt: skip
def test_an_index_cannot_name_a_file_outside_its_folder(tmp_path, target):
    snap = cache_repo(tmp_path)
    real = snap / "model.safetensors"
    real.rename(snap / "model-00001-of-00002.safetensors")
    names = [n for n in checkpoints.read_header(snap / "model-00001-of-00002.safetensors")]
    weight_map = {n: "model-00001-of-00002.safetensors" for n in names}
    weight_map[names[0]] = target
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError) as info:
        checkpoints.load("evil-org/model")
    msg = str(info.value)
    assert "outside its folder" in msg
    assert "passwd" not in msg and "header says" not in msg  # nothing read: no size, no first bytes


def test_a_bad_index_is_a_clear_error(tmp_path):
    snap = cache_repo(tmp_path)
    (snap / "model.safetensors").rename(snap / "model-00001-of-00001.safetensors")
    (snap / "model.safetensors.index.json").write_text('{"weight_map": [1, 2]}')
    with pytest.raises(ValueError, match="not a valid index"):
        checkpoints.load("evil-org/model")


MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "template, needle",
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "within 2 s"),
        ("{{ 'a' * 50000000 }}", "repetition of 50,000,000"),
        (
            "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "within 2 s|memory|longer than",
        ),
        ("{% for i in range(100000) %}{{ 'abc' }}{% endfor %}", "longer than 200,000 characters"),
        ("{{ 7 ** 100000000 }}", "power"),
    ],
)
def test_hostile_chat_templates_are_bounded(template, needle):
    before, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(ValueError, match=needle):
        render_chat_template(template, MSGS)
    # a core for ever and +4.7 GB before; now the worker's bound (plus its restart) and nothing kept here
    assert time.perf_counter() - t0 < template_sandbox.TIMEOUT + 30 and _rss_mb() - before < 50


def test_an_ordinary_hub_template_still_renders_and_ours_stays_in_process():
    hub = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|a|>{% endif %}"
    )
    assert render_chat_template(hub, MSGS, True) == "<|user|>hi<|a|>"
    assert render_chat_template(hub, MSGS, True) == "<|user|>hi<|a|>"  # the same worker, again
    template_sandbox._WORKER.kill()
    ours = render_chat_template(CHAT_TEMPLATE, MSGS, True, bos_token="<s>", eos_token="</s>")
    assert "hi" in ours and template_sandbox._WORKER.proc is None  # rendered here: no worker started for it
