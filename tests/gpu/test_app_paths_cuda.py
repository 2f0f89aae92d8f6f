"""The library calls behind every tab, run with the bundled models on a CUDA device (skipped without CUDA).

The app's handlers are thin adapters over these functions; this proves each one follows the model's device
(inputs moved to it, results back on the CPU) and agrees with the CPU to float tolerance.
"""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune"


def _pair(name):
    from playground import checkpoints

    cpu = checkpoints.load(name, device="cpu")
    gpu = checkpoints.load(name, device="cuda", dtype=torch.float32)
    return cpu, gpu


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-base"])
def test_cross_entropy_tab_on_cuda(name):
    from playground import losses

    cpu, gpu = _pair(name)
    ids = cpu.tokenizer.encode(TEXT)
    lc, _ = losses.windowed_logits(cpu.model, ids, None)
    lg, _ = losses.windowed_logits(gpu.model, ids, None)
    targets = torch.tensor(ids[1:])
    a = losses.token_stats(lc, targets)
    b = losses.token_stats(lg.cpu(), targets)
    assert torch.allclose(torch.as_tensor(a.nll), torch.as_tensor(b.nll), atol=1e-3)
    print(f"\n{name}: cross-entropy on cuda {float(torch.as_tensor(b.nll).mean()):.4f} nats/token")


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-aligned"])
def test_sample_tab_on_cuda_same_tokens_as_cpu(name):
    from playground import sampling

    cpu, gpu = _pair(name)
    ids = cpu.tokenizer.encode(TEXT)
    kw = dict(max_new_tokens=24, temperature=0.8, top_k=40, top_p=0.95)
    a = list(sampling.generate(cpu.model, ids, generator=torch.Generator().manual_seed(3), **kw))
    b = list(sampling.generate(gpu.model, ids, generator=torch.Generator().manual_seed(3), **kw))
    assert len(b) == 24
    assert a[:8] == b[:8]  # float32 on both: identical draws until rounding differences can flip a token


def test_attention_maps_and_training_burst_on_cuda():
    from playground import data, introspect, train

    cpu, gpu = _pair("gpt-tiny")
    maps = introspect.attention_maps(gpu.model, cpu.tokenizer.encode(TEXT))
    assert maps.device.type == "cpu" and torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-4)
    d = data.text_data(TEXT * 200, cpu.tokenizer, context=64)
    cfg = train.TrainConfig(
        steps=20, batch_size=8, eval_interval=10, eval_iters=2, sample_tokens=8, dtype="bfloat16", device="cuda"
    )
    logs = list(train.train_steps(gpu.model.train(), d, cfg))
    assert logs[-1].step == 20 and logs[-1].loss < logs[0].loss


def test_orpo_tab_on_cuda():
    from playground import orpo

    cpu, gpu = _pair("llama-base")
    ex = {"prompt": "What is a token?", "chosen": "A piece of text.", "rejected": "The sea is blue and the sky."}
    a = orpo.example_breakdown(cpu.model, cpu.tokenizer, ex)
    b = orpo.example_breakdown(gpu.model, gpu.tokenizer, ex)
    assert abs(a.log_odds_ratio - b.log_odds_ratio) < 1e-3 and abs(a.loss - b.loss) < 1e-3
    recs = list(orpo.orpo_steps(gpu.model, gpu.tokenizer, ex, n=5, lr=1e-3))
    assert float(recs[-1].log_odds_ratio) > float(recs[0].log_odds_ratio)
