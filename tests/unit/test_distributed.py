"""torchrun / DDP: the helpers alone (no process group), and real 2-process gloo runs of `pretrain` and `align` on
the CPU that must log the same losses as one process with the same global batch and seed.

The multi-process tests launch `python -m torch.distributed.run --nproc_per_node=2` (what `torchrun` runs), one
torch thread per rank, on a free local port; the one-process references run in this process through the same CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from playground import align, distributed, orpo, pretrain

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _alone(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------- helpers alone
def test_alone_everything_is_a_no_op():
    ctx = distributed.setup(torch.device("cpu"))
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.main, ctx.backend) == (0, 1, False, True, None)
    model = nn.Linear(3, 2)
    assert distributed.wrap(model, ctx) is model and distributed.unwrap(model) is model
    t = torch.tensor(2.5)
    assert distributed.mean_of(t) is t and distributed.all_sum(t) is t
    assert distributed.agree(True) is True and distributed.agree(False) is False
    distributed.barrier()
    with distributed.main_first():
        pass
    distributed.teardown()


def test_shard_bounds_cover_every_item_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            bounds = [distributed.shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_global_batch_must_split_evenly():
    distributed.check_divisible(8, 2)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        distributed.check_divisible(7, 2)


def test_local_batch_alone_is_get_batch_and_slices_add_up(monkeypatch):
    from playground.data import TokenData

    data = TokenData(torch.arange(500), torch.arange(100))
    x1, y1 = distributed.local_batch(data, "train", 6, 8, torch.Generator().manual_seed(3), "cpu")
    x0, y0 = data.get_batch("train", 6, 8, torch.Generator().manual_seed(3))
    assert torch.equal(x1, x0) and torch.equal(y1, y0)
    parts = []
    for r in range(3):  # pretend to be each of 3 ranks: the slices of the same draw, in order, are the batch
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("RANK", str(r))
        parts.append(distributed.local_batch(data, "train", 6, 8, torch.Generator().manual_seed(3), "cpu")[0])
    assert [p.shape[0] for p in parts] == [2, 2, 2] and torch.equal(torch.cat(parts), x0)


def test_rank_streams_differ_by_rank_and_leave_torch_alone(monkeypatch):
    before = torch.get_rng_state()
    monkeypatch.setenv("RANK", "0")
    a0, _ = distributed.rank_streams(1337, 5, torch.device("cpu"))
    again, _ = distributed.rank_streams(1337, 5, torch.device("cpu"))
    monkeypatch.setenv("RANK", "1")
    a1, _ = distributed.rank_streams(1337, 5, torch.device("cpu"))
    assert torch.equal(a0, again) and not torch.equal(a0, a1)
    assert torch.equal(torch.get_rng_state(), before)


def test_orpo_share_of_a_short_batch():
    assert orpo._my_share([4, 5, 6], 1, "cpu") == ([4, 5, 6], None)
    # an epoch's last batch of one pair over two ranks: rank 1 scores pair 4 with weight 0 (DDP needs its backward)
    os.environ["RANK"] = "1"
    try:
        mine, weight = orpo._my_share([4], 2, "cpu")
    finally:
        del os.environ["RANK"]
    assert mine == [4] and weight.tolist() == [0.0]


# ------------------------------------------------------------------------------------------ real torchrun runs
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(command: str, args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PLAYGROUND_DIST_TIMEOUT="60", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={n}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "playground",
        command,
        *args,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _close(a: list[float], b: list[float], rel: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rel * max(abs(x), abs(y), 1e-8) for x, y in zip(a, b, strict=True))


PRETRAIN = [
    "--n-layer",
    "1",
    "--n-embd",
    "32",
    "--n-head",
    "2",
    "--context",
    "16",
    "--batch-size",
    "8",
    "--dropout",
    "0",
    "--corpus",
    "kjv",
    "--eval-interval",
    "2",
    "--eval-iters",
    "1",
    "--final-eval-iters",
    "2",
    "--sample-tokens",
    "0",
    "--max-seconds",
    "600",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def test_pretrain_two_gloo_ranks_match_one_process_and_resume(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert pretrain.cli([*PRETRAIN, "--steps", "4", "--out", str(one)]) == 0
    _torchrun("pretrain", [*PRETRAIN, "--steps", "4", "--out", str(two)])
    # resume: rank 0 wrote the run, both ranks read it and go on to step 6 (a longer schedule, the same on both)
    assert pretrain.cli([*PRETRAIN, "--resume", str(one), "--steps", "6", "--out", str(one)]) == 0
    done = _torchrun("pretrain", [*PRETRAIN, "--resume", str(two), "--steps", "6", "--out", str(two)])
    a, b = (json.loads((d / "train_log.json").read_text()) for d in (one, two))
    assert [r[0] for r in b["losses"]] == [1, 2, 3, 4, 5, 6]
    assert _close([r[1] for r in a["losses"]], [r[1] for r in b["losses"]])  # training loss, every step
    assert [r[2] for r in a["losses"]] == [r[2] for r in b["losses"]]  # the same LR schedule
    assert _close([e["val_loss"] for e in a["evals"]], [e["val_loss"] for e in b["evals"]])
    assert _close([a["final"]["val_loss"]], [b["final"]["val_loss"]], 1e-3)  # rounded to 4 places
    assert a["tokens_seen"] == b["tokens_seen"] == 6 * 8 * 16  # --batch-size is the global batch
    assert b["processes"] == "2 (gloo, DDP)"
    assert done.stderr.count("saved the run at step 6") == 1  # rank 0 alone reports and writes


def _pairs_file(path: Path) -> Path:
    """Flat preference pairs, 13 of them on the training side: batches of 4 leave an epoch's last batch of 1."""
    from playground.data import is_held_out

    rows = [json.loads(line) for line in (ROOT / "assets/preferences/chatterbot_qa.jsonl").open(encoding="utf-8")]
    rows = [r for r in rows if 2 <= len(r["prompt"]) < 60 and 0 < len(r["answer"]) < 60]
    seen, train_side, held, out = set(), 0, 0, []
    for i, r in enumerate(rows):
        if r["prompt"] in seen:
            continue
        seen.add(r["prompt"])
        if is_held_out(r["prompt"], 0.05, 1337):
            if held:
                continue
            held += 1
        elif train_side == 13:
            continue
        else:
            train_side += 1
        out.append({"prompt": r["prompt"], "chosen": r["answer"], "rejected": rows[(i + 5) % len(rows)]["answer"]})
        if held and train_side == 13:
            break
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return path


