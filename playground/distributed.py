"""Several processes, one run: torchrun + DistributedDataParallel (DDP) for `pretrain` and `align`.

    torchrun --nproc_per_node=N -m playground pretrain ...     # N GPUs of one node (NCCL), or N CPU processes (gloo)

torchrun starts N copies of the same command and tells each who it is through environment variables (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Each copy (a "rank") holds a whole replica of the model; DDP
averages the gradients over the ranks during `backward()`, so after every step all replicas hold the same weights.

The design keeps one process and N processes on the same numbers:
- `--batch-size` is the GLOBAL batch. Every rank draws the same global batch from the same seeded generator and
  keeps its own contiguous slice of `batch_size / N` rows (`local_batch`). The mean of the N slice losses is the
  global batch's mean loss, and DDP's mean of the N slice gradients is its gradient: the steps, the learning-rate
  schedule and the batch stream (saved for resume) are exactly those of one process.
- Only rank 0 logs, evaluates, samples and writes checkpoints; every rank reads the run folder to resume.
- Gradient clipping runs after DDP's all-reduce, on the averaged gradients, identically on every rank.
- Every collective (the all-reduce in backward, `mean_of`, `agree`) is reached by all ranks in the same order;
  decisions that depend on a clock (`--max-seconds`) are agreed on (`agree`), never taken alone.
- The process group has a timeout (PLAYGROUND_DIST_TIMEOUT, default 300 s): a rank that dies makes the others
  fail with an error instead of hanging forever.

With no torchrun variables (WORLD_SIZE unset or 1) every helper here is a no-op, so the single-process code path
is untouched. Nothing here imports gradio.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 300.0  # collectives that wait longer than this fail (rank 0's evaluations fit well inside)


# ------------------------------------------------------------------------------------------ who am I
@dataclass(frozen=True)
class Dist:
    """This process's place in the run. `world_size == 1` means no process group (a plain run)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # "nccl" or "gloo" when a process group is up

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} does not fit world size {self.world_size}")

    @property
    def enabled(self) -> bool:
        """A process group is up (and the model is DDP-wrapped for training)."""
        return self.backend is not None

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_ranks() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) when run alone."""
    try:
        return (
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
        )
    except ValueError as exc:
        raise ValueError(f"bad torchrun variables RANK/LOCAL_RANK/WORLD_SIZE: {exc}") from exc


def rank() -> int:
    """This process's global rank: the process group's if one is up, else torchrun's RANK, else 0."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else env_ranks()[0]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else env_ranks()[2]


def is_main() -> bool:
    return rank() == 0


