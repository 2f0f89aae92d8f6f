"""Resident memory of the real server around Train requests (issue 23, docs/reliability.md).

Starts `python app.py` offline on a free port (the tests' launcher), samples the server's VmRSS every 0.2 s, and
sends through gradio_client: the Train tab's maximum (26.0M parameters, context 1024, batch 128: refused before
anything is built), then the largest batch the refusal says fits, as a time-bounded burst. Prints one JSON line.

    .venv/bin/python scripts/measure_train_memory.py --seconds 30
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradio_client import Client  # noqa: E402

from playground.loadtest import rss_mb  # noqa: E402
from tests.conftest import start_app, stop_app  # noqa: E402

MAXED = ["austen", "", None, "gpt", "tiny", 2, 4, 768, 1024, 5e-3, 128, 10_000, 2, "seconds", 0, "It is", "Emma", 1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="the burst's time bound (PLAYGROUND_MAX_TRAIN_SECONDS)")
    args = p.parse_args()
    proc, url = start_app({"PLAYGROUND_MAX_TRAIN_SECONDS": str(args.seconds)})
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb(proc.pid)))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    out = {}
    try:
        client = Client(url, verbose=False)
        client.predict("warm up", "bundled", api_name="/tokenize")
        time.sleep(1)
        out["idle_mb"] = rss_mb(proc.pid)
        req = list(MAXED)
        req[14] = args.seconds
        t0 = time.perf_counter()
        try:
            client.predict(*req, api_name="/train_start")
            message = "accepted?!"
        except Exception as exc:  # noqa: BLE001 - the refusal
            message = str(exc)
        out.update(max_request_seconds=round(time.perf_counter() - t0, 2), max_request_message=message,
                   after_max_mb=rss_mb(proc.pid))  # fmt: skip
        fit = int(re.search(r"a batch of (\d+)", message).group(1))
        req[10] = fit
        t1 = time.perf_counter()
        status = client.predict(*req, api_name="/train_start")[0]
        took = time.perf_counter() - t1
        during = [r for t, r in samples if t1 <= t <= t1 + took]
        out.update(fit_batch=fit, fit_burst_wall_seconds=round(took, 1), fit_peak_mb=max(during),
                   fit_status=re.sub(r"<[^>]+>", " ", status)[:300])  # fmt: skip
    finally:
        stop.set()
        stop_app(proc)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
