"""Issue 23 (8): files offered for download do not pile up in the temporary folder."""

from __future__ import annotations

import os
import time

from playground.ui import common


def test_download_folders_older_than_a_minute_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    old = common.download_dir()
    (old / "table.csv").write_text("a,b\n")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    fresh = common.download_dir()  # prunes first
    assert not old.exists() and fresh.exists() and fresh.parent == tmp_path
    csv = common.table_to_csv({"headers": ["x"], "data": [[1], [2]]})
    assert open(csv).read().splitlines() == ["x", "1", "2"]
    assert sorted(p.name.startswith(common.DOWNLOAD_PREFIX) for p in tmp_path.iterdir()) == [True, True]


def test_old_files_matching_a_pattern_go_and_recent_ones_stay(tmp_path):
    old, new = tmp_path / "a.png", tmp_path / "b.png"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert common.prune_downloads(keep_seconds=600, folder=tmp_path, pattern="*.png") == 1
    assert not old.exists() and new.exists()
