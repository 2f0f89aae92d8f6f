"""Device, dtype, autocast and seeding: the one place that decides where tensors live.

`pick_device()` prefers cuda > mps > cpu unless `PLAYGROUND_DEVICE` (or the argument) forces one.
Nothing else in the project calls `.cuda()`; code takes the device from here or from its inputs.
"""

from __future__ import annotations

import contextlib
import os
import random

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to run on: `prefer` or $PLAYGROUND_DEVICE if given (`cpu`, `cuda`, `cuda:1`, `mps`), else the best."""
    choice = prefer or os.environ.get("PLAYGROUND_DEVICE") or "auto"
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} asked for, but CUDA is not available on this machine")
    return device


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16/fp16 autocast on `device`, or a no-op context for float32/None."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python and torch (all devices); return a CPU generator seeded the same for sampling."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def configure_threads(default: int = 1) -> int:
    """Set torch's CPU threads from $PLAYGROUND_THREADS (default 1) and return the number.

    A Space's 2 vCPUs serve many learners at once from gradio's thread pool: with torch's default of one
    OpenMP thread per core, concurrent requests oversubscribe the cores and each waits for descheduled
    partners (measured here: 987 tokens/s training with 2 threads under load against 6,370 with 1).
    One thread per request lets two requests run side by side at full speed.
    """
    n = int(os.environ.get("PLAYGROUND_THREADS", default))
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def configure_memory(trim_every: float = 30.0) -> bool:
    """On glibc (Linux): at most 2 malloc arenas, and give freed heap back to the OS every `trim_every` seconds.

    Gradio serves requests from a pool of up to 40 threads; glibc gives busy threads arenas of their own (up to
    8 x cores), and memory freed in an arena is rarely returned. On a Space where learners' models come and go
    (session state expires), resident memory then creeps up round after round although nothing is leaked.
    Returns False (and does nothing) where glibc is not there.
    """
    import ctypes
    import ctypes.util
    import threading
    import time

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return False
    M_ARENA_MAX = -8  # glibc's malloc.h
    mallopt(M_ARENA_MAX, 2)

    def trim_forever():
        while True:
            time.sleep(trim_every)
            malloc_trim(0)

    if trim_every > 0:
        threading.Thread(target=trim_forever, name="malloc-trim", daemon=True).start()
    return True