def test_align_two_gloo_ranks_match_one_process(tmp_path):
    from playground import checkpoints

    if not checkpoints.BUNDLED["llama-base"]["folder"].exists():
        pytest.skip("the bundled llama-base checkpoint is not here")
    data = _pairs_file(tmp_path / "pairs.jsonl")
    args = [
        "--base",
        "llama-base",
        "--data",
        str(data),
        "--steps",
        "5",
        "--batch-size",
        "4",
        "--max-len",
        "64",
        "--prompt-max-tokens",
        "32",
        "--eval-interval",
        "0",
        "--eval-pairs",
        "4",
        "--warmup",
        "2",
        "--device",
        "cpu",
    ]
    assert align.cli([*args, "--out", str(tmp_path / "one")]) == 0
    _torchrun("align", [*args, "--out", str(tmp_path / "two")])
    a, b = (json.loads((tmp_path / d / "train_log.json").read_text()) for d in ("one", "two"))
    assert len(a["records"]) == len(b["records"]) == 5  # step 4 is the epoch's 1-pair batch: rank 1 gets none
    for key in ("loss", "nll", "or_loss", "log_odds_ratio", "accuracy", "grad_norm", "lr"):
        assert _close([r[key] for r in a["records"]], [r[key] for r in b["records"]]), key
    assert _close([a["val_after"]["loss"]], [b["val_after"]["loss"]])
