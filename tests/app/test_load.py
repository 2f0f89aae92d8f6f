"""A lighter load test in the suite (the full one is `python -m playground loadtest`): 6 concurrent learners for
about 20 s against their own server, in two rounds of fresh learners.

Checks: no failed request, each learner's trained model stays its own (its Train tab shows its own step count),
the queue reports positions, resident memory stays bounded; and, on a second server with a 5-second session time
to live, local folders off (as on a public Space) and a small bound on live trainable parameters, that state
expires, local folders are refused and a full server says so.
"""

from __future__ import annotations

import time

import pytest

from playground import loadtest
from tests.conftest import start_app, stop_app

TTL = 5


@pytest.fixture(scope="module")
def busy_app():
    proc, url = start_app({"PLAYGROUND_SESSION_TTL_SECONDS": "120"})
    yield proc, url
    stop_app(proc)


@pytest.fixture(scope="module")
def public_app():
    env = {
        "PLAYGROUND_SESSION_TTL_SECONDS": str(TTL),
        "PLAYGROUND_ALLOW_LOCAL_PATHS": "0",
        "PLAYGROUND_MAX_LIVE_TRAIN_PARAMS": "1000000",
    }  # fmt: skip - tiny runs fit, a llama-base copy does not
    proc, url = start_app(env)
    yield proc, url
    stop_app(proc)


def test_six_learners_at_once(busy_app):
    proc, url = busy_app
    cfg = loadtest.LoadConfig(sessions=6, seconds=20, rounds=2, ttl=120)
    results = loadtest.Results()
    peaks = []
    for _ in range(cfg.rounds):
        learners = loadtest.run_round(url, cfg, cfg.seconds / cfg.rounds, results)
        peaks.append(loadtest.rss_mb(proc.pid))
    s = results.summary()
    assert s["n_failures"] == 0, s["failures"]
    assert s["leaks"] == [], "a learner saw another's model"
    assert all(lr.steps > 0 for lr in learners), "every learner trained"
    assert s["max_queue_rank"] >= 1, "the queue reported a waiting position"
    for name in ("tokenize", "ce_score", "sample_generate", "train_start", "train_stop", "orpo_breakdown"):
        assert s["endpoints"][name]["n"] >= 1, name
    assert peaks[-1] < 4096, f"resident memory {peaks} MB"  # bounded; the full loadtest measures reuse


def test_session_state_expires(public_app):
    _, url = public_app
    learner = loadtest.Learner(url, 0, loadtest.Results())
    args = list(loadtest.TRAIN)
    args[1], args[14] = learner.text, 2
    learner.call("train_start", *args, stream=True)
    assert loadtest.step_of(learner.call("train_stop")) == 2
    time.sleep(TTL + 3)  # gradio drops expired state every second
    assert not loadtest.step_of(learner.call("train_stop")), "the trained model outlived its time to live"
    assert learner.r.failures == []


def test_local_folders_are_off_on_a_public_app(public_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    _, url = public_app
    client = Client(url, verbose=False)
    for source in ("checkpoints/gpt-tiny", "/etc", "../.."):
        with pytest.raises(AppError, match="local folders are switched off"):
            client.predict(source, "hello", api_name="/ce_score")
    with pytest.raises(AppError, match="local folders are switched off"):
        client.predict("hello", "checkpoints/tokenizer", "(none)", api_name="/tokenize")
    assert client.predict("gpt-tiny", "hello there", api_name="/ce_score")  # bundled names still work


def test_a_full_server_says_so(public_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    _, url = public_app
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="server is busy"):
        client.predict("llama-base", *loadtest.PAIR, 0.5, 1, 1e-3, api_name="/orpo_steps")
    assert client.predict("llama-base", *loadtest.PAIR, 0.5, api_name="/orpo_breakdown")  # reading still works


def test_a_learner_who_leaves_frees_their_state_too(public_app):
    """Gradio keeps a closed session's state for an hour unless capped (playground.ui._cap_closed_session_ttl)."""
    from gradio_client import Client

    _, url = public_app
    learner = loadtest.Learner(url, 1, loadtest.Results())
    args = list(loadtest.TRAIN)
    args[1], args[14] = learner.text, 3
    learner.call("train_start", *args, stream=True)
    session = learner.client.session_hash
    learner.client.close()  # the tab is closed: the heartbeat stops, the server marks the session closed
    time.sleep(TTL + 4)
    probe = Client(url, verbose=False)
    probe.session_hash = session  # look at the departed learner's session
    assert not loadtest.step_of(probe.predict(api_name="/train_stop")), "a closed session kept its model"
