"""Copy a training run's model into a bundled-checkpoint folder, with weights stored in float16.

    python scripts/export_checkpoint.py runs/llama-b checkpoints/llama-base [--dtype float16] [--no-tokenizer]

float16 halves the files (a CPU Space and a git repo want them small); `checkpoints.load` upcasts them to
float32 on a CPU. float16 keeps 10 mantissa bits to bfloat16's 7, and these small models' weights sit far
inside its range, so the stored model scores the same validation loss to about 1e-3 nats.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playground import checkpoints  # noqa: E402
from playground.device import parse_dtype  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder written by `python -m playground pretrain` or `align`")
    p.add_argument("out", help="the bundled checkpoint folder to write")
    p.add_argument("--dtype", default="float16", help="storage dtype of the weights")
    p.add_argument("--no-tokenizer", action="store_true", help="leave the tokenizer files out")
    args = p.parse_args()
    bundle = checkpoints.load(args.run, device="cpu")
    bundle.model.to(parse_dtype(args.dtype))
    out = Path(args.out)
    checkpoints.save(bundle, out)
    for log_name in ("train_log.json", "align_log.json"):
        if (Path(args.run) / log_name).exists():
            shutil.copy(Path(args.run) / log_name, out / log_name)
    if args.no_tokenizer:
        for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (out / name).unlink(missing_ok=True)
    sizes = {f.name: f.stat().st_size for f in out.iterdir()}
    print(json.dumps({"out": str(out), "files": sizes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
