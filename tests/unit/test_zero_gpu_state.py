"""What crosses the process boundary on ZeroGPU is picklable and bounded in size.

On a ZeroGPU Space, `spaces.GPU` runs each call in a forked worker that holds the GPU: the handler's arguments
(the learner's session, with their model in it) are pickled into the worker and every return or yield is pickled
back (spaces/zero/wrappers.py: multiprocessing queues). Here every spaces.GPU handler of the app runs for real,
in-process (off ZeroGPU `spaces.GPU` hands the function back unchanged), and its arguments and each of its
results must:
- pickle (a threading.Lock in the session, a generator, an open file would fail the call on ZeroGPU);
- stay bounded: the bytes that are not tensor storage under 1 MB, and the tensor storage no more than the
  learner's own models (weights, AdamW's two moments, gradients: 16 bytes a parameter) plus their training ids
  (8 bytes a token) - so nothing is pickled twice and nothing else big rides along;
- come back working: the unpickled session resumes training where it stopped, with the same logits.
What only a real ZeroGPU Space can show (CUDA tensors crossing, the worker's fork, quotas) is listed in README.md.
"""

from __future__ import annotations

import io
import pickle

import pytest
import torch

pytest.importorskip("gradio")

from playground.data import shipped_examples  # noqa: E402
from playground.ui import common, compare_tab, cross_entropy_tab, orpo_tab, sample_tab, train_tab  # noqa: E402
from tests.app.test_train_app import SMALL_FORM  # noqa: E402

MODULES = (compare_tab, cross_entropy_tab, orpo_tab, sample_tab, train_tab)
TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
OVERHEAD = 1_000_000  # bytes of a crossing that are not tensor storage


class _Meter(pickle.Pickler):
    """A pickler that also adds up the tensor storage it writes (each storage once, as pickle memoizes it)."""

    def __init__(self, buf):
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.storages: dict[int, int] = {}

    def persistent_id(self, obj):
        if isinstance(obj, torch.Tensor) and obj.device.type != "meta":
            storage = obj.untyped_storage()
            self.storages[storage.data_ptr()] = storage.nbytes()
        return None  # pickle it as usual


def crossing(value) -> tuple[int, int]:
    """(bytes pickled, bytes of tensor storage among them) for one argument list or result."""
    buf = io.BytesIO()
    meter = _Meter(buf)
    meter.dump(value)
    return buf.tell(), sum(meter.storages.values())


def budget(session: dict) -> int:
    """Tensor bytes a session may carry: its learner-owned models at 16 bytes a parameter + their training ids."""
    models, tokens = [], 0
    run = session.get("train_run")
    if run is not None:
        models.append(run.model)
        tokens += run.data.n_tokens
    if session.get("orpo_model"):
        models.append(session["orpo_model"]["bundle"].model)
    params = sum(p.numel() for m in {id(m): m for m in models}.values() for p in m.parameters())
    return 16 * params + 8 * tokens


def check(value, session: dict, what: str) -> None:
    total, tensors = crossing(value)
    assert total - tensors < OVERHEAD, f"{what}: {total - tensors:,} bytes besides tensors"
    assert tensors <= budget(session), f"{what}: {tensors:,} tensor bytes, budget {budget(session):,}"


def run_handler(fn, *args, session: dict, what: str):
    """Call a handler as spaces.GPU would: its arguments cross in, each result crosses out."""
    check(args, session, f"{what} arguments")
    result = fn(*args)
    outputs = list(result) if hasattr(result, "__next__") else [result]
    assert outputs, what
    for i, out in enumerate(outputs):
        returned = [v for v in (out if isinstance(out, tuple) else (out,)) if isinstance(v, dict) and "trained" in v]
        check(out, returned[0] if returned else session, f"{what} result {i}")  # a returned session: its budget
    return outputs


@pytest.fixture(scope="module")
def trained() -> dict:
    torch.manual_seed(0)
    outputs = run_handler(train_tab.start, common.new_session(), SMALL_FORM, session={}, what="start")
    session = outputs[-1][-1]
    assert session["train_run"] is not None and session["trained"] is not None
    return session


def test_every_gpu_handler_is_covered_here():
    """A new spaces.GPU handler must be added to the tests below (they call each one by name)."""
    wrapped = {f"{m.__name__.rsplit('.', 1)[1]}.{name}" for m in MODULES for name, fn in vars(m).items()
               if callable(fn) and hasattr(fn, "gpu_duration")}  # fmt: skip
    assert wrapped == {
        "train_tab.start", "train_tab.resume", "train_tab.attention", "sample_tab.stream_answers",
        "sample_tab.next_token", "compare_tab.stream_compare", "cross_entropy_tab.score",
        "cross_entropy_tab.break_naive", "orpo_tab.breakdown", "orpo_tab.take_steps",
    }  # fmt: skip


