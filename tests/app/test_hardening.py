"""Issue 23 against the real server: one visitor cannot take the Space down.

Each test reproduces a finding of the red-team pass (issue 23) and checks the fix: a Train request with the tab's
own maximum values is refused before it allocates anything (resident memory measured); a burst's time bound holds
inside long steps; jobs posted and never read are dropped and do not delay another visitor; one session cannot
queue more than its share; one visitor's address cannot hold more than its share of trainable parameters;
an oversized upload is refused by Gradio itself; Download leaves no temporary folder behind.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from playground import loadtest
from tests.conftest import start_app, stop_app

BURST_SECONDS = 4
# the Train tab's API inputs (train_tab.TrainForm's fields): source, text, file, arch, preset, layers, heads, width,
# context, lr, batch, total, warmup, mode, amount, prompt, attention prompt, labelled layer
MAXED = [
    "austen",
    "",
    None,
    "gpt",
    "tiny",
    2,
    4,
    768,
    1024,
    5e-3,
    128,
    10_000,
    2,
    "seconds",
    BURST_SECONDS,
    "It is",
    "Emma was",
    1,
]  # fmt: skip - 26.0M parameters, under the 30M bound: the issue's OOM request
SLOW = [
    "austen",
    "",
    None,
    "gpt",
    "tiny",
    2,
    4,
    256,
    512,
    5e-3,
    16,
    10_000,
    2,
    "seconds",
    BURST_SECONDS,
    "It is",
    "Emma was",
    1,
]  # fmt: skip - fits the memory budget, several seconds a step on one CPU thread
SMALL = ["austen", "", None, "gpt", "tiny", 1, 2, 16, 16, 5e-3, 4, 10_000, 2, "steps", 1, "It is", "Emma was",
         1]  # fmt: skip


@pytest.fixture(scope="module")
def app():
    tmp = Path(tempfile.mkdtemp(prefix="pg-harden-"))
    env = {
        "PLAYGROUND_MAX_TRAIN_SECONDS": str(BURST_SECONDS),
        "PLAYGROUND_MAX_CLIENT_TRAIN_PARAMS": "5000000",  # the slow run (4.3M) fits, not two of it
        "PLAYGROUND_TRUST_PROXY": "1",  # visitors told apart by X-Forwarded-For, as behind a Space's proxy
        "PLAYGROUND_MAX_UPLOAD_BYTES": "1000000",
        "TMPDIR": str(tmp),
        "PLAYGROUND_ALLOW_LOCAL_PATHS": "0",  # as on a public Space
    }
    proc, url = start_app(env)
    yield proc, url, tmp
    stop_app(proc)


def _post(url: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"Content-Type":
                                 "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _error_of(client: Client, args, api: str) -> str | None:
    try:
        client.predict(*args, api_name=api)
    except Exception as exc:  # noqa: BLE001 - gradio_client raises AppError with the server's message
        return str(exc)
    return None


def test_the_tabs_maximum_training_request_is_refused_before_it_allocates(app):
    proc, url, _ = app
    client = Client(url, verbose=False)
    before = loadtest.rss_mb(proc.pid)
    t0 = time.perf_counter()
    err = _error_of(client, MAXED, "/train_start")
    took = time.perf_counter() - t0
    after = loadtest.rss_mb(proc.pid)
    assert err is not None and "would need about" in err and "the limit here is" in err, err
    assert "a batch of" in err and "fits at this context" in err  # says what would fit
    assert took < 60 and after - before < 300, (took, before, after)  # it used to grow to 24 GB (OOM)


def test_a_burst_ends_near_its_time_bound_even_with_long_steps(app):
    _, url, _ = app
    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    status = client.predict(*SLOW, api_name="/train_start")[0]
    took = time.perf_counter() - t0
    m = re.search(r"burst done: (\d+) steps in ([\d.]+) s", status)
    assert m, status
    # the bound (4 s), a tenth more for the last evaluation (at least 2 s), then the sample and attention maps
    assert float(m.group(2)) < BURST_SECONDS + 2 + 3, status
    assert took < 90, took  # the step-0 evaluation is bounded too (a quarter of the burst)


def test_jobs_nobody_reads_are_dropped_and_do_not_delay_another_visitor(app):
    _, url, _ = app
    big = ["gpt-tiny", "Once upon a time", 1.0, 50, 1.0, 512, 4, 0]
    ids = []
    for _ in range(12):  # posted, never read: the 12 POSTs that made a 5-token sample wait 250 s
        code, body = _post(url, "gradio_api/call/sample_generate", {"data": big})
        assert code == 200, body
        ids.append(body["event_id"])
    time.sleep(12)  # past guard.ABANDONED_AFTER
    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    client.predict("gpt-tiny", "Once upon", 1.0, 50, 1.0, 5, 1, 0, api_name="/sample_generate")
    assert time.perf_counter() - t0 < 60


def test_one_session_cannot_fill_the_queue(app):
    _, url, _ = app
    config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "sample_generate")
    data = ["gpt-tiny", "Once upon", 1.0, 50, 1.0, 64, 1, 0, None]  # the last: the session state
    body = {"data": data, "fn_index": fn, "session_hash": "pg-flood"}
    codes, last = [], {}
    for _ in range(12):
        code, last = _post(url, "gradio_api/queue/join", body)
        codes.append(code)
    assert codes[:8] == [200] * 8 and codes[8:] == [503] * 4, codes
    assert "requests waiting or unread" in json.dumps(last), last


def test_one_visitor_cannot_hold_more_than_their_share_of_trainable_parameters(app):
    _, url, _ = app
    # 3.0M parameters a run (4,096 x 256 twice, one block of 256): one fits in a visitor's 5M, not two
    run = ["austen", "", None, "gpt", "tiny", 1, 4, 256, 16, 5e-3, 4, 10_000, 2, "steps", 1, "It is", "Emma", 1]
    visitor = {"X-Forwarded-For": "203.0.113.7"}
    clients = [Client(url, verbose=False, headers=visitor) for _ in range(3)]  # new session ids, one address
    errors = [_error_of(c, run, "/train_start") for c in clients]
    assert errors[0] is None, errors[0]
    assert all(e and "the limit per visitor is 5M" in e for e in errors[1:]), errors
    other = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.9"})
    assert _error_of(other, run, "/train_start") is None  # another visitor is not affected
    clients[0].predict(api_name="/train_reset")  # the first visitor frees theirs, and may train again
    assert _error_of(clients[1], run, "/train_start") is None


def test_gradio_refuses_an_oversized_upload_before_keeping_it(app):
    _, url, tmp = app
    boundary = "pgboundary"
    payload = b"a" * 2_000_000  # twice PLAYGROUND_MAX_UPLOAD_BYTES
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    req = urllib.request.Request(url + "gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=60)
    assert info.value.code in (400, 413)
    kept = [p for p in tmp.rglob("big.txt")]
    assert kept == [], kept


def test_download_leaves_only_the_zip_and_no_model_folder(app):
    _, url, tmp = app
    client = Client(url, verbose=False)
    client.predict(*SMALL, api_name="/train_start")
    before = {p.name for p in tmp.iterdir()}
    for _ in range(3):
        client.predict(api_name="/train_download")
    left = sorted({p.name for p in tmp.iterdir()} - before)
    assert not [n for n in left if n.startswith(("pg-train-", "pg-save-"))], left  # unzipped files are gone
    downloads = [tmp / n for n in left if n.startswith("pg-download-")]
    assert len(downloads) == 3 and all([f.suffix for f in d.iterdir()] == [".zip"] for d in downloads), left


def test_an_existing_and_a_missing_path_get_the_same_answer(app):
    _, url, _ = app
    client = Client(url, verbose=False)
    answers = []
    for path in ("playground/../../../etc/passwd", "playground/../../../etc/no-such-file", "/etc/passwd",
                 "/etc/no-such-file", "checkpoints/../app.py", "checkpoints/../no-such.py"):  # fmt: skip
        err = _error_of(client, ["hello", path], "/tokenize")
        assert err is not None
        answers.append(err.replace(path, "<path>"))
    assert len(set(answers)) == 1, answers
    assert "switched off" in answers[0]


def test_messages_carry_no_server_folder(app):
    _, url, _ = app
    root = str(Path(__file__).resolve().parents[2])
    # Gradio's own message for a file payload that is not an upload used to say "Cannot move <root>/file:..."
    file_arg = {"path": "file:/etc/passwd", "meta": {"_type": "gradio.FileData"}, "orig_name": "x.txt"}
    args = list(SMALL)
    args[0], args[2] = "my text (paste or upload)", file_arg
    code, body = _post(url, "gradio_api/call/train_start", {"data": args})
    stream = ""
    if code == 200:
        with urllib.request.urlopen(f"{url}gradio_api/call/train_start/{body['event_id']}", timeout=120) as r:
            stream = r.read().decode()
    else:
        stream = json.dumps(body)
    assert "error" in stream, stream
    assert root not in stream and "/work/" not in stream, stream


def test_the_server_still_answers(app):
    proc, url, _ = app
    assert proc.poll() is None
    Client(url, verbose=False).predict("hello", "bundled", api_name="/tokenize")


@pytest.fixture(scope="module")
def hung_hub():
    """A 'Hub' that accepts connections and never answers, and a server that uses it (online, nothing cached)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])  # kept open, never read, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    hub = f"http://127.0.0.1:{sock.getsockname()[1]}"
    tmp = Path(tempfile.mkdtemp(prefix="pg-hung-"))
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": hub, "HF_HUB_CACHE": str(tmp / "hub"),
           "PLAYGROUND_LOAD_TIMEOUT_SECONDS": "5", "PLAYGROUND_ALLOW_LOCAL_PATHS": "0"}  # fmt: skip
    proc, url = start_app(env)
    yield url
    stop_app(proc)
    stop.set()
    for c in held:
        c.close()
    sock.close()


def test_a_hub_that_never_answers_holds_up_no_other_visitor(hung_hub):
    url = hung_hub
    results = {}

    def hung(i):
        results[i] = _error_of(Client(url, verbose=False), ["hello", f"org/hung-{i}"], "/tokenize")

    threads = [threading.Thread(target=hung, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)  # the three loads are in flight
    t0 = time.perf_counter()
    Client(url, verbose=False).predict("hello", "bundled", api_name="/tokenize")  # another visitor
    took = time.perf_counter() - t0
    for t in threads:
        t.join(120)
    assert took < 30, took  # 138 s behind three ids before, and never once a download hung
    assert all(e and ("takes longer than 5 s" in e or "could not" in e) for e in results.values()), results
