"""ORPO: the loss against an independent float64 version of TRL's published formula, stable log1mexp,
sequence log-probs, prompt/padding masks, the one-example breakdown and ORPO steps on a tiny model.

The reference here shares no code with playground.losses: log(1 - e^x) comes from Python's `decimal` at 60
digits (exact for our purposes), and TRL's formula is written out in plain float64 math:
    log_odds = (lw - ll) - (log1mexp(lw) - log1mexp(ll)),  loss = nll - beta * mean(logsigmoid(log_odds))
(trl/experimental/orpo/orpo_trainer.py, `odds_ratio_loss` and `get_batch_loss_metrics`).
"""

from __future__ import annotations

import decimal
import math

import pytest
import torch

from playground import chat, losses
from tests.unit._tiny import tiny_model

decimal.getcontext().prec = 60


# ---------------------------------------------------------------------------------------------- references
def exact_log1mexp(x: float) -> float:
    """log(1 - e^x) at 60 significant digits (x is the float64 value exactly; Decimal(float) is exact)."""
    d = decimal.Decimal(x)
    return float((1 - d.exp()).ln())


def ref_logsigmoid(z: float) -> float:
    # log sigmoid(z) = -log(1 + e^-z), written so neither branch overflows
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def ref_orpo(lw: list[float], ll: list[float], nll: float, beta: float) -> dict:
    """TRL's ORPO formula in float64 with the exact log1mexp."""
    log_odds = [(w - l_) - (exact_log1mexp(w) - exact_log1mexp(l_)) for w, l_ in zip(lw, ll, strict=True)]
    or_loss = [-ref_logsigmoid(z) for z in log_odds]
    trl_losses = [beta * ref_logsigmoid(z) for z in log_odds]  # TRL's `losses` (<= 0)
    return {
        "log_odds": log_odds,
        "or_loss": or_loss,
        "ratio": [1 / (1 + math.exp(-z)) for z in log_odds],
        "loss": nll - sum(trl_losses) / len(trl_losses),  # TRL: policy_nll_loss - losses.mean()
        "chosen_log_odds": [w - exact_log1mexp(w) for w in lw],
    }


# ------------------------------------------------------------------------------------------------ log1mexp
XS = [
    -1e-30,
    -1e-12,
    -1e-9,
    -1e-6,
    -1e-3,
    -0.1,
    -0.5,
    -math.log(2) + 1e-9,
    -math.log(2),
    -0.7,
    -1,
    -5,
    -20,
    -50,
    -100,
    -700,
]