def test_the_session_crosses_and_comes_back_working(trained):
    run = trained["train_run"]
    back = pickle.loads(pickle.dumps(trained))
    mine = back["train_run"]
    assert mine is not run and mine.lock is not run.lock and back["trained"].model is mine.model  # one model
    idx = torch.tensor([run.tokenizer.encode(TEXT)[:16]])
    with torch.no_grad():
        torch.testing.assert_close(mine.model(idx), run.model(idx), atol=0, rtol=0)
    step = mine.state.step
    outputs = run_handler(train_tab.resume, back, SMALL_FORM, session=back, what="resume")
    assert outputs[-1][-1]["train_run"].state.step > step  # training went on from the crossed state


def test_read_only_handlers_cross_bounded(trained):
    s = trained
    my = common.TRAINED
    run_handler(train_tab.attention, s, train_tab.ATTN_PROMPT, 1, session=s, what="attention")
    run_handler(sample_tab.stream_answers, my, "It is", 1.0, 0, 1.0, 8, 1, 0, s, session=s, what="stream_answers")
    out = run_handler(sample_tab.next_token, my, "It is", 1.0, 0, 1.0, 0, None, s, session=s, what="next_token")
    run_handler(sample_tab.next_token, my, "It is", 1.0, 0, 1.0, 0, out[-1][-1], s, session=s, what="next_token 2")
    run_handler(compare_tab.stream_compare, my, "llama-base", "Hello", False, False, 1.0, 0, 1.0, 6, 1, 0, s,
                session=s, what="stream_compare")  # fmt: skip
    run_handler(cross_entropy_tab.score, my, TEXT, s, session=s, what="score")
    run_handler(cross_entropy_tab.break_naive, my, TEXT, 2.0, "float32", s, session=s, what="break_naive")


def test_orpo_copy_crosses_bounded(trained):
    s = dict(trained)
    pair = shipped_examples()[0]
    args = ("llama-base", pair["prompt"], pair["chosen"], pair["rejected"], 0.5)
    outputs = run_handler(orpo_tab.take_steps, *args, 2, 1e-3, s, session=s, what="take_steps")
    session = outputs[-1][-1]
    assert session["orpo_model"]["steps"] == 2
    check(session, session, "session after ORPO")
    run_handler(orpo_tab.breakdown, *args, session, session=session, what="breakdown")
    back = pickle.loads(pickle.dumps(session))
    assert back["orpo_model"]["steps"] == 2 and back["orpo_model"]["bundle"].model is not None


# ---- the ZeroGPU worker's own steps (spaces_support._zero_gpu_worker), through a real fork and real queues
def test_to_device_moves_models_and_optimizer_state_together():
    """Checked with a dtype move on the CPU (the same code path as cuda): parameters keep their identity, so the
    optimizer still steps them, and its state follows them by torch's own rule."""
    from playground import spaces_support, train
    from tests.unit._zero_gpu import _config, learner_session

    session = learner_session()
    session["state"] = train.new_state(session["model"], _config("cpu"))
    list(train.train_steps(session["model"], session["data"], _config("cpu"), session["state"], max_steps=2))
    params = list(session["model"].parameters())
    spaces_support.to_device(((session,), {}), torch.float64)
    opt = session["state"].optimizer
    assert all(p.dtype == torch.float64 for p in session["model"].parameters())
    assert all(any(p is q for q in params) for g in opt.param_groups for p in g["params"])  # still the model's
    moments = [s["exp_avg"] for s in opt.state.values()]
    assert moments and all(m.dtype == torch.float64 for m in moments)


def test_a_run_crosses_a_forked_worker_twice_and_goes_on():
    """The app process sends the session, the worker trains and sends it back, twice: what comes back is the
    worker's model (same logits), and the second call continues the run (step 3 -> 5)."""
    from tests.unit._zero_gpu import gpu_call, learner_session

    first = gpu_call(learner_session(), "cpu", steps=3)
    session = first["session"]
    idx = session["data"].train[:16].view(1, -1)
    with torch.no_grad():
        torch.testing.assert_close(session["model"](idx), first["logits"], atol=0, rtol=0)
    assert session["state"].step == 3
    second = gpu_call(session, "cpu", steps=2)
    assert second["session"]["state"].step == 5 and second["device"] == "cpu"


def test_the_zero_gpu_wrapper_prepares_the_worker_before_the_handler(monkeypatch):
    """On ZeroGPU `gpu()` puts _zero_gpu_worker inside spaces.GPU: the host reducers are installed and the
    learner's models moved (here to float64 instead of cuda) before a plain or a streaming handler runs."""
    from multiprocessing.reduction import ForkingPickler

    from playground import spaces_support

    monkeypatch.setattr(spaces_support, "WORKER_DEVICE", torch.float64)

    def plain(session):
        return next(session["model"].parameters()).dtype

    def streaming(session):
        yield next(session["model"].parameters()).dtype

    assert spaces_support._zero_gpu_worker(plain)({"model": torch.nn.Linear(2, 2)}) == torch.float64
    assert list(spaces_support._zero_gpu_worker(streaming)({"model": torch.nn.Linear(2, 2)})) == [torch.float64]
    reducer = ForkingPickler._extra_reducers[torch.Tensor]
    assert reducer.__qualname__.startswith("install_host_reducers")
    assert reducer(torch.zeros(2))[0] is not spaces_support._tensor_from_host  # CPU tensors: torch's own way
