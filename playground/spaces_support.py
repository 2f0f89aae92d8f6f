"""Hugging Face Spaces support: ZeroGPU's `@spaces.GPU` around the app's GPU-heavy handlers, and nothing elsewhere.

On a ZeroGPU Space (the `spaces` package installed and SPACES_ZERO_GPU set by the platform) the app process holds no
GPU; a function decorated with `spaces.GPU(duration=...)` borrows one from a shared pool for each call, for at most
`duration` seconds, and the caller's daily quota is charged what the call asks for. So the duration follows the
request: a 5-step ORPO click asks for seconds, a 2-minute training burst for two minutes and some.

`gpu(duration=...)` is the one place that decides:
- `spaces` importable: `spaces.GPU(fn, duration=...)`. Off ZeroGPU (SPACES_ZERO_GPU unset: a laptop, CPU basic,
  a dedicated GPU Space) `spaces.GPU` returns `fn` itself, unchanged.
- `spaces` not installed: `fn` itself.
The duration rule gets the handler's arguments by name (`{"max_new": 64, ...}`); a rule that cannot read them (a bad
value the handler will reject anyway) falls back to the default, and every duration is clamped to
[MIN_DURATION, MAX_DURATION]. The rule is kept on the function as `gpu_duration` (a test reads it).

Never torch.compile or CUDA-graph inside these functions: each call may land on another GPU, so compiled kernels and
captured graphs would be rebuilt every time (`decode.py` checks SPACES_ZERO_GPU for that).

What crosses the process boundary: on ZeroGPU each call runs in a forked worker; its arguments (the learner's
session: their trained Run, ORPO copy, tokenizers) are pickled in and every return or yield is pickled back
(spaces/zero/wrappers.py). tests/unit/test_zero_gpu_state.py runs every wrapped handler and checks that both
pickle and stay bounded (under 1 MB besides tensors; tensors within the learner's own models and training ids).
torch would send the worker's CUDA tensors as CUDA IPC handles, which the app process (no CUDA there) cannot
open; so on ZeroGPU `gpu()` also wraps each handler in `_zero_gpu_worker`: in the worker, CUDA tensors are
pickled as CPU copies (install_host_reducers) and the learner's models and optimizer state move to the GPU when
a call begins (to_device). tests/gpu/test_zero_gpu_crossing.py checks that with a real GPU and an emulated app
process; only a real ZeroGPU Space checks spaces' own worker, its quotas and durations.

This module never imports gradio itself; `spaces` does, so it is imported lazily, by the UI only.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DURATION = 60  # seconds: spaces.GPU's own default
# The Aligned-vs-base tab's two pairs (base, aligned). README.md's front matter preloads HUB_PAIR into a Space's
# Hugging Face cache (`preload_from_hub`); tests/unit/test_space_config.py checks that the two lists agree.
BUNDLED_PAIR = ("llama-base", "llama-aligned")
HUB_PAIR = ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct")
MIN_DURATION, MAX_DURATION = 5, 300
WORKER_DEVICE = "cuda"  # where a ZeroGPU worker puts the learner's models for the length of a call


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the platform sets SPACES_ZERO_GPU)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=1)
def spaces_module():
    """The `spaces` package, or None when it is not installed. Imported once.

    On ZeroGPU it must be imported before CUDA is first queried (it patches torch so that models moved to "cuda"
    at start-up land on the GPU each call borrows): `playground.ui.common` calls this before it picks the device.
    """
    try:
        module = importlib.import_module("spaces")
    except ImportError:
        return None
    log.info("spaces %s found%s", getattr(module, "__version__", "?"), ": ZeroGPU" if on_zero_gpu() else "")
    return module


def _duration_rule(fn: Callable, rule: int | float | Callable[[dict], float] | None) -> Callable[..., int]:
    """A callable with fn's signature (what spaces.GPU calls) that applies `rule` to the named arguments."""
    signature = inspect.signature(fn)

    def duration(*args, **kwargs) -> int:
        seconds = DEFAULT_DURATION
        if rule is not None and not callable(rule):
            seconds = rule
        elif rule is not None:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                seconds = rule(bound.arguments)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:  # the handler reports bad input itself
                log.debug("duration of %s: %s; using %d s", fn.__name__, exc, DEFAULT_DURATION)
        return int(min(MAX_DURATION, max(MIN_DURATION, float(seconds))))

    return duration


