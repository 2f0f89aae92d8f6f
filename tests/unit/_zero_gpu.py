"""An emulation of ZeroGPU's process boundary for one learner's training run, shared by the CPU unit test and
the CUDA test (tests/gpu/test_zero_gpu_crossing.py).

As in spaces/zero/wrappers.py: the app process forks a GPU worker and talks to it through multiprocessing
SimpleQueues (multiprocessing's ForkingPickler, torch's reductions); the app process itself cannot initialise
CUDA (spaces replaces torch._C._cuda_init with a function that raises; `no_cuda_here` does the same). The worker
runs what `spaces_support._zero_gpu_worker` runs: install_host_reducers, to_device, then the handler's work.
"""

from __future__ import annotations

import contextlib
import multiprocessing

import torch

from playground import data, spaces_support, train
from playground.llama import new_llama

CTX = multiprocessing.get_context("fork")


def learner_session() -> dict:
    torch.manual_seed(0)
    model = new_llama("tiny", vocab_size=64)
    ids = torch.randint(0, 64, (4096,), generator=torch.Generator().manual_seed(1))
    tokens = data.TokenData(train=ids[:3800], val=ids[3800:], source="random")
    return {"model": model, "data": tokens}


def _config(device: str) -> train.TrainConfig:
    return train.TrainConfig(steps=20, batch_size=4, lr=1e-3, warmup_steps=1, eval_interval=0, device=device,
                             dtype="float32")  # fmt: skip


def _worker(inbox, outbox, device: str, reducers: bool, steps: int) -> None:
    """A GPU call: the session crosses in, trains `steps` steps on `device`, crosses back with its logits."""
    session = inbox.get()
    if reducers:
        spaces_support.install_host_reducers()
    spaces_support.to_device(session, device)
    cfg = _config(device)
    if session.get("state") is None:
        session["state"] = train.new_state(session["model"], cfg)
    for _ in train.train_steps(session["model"], session["data"], cfg, session["state"], max_steps=steps):
        pass
    idx = session["data"].train[:16].view(1, -1).to(device)
    with torch.no_grad():
        logits = session["model"](idx).float().cpu()
    outbox.put({"session": session, "logits": logits, "device": str(next(session["model"].parameters()).device)})
    inbox.get()  # stay alive until the app process has read it: shared tensors are handed over by this process


@contextlib.contextmanager
def no_cuda_here():
    """What spaces does in the app process: CUDA must never be initialised there."""
    original = getattr(torch._C, "_cuda_init", None)
    if original is None:  # a CPU build of torch cannot initialise CUDA anyway
        yield
        return

    def refuse():
        raise RuntimeError("CUDA must not be initialized in the main process (emulated ZeroGPU)")

    torch._C._cuda_init = refuse
    try:
        yield
    finally:
        torch._C._cuda_init = original


def gpu_call(session: dict, device: str, reducers: bool = True, steps: int = 3) -> dict:
    """One spaces.GPU call in a forked worker; returns what crossed back (unpickled in this process)."""
    inbox, outbox = CTX.SimpleQueue(), CTX.SimpleQueue()
    proc = CTX.Process(target=_worker, args=(inbox, outbox, device, reducers, steps))
    proc.start()
    try:
        inbox.put(session)
        with no_cuda_here():
            return outbox.get()
    finally:
        inbox.put("done")  # the worker may go (it waits for this, even when reading its answer failed here)
        proc.join(timeout=120)
        if proc.is_alive():
            proc.kill()
