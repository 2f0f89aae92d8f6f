"""A small cache of read-only things every visitor shares (models, tokenizers), loaded without holding anyone up.

The lock guards only the dictionary, never a load: each key loads once in a background thread, visitors asking
for the same key wait for that load (at most `timeout` seconds, then a clear message while it goes on), and a
visitor asking for a cached key or another key is answered at once. A load that never returns (a Hub that does
not answer) keeps one of `max_loading` slots; past that, new loads are refused until one ends.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


_IMPORT_LOCK = threading.Lock()
_IMPORTED: list[bool] = []


def _import_loaders() -> None:
    """transformers' lazy module is not safe to import from several threads at once (three concurrent Hub
    tokenizer loads gave "cannot import name 'AutoTokenizer'"): the first load imports it, under a lock."""
    if _IMPORTED:
        return
    with _IMPORT_LOCK:
        if not _IMPORTED:
            try:
                from transformers import AutoTokenizer  # noqa: F401
            except ImportError:  # not installed: the loaders say so themselves
                pass
            _IMPORTED.append(True)


class SharedCache:
    def __init__(self, capacity: int, pinned: tuple = (), max_loading: int = 4, timeout: float | None = None):
        self.capacity, self.pinned, self.max_loading, self._timeout = capacity, set(pinned), max_loading, timeout
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._loading: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    @property
    def timeout(self) -> float:
        if self._timeout is not None:
            return self._timeout
        from playground.limits import LIMITS

        return LIMITS.load_timeout_seconds

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        if "/" in key and key not in self:
            _import_loaders()  # a Hub id: its tokenizer may load through transformers (once, not in the wait)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            future = self._loading.get(key)
            if future is None:
                if len(self._loading) >= self.max_loading:
                    raise ValueError(
                        f"The server is loading {len(self._loading)} other models or tokenizers right now: "
                        "try again in a minute (bundled ones still work)."
                    )
                future = concurrent.futures.Future()
                self._loading[key] = future
                threading.Thread(target=self._run, args=(key, load, future), daemon=True, name=f"load {key}").start()
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise ValueError(
                f"Loading {key} takes longer than {self.timeout:g} s (a slow or unreachable Hub?): it goes on in "
                "the background; try again later."
            ) from None

    def _run(self, key: str, load: Callable[[], Any], future: concurrent.futures.Future) -> None:
        try:
            value = load()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter as it is
            with self._lock:
                self._loading.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:  # the least recently used, never a pinned one
                old = next((k for k in self._items if k not in self.pinned), None)
                if old is None:
                    break
                self._items.pop(old)
            self._loading.pop(key, None)
        future.set_result(value)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