def gpu(fn: Callable | None = None, *, duration: int | float | Callable[[dict], float] | None = None) -> Any:
    """Decorator: `@gpu(duration=lambda a: 10 + a["steps"])` or `@gpu`. See the module docstring."""
    if fn is None:
        return functools.partial(gpu, duration=duration)
    rule = _duration_rule(fn, duration)
    fn.gpu_duration = rule  # kept on the plain function: functools.wraps copies it onto any wrapper
    spaces = spaces_module()
    if spaces is None:
        return fn
    if on_zero_gpu():
        fn = _zero_gpu_worker(fn)
    return spaces.GPU(fn, duration=rule)


# ------------------------------------------------------------------ ZeroGPU: the learner's state across the boundary
def _zero_gpu_worker(fn: Callable) -> Callable:
    """`fn` as it runs inside ZeroGPU's GPU worker: the learner's models (which crossed in on the CPU) move to the
    GPU first, and whatever it returns or yields crosses back with CUDA tensors copied to the CPU (the app process
    has no CUDA to open them in). The worker's own objects stay on the GPU while a generator goes on."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            install_host_reducers()
            to_device((args, kwargs), WORKER_DEVICE)
            yield from fn(*args, **kwargs)

        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        install_host_reducers()
        to_device((args, kwargs), WORKER_DEVICE)
        return fn(*args, **kwargs)

    return call


def _tensor_from_host(host, parameter: bool, requires_grad: bool):
    import torch

    return torch.nn.Parameter(host, requires_grad=requires_grad) if parameter else host.requires_grad_(requires_grad)


@functools.lru_cache(maxsize=1)
def install_host_reducers() -> None:
    """In this process, multiprocessing's pickler (what spaces' queues use) sends a CUDA tensor as a CPU copy
    instead of a CUDA IPC handle; CPU tensors keep torch's own shared-memory reduction. Once per process."""
    from multiprocessing.reduction import ForkingPickler

    import torch
    from torch.multiprocessing.reductions import reduce_tensor

    def reduce(t):
        if t.device.type == "cuda":
            host = t.detach().to("cpu")
            return _tensor_from_host, (host, isinstance(t, torch.nn.Parameter), t.requires_grad)
        return reduce_tensor(t)

    ForkingPickler.register(torch.Tensor, reduce)
    ForkingPickler.register(torch.nn.Parameter, reduce)


def to_device(value, device) -> None:
    """Move every nn.Module found in `value` (containers, and the attributes of plain objects such as a training
    run or a Bundle, a few levels down) to `device`, then every optimizer found there by torch's own rule
    (Optimizer.load_state_dict puts each state tensor where its parameter now is)."""
    import torch

    modules, optimizers = _find(value, (torch.nn.Module, torch.optim.Optimizer), set(), 0)
    for module in modules:
        if isinstance(module, torch.nn.Module):
            module.to(device)
    for opt in optimizers:
        if opt.state:
            opt.load_state_dict(opt.state_dict())


def _find(value, kinds: tuple, seen: set, depth: int) -> tuple[list, list]:
    """(modules, optimizers) reachable from `value`, each once; a module's insides are not searched."""
    modules, optimizers = [], []
    if id(value) in seen or depth > 8 or isinstance(value, (str, bytes, int, float, bool, type(None))):
        return modules, optimizers
    seen.add(id(value))
    if isinstance(value, kinds[0]):
        return [value], []
    if isinstance(value, kinds[1]):
        return [], [value]
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    else:
        children = list(getattr(value, "__dict__", {}).values())
    for child in children:
        m, o = _find(child, kinds, seen, depth + 1)
        modules += m
        optimizers += o
    return modules, optimizers


def compare_pair() -> tuple[str, str]:
    """The pair the Aligned-vs-base tab opens on: the SmolLM2 pair when both are in the local Hugging Face cache
    (a Space that preloaded them: no visitor waits for a download), else the bundled pair (offline, as before)."""
    from playground import checkpoints

    if all(checkpoints._cached_snapshot(repo, None) is not None for repo in HUB_PAIR):
        return HUB_PAIR
    return BUNDLED_PAIR


def number(args: dict, name: str, default: float = 0.0) -> float:
    """A handler argument as a float (a Gradio number or slider value), or `default` when it is not one."""
    try:
        return float(args.get(name, default))
    except (TypeError, ValueError):
        return default
