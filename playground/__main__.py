"""Command line: `python -m playground <command> [options]`.

Each command lives beside the code it drives and exposes `cli(argv) -> int`; this file only dispatches,
so `python -m playground --help` stays fast (nothing heavy is imported until a command runs).
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "tokenizer": ("playground.tokenizer", "train the bundled SentencePiece tokenizer from the shipped corpus"),
    "pretrain": ("playground.pretrain", "pretrain a GPT or Llama on a corpus (checkpoints, resume, bf16, compile)"),
    "align": ("playground.align", "align a Llama checkpoint with ORPO on preference pairs"),
    "eval": ("playground.evaluate", "validation loss, preference and end-of-sequence figures of checkpoints"),
    "bench": ("playground.bench", "speed figures beside the reference implementations"),
    "publish": ("playground.publish", "upload a checkpoint folder to a Hugging Face model repo, with a model card"),
    "loadtest": ("playground.loadclass", "concurrent learners against the real app (loopback): latency, memory, leaks"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m playground <command> [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else (2 if argv else 0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.cli(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