@pytest.mark.parametrize("x", XS)
def test_log1mexp_float64_matches_exact(x):
    got = float(losses.log1mexp(torch.tensor(x, dtype=torch.float64)))
    want = exact_log1mexp(x)
    assert got == pytest.approx(want, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("x", XS)
def test_log1mexp_float32_matches_exact(x):
    x32 = torch.tensor(x, dtype=torch.float32)
    got = float(losses.log1mexp(x32))
    want = exact_log1mexp(float(x32))  # the exact answer at the float32 input
    assert got == pytest.approx(want, rel=2e-6, abs=1e-37)


def test_naive_log1mexp_breaks_where_ours_does_not():
    x = torch.tensor([-1e-9, -1e-6], dtype=torch.float32)
    naive = torch.log(1 - torch.exp(x))  # the course's version
    assert torch.isinf(naive[0])  # exp(-1e-9) rounds to 1 in float32: log(0)
    assert abs(float(naive[1]) - exact_log1mexp(float(x[1]))) > 1e-2  # 1e-3 relative: cancellation ate digits
    ours = losses.log1mexp(x)
    assert torch.isfinite(ours).all()
    assert float(ours[0]) == pytest.approx(exact_log1mexp(float(x[0])), rel=1e-6)


def test_log1mexp_gradient_is_finite_on_both_sides_of_the_switch():
    x = torch.tensor([-1e-6, -0.69, -0.7, -30.0], requires_grad=True)
    losses.log1mexp(x).sum().backward()
    want = [-math.exp(v) / -math.expm1(v) for v in x.tolist()]  # d/dx log(1 - e^x) = -e^x / (1 - e^x)
    assert torch.isfinite(x.grad).all()
    assert x.grad.tolist() == pytest.approx(want, rel=1e-4)


# ------------------------------------------------------------------------------------------------ orpo_loss
CASES = [
    ([-1e-6, -0.5, -2.0, -80.0], [-1e-6 * 3, -1.5, -0.3, -79.0]),  # near 0, middle, chosen worse, very negative
    ([-1e-7, -1e-4], [-0.05, -1e-8]),
    ([-3.2, -9.0, -0.693], [-3.3, -9.5, -0.7]),
]


@pytest.mark.parametrize("lw,ll", CASES)
@pytest.mark.parametrize("lam", [0.1, 0.5, 1.0])
def test_orpo_loss_matches_trl_formula_in_float64(lw, ll, lam):
    nll = 1.234
    want = ref_orpo(lw, ll, nll, lam)
    for dtype, rel in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        w, r = torch.tensor(lw, dtype=dtype), torch.tensor(ll, dtype=dtype)
        # the float32 inputs are rounded: compare with the reference at those rounded inputs
        want = ref_orpo(w.double().tolist(), r.double().tolist(), nll, lam)
        got = losses.orpo_loss(w, r, torch.tensor(nll, dtype=dtype), lam)
        assert got.log_odds.tolist() == pytest.approx(want["log_odds"], rel=rel, abs=10 * rel)
        assert got.or_loss.tolist() == pytest.approx(want["or_loss"], rel=rel, abs=1e-30)
        assert got.ratio.tolist() == pytest.approx(want["ratio"], rel=rel)
        # near P = 0.5 the log odds is a difference of two ~0.69s: an absolute error of float32's epsilon
        assert got.chosen_log_odds.tolist() == pytest.approx(want["chosen_log_odds"], rel=rel, abs=10 * rel)
        assert float(got.loss) == pytest.approx(want["loss"], rel=rel)
        assert got.loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


def test_orpo_loss_intermediates_are_consistent():
    lw, ll = torch.tensor([-0.4, -2.0]), torch.tensor([-1.0, -0.1])
    out = losses.orpo_loss(lw, ll, torch.tensor(0.7), 0.5)
    p_w, p_l = math.exp(-0.4), math.exp(-1.0)
    assert float(out.chosen_p[0]) == pytest.approx(p_w)
    odds_w, odds_l = p_w / (1 - p_w), p_l / (1 - p_l)
    assert float(out.chosen_log_odds[0]) == pytest.approx(math.log(odds_w), rel=1e-6)
    assert float(out.log_odds[0]) == pytest.approx(math.log(odds_w / odds_l), rel=1e-6)
    assert float(out.log_odds[1]) < 0  # chosen less likely than rejected: negative log odds ratio
    assert float(out.or_loss[1]) > math.log(2) > float(out.or_loss[0])  # L_OR = ln 2 where the odds are equal
    assert float(out.loss) == pytest.approx(0.7 + 0.5 * float(out.or_loss.mean()))


def test_orpo_loss_gradients_finite_near_and_at_zero():
    lw = torch.tensor([-1e-6, 0.0, -1e-30, -50.0], requires_grad=True)
    ll = torch.tensor([-1e-7, -1.0, 0.0, -60.0], requires_grad=True)
    out = losses.orpo_loss(lw, ll, -lw.mean(), 0.5)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(lw.grad).all() and torch.isfinite(ll.grad).all()
    assert (ll.grad >= 0).all()  # raising the rejected log-prob can only raise the loss


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_orpo_loss_rejects_bad_lambda(bad):
    with pytest.raises(ValueError, match="lam"):
        losses.orpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor(1.0), bad)


def test_orpo_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        losses.orpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0]), torch.tensor(1.0), 0.1)


# ------------------------------------------------------------------------------------------- sequence_logps
def test_sequence_logps_matches_a_loop_in_float64():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=g) * 3
    ids = torch.randint(0, 11, (2, 6), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100  # prompt of 3 tokens
    labels[1, :2] = -100
    labels[1, 5] = -100  # padding at the end
    got = losses.sequence_logps(logits, labels)
    got_sum = losses.sequence_logps(logits, labels, average=False)
    for b in range(2):
        terms = []
        for t in range(1, 6):
            if labels[b, t] != -100:
                row = logits[b, t - 1].double()
                terms.append(float(row[labels[b, t]] - torch.logsumexp(row, 0)))
        assert float(got[b]) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
        assert float(got_sum[b]) == pytest.approx(sum(terms), rel=1e-5)


def test_token_logps_masks_exactly_the_ignored_labels():
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100]])
    logps, mask = losses.token_logps(logits, labels)
    assert mask.tolist() == [[False, True, True, False]]
    assert logps[0, 0] == 0 and logps[0, 3] == 0 and (logps[0, 1:3] < 0).all()


