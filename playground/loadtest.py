"""`python -m playground loadtest`: many learners at once against the real app, on loopback only.

Starts `python app.py` on a free 127.0.0.1 port (offline, a short session time to live), then runs N concurrent
gradio_client sessions for a bounded time, in rounds. Each session mixes tokenize, cross-entropy, a streamed
sample (submit + iterate, watching its queue position), a short training burst and ORPO. It checks:
  - no request fails;
  - each session's trained model stays its own: session i trains exactly its own number of steps, and the Train
    tab's status it reads back must show that count (a leak between sessions would show another's count);
  - the queue reports positions (gradio_client's job status carries `rank` while a job waits);
  - memory stays bounded: the server's resident memory (VmRSS) is sampled; each round uses fresh sessions, and
    after the last one the old sessions' state must have expired (their Train tab shows no model).
Prints p50/p95 latency per endpoint and peak memory; `--json` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from playground import server

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
WORDS = "apple river stone cloud maple violet copper harbor lantern meadow".split()
TRAIN = ["my text (paste or upload)", "", None, "gpt", "tiny", 1, 2, 16, 16, 5e-3, 4, 10_000, 2, "steps", 1,
         "It is", "Emma was", 1]  # fmt: skip
PAIR = ("What is your location?", "I live on a server.", "Bananas are yellow.")


@dataclass
class LoadConfig:
    sessions: int = 20
    seconds: float = 60.0  # total, split over the rounds
    rounds: int = 3
    ttl: int = 90  # PLAYGROUND_SESSION_TTL_SECONDS; longer than one learner's pass under load for the server under test
    max_requests: int = 10_000  # a hard bound on the number of calls, whatever the time

    def __post_init__(self):
        if not 1 <= self.sessions <= 200:
            raise ValueError(f"sessions must be 1..200, got {self.sessions}")
        if not 1 <= self.seconds <= 3600 or not 1 <= self.rounds <= 20 or not 2 <= self.ttl <= 3600:
            raise ValueError(f"bad bounds: seconds={self.seconds}, rounds={self.rounds}, ttl={self.ttl}")


@dataclass
class Results:
    latency: dict = field(default_factory=lambda: defaultdict(list))  # endpoint -> seconds
    failures: list = field(default_factory=list)  # (endpoint, message)
    leaks: list = field(default_factory=list)  # (session, expected step, shown step)
    max_rank: int = -1  # the largest queue position a waiting job reported
    rss_mb: list = field(default_factory=list)  # (seconds since start, MB)
    round_peaks_mb: list = field(default_factory=list)
    requests: int = 0
    expired_ok: bool | None = None
    rss_after_expiry_mb: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict:
        rows = {}
        for name, xs in sorted(self.latency.items()):
            xs = sorted(xs)
            rows[name] = {"n": len(xs), "p50_s": round(statistics.median(xs), 3),
                          "p95_s": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 3)}  # fmt: skip
        return {
            "endpoints": rows,
            "requests": self.requests,
            "failures": self.failures[:20],
            "n_failures": len(self.failures),
            "leaks": self.leaks[:20],
            "max_queue_rank": self.max_rank,
            "peak_rss_mb": max((m for _, m in self.rss_mb), default=0),
            "round_peaks_mb": self.round_peaks_mb,
            "expired_ok": self.expired_ok,
            "rss_after_expiry_mb": round(self.rss_after_expiry_mb, 1),
        }


# ----------------------------------------------------------------------------------------------- server
def start_server(env_extra: dict, timeout: float = 120.0):
    """`python app.py` on a free loopback port (playground.server); (process, url) once it answers. Its output
    goes to test-artifacts/ when that folder exists."""
    artifacts = ROOT / "test-artifacts"
    log_file = artifacts / f"loadtest-server-{time.time_ns()}.log" if artifacts.is_dir() else None
    proc, url, _ = server.start_server(["app.py"], env_extra, timeout, log=log_file)
    return proc, url


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc (no psutil needed)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------------- sessions
def step_of(status: str) -> int | None:
    """The step count the Train tab's status shows (0 or None: no model in this session)."""
    m = re.search(r"data-step='(\d+)'", status or "")
    return int(m.group(1)) if m else None


