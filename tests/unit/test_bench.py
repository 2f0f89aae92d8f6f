"""`python -m playground bench`: the table's structure on tiny shapes (not its speed), the FLOPs formula,
the docs section splicing, and that the bench never imports gradio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from playground import bench
from playground.gpt import GPT, PRESETS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.md"
    assert bench.cli(["--device", "cpu", "--quick", "--tiny", "--threads", "1", "--out", str(out)]) == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_every_row_has_a_reference_beside_it(tiny_run):
    _, data = tiny_run
    rows = data["rows"]
    assert {r["section"] for r in rows} == {"train", "decode", "app", "burst"}
    for r in rows:
        assert r["error"] is None, r
        assert r["ours"] > 0 and r["ref"] > 0 and r["reference"] not in ("", "-"), r
        assert r["x"] > 0, r
    names = " ".join(r["reference"] for r in rows)
    for peer in ("course's way", "dynamic cache", "static cache", "memory-bandwidth limit"):
        assert peer in names
    assert any("MFU" in r["note"] for r in rows if r["section"] == "train")


def test_x_is_how_many_times_better_ours_is():
    faster = bench.Row("decode", "a", "tok/s", "peer", ours=300.0, ref=100.0)
    quicker = bench.Row("app", "b", "s", "peer", ours=0.5, ref=2.0)
    slower = bench.Row("app", "c", "s", "peer", ours=4.0, ref=1.0)
    lower_loss = bench.Row("burst", "e", "nats/token", "peer", ours=4.0, ref=5.0)
    assert (faster.x, quicker.x, slower.x, lower_loss.x) == (3.0, 4.0, 0.25, 1.25)
    assert bench.Row("app", "d", "s", "peer", ours=None, ref=1.0).x is None


def test_header_says_when_where_what_and_how(tiny_run):
    out, data = tiny_run
    meta = data["meta"]
    for key in ("date", "machine", "versions", "command", "peak_flops", "copy_bandwidth"):
        assert meta[key], key
    assert {"torch", "transformers", "python"} <= set(meta["versions"])
    text = out.read_text()
    assert "python -m playground bench --device cpu --quick" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| section | what (ours) | ours | reference | ref | x |")
    assert len(table) == 2 + len(data["rows"]) and all(line.count("|") == 8 for line in table)


def test_a_failing_row_is_recorded_not_fatal():
    b = bench.Bench(torch.device("cpu"))
    b.run(bench.Row("train", "boom", "tok/s", "peer"), lambda row: 1 / 0)

    def fine(row):
        row.ours, row.ref = 2.0, 4.0

    ok = b.run(bench.Row("train", "fine", "s", "peer"), fine)
    assert "ZeroDivisionError" in b.rows[0].error and ok.x == 2.0  # a time: ref / ours
    assert "ERROR ZeroDivisionError" in "\n".join(bench.table_lines(b.rows))


def test_flops_formula_uses_matmul_parameters():
    cfg = PRESETS["course"]
    with torch.device("meta"):
        model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())
    n = total - 4096 * 384 - 512 * 384  # all but the token and position tables; lm_head stays
    assert bench.matmul_params(model) == n
    assert bench.flops_per_token(model, 512) == 6 * n + 12 * 7 * 512 * 384


def test_docs_section_is_replaced_between_markers(tmp_path):
    doc = "# Benchmarks\n\nprose\n\n<!-- bench:cpu -->\nold table\n<!-- /bench:cpu -->\n\nmore prose\n"
    new = bench._replace_section(doc, "cpu", "NEW\n")
    assert "old table" not in new and "NEW" in new and new.endswith("more prose\n") and new.startswith("# Bench")
    added = bench._replace_section(doc, "cuda", "GPU\n")
    assert "old table" in added and "<!-- bench:cuda -->\nGPU\n<!-- /bench:cuda -->" in added


def test_bench_never_imports_gradio_or_datasets():
    code = "import sys, playground.bench, playground.decode; print('gradio' in sys.modules, 'datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
