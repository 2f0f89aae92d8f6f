"""LLM Playground: build a language model step by step.

The logic lives here as plain Python/PyTorch; only `playground.ui` imports gradio.
"""

from pathlib import Path

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
CHECKPOINTS = ROOT / "checkpoints"
LESSONS = ROOT / "lessons"