def timeout_s() -> float:
    value = float(os.environ.get("PLAYGROUND_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not value > 0:
        raise ValueError(f"PLAYGROUND_DIST_TIMEOUT must be a positive number of seconds, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------- set-up / teardown
def setup(device: torch.device) -> Dist:
    """Start the process group if torchrun launched us; return where this rank runs.

    `device` is what the command asked for (`--device`, already resolved): a CUDA device becomes cuda:LOCAL_RANK
    with NCCL (one GPU per rank), anything else stays as it is with gloo. Alone (WORLD_SIZE 1), nothing starts and
    `device` is returned unchanged. Ranks other than 0 log warnings only, so the console shows one copy of the run.
    PLAYGROUND_DDP=1 starts the group and DDP even for one rank (`torchrun --nproc_per_node=1`): the NCCL/DDP
    machinery can then be checked on a single GPU, with the numbers of a plain run.
    """
    r, local, world = env_ranks()
    if world <= 1 and os.environ.get("PLAYGROUND_DDP") != "1":
        return Dist(device=device)
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed: run without torchrun")
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs: lower --nproc_per_node")
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training runs on cuda (NCCL) or cpu (gloo), not {device}")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s())
        kwargs = {"device_id": device} if backend == "nccl" else {}  # binds NCCL to this GPU (eager init)
        dist.init_process_group(backend, timeout=timeout, **kwargs)
    if r != 0:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("process group: %s, %d ranks, rank %d on %s", backend, world, r, device)
    return Dist(r, local, world, device, backend)


def teardown() -> None:
    """Leave the process group (every rank, at the end of the command). A no-op when none is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. encodes a corpus into the disk cache), then the others (who read it)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


# ------------------------------------------------------------------------------------------------ the model
def wrap(model: nn.Module, ctx: Dist) -> nn.Module:
    """The model DDP-wrapped for training when several ranks run, else the model itself.

    DDP broadcasts rank 0's weights at construction, so every replica starts equal. broadcast_buffers=False: the
    models' buffers are constant tables (causal masks, RoPE angles), and a buffer broadcast inside forward would be a
    collective that rank 0's solo evaluations could never match. Evaluate and save the `unwrap`ped model.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    with warnings.catch_warnings():  # torch 2.13 renames the flag (forward_sync_buffers); 2.11 knows only this one
        warnings.simplefilter("ignore", FutureWarning)
        return DDP(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP (or torch.compile) wrapper: the one to evaluate, sample from and save."""
    while True:
        inner = next(
            (
                m
                for m in (getattr(model, "module", None), getattr(model, "_orig_mod", None))
                if isinstance(m, nn.Module)
            ),
            None,
        )
        if inner is None:
            return model
        model = inner


# ------------------------------------------------------------------------------------------------ sharding
def shard_bounds(n: int, world: int | None = None, r: int | None = None) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous slice of n items: sizes differ by at most one, earlier ranks larger."""
    world = world_size() if world is None else world
    r = rank() if r is None else r
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def check_divisible(batch_size: int, world: int | None = None) -> None:
    """The global batch must split evenly, so every rank's mean loss weighs the same and DDP's average is exact."""
    world = world_size() if world is None else world
    if batch_size % world:
        raise ValueError(
            f"--batch-size {batch_size} (the global batch) must be a multiple of the number of "
            f"processes ({world}); each takes batch_size / {world} windows"
        )


def local_batch(data, split: str, batch_size: int, context: int, generator: torch.Generator, device):
    """This rank's rows of the global batch: x, y (batch_size / world, T). Alone: exactly `data.get_batch`.

    Every rank draws the whole global batch of window starts (a few hundred integers) from the same generator, so
    the generators stay in step and the union of the slices is the batch one process would have drawn.
    """
    world = world_size()
    if world == 1:
        return data.get_batch(split, batch_size, context, generator, device)
    check_divisible(batch_size, world)
    x, y = data.get_batch(split, batch_size, context, generator, "cpu")  # (B, T) each, the global batch
    lo, hi = shard_bounds(batch_size, world)
    x, y = x[lo:hi], y[lo:hi]  # (B / world, T) each
    device = torch.device(device)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------------------------- collectives
def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of `t` (a copy; `t` is untouched). Alone: `t` itself."""
    if world_size() == 1 or not dist.is_initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def mean_of(t: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a per-rank figure (e.g. each rank's loss on its equal slice = the global mean)."""
    world = world_size()
    return t if world == 1 or not dist.is_initialized() else all_sum(t) / world


def agree(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if it is True on any rank: for clock-based stops, which ranks would otherwise disagree on
    (one rank leaving the loop while another waits in backward's all-reduce is a hang). NCCL needs a CUDA tensor."""
    if world_size() == 1 or not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def rank_seed(seed: int, step: int, r: int | None = None) -> int:
    """A seed for rank r's own random stream (dropout) at `step`: distinct per rank, reproducible on resume."""
    r = rank() if r is None else r
    return (seed * 1_000_003 + step * 7_919 + r * 104_729) % (2**63 - 1)


def rank_streams(seed: int, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(CPU, CUDA) random states for this rank's dropout at `step`, seeded by (seed, step, rank).

    Under DDP each rank drops out different units on its different rows (one seed everywhere would repeat the
    masks); re-deriving the streams from the step makes a resumed run draw what an uninterrupted one draws, without
    saving N ranks' states. (So with dropout > 0, N ranks do not match one process bit for bit; with dropout 0 they
    do, up to the order of float additions.) Torch's global streams are left as they were.
    """
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device)] if cuda else []):
        torch.manual_seed(rank_seed(seed, step))
        return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if cuda else None)