# ------------------------------------------------------------------------------- encoding, breakdown, steps
@pytest.fixture(scope="module")
def tok():
    """A small SentencePiece BPE with the chat symbols, trained in memory on the shipped chatterbot answers."""
    import json

    from playground import ASSETS
    from playground.tokenizer import train_tokenizer

    rows = [json.loads(line) for line in (ASSETS / "preferences" / "chatterbot_qa.jsonl").open(encoding="utf-8")]
    return train_tokenizer("\n".join(f"{r['prompt']}\n{r['answer']}" for r in rows), vocab_size=512)


CHAT_SHAPE = {"n_embd": 48, "n_layer": 2, "n_head": 4, "context": 96}  # room for a chat-formatted pair (max_len 96)


PAIR = {"prompt": "What is AI?", "chosen": "The study of machines that think.", "rejected": "Mona Lisa"}


def test_encode_example_masks_exactly_the_prompt_and_the_padding(tok):

    ex = chat.encode_example(tok, PAIR["prompt"], PAIR["chosen"], PAIR["rejected"], max_len=96)
    head = tok.apply_chat_template([{"role": "user", "content": PAIR["prompt"]}], add_generation_prompt=True)
    n = ex.prompt_len
    assert n == len(head) and ex.chosen_input_ids[:n] == head == ex.rejected_input_ids[:n]
    for ids, labels, reply in (
        (ex.chosen_input_ids, ex.chosen_labels, PAIR["chosen"]),
        (ex.rejected_input_ids, ex.rejected_labels, PAIR["rejected"]),
    ):
        scored = [i for i, lab in enumerate(labels) if lab != -100]
        assert scored == list(range(n, n + len(scored)))  # one block, right after the prompt
        assert [ids[i] for i in scored] == [labels[i] for i in scored]
        assert ids[scored[-1]] == tok.eos_id  # the reply ends with end-of-sequence: the model learns to stop
        assert tok.decode([ids[i] for i in scored[:-1]]).strip() == reply
        assert all(ids[i] == tok.pad_id for i in range(scored[-1] + 1, len(ids)))  # the rest is padding
    assert len(ex.chosen_input_ids) == len(ex.rejected_input_ids)
    # the whole chosen conversation through the template is exactly prompt + scored reply
    whole = tok.apply_chat_template(
        [{"role": "user", "content": PAIR["prompt"]}, {"role": "assistant", "content": PAIR["chosen"]}]
    )
    assert ex.chosen_input_ids[: len(whole)] == whole


def test_collate_pads_with_ignored_labels_and_token_mask_matches(tok):

    a = chat.encode_example(tok, "Hi", "Hello there, how are you today?", "Go away", 96)
    b = chat.encode_example(tok, "Tell me a long story about a cat and a dog", "No.", "Yes.", 96)
    ids, labels = chat.collate([a, b], tok.pad_id)
    assert ids.shape == labels.shape == (4, max(a.length, b.length))
    for r, (seq, lab) in enumerate(
        (
            (a.chosen_input_ids, a.chosen_labels),
            (b.chosen_input_ids, b.chosen_labels),
            (a.rejected_input_ids, a.rejected_labels),
            (b.rejected_input_ids, b.rejected_labels),
        )
    ):
        assert ids[r, : len(seq)].tolist() == seq and labels[r, : len(lab)].tolist() == lab
        assert (labels[r, len(lab) :] == -100).all() and (ids[r, len(seq) :] == tok.pad_id).all()
    _, mask = losses.token_logps(torch.zeros(*ids.shape, tok.vocab_size), labels)
    assert mask.sum().item() == sum(
        sum(lab != -100 for lab in x) for x in (a.chosen_labels, b.chosen_labels, a.rejected_labels, b.rejected_labels)
    )


def test_encode_example_truncates_to_max_len(tok):

    ex = chat.encode_example(tok, "word " * 200, "an answer " * 50, "no", max_len=40)
    assert ex.truncated and ex.length <= 40 and ex.prompt_len == 20
    assert ex.chosen_labels[: ex.prompt_len] == [-100] * ex.prompt_len


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt": "", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "  ", "rejected": "b"},
        {"prompt": "q", "chosen": "a"},
    ],
)
def test_bad_examples_raise_value_error(tok, bad):
    from playground import orpo

    with pytest.raises(ValueError):
        orpo.example_breakdown(tiny_model("llama", vocab_size=tok.vocab_size, **CHAT_SHAPE), tok, bad)


