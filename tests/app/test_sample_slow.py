"""Sample tab's slow motion: every generated token is its own streamed update, each text one token longer than the
last (without it a fast model sends several tokens per update)."""

from __future__ import annotations

import re

from playground.ui import common


def _updates(client, slow: bool) -> list[tuple[str, str]]:
    model = common.model_choices()[0]
    job = client.submit(model, "Once upon a time", 1.0, 50, 1.0, 12, 1, 3, slow, api_name="/sample_generate")
    out = [tuple(u) for u in job]
    return out or [tuple(job.result())]


def test_slow_motion_streams_one_token_per_update(client):
    updates = _updates(client, slow=True)
    n = int(re.search(r"Done: 1 answer\(s\), (\d+) tokens", updates[-1][1]).group(1))
    streamed = updates[:-1]
    assert len(streamed) == n  # one screen update per token, then the final one
    counts = [int(re.search(r"(\d+) tokens…", status).group(1)) for _, status in streamed]
    assert counts == list(range(1, n + 1))
    assert all(b[0].startswith(a[0][: len(a[0]) - 4]) for a, b in zip(streamed, streamed[1:], strict=False))
