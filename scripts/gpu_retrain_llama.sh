#!/usr/bin/env bash
# Second pass at llama-base (after scripts/gpu_pretrain.sh): the Llama alone on each GPU, so each run gets a
# whole H200; two regularisation settings side by side; the better held-out loss is exported (float16) with the
# bundled tokenizer to checkpoints/llama-base, ready for scripts/gpu_align.sh.
set -uo pipefail
OUT=${OUT:-runs}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-210}
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
n_gpu=$(python -c "import torch; print(torch.cuda.device_count())")
second=$(( n_gpu > 1 ? 1 : 0 ))
python -c "from playground import data; d = data.corpus_data('all'); print('tokens', len(d.train), len(d.val))"
common="--arch llama --preset base --context 512 --batch-size 32 --lr 2e-3 --warmup 200 --weight-decay 0.1 \
  --max-seconds $SECONDS_PER_RUN --corpus all --device cuda --dtype bf16 --eval-iters 40 --final-eval-iters 200 \
  --log-interval 50 --sample-tokens 40 --eval-interval 500"
CUDA_VISIBLE_DEVICES=0 python -m playground pretrain $common --dropout 0.2 --steps ${STEPS:-4500} \
  --out runs/llama-d > "$OUT/llama-d.log" 2>&1 &
CUDA_VISIBLE_DEVICES=$second python -m playground pretrain $common --dropout 0.25 --steps ${STEPS:-4500} \
  --out runs/llama-e > "$OUT/llama-e.log" 2>&1 &
wait
best=$(python - <<'PY'
import json, os, sys
runs = [r for r in ("llama-d", "llama-e") if os.path.exists(f"runs/{r}/train_log.json")]
for r in runs:
    f = json.load(open(f"runs/{r}/train_log.json"))
    print(r, f["final"], f["step"], "steps", f["train_seconds"], "s", file=sys.stderr)
print(min(runs, key=lambda r: json.load(open(f"runs/{r}/train_log.json"))["final"]["val_loss"]))
PY
)
echo "kept $best"
rm -rf checkpoints/llama-base
python scripts/export_checkpoint.py "runs/$best" checkpoints/llama-base --no-tokenizer
cp checkpoints/tokenizer/{tokenizer.model,tokenizer.json,tokenizer_config.json,special_tokens_map.json} checkpoints/llama-base/
mkdir -p "$OUT/llama-base"
cp checkpoints/llama-base/{config.json,model.safetensors,train_log.json} "$OUT/llama-base/"
