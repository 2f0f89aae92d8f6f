#!/usr/bin/env bash
# Align checkpoints/llama-base with ORPO on the default preference data (chatterbot + choices, built from the
# shipped files) on the GPUs lent to the project: two learning rates side by side, one per GPU (both on the one
# GPU when there is one); keep the run with the better held-out accuracy, store it in float16 as
# checkpoints/llama-aligned, then measure all bundled checkpoints with the project's eval command.
# Needs `datasets` (carry it as wheels where the machine lacks it).
set -uo pipefail
OUT=${OUT:-runs}
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_DATASETS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
n_gpu=$(python -c "import torch; print(torch.cuda.device_count())")
second=$(( n_gpu > 1 ? 1 : 0 ))
common="--base llama-base --data chatterbot,choices --steps ${ALIGN_STEPS:-1500} --batch-size 16 --warmup 50 --lam 0.5 \
  --max-len 256 --eval-interval 250 --device cuda --dtype bfloat16"
CUDA_VISIBLE_DEVICES=0 python -m playground align $common --lr 1e-4 --out runs/aligned-a > "$OUT/aligned-a.log" 2>&1 &
CUDA_VISIBLE_DEVICES=$second python -m playground align $common --lr 3e-4 --out runs/aligned-b > "$OUT/aligned-b.log" 2>&1 &
wait
for r in aligned-a aligned-b; do echo "== $r"; tr '\r' '\n' < "$OUT/$r.log" | grep -E "before:|val |stopped|rror|Traceback" | tail -12; done
best=$(python - <<'PY'
import json
runs = ["aligned-a", "aligned-b"]
def score(r):
    try:
        v = json.load(open(f"runs/{r}/train_log.json"))["val_after"]
    except (OSError, KeyError):
        return (-1, 0)
    return (v["accuracy"], v["log_odds_ratio"])
print(max(runs, key=score))
PY
)
echo "kept $best"
python scripts/export_checkpoint.py "runs/$best" checkpoints/llama-aligned
cp "runs/$best/README.md" checkpoints/llama-aligned/README.md 2>/dev/null
models=${EVAL_MODELS:-gpt-tiny,llama-base,llama-aligned}
python -m playground eval --models "$models" --device cuda --prompts 100 --out "$OUT/eval.json" 2>&1 | grep -v "Map:" | tail -8
mkdir -p "$OUT/llama-aligned"
cp checkpoints/llama-aligned/{config.json,model.safetensors,train_log.json} "$OUT/llama-aligned/"
tar czf "$OUT/align-logs.tar.gz" "$OUT"/*.log "$OUT"/eval.md runs/*/train_log.json runs/*/README.md 2>/dev/null
rm -f "$OUT"/*.log "$OUT"/eval.md
