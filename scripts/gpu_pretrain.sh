#!/usr/bin/env bash
# Pretrain the bundled checkpoints' candidates on one GPU (the H200 lent to the project), side by side.
# Every run is `python -m playground pretrain`; each run's folder gets its train_log.json with the command.
set -uo pipefail
OUT=${OUT:-runs}
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# encode the corpus once (cached under checkpoints/cache) so the parallel runs do not race to do it
python -c "from playground import data; d = data.corpus_data('all'); print('tokens', len(d.train), len(d.val))"
common="--max-seconds 330 --corpus all --device cuda --dtype bf16 --eval-iters 40 --final-eval-iters 200 --log-interval 50 --sample-tokens 40"
python -m playground pretrain --arch gpt --preset small --n-layer 4 --context 256 --dropout 0.1 \
  --steps 4000 --batch-size 64 --lr 2e-3 --warmup 200 --eval-interval 500 $common --out runs/gpt-a > "$OUT/gpt-a.log" 2>&1 &
python -m playground pretrain --arch gpt --preset small --n-layer 4 --context 256 --dropout 0.1 \
  --steps 6000 --batch-size 64 --lr 2e-3 --warmup 200 --eval-interval 500 $common --out runs/gpt-b > "$OUT/gpt-b.log" 2>&1 &
python -m playground pretrain --arch llama --preset base --context 512 --dropout 0.1 \
  --steps 4000 --batch-size 32 --lr 2e-3 --warmup 200 --eval-interval 500 $common --out runs/llama-a > "$OUT/llama-a.log" 2>&1 &
python -m playground pretrain --arch llama --preset base --context 512 --dropout 0.1 \
  --steps 6000 --batch-size 32 --lr 2e-3 --warmup 200 --eval-interval 500 $common --out runs/llama-b > "$OUT/llama-b.log" 2>&1 &
wait
for r in gpt-a gpt-b llama-a llama-b; do echo "== $r"; grep -E "step [0-9]+: train|final:|seconds of training|Error|error" "$OUT/$r.log" | tr '\r' '\n' | grep -E "step [0-9]+: train|final|training|rror" | tail -20; done
# keep the run with the lower held-out loss of each family, stored in float16
pick() { python - "$@" <<'PY'
import json, sys
runs = sys.argv[1:]
best = min(runs, key=lambda r: json.load(open(f"runs/{r}/train_log.json"))["final"]["val_loss"])
for r in runs:
    f = json.load(open(f"runs/{r}/train_log.json"))["final"]
    print(r, f, "<- kept" if r == best else "", file=sys.stderr)
print(best)
PY
}
g=$(pick gpt-a gpt-b); l=$(pick llama-a llama-b)
python scripts/export_checkpoint.py "runs/$g" "$OUT/gpt-tiny" --no-tokenizer
python scripts/export_checkpoint.py "runs/$l" "$OUT/llama-base" --no-tokenizer
tar czf "$OUT/runs-logs.tar.gz" "$OUT"/*.log runs/*/train_log.json 2>/dev/null
rm -f "$OUT"/*.log
