"""The ORPO tab through the real server (gradio_client): the breakdown's numbers agree with the library, N ORPO
steps stream and raise the log odds ratio on the learner's own copy, examples load, bad inputs give clear messages.

Until checkpoints/llama-base exists, the model is a tiny random Llama saved with `checkpoints.save` into a temporary
folder whose path is typed into the model box (the server runs on this machine and reads the same folder).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

LAM = 0.5


@pytest.fixture(scope="module")
def llama_source(tmp_path_factory) -> str:
    from playground import checkpoints

    bundled = Path(checkpoints.BUNDLED["llama-base"]["folder"])
    if (bundled / "config.json").exists():
        return "llama-base"
    from playground.llama import new_llama
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    model = new_llama("tiny", vocab_size=tok.vocab_size, max_seq_len=128, dim=64, n_layers=2)
    folder = tmp_path_factory.mktemp("orpo") / "llama"
    return str(checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "llama"}), folder))


@pytest.fixture(scope="module")
def pair() -> dict:
    from playground.data import shipped_examples

    e = shipped_examples()[0]
    return {"prompt": e["prompt"], "chosen": e["chosen"], "rejected": e["rejected"]}


def numbers(table_html: str) -> dict[str, float]:
    """data-key -> value from the numbers table."""
    return {k: float(v) for k, v in re.findall(r"data-key='(\w+)'>([^<]+)<", table_html)}


def test_breakdown_numbers_agree_with_the_library(client, llama_source, pair):
    from playground import checkpoints, orpo

    chosen_html, rejected_html, table, reading, status = client.predict(
        llama_source, pair["prompt"], pair["chosen"], pair["rejected"], LAM, api_name="/orpo_breakdown"
    )
    got = numbers(table)
    bundle = checkpoints.load(llama_source)
    want = orpo.example_breakdown(bundle.model, bundle.tokenizer, pair, LAM)
    for key, value in (
        ("chosen_avg_logp", want.chosen.avg_logp),
        ("rejected_avg_logp", want.rejected.avg_logp),
        ("chosen_p", want.chosen.p),
        ("chosen_odds", want.chosen.odds),
        ("chosen_log_odds", want.chosen.log_odds),
        ("rejected_log_odds", want.rejected.log_odds),
        ("log_odds_ratio", want.log_odds_ratio),
        ("sigmoid", want.sigmoid),
        ("or_loss", want.or_loss),
        ("nll", want.nll),
        ("loss", want.loss),
    ):
        assert got[key] == pytest.approx(value, rel=2e-3, abs=2e-3), key
    assert got["loss"] == pytest.approx(got["nll"] + LAM * got["or_loss"], rel=2e-3)
    assert chosen_html.count("<span class='pg-tok") == len(want.chosen.tokens)
    assert rejected_html.count("<span class='pg-tok") == len(want.rejected.tokens)
    assert "Reading" in reading and "log odds ratio" in reading
    assert "shared model" in status


def test_steps_stream_and_raise_the_log_odds_ratio(client, llama_source, pair):
    n = 6
    job = client.submit(
        llama_source, pair["prompt"], pair["chosen"], pair["rejected"], LAM, n, 2e-3, api_name="/orpo_steps"
    )
    updates = list(job)
    assert len(updates) >= 2  # streamed, not one final answer
    final = job.outputs()[-1]
    table = final[5]
    rows = table["data"]
    assert [int(r[0]) for r in rows] == list(range(n + 1))
    lor = [float(r[2]) for r in rows]
    assert lor[-1] > lor[0]
    assert float(rows[-1][3]) > float(rows[0][3])  # chosen average log p rose
    assert "your own copy" in final[6]
    # the breakdown now reads the learner's trained copy; reset goes back to the shared model
    after = client.predict(
        llama_source, pair["prompt"], pair["chosen"], pair["rejected"], LAM, api_name="/orpo_breakdown"
    )
    assert f"after {n} ORPO step" in after[4]
    # the breakdown shows 4 significant digits (13.39 for 13.387): within half a unit of its last digit
    assert numbers(after[2])["log_odds_ratio"] == pytest.approx(lor[-1], rel=5e-4, abs=2e-3)
    assert "Dropped" in client.predict(api_name="/orpo_reset")
    assert (
        "shared model"
        in client.predict(
            llama_source, pair["prompt"], pair["chosen"], pair["rejected"], LAM, api_name="/orpo_breakdown"
        )[4]
    )


def test_picking_an_example_fills_the_pair(client):
    from playground.data import shipped_examples

    e = shipped_examples()[3]
    assert list(client.predict(e["label"], api_name="/orpo_example")) == [e["prompt"], e["chosen"], e["rejected"]]


@pytest.mark.parametrize(
    "args,message",
    [
        (("", "a", "b", LAM), "prompt is empty"),
        (("q", "a", "", LAM), "rejected reply is empty"),
        (("q", "a", "b", -1), "lambda|less than minimum"),  # gradio's slider bound or ours, both readable
    ],
)
def test_bad_breakdown_inputs_give_clear_messages(client, llama_source, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(llama_source, *args, api_name="/orpo_breakdown")


def test_too_many_steps_and_unknown_models_give_clear_messages(client, llama_source, pair):
    from playground.limits import LIMITS

    with pytest.raises(Exception, match="Number of ORPO steps|greater than maximum"):
        client.predict(
            llama_source,
            pair["prompt"],
            pair["chosen"],
            pair["rejected"],
            LAM,
            LIMITS.max_orpo_steps + 1,
            1e-3,
            api_name="/orpo_steps",
        )
    with pytest.raises(Exception, match="no-such-model"):
        client.predict(
            "./no-such-model", pair["prompt"], pair["chosen"], pair["rejected"], LAM, api_name="/orpo_breakdown"
        )
