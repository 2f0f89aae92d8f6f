"""LLM Playground: `python app.py` starts the app on http://127.0.0.1:7860 (GRADIO_SERVER_NAME/PORT override)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning on a shared CPU

from playground.device import configure_memory, configure_threads  # noqa: E402
from playground.ui import build_app, launch_kwargs, queue_kwargs  # noqa: E402

configure_threads()
configure_memory()
demo = build_app()

if __name__ == "__main__":
    demo.queue(**queue_kwargs()).launch(**launch_kwargs())