@pytest.mark.parametrize("arch", ["llama", "gpt"])
def test_breakdown_agrees_with_an_independent_float64_computation(tok, arch):
    from playground import orpo

    model = tiny_model(arch, vocab_size=tok.vocab_size, **CHAT_SHAPE)
    lam = 0.5
    bd = orpo.example_breakdown(model, tok, PAIR, lam)
    ex = chat.encode_example(tok, PAIR["prompt"], PAIR["chosen"], PAIR["rejected"], 96)
    avgs, per_token = [], []
    with torch.no_grad():
        for ids, labels in ((ex.chosen_input_ids, ex.chosen_labels), (ex.rejected_input_ids, ex.rejected_labels)):
            logits = model(torch.tensor([ids]))[0].double()  # (T, V)
            terms = [
                float(torch.log_softmax(logits[t - 1], -1)[labels[t]]) for t in range(1, len(ids)) if labels[t] != -100
            ]
            per_token.append(terms)
            avgs.append(sum(terms) / len(terms))
    want = ref_orpo([avgs[0]], [avgs[1]], -avgs[0], lam)
    assert bd.chosen.token_logps == pytest.approx(per_token[0], abs=1e-4)
    assert bd.rejected.token_logps == pytest.approx(per_token[1], abs=1e-4)
    assert bd.chosen.avg_logp == pytest.approx(avgs[0], abs=1e-5)
    assert bd.chosen.p == pytest.approx(math.exp(avgs[0]), rel=1e-4)
    assert bd.chosen.odds == pytest.approx(math.exp(avgs[0]) / (1 - math.exp(avgs[0])), rel=1e-4)
    assert bd.log_odds_ratio == pytest.approx(want["log_odds"][0], abs=1e-4)
    assert bd.log_odds_ratio == pytest.approx(bd.chosen.log_odds - bd.rejected.log_odds, abs=1e-5)
    assert bd.sigmoid == pytest.approx(want["ratio"][0], abs=1e-5)
    assert bd.or_loss == pytest.approx(want["or_loss"][0], abs=1e-5)
    assert bd.nll == pytest.approx(-avgs[0], abs=1e-5)
    assert bd.loss == pytest.approx(want["loss"], abs=1e-4)
    assert bd.chosen.tokens[-1] == tok.id_to_piece(tok.eos_id)
    assert len(bd.chosen.tokens) == len(bd.chosen.token_logps) == len(bd.chosen.token_ids)


