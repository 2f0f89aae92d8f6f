"""Issue 23 (6): a load that hangs (a Hub that never answers) holds up no other visitor."""

from __future__ import annotations

import threading
import time

import pytest

from playground import shared_cache
from playground.shared_cache import SharedCache


def test_a_hung_load_blocks_neither_cached_keys_nor_other_keys():
    cache = SharedCache(capacity=4, timeout=0.5, max_loading=2)
    never = threading.Event()
    assert cache.get("bundled", lambda: "ok") == "ok"
    shared_cache._import_loaders()  # a Hub id's first load imports transformers (once, seconds): not timed here
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="takes longer than 0.5 s"):
        cache.get("org/hung", never.wait)  # returns only when the test ends
    assert 0.4 < time.perf_counter() - t0 < 5
    results = {}

    def other():
        results["cached"] = cache.get("bundled", lambda: "reloaded")
        results["fresh"] = cache.get("org/other", lambda: "fresh")

    t = threading.Thread(target=other)
    t.start()
    t.join(timeout=5)
    assert results == {"cached": "ok", "fresh": "fresh"}  # answered at once, the hung load still going
    with pytest.raises(ValueError, match="loading 1 other|takes longer"):
        cache.get("org/hung", lambda: "again")  # the same key waits for the load in flight, bounded
    never.set()


def test_loads_run_once_per_key_and_errors_reach_every_waiter():
    cache = SharedCache(capacity=4, timeout=5)
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(1)
        gate.wait(2)
        return "model"

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert out == ["model"] * 4 and len(calls) == 1

    def boom():
        raise ValueError("no such repo")

    with pytest.raises(ValueError, match="no such repo"):
        cache.get("bad", boom)
    assert "bad" not in cache


def test_too_many_loads_at_once_are_refused_and_capacity_is_kept():
    cache = SharedCache(capacity=2, pinned=("keep",), timeout=0.2, max_loading=1)
    never = threading.Event()
    with pytest.raises(ValueError):
        cache.get("org/hung", never.wait)
    with pytest.raises(ValueError, match="loading 1 other"):
        cache.get("org/next", lambda: "x")
    never.set()
    time.sleep(0.2)
    for k in ("keep", "a", "b", "c"):
        cache.get(k, lambda k=k: k)
    assert "keep" in cache and "c" in cache and "a" not in cache