class Learner:
    """One concurrent learner: its own gradio_client session, its own text and its own step count."""

    def __init__(self, url: str, index: int, results: Results):
        from gradio_client import Client

        self.client, self.i, self.r = Client(url, verbose=False), index, results
        self.text = " ".join(f"{WORDS[(index + k) % len(WORDS)]} number {index} said {k}." for k in range(400))
        self.steps = 0  # what this learner's Train tab must show

    def call(self, name: str, *args, stream: bool = False):
        t0 = time.perf_counter()
        try:
            if stream:
                job = self.client.submit(*args, api_name=f"/{name}")
                while not job.done():
                    rank = getattr(job.status(), "rank", None)
                    if rank is not None:
                        with self.r.lock:
                            self.r.max_rank = max(self.r.max_rank, rank)
                    time.sleep(0.05)
                out = job.result()
            else:
                out = self.client.predict(*args, api_name=f"/{name}")
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            with self.r.lock:
                self.r.failures.append((name, f"{type(exc).__name__}: {str(exc)[:200]}"))
            return None
        with self.r.lock:
            self.r.latency[name].append(time.perf_counter() - t0)
            self.r.requests += 1
        return out

    def check_own_model(self) -> None:
        shown = step_of(self.call("train_stop") or "")
        if shown != self.steps:
            with self.r.lock:
                self.r.leaks.append((self.i, self.steps, shown))

    def one_pass(self, k: int) -> None:
        self.call("tokenize", self.text[:200], "bundled BPE 4096", "(none)")
        self.call("ce_score", "gpt-tiny", self.text[:300])
        self.call("sample_generate", "gpt-tiny", f"The {WORDS[self.i % 10]}", 0.8, 40, 1.0, 12, 1, self.i, stream=True)
        burst = 1 + self.i % 5  # a count of its own: session i's total differs from its neighbours'
        args = list(TRAIN)
        args[1], args[14] = self.text, burst
        if self.steps == 0:
            if self.call("train_start", *args, stream=True) is not None:
                self.steps = burst
        elif self.call("train_continue", *args, stream=True) is not None:
            self.steps += burst
        self.check_own_model()
        self.call("ce_score", "my model (Train tab)", self.text[:300])
        if k % 2 == 0:
            self.call("orpo_breakdown", "llama-base", *PAIR, 0.5)
        else:
            self.call("orpo_steps", "llama-base", *PAIR, 0.5, 1, 1e-3, stream=True)


def run_round(url: str, cfg: LoadConfig, seconds: float, results: Results) -> list[Learner]:
    learners = [Learner(url, i, results) for i in range(cfg.sessions)]
    deadline = time.time() + seconds

    def work(learner: Learner):
        k = 0
        while time.time() < deadline and results.requests < cfg.max_requests:
            learner.one_pass(k)
            k += 1

    threads = [threading.Thread(target=work, args=(lr,), daemon=True) for lr in learners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)  # a pass in flight at the deadline finishes; bounded anyway
    return learners


def run(cfg: LoadConfig) -> dict:
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    proc, url = start_server({"PLAYGROUND_SESSION_TTL_SECONDS": str(cfg.ttl)})
    results, stop, t0 = Results(), threading.Event(), time.time()

    def sample_memory():
        while not stop.is_set():
            results.rss_mb.append((round(time.time() - t0, 1), round(rss_mb(proc.pid), 1)))
            stop.wait(0.5)

    threading.Thread(target=sample_memory, daemon=True).start()
    try:
        learners: list[Learner] = []
        for _ in range(cfg.rounds):
            start = time.time() - t0
            learners = run_round(url, cfg, cfg.seconds / cfg.rounds, results)
            results.round_peaks_mb.append(_peak_since(results, start))
            log.info("round done: %d requests, peak RSS %.0f MB", results.requests, results.round_peaks_mb[-1])
        # every learner leaves; their state must expire, and the memory it held must be reused, not added to
        time.sleep(cfg.ttl + 3)
        trained = [lr for lr in learners if lr.steps > 0][:3]
        results.expired_ok = all(not step_of(lr.call("train_stop") or "x") for lr in trained) if trained else None
        results.rss_after_expiry_mb = rss_mb(proc.pid)
        start = time.time() - t0
        run_round(url, cfg, cfg.seconds / cfg.rounds, results)
        results.round_peaks_mb.append(_peak_since(results, start))
        log.info("round after expiry: peak RSS %.0f MB", results.round_peaks_mb[-1])
    finally:
        stop.set()
        server.stop_server(proc)
    return results.summary()


def _peak_since(results: Results, start: float) -> float:
    return max((m for t, m in results.rss_mb if t >= start), default=0.0)


def parser() -> argparse.ArgumentParser:
    """The command's flags, both scenarios (`python -m playground loadtest` runs `loadclass.cli`, which picks)."""
    p = argparse.ArgumentParser(prog="python -m playground loadtest", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20, help="concurrent gradio_client sessions")
    p.add_argument("--seconds", type=float, default=60.0, help="total time of the load, split over the rounds")
    p.add_argument("--rounds", type=int, default=3, help="rounds of fresh sessions, then one more after they expire")
    p.add_argument("--ttl", type=int, default=90, help="the server's session time to live (seconds)")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument(
        "--scenario",
        choices=["mixed", "class", "memory"],
        default="mixed",
        help="mixed: rounds of the pass above; class: learners follow the class path (loadclass.py); "
        "memory: the learners' models and optimizers in one process, no server",
    )
    p.add_argument("--learners", type=int, help="class scenario: learners (default 30)")
    p.add_argument("--think", type=float, default=1.0, help="class scenario: scale of the think times")
    return p


def cli(argv: list[str]) -> int:
    """The mixed scenario (the class scenario is `loadclass.cli`)."""
    p = parser()
    a = p.parse_args(argv)
    if a.scenario != "mixed":
        p.error(f"the {a.scenario} scenario runs through `python -m playground loadtest --scenario {a.scenario}`")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    summary = run(LoadConfig(sessions=a.sessions, seconds=a.seconds, rounds=a.rounds, ttl=a.ttl))
    text = json.dumps(summary, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n", encoding="utf-8")
    ok = not summary["n_failures"] and not summary["leaks"] and summary["expired_ok"] is not False
    return 0 if ok else 1
