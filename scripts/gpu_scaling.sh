#!/usr/bin/env bash
# Two-GPU scaling of pretraining on the lent two-H200 machine (issue 22): each run once on one GPU and once on two
# (torchrun, DDP, NCCL), same global batch, seed and dropout 0, so the two loss curves should agree step by step.
# Throughput is the recent figure (tokens/s over the last 20 steps of training time, compile excluded once it has
# left the window), read from each run's train_log.json ("rates"), for the whole job.
#   course GPT (7 x 384, context 512), global batch 128 windows, 300 steps, eager
#   GPT-2-small-sized (12 x 768, context 1024), global batch 32 windows, 300 steps, torch.compile
# Writes $OUT/scaling.json and the logs. NVLink multicast stays off (the machine's rules).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PLAYGROUND_DIST_TIMEOUT=240
python -c "from playground import data; d = data.corpus_data('all'); print('tokens', len(d.train), len(d.val))"
course="--arch gpt --preset course --corpus all --steps 300 --batch-size 128 --lr 3e-4 --warmup 30 --dropout 0 \
  --dtype bf16 --log-interval 10 --eval-interval 0 --final-eval-iters 5 --sample-tokens 0"
gpt2="--arch gpt --preset gpt2-small --corpus all --steps 300 --batch-size 32 --lr 6e-4 --warmup 30 --dropout 0 \
  --dtype bf16 --compile --log-interval 10 --eval-interval 0 --final-eval-iters 5 --sample-tokens 0"
run() {  # name, gpus, flags
  local name=$1 n=$2; shift 2
  if [ "$n" = 1 ]; then
    CUDA_VISIBLE_DEVICES=0 timeout 280 python -m playground pretrain "$@" --out "runs/$name" > "$OUT/$name.log" 2>&1
  else
    timeout 280 torchrun --standalone --nproc_per_node="$n" -m playground pretrain "$@" --out "runs/$name" \
      > "$OUT/$name.log" 2>&1
  fi
  echo "$name: exit $?"
}
run course-1gpu 1 $course
run course-2gpu 2 $course
run gpt2-1gpu 1 $gpt2
run gpt2-2gpu 2 $gpt2
python - "$OUT" <<'PY'
import json, statistics, sys
out = {}
for case in ("course", "gpt2"):
    logs = {}
    for n in (1, 2):
        try:
            logs[n] = json.load(open(f"runs/{case}-{n}gpu/train_log.json"))
        except OSError as e:
            print(case, n, "no log:", e)
    if len(logs) < 2:
        continue
    rate = {n: statistics.median(r for s, r in logs[n]["rates"] if s > 100) for n in logs}  # steady state
    loss = {n: {s: l for s, l, _ in logs[n]["losses"]} for n in logs}
    common = sorted(set(loss[1]) & set(loss[2]))
    worst = max(abs(loss[1][s] - loss[2][s]) / loss[1][s] for s in common)
    out[case] = {"tok_s_1gpu": rate[1], "tok_s_2gpu": rate[2], "speedup": rate[2] / rate[1],
                 "efficiency": rate[2] / (2 * rate[1]), "steps_compared": len(common),
                 "max_rel_loss_diff": worst, "final_loss_1gpu": loss[1][common[-1]], "final_loss_2gpu": loss[2][common[-1]],
                 "val_1gpu": logs[1]["final"]["val_loss"], "val_2gpu": logs[2]["final"]["val_loss"]}
    print(case, json.dumps(out[case]))
json.dump(out, open(f"{sys.argv[1]}/scaling.json", "w"), indent=1)
PY
