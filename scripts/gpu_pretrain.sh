#!/usr/bin/env bash
# Pretrain the bundled checkpoints' candidates on the GPUs lent to the project (an H200 pair: GPT runs on the
# first, Llama runs on the second; with one GPU all of them share it), several configurations side by side.
# Every run is `python -m playground pretrain`; each run's folder gets its train_log.json with the command.
# The models overfit the ~5M-token corpus long before the time runs out (train loss far below held-out loss),
# so the candidates differ in regularisation (dropout, weight decay) rather than in size.
set -uo pipefail
OUT=${OUT:-runs}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-330}
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
n_gpu=$(python -c "import torch; print(torch.cuda.device_count())")
gpt_gpu=0; llama_gpu=$(( n_gpu > 1 ? 1 : 0 ))
# encode the corpus once (cached under checkpoints/cache) so the parallel runs do not race to do it
python -c "from playground import data; d = data.corpus_data('all'); print('tokens', len(d.train), len(d.val))"
common="--max-seconds $SECONDS_PER_RUN --corpus all --device cuda --dtype bf16 --eval-iters 40 --final-eval-iters 200 \
  --log-interval 50 --sample-tokens 40 --eval-interval 500 --warmup 200"
gpt="--arch gpt --preset small --n-layer 4 --context 256 --batch-size 64 --lr 2e-3"
llama="--arch llama --preset base --context 512 --batch-size 32 --lr 2e-3"
run() { local gpu=$1 name=$2; shift 2; CUDA_VISIBLE_DEVICES=$gpu python -m playground pretrain "$@" $common \
  --out "runs/$name" > "$OUT/$name.log" 2>&1 & }
run $gpt_gpu gpt-a $gpt --dropout 0.1 --weight-decay 0.01 --steps 6000
run $gpt_gpu gpt-b $gpt --dropout 0.2 --weight-decay 0.1 --steps 7000
run $gpt_gpu gpt-c $gpt --dropout 0.3 --weight-decay 0.1 --steps 7000
run $llama_gpu llama-a $llama --dropout 0.1 --weight-decay 0.01 --steps 4000
run $llama_gpu llama-b $llama --dropout 0.2 --weight-decay 0.1 --steps 5000
run $llama_gpu llama-c $llama --dropout 0.3 --weight-decay 0.1 --steps 5500
wait
for r in gpt-a gpt-b gpt-c llama-a llama-b llama-c; do echo "== $r"; tr '\r' '\n' < "$OUT/$r.log" \
  | grep -E "step [0-9]+: train|final|training|rror|Traceback" | tail -6; done
# keep the run with the lower held-out loss of each family, stored in float16
pick() { python - "$@" <<'PY'
import json, sys
runs = [r for r in sys.argv[1:] if __import__("os").path.exists(f"runs/{r}/train_log.json")]
best = min(runs, key=lambda r: json.load(open(f"runs/{r}/train_log.json"))["final"]["val_loss"])
for r in runs:
    f = json.load(open(f"runs/{r}/train_log.json"))
    print(r, f["final"], f["step"], "steps", f["train_seconds"], "s", "<- kept" if r == best else "", file=sys.stderr)
print(best)
PY
}
g=$(pick gpt-a gpt-b gpt-c); l=$(pick llama-a llama-b llama-c)
python scripts/export_checkpoint.py "runs/$g" "$OUT/gpt-tiny" --no-tokenizer
python scripts/export_checkpoint.py "runs/$l" "$OUT/llama-base" --no-tokenizer
tar czf "$OUT/runs-logs.tar.gz" "$OUT"/*.log runs/*/train_log.json 2>/dev/null
rm -f "$OUT"/*.log
