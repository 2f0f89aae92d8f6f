"""The Train tab through the real server: a streamed burst, Continue, Stop, attention maps, download, Reset, bad inputs.

Each test module gets its own gradio_client session (a fresh `Client`), so this learner's run does not leak into
other tabs' tests through the shared session state.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import zipfile

import numpy as np
import pytest

from playground.ui.train_tab import ATTN_PROMPT, MY_TEXT, TrainForm, _tokenizer

# The tab's inputs after the session state, in order, are the fields of TrainForm (what Start and Continue read).
SMALL_FORM = TrainForm(
    source="austen", text="", file=None, arch="gpt", preset="tiny", n_layer=2, n_head=2, n_embd=32, context=32,
    lr=5e-3, batch=8, total=300, warmup=10, mode="steps", amount=30, prompt="It is a truth", attn_prompt=ATTN_PROMPT,
    layer=2,
)  # fmt: skip


def knobs(**changes) -> list:
    """The API's positional inputs of /train_start and /train_continue: SMALL_FORM with `changes`."""
    return list(dataclasses.astuple(dataclasses.replace(SMALL_FORM, **changes)))


def step_of(status: str) -> int:
    return int(re.search(r"data-step='(\d+)'", status).group(1))


@pytest.fixture(scope="module")
def learner(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_burst_streams_curves_and_a_sample(learner):
    job = learner.submit(*knobs(), api_name="/train_start")
    updates = list(job)  # every streamed update, consumed to the end
    assert len(updates) >= 2, "a 30-step burst should stream at least one update before the final one"
    status, loss_plot, lr_plot, sample, grid, labelled = updates[-1]
    assert step_of(status) == 30 and "burst done: 30 steps" in status
    rows = loss_plot["value"]["data"] if isinstance(loss_plot, dict) and "value" in loss_plot else loss_plot["data"]
    series = {r[2] for r in rows}
    assert {"batch loss", "validation", "train (eval)"} <= series
    val = [(r[0], r[1]) for r in rows if r[2] == "validation"]
    # evaluated at steps 25 and 30; step 0's evaluation stays off the line (no diagonal from the untrained model)
    assert [st for st, _ in val] == [25, 30] and val[-1][1] < math.log(_tokenizer().vocab_size)
    ln_v = math.log(_tokenizer().vocab_size)
    uniform = sorted((r[0], r[1]) for r in rows if r[2] == "uniform (ln V)")
    assert uniform == [(0, pytest.approx(ln_v)), (300, pytest.approx(ln_v))]  # spans the schedule
    assert sample.startswith("It is a truth") and len(sample) > len("It is a truth")
    assert grid and labelled  # image files of the attention maps
    steps = [step_of(u[0]) for u in updates]
    assert steps == sorted(steps) and steps[0] < 30  # the step count grows while the burst runs


def test_continue_trains_the_same_model(learner):
    before = step_of(learner.predict(api_name="/train_stop"))
    out = learner.predict(*knobs(amount=10), api_name="/train_continue")
    assert step_of(out[0]) == before + 10


def test_stop_cancels_a_running_burst(learner):
    job = learner.submit(*knobs(mode="seconds", amount=60), api_name="/train_continue")
    deadline = time.time() + 30
    while len(job.outputs()) < 1 and time.time() < deadline:  # wait for the first streamed update
        time.sleep(0.2)
    t0 = time.time()
    status = learner.predict(api_name="/train_stop")
    at = step_of(status)
    assert f"stopped at step {at:,}" in status and "training..." not in status
    job.cancel()
    assert time.time() - t0 < 20
    time.sleep(1.0)  # anything the cancelled burst still sends arrives by now
    outs = job.outputs()
    # no step after Stop: every "training..." update the burst sent was built before it (step <= at; the fair
    # scheduler relays updates from a training thread, so one built just before Stop may be the last received) ...
    assert all(step_of(o[0]) <= at for o in outs if "training..." in o[0])
    for out in outs[-1:]:  # ... and the burst's own last word, if it got through after Stop, says the same
        if "training..." not in out[0]:
            assert step_of(out[0]) == at and f"stopped at step {at:,}" in out[0]
    # no step after Stop answered: the run is still at that step, and says it is not training
    again = learner.predict(api_name="/train_stop")
    assert step_of(again) == at and "Not training" in again
    out = learner.predict(*knobs(amount=2), api_name="/train_continue")
    assert step_of(out[0]) == at + 2


def test_course_preset_shape_is_the_models(learner):
    """384 wide, 7 heads: what gpt.py builds (54 per head, 378 concatenated), so no divisibility complaint."""
    from playground import introspect, train

    layers, heads, width, context = learner.predict("course (GPU)", api_name="/train_preset")[:4]
    html = learner.predict("gpt", "course (GPU)", layers, heads, width, context, api_name="/train_params")
    model = train.build_model("gpt", "course", 4096)
    assert model.h[0].attn.head_size == 54 and model.h[0].attn.attn_dim == 378
    assert f"data-params='{introspect.count_params(model).total}'" in html
    assert "384 // 7 = 54" in html and "378" in html and "pg-bad" not in html
    html = learner.predict("llama", "course (GPU)", layers, heads, width, context, api_name="/train_params")
    assert "pg-bad" not in html and "data-params=" in html  # k/v heads follow the 7 query heads


def test_minute_preset_fills_the_minute_in_one_burst(learner):
    """ "tiny, 1 minute": the tiny model, train.TINY_MINUTE's schedule, and a default burst that runs all of it; a
    burst length of the learner's own (or one in seconds) stays when the preset changes."""
    from playground import train
    from playground.ui.train_tab import BURST_STEPS, MINUTE, PRESETS

    tiny = learner.predict("tiny", "steps", BURST_STEPS, api_name="/train_preset")
    minute = learner.predict(MINUTE, "steps", BURST_STEPS, api_name="/train_preset")
    assert minute[:5] == tiny[:5]  # the same model and learning rate
    m = train.TINY_MINUTE
    assert minute[5:] == (m["batch_size"], m["steps"], m["warmup_steps"], m["steps"])
    assert tiny[6:] == (PRESETS["tiny"]["steps"], PRESETS["tiny"]["warmup"], BURST_STEPS)
    assert learner.predict("tiny", "steps", minute[8], api_name="/train_preset")[8] == BURST_STEPS  # back
    assert learner.predict(MINUTE, "steps", 250, api_name="/train_preset")[8] == 250  # the learner's own
    assert learner.predict(MINUTE, "seconds", 30, api_name="/train_preset")[8] == 30


@pytest.mark.slow
def test_course_preset_starts(app_url):
    """Start with "course (GPU)" trains on a CPU too: it first says that steps take seconds here."""
    from gradio_client import Client

    from playground.ui.train_tab import PRESETS

    p = PRESETS["course (GPU)"]
    other = Client(app_url, verbose=False)
    args = knobs(
        preset="course (GPU)",
        n_layer=p["n_layer"],
        n_head=p["n_head"],
        n_embd=p["n_embd"],
        context=p["context"],
        lr=p["lr"],
        batch=p["batch"],
        total=p["steps"],
        amount=1,
    )
    updates = list(other.submit(*args, api_name="/train_start"))
    assert any(re.search(r"Built a [\d.]+M-parameter model", u[0]) and "no GPU" in u[0] for u in updates)
    assert step_of(updates[-1][0]) == 1 and "burst done: 1 steps" in updates[-1][0]


def _shown_maps(view: str) -> dict[str, np.ndarray]:
    """figure id suffix ('l0-h1', 'l1-avg') -> the (T, T) weights the interactive view carries in data-w."""
    out = {}
    fig = r"<figure class='pg-attn-map' id='pga\w+-(l\d+-\w+)' data-t='(\d+)' data-w='([\d,]+)'"
    for ident, t, w in re.findall(fig, view):
        out[ident] = np.array([int(v) for v in w.split(",")], dtype=np.float64).reshape(int(t), int(t)) / 1e4
    return out


def test_attention_maps_and_param_count(learner, tmp_path):
    view, reading = learner.predict(ATTN_PROMPT, 1, api_name="/train_attention")
    shown = _shown_maps(view)
    assert len(shown) == 2 * (2 + 1)  # 2 layers x (2 heads + their average)
    # the same maps, recomputed from the downloaded model: introspect.attention_maps on the saved weights
    with zipfile.ZipFile(learner.predict(api_name="/train_download")) as z:
        z.extractall(tmp_path)
    from playground import checkpoints, introspect

    folder = next(p.parent for p in tmp_path.rglob("config.json"))
    bundle = checkpoints.load(str(folder), local=True)
    bundle.model.eval()
    ids = bundle.tokenizer.encode(ATTN_PROMPT)[:32]
    ref = introspect.attention_maps(bundle.model, ids).numpy()  # (L, nh, T, T)
    for layer in range(2):
        for head in range(2):
            np.testing.assert_allclose(shown[f"l{layer}-h{head}"], ref[layer, head], atol=6e-5)
        np.testing.assert_allclose(shown[f"l{layer}-avg"], ref[layer].mean(0), atol=6e-5)
        np.testing.assert_allclose(shown[f"l{layer}-avg"].sum(-1), 1.0, atol=len(ids) * 6e-5)  # each row: a softmax
    labels = [bundle.tokenizer.id_to_piece(i).replace("\u2581", "␣") for i in ids]
    assert all(f"<span>{lab}</span>" in view for lab in labels if lab.isalnum())  # token labels in the page font
    assert reading.count("<li>") == 2 and "head 2" in reading
    html = learner.predict("gpt", "tiny", 2, 2, 32, 32, api_name="/train_params")
    from playground import introspect, train

    model = train.build_model("gpt", "tiny", 4096, n_layer=2, n_head=2, n_embd=32, context=32)
    assert f"data-params='{introspect.count_params(model).total}'" in html
    assert learner.predict("course (GPU)", api_name="/train_preset")[:4] == (7, 7, 384, 512)


def test_download_gives_a_loadable_checkpoint(learner, tmp_path):
    path = learner.predict(api_name="/train_download")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert any(n.endswith("model.safetensors") for n in names) and any(n.endswith("config.json") for n in names)
        z.extractall(tmp_path)
    from playground import checkpoints

    folder = next(tmp_path.glob("*/config.json")).parent
    bundle = checkpoints.load(str(folder))
    assert bundle.model.config.n_embd == 32 and bundle.tokenizer.vocab_size == 4096


def test_bad_inputs_give_clear_errors(learner):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="head_dim must be even"):  # rotary embeddings need pairs
        learner.predict(*knobs(arch="llama", n_embd=30, n_head=2), api_name="/train_start")
    with pytest.raises(AppError, match="minimum|Learning rate"):
        learner.predict(*knobs(lr=-1), api_name="/train_start")
    with pytest.raises(AppError, match="tokens in all"):
        learner.predict(*knobs(source=MY_TEXT, text="far too short to train on"), api_name="/train_start")
    with pytest.raises(AppError, match="steps of its schedule"):
        learner.predict(*knobs(total=5), api_name="/train_continue")


def test_reset_forgets_the_model(learner):
    out = learner.predict(api_name="/train_reset")
    assert "Reset" in out[0]
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="press Start first"):
        learner.predict(*knobs(), api_name="/train_continue")


def test_pasted_text_trains(learner):
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune.\n" * 60
    out = learner.predict(*knobs(source=MY_TEXT, text=text, amount=5), api_name="/train_start")
    assert step_of(out[0]) == 5


def test_prepare_readies_the_first_burst_without_touching_the_rng():
    """The start-up preparation (run in-process here) encodes the default corpus and warms PyTorch up, and leaves
    the shared random generator, which seeds every learner's model, exactly as it was."""
    import torch

    from playground.ui import train_tab as tt

    torch.manual_seed(123)
    before = torch.get_rng_state()
    tt.prepare("austen")
    assert torch.equal(torch.get_rng_state(), before)
    assert "austen" in tt._PREP["ready"] and tt._preparing_note("austen") is None
    if "kjv" not in tt._PREP["ready"]:  # a corpus not prepared yet: Start says what it waits for
        assert "encoding the kjv corpus" in tt._preparing_note("kjv")
