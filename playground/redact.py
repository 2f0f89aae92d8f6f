"""Messages shown to visitors carry no server details: no folder of this machine, no C++ source location.

`redact` rewrites the app's working folder to nothing (a relative path), a Hugging Face cache snapshot to the repo
id it holds, the rest of the cache, the temporary folder and the home folder to placeholders, and drops locations
such as `sentencepiece_processor.cc(109)` or `alloc_cpu.cpp:127` that native libraries put in their errors.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

NATIVE_LOCATION = re.compile(r"\[?\b[\w/.\\-]*\.(?:cc|cpp|cxx|c|h|hpp)(?:\(\d+\)|:\d+)\]?:?\s*")
SNAPSHOT = re.compile(r"models--([\w.-]+?)--([\w.-]+)/(?:snapshots|blobs)/[0-9a-f]+")


def _places() -> list[tuple[str, str]]:
    from playground.checkpoints import hub_cache_dir

    places = [(hub_cache_dir(), "<HF cache>"), (tempfile.gettempdir(), "<tmp>"), (str(Path.cwd()), "."),
              (str(Path.home()), "~")]  # fmt: skip
    out = []
    for path, label in places:
        path = path.rstrip(os.sep)
        if len(path) > 1:  # never rewrite "/" itself
            out += [(os.path.realpath(path), label), (path, label)]
    return sorted(set(out), key=lambda p: -len(p[0]))  # the longest (most specific) first


def redact(text: str) -> str:
    text = NATIVE_LOCATION.sub("", str(text))
    for path, label in _places():
        text = re.sub(re.escape(path) + r"(?=[/\\'\" ,:;)]|$)", label.replace("\\", r"\\"), text)
    return SNAPSHOT.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text).replace("<HF cache>/", "")
