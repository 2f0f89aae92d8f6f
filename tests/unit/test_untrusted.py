"""Untrusted files and names: no pickle anywhere, checkpoints checked before use, sources that cannot escape,
limits in one place, atomic checkpoint writes, and a stopped burst that leaves a usable model."""

from __future__ import annotations

import ast
import functools
import json
import struct
from pathlib import Path

import pytest
import torch

from playground import checkpoints, limits, train
from playground.data import text_data
from tests.unit._tiny import TEXT, VOCAB, tiny_bundle, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
CODE = sorted([*(ROOT / "playground").rglob("*.py"), ROOT / "app.py", *(ROOT / "scripts").rglob("*.py")])
PICKLERS = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}


SHAPE = {"context": 16, "n_embd": 16, "n_layer": 1, "n_head": 2}  # the checkpoints written here: a one-layer GPT


# --------------------------------------------------------------------------------------------- no pickle
def _is_true(kw: dict, name: str) -> bool:
    return isinstance(kw.get(name), ast.Constant) and kw[name].value is True


def _unsafe_calls(tree: ast.AST) -> list[str]:
    """torch.load without weights_only=True, np.load(allow_pickle=True), pandas read_pickle, pickle imports."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
            bad.append(f"from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            kw = {k.arg: k.value for k in node.keywords}
            true = functools.partial(_is_true, kw)
            owner = ast.unparse(node.func.value)
            if node.func.attr == "load" and owner == "torch" and not true("weights_only"):
                bad.append(f"line {node.lineno}: torch.load without weights_only=True")
            if node.func.attr == "load" and owner in ("np", "numpy") and true("allow_pickle"):
                bad.append(f"line {node.lineno}: np.load(allow_pickle=True)")
            if node.func.attr in ("read_pickle", "to_pickle"):
                bad.append(f"line {node.lineno}: {node.func.attr}")
    return bad


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pickle_is_ever_loaded(path):
    assert _unsafe_calls(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_pickle_detector_catches_what_it_should():
    src = "import pickle\nimport torch\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
    src += "torch.load('y', weights_only=True)\nimport numpy as np\nnp.load('z', allow_pickle=True)\n"
    assert len(_unsafe_calls(ast.parse(src))) == 4


def test_pickle_only_folder_is_refused_without_reading_it(tmp_path):
    bundle = tiny_bundle("gpt", **SHAPE)
    checkpoints.save(bundle, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    # a "pickle" that would run code if unpickled: loading must refuse before opening it
    (tmp_path / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
    with pytest.raises(ValueError, match="only pickle weights"):
        checkpoints.load(tmp_path)


# ------------------------------------------------------------------------------------ checked before use
def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (n - len(new)) if len(new) <= n else b""
    assert len(new) == n, "the edit must not grow the header"
    path.write_bytes(raw[:8] + new + raw[8 + n :])


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda h: h["wte.weight"].update(dtype="I32"), "dtype"),
        (lambda h: h["wte.weight"].update(dtype="F64"), "truncated or corrupt"),  # sizes no longer add up
        (lambda h: h["wte.weight"].update(shape=[16, VOCAB]), "shape"),
        (lambda h: h.update({"evil": h.pop("wte.weight")}), "do not match"),
    ],
    ids=["int dtype", "dtype vs size", "shape", "unknown name"],
)
def test_bad_headers_are_refused_before_any_weight_is_used(tmp_path, edit, needle):
    checkpoints.save(tiny_bundle("gpt", **SHAPE), tmp_path)
    _rewrite_header(tmp_path / "model.safetensors", edit)
    with pytest.raises(ValueError, match=needle):
        checkpoints.load(tmp_path)


@pytest.mark.parametrize("cut", [0, 4, 7, 9, 200, -1])
def test_truncated_files_are_clear_errors(tmp_path, cut):
    checkpoints.save(tiny_bundle("gpt", **SHAPE), tmp_path)
    path = tmp_path / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:cut] if cut >= 0 else raw[:-1])
    with pytest.raises(ValueError, match="safetensors|truncated|corrupt"):
        checkpoints.load(tmp_path)


def test_a_header_claiming_gigabytes_is_refused(tmp_path):
    checkpoints.save(tiny_bundle("gpt", **SHAPE), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        checkpoints.load(tmp_path)


def test_model_size_is_checked_before_weights_are_read(tmp_path):
    checkpoints.save(tiny_bundle("gpt", **SHAPE), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not even read")
    with pytest.raises(ValueError, match="limit"):
        checkpoints.load(tmp_path, max_params=100)


# ---------------------------------------------------------------------------------- sources cannot escape
HUB_OK = ["HuggingFaceTB/SmolLM2-135M", "org/name@main", "org/name@v1.0"]
LOCAL = ["../..", "../../etc", "/etc", "/", "~", "~/.ssh", "./checkpoints", "checkpoints/gpt-tiny", "playground/ui",
         "C:\\Windows", "\\\\server\\share", "checkpoints"]  # fmt: skip
NEVER = ["https://huggingface.co/gpt2", "org name/x y", "a/b/c", "org/..", "org/name@../../x", "x" * 400, "a\x00b"]


@pytest.mark.parametrize("source", ["gpt-tiny", "llama-base", "llama-aligned", *HUB_OK])
def test_bundled_names_and_hub_ids_pass(source):
    assert checkpoints.check_source(source, allow_local=False) == source


@pytest.mark.parametrize("source", LOCAL)
def test_local_paths_are_refused_on_a_public_app(source, monkeypatch):
    monkeypatch.chdir(ROOT)  # so that the relative ones name real folders
    with pytest.raises(ValueError, match="local folders are switched off"):
        checkpoints.check_source(source, allow_local=False)
    assert checkpoints.check_source(source, allow_local=True) == source


@pytest.mark.parametrize("source", NEVER)
def test_urls_spaces_and_dot_dots_are_never_hub_ids(source):
    with pytest.raises(ValueError, match="not a bundled name|switched off"):
        checkpoints.check_source(source, allow_local=False)


def test_load_without_local_never_reads_a_folder_named_like_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoints.save(tiny_bundle("gpt", **SHAPE), tmp_path / "org" / "name")
    assert checkpoints.load("org/name").info["arch"] == "gpt"  # local allowed: the folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(ValueError, match="offline"):
        checkpoints.load("org/name", local=False)  # a Hub id only: offline and not cached


def test_the_policy_reads_the_limits(monkeypatch):
    monkeypatch.setattr(checkpoints, "LIMITS", limits.Limits(allow_local_paths=False))
    with pytest.raises(ValueError, match="PLAYGROUND_ALLOW_LOCAL_PATHS=1"):
        checkpoints.check_source("/tmp")
    monkeypatch.setattr(checkpoints, "LIMITS", limits.Limits(allow_local_paths=True))
    assert checkpoints.check_source("/tmp") == "/tmp"


# ----------------------------------------------------------------------------------- limits in one place
@pytest.mark.parametrize("raw, value", [("1", True), ("true", True), ("0", False), ("off", False)])
def test_bool_limits_parse_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("PLAYGROUND_ALLOW_LOCAL_PATHS", raw)
    assert limits._from_env().allow_local_paths is value


@pytest.mark.parametrize("name, raw", [("ALLOW_LOCAL_PATHS", "maybe"), ("MAX_TRAIN_STEPS", "lots")])
def test_bad_limit_values_name_the_variable(monkeypatch, name, raw):
    monkeypatch.setenv(f"PLAYGROUND_{name}", raw)
    with pytest.raises(ValueError, match=f"PLAYGROUND_{name}"):
        limits._from_env()


def test_env_raises_a_limit(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MAX_TRAIN_STEPS", "5000")
    monkeypatch.setenv("PLAYGROUND_MAX_TRAIN_SECONDS", "2.5")
    got = limits._from_env()
    assert (got.max_train_steps, got.max_train_seconds) == (5000, 2.5)


TABS = sorted((ROOT / "playground" / "ui").glob("*_tab.py"))


@pytest.mark.parametrize("path", [p for p in TABS if p.name != "start_tab.py"], ids=lambda p: p.name)
def test_every_tab_takes_its_bounds_from_limits(path):
    src = path.read_text(encoding="utf-8")
    assert "from playground.limits import" in src and "LIMITS." in src
    assert "os.environ" not in src, "limits are read from the environment in limits.py only"


# ----------------------------------------------------------------------------------------- atomic writes
def test_a_failing_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    old = tiny_bundle("gpt", 0, **SHAPE)
    checkpoints.save(old, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    import safetensors.torch as st

    def half_then_crash(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(tiny_bundle("gpt", 1, **SHAPE), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files left either
    monkeypatch.undo()
    idx = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(checkpoints.load(tmp_path).model(idx), old.model(idx))


def test_a_failing_save_run_keeps_the_old_optimizer_state(tmp_path, monkeypatch):
    bundle = tiny_bundle("gpt", **SHAPE)
    cfg = train.TrainConfig(steps=4, batch_size=2, warmup_steps=1, eval_interval=100, device="cpu")
    d = text_data(TEXT, tiny_tokenizer(), context=16)
    state = train.new_state(bundle.model, cfg)
    list(train.train_steps(bundle.model, d, cfg, state, max_steps=2))
    train.save_run(tmp_path, bundle.model, bundle.tokenizer, state, cfg)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(train, "atomic_write", _crashing(train.atomic_write))
    with pytest.raises(OSError):
        train.save_run(tmp_path, bundle.model, bundle.tokenizer, state, cfg)
    for name in (train.OPTIMIZER_FILE, train.STATE_FILE):
        assert (tmp_path / name).read_bytes() == before[name]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _crashing(atomic):
    def write(path, fn):
        def half(p):
            Path(p).write_bytes(b"half")
            raise OSError("disk full")

        return atomic(path, half)

    return write


# ---------------------------------------------------------------------------- a burst stopped midway
def test_stopping_a_burst_midway_leaves_a_usable_model(tmp_path):
    bundle = tiny_bundle("gpt", **SHAPE)
    cfg = train.TrainConfig(steps=50, batch_size=4, warmup_steps=2, eval_interval=1000, device="cpu")
    d = text_data(TEXT, tiny_tokenizer(), context=16)
    state = train.new_state(bundle.model, cfg)
    it = train.train_steps(bundle.model, d, cfg, state)
    for _ in range(3):
        next(it)
    it.close()  # what a Stop does to the streaming handler: the generator is closed between steps
    assert 1 <= state.step <= 3
    assert all(torch.isfinite(p).all() for p in bundle.model.parameters())
    logits = bundle.model(torch.tensor([[1, 2, 3]]))
    assert torch.isfinite(logits).all()
    checkpoints.save(bundle, tmp_path)  # saves and loads back the same model
    torch.testing.assert_close(checkpoints.load(tmp_path).model.eval()(torch.tensor([[1, 2, 3]])), logits)
    more = list(train.train_steps(bundle.model, d, cfg, state, max_steps=2))  # and training goes on
    assert more[-1].step == state.step


# --------------------------------------------------------------------- all learners' models, bounded together
def test_live_trainable_models_are_bounded_together(monkeypatch):
    import gc

    from playground.ui import common

    monkeypatch.setattr(limits, "LIMITS", limits.Limits(max_live_train_params=1000))
    monkeypatch.setattr(common, "_LIVE", __import__("weakref").WeakKeyDictionary())
    first = common.register_trainable(torch.nn.Linear(20, 30))  # 630 parameters
    with pytest.raises(ValueError, match="server is busy"):
        common.register_trainable(torch.nn.Linear(20, 30))
    del first  # the session that held it reset, started afresh or expired
    gc.collect()
    assert common.register_trainable(torch.nn.Linear(20, 30)) is not None


def test_gradio_keeps_a_bounded_number_of_sessions():
    from playground.ui import launch_kwargs

    assert launch_kwargs()["state_session_capacity"] == limits.LIMITS.max_sessions <= 10_000