@pytest.mark.parametrize("arch", ["llama", "gpt"])
def test_orpo_steps_raise_the_log_odds_ratio(tok, arch):
    from playground import orpo

    model = tiny_model(arch, vocab_size=tok.vocab_size, **CHAT_SHAPE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = list(orpo.orpo_steps(model, tok, PAIR, n=8, lr=3e-3, lam=0.5))
    assert [r.step for r in records] == list(range(9))
    first, last = records[0], records[-1]
    assert last.log_odds_ratio > first.log_odds_ratio + 1.0
    assert last.chosen_logp > first.chosen_logp and last.rejected_logp < first.rejected_logp
    assert last.loss < first.loss
    assert last.breakdown.log_odds_ratio == pytest.approx(last.log_odds_ratio)
    # the state after the steps is what a fresh breakdown of the trained model sees
    assert orpo.example_breakdown(model, tok, PAIR, 0.5).log_odds_ratio == pytest.approx(last.log_odds_ratio, abs=1e-4)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # trained in place


def test_orpo_steps_validate_their_arguments(tok):
    from playground import orpo

    model = tiny_model("llama", vocab_size=tok.vocab_size, **CHAT_SHAPE)
    with pytest.raises(ValueError, match="n must"):
        next(orpo.orpo_steps(model, tok, PAIR, n=0))
    with pytest.raises(ValueError, match="lr must"):
        next(orpo.orpo_steps(model, tok, PAIR, n=1, lr=-1.0))


# ----------------------------------------------------------------------------------------------------- CLI
def test_align_cli_trains_evaluates_and_saves(tok, tmp_path):
    """`python -m playground align` end to end on a tiny random Llama and 40 shipped pairs, 4 steps on the CPU."""
    import json

    from playground import align, checkpoints
    from playground.data import PREFERENCE_FILES

    base = tmp_path / "base"
    model = tiny_model("llama", vocab_size=tok.vocab_size, **{**CHAT_SHAPE, "context": 128})
    checkpoints.save(checkpoints.Bundle(model, tok, {"arch": "llama"}), base)
    pairs = tmp_path / "pairs.jsonl"
    qa = [json.loads(line) for line in PREFERENCE_FILES["chatterbot"].read_text(encoding="utf-8").splitlines()[:40]]
    pairs.write_text(
        "".join(
            json.dumps({"prompt": r["prompt"], "chosen": r["answer"], "rejected": qa[(i + 13) % 40]["answer"]}) + "\n"
            for i, r in enumerate(qa)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "aligned"
    code = align.cli(
        [
            "--base",
            str(base),
            "--data",
            str(pairs),
            "--out",
            str(out),
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--warmup",
            "1",
            "--lr",
            "1e-3",
            "--max-len",
            "128",
            "--prompt-max-tokens",
            "96",
            "--eval-interval",
            "2",
            "--eval-pairs",
            "8",
            "--val-fraction",
            "0.2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    doc = json.loads((out / "train_log.json").read_text())
    assert [r["step"] for r in doc["records"]] == [1, 2, 3, 4]
    assert doc["records"][1]["val"] and doc["records"][3]["val"] and not doc["records"][0]["val"]
    assert 0 <= doc["val_after"]["accuracy"] <= 1 and doc["val_before"]["pairs"] == doc["val_after"]["pairs"]
    lrs = [r["lr"] for r in doc["records"]]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)  # warmup 1, cosine down to lr / 10
    card = (out / "README.md").read_text()
    assert "ORPO" in card and "accuracy" in card and "python -m playground align" in card
    aligned = checkpoints.load(str(out))
    assert aligned.info.get("alignment") == "ORPO"
    assert not torch.equal(aligned.model.state_dict()["output.weight"], model.state_dict()["output.weight"])


def test_orpo_config_rejects_bad_values():
    from playground.orpo import ORPOConfig

    for bad in ({"steps": 0}, {"lr": 0.0}, {"lam": -1.0}, {"val_fraction": 1.0}, {"prompt_max_tokens": 300}):
        with pytest.raises(ValueError):
            ORPOConfig(**bad)


def test_training_and_validation_nll_are_one_definition(tok):
    """Two pairs with replies of different lengths: evaluate_pairs' nll and loss equal the training loss's
    (score_pairs: token mean over all chosen reply tokens), computed here independently in float64."""
    from playground import orpo

    a = chat.encode_example(tok, "Hi", "Hello there, how are you today? I am fine, thanks for asking me.", "No", 96)
    b = chat.encode_example(tok, "Tell me a long story about a cat", "No.", "Yes, once upon a time.", 96)
    n_a = sum(lab != -100 for lab in a.chosen_labels)
    n_b = sum(lab != -100 for lab in b.chosen_labels)
    assert n_a > 2 * n_b  # lengths that make a token mean and a mean of per-pair means differ
    model, lam = tiny_model("gpt", vocab_size=tok.vocab_size, **CHAT_SHAPE), 0.5
    ids, labels = chat.collate([a, b], tok.pad_id)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).double(), -1)[:, :-1]  # (4, T-1, V) float64, independent of orpo
    targets = labels[:, 1:]
    mask = targets != -100
    picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * mask  # (4, T-1)
    token_mean = float(-picked[:2].sum() / mask[:2].sum())
    pair_mean = float((-picked[:2].sum(-1) / mask[:2].sum(-1)).mean())
    assert abs(token_mean - pair_mean) > 1e-3  # the two definitions really differ on these pairs
    with torch.no_grad():
        train_out = orpo.score_pairs(model, ids, labels, lam).out
    val = orpo.evaluate_pairs(model, [a, b], tok.pad_id, lam, batch_size=1)  # one pair per batch: sums must carry
    assert float(train_out.nll) == pytest.approx(token_mean, abs=1e-5)
    assert val["nll"] == pytest.approx(token_mean, abs=1e-5)
    assert val["loss"] == pytest.approx(float(train_out.loss), abs=1e-5)
    assert val["loss"] == pytest.approx(token_mean + lam * float(train_out.or_loss.mean()), abs=1e-5)


def test_the_clamp_zeroes_the_gradient_of_a_certain_reply():
    """An average log-prob of 0 is clamped to -1e-30: finite loss, and no odds-ratio gradient for that entry."""
    lw = torch.tensor([0.0, -0.5], requires_grad=True)
    ll = torch.tensor([-1.0, -2.0], requires_grad=True)
    out = losses.orpo_loss(lw, ll, torch.tensor(0.0), 0.5)
    out.loss.backward()
    assert torch.isfinite(out.loss) and lw.grad[0] == 0.0 and lw.grad[1] != 0.0
