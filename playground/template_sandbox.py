"""Chat templates from the Hub, rendered where they cannot hurt the server: bounded in time, memory and output.

A chat template is a Jinja program shipped by whoever published the tokenizer. Jinja's sandbox stops it from
reaching Python internals, not from looping for hours (`range(100000)` nested) or building gigabytes
(`'a' * 50000000`). Untrusted templates therefore render in a separate worker process (`python -m
playground.template_sandbox`, one per server, started on first use, a JSON line in and out) that runs under an
address-space limit; a render past `TIMEOUT` seconds kills the worker (a fresh one starts on the next call), and an
output past `MAX_CHARS` characters is refused. The app's own template renders in process (training renders it
thousands of times): `playground.tokenizer.render_chat_template` decides.
"""

from __future__ import annotations

import functools
import json
import os
import select
import subprocess
import sys
import threading
from datetime import datetime

TIMEOUT = 2.0  # seconds for one render (ours take microseconds; a real chat template, milliseconds)
MAX_CHARS = 200_000  # characters a rendered chat may have (the app's text boxes hold 100,000)
STARTUP_TIMEOUT = 60.0  # seconds for a fresh worker to import Jinja (not counted in a render's TIMEOUT)
MEMORY_BYTES = 1_000_000_000  # the worker's address space (Python + Jinja use about 40 MB)


class _Worker:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "playground.template_sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1,
            )  # fmt: skip
            ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_TIMEOUT)
            if not ready or self.proc.stdout.readline().strip() != "ready":
                self.kill()
                raise ValueError("the chat template renderer could not start: try again")
        return self.proc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def render(self, request: dict, timeout: float) -> dict:
        if not self.lock.acquire(timeout=timeout * 3):  # another visitor's render: at most a few seconds
            raise ValueError("the chat template renderer is busy: try again")
        try:
            proc = self._start()
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
            if not line:
                self.kill()  # looping or dead: a fresh worker next time
                raise ValueError(f"the chat template did not render within {timeout:g} s (refused)")
            return json.loads(line)
        finally:
            self.lock.release()


_WORKER = _Worker()


def render(template: str, messages: list, add_generation_prompt: bool, tokens: dict, timeout: float = TIMEOUT) -> str:
    """Render an untrusted chat template in the worker; ValueError on error, timeout or oversized output."""
    request = {"template": template, "messages": messages, "add_generation_prompt": add_generation_prompt,
               "tokens": tokens}  # fmt: skip
    try:
        answer = _WORKER.render(request, timeout)
    except (OSError, json.JSONDecodeError) as exc:  # the worker died mid-answer (out of memory, ...)
        _WORKER.kill()
        raise ValueError(f"the chat template could not be rendered ({type(exc).__name__})") from None
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["text"]


# ------------------------------------------------------------------------------------------ the worker side
def compile_template(template: str, bounded: bool = True):
    """A chat template compiled in Jinja's immutable sandbox with the globals Hugging Face templates use
    (`raise_exception`, `strftime_now`). `bounded` also refuses huge string repetitions and powers while they run:
    for templates from the Hub (the app's own template is compiled unbounded, in process, by tokenizer.py)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(f"chat template: {message}")

    class Bounded(ImmutableSandboxedEnvironment):
        # intercepted operators are not folded at compile time either ('a' * 50000000 used to be compiled in)
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, k in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(k, int) and len(seq) * k > MAX_CHARS:
                        raise ValueError(f"a repetition of {len(seq) * k:,} items (refused)")
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
                raise ValueError(f"a power of {right} (refused)")
            return super().call_binop(context, operator, left, right)

    kind = Bounded if bounded else ImmutableSandboxedEnvironment
    env = kind(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ValueError(f"chat template failed to compile: {exc}") from exc


_compiled = functools.lru_cache(maxsize=16)(compile_template)


def _answer(request: dict) -> dict:
    import jinja2

    try:
        out, n = [], 0
        stream = _compiled(request["template"]).generate(
            messages=request["messages"], add_generation_prompt=request["add_generation_prompt"], **request["tokens"]
        )
        for piece in stream:  # the output is bounded as it grows, not after
            n += len(piece)
            if n > MAX_CHARS:
                return {"error": f"the chat template's output is longer than {MAX_CHARS:,} characters (refused)"}
            out.append(piece)
        return {"text": "".join(out)}
    except MemoryError:
        return {"error": "the chat template needs too much memory (refused)"}
    except jinja2.TemplateError as exc:
        return {"error": f"chat template failed to render: {exc}"}
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        return {"error": f"chat template failed to render: {exc}"[:500]}


def _serve() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # not Linux: the time bound still holds
    import jinja2.sandbox  # noqa: F401 - imported before "ready": a render's time is the render's alone

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            answer = _answer(json.loads(line))
        except MemoryError:
            answer = {"error": "the chat template needs too much memory (refused)"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
