"""Link values are never trusted: numbers clamped onto the component's range, choices checked, paths refused."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

from playground.ui import share  # noqa: E402


def test_numbers_are_clamped_and_snapped():
    slider = gr.Slider(0.0, 5.0, step=0.05)
    assert share.coerce(slider, "99") == 5.0
    assert share.coerce(slider, "0.333") == pytest.approx(0.35)
    assert share.coerce(gr.Number(precision=0, minimum=0), "-4") == 0
    assert share.coerce(gr.Slider(1, 512, step=1), "40.4") == 40
    for bad in ("nan", "inf", "abc"):
        with pytest.raises(ValueError):
            share.coerce(slider, bad)


def test_choices_and_paths():
    picker = gr.Dropdown(["gpt-tiny", "llama-base"], allow_custom_value=True)
    assert share.coerce(picker, "llama-base") == "llama-base"
    assert share.coerce(picker, "HuggingFaceTB/SmolLM2-135M@main") == "HuggingFaceTB/SmolLM2-135M@main"
    for bad in ("/etc/passwd", "../secret", "./folder", "a/../b"):
        with pytest.raises(ValueError):
            share.coerce(picker, bad)
    with pytest.raises(ValueError):
        share.coerce(gr.Radio(["float32", "float16"]), "float64")


def test_text_and_checkbox():
    assert share.coerce(gr.Textbox(), "x" * 10_000) == "x" * share.LINK_TEXT_CHARS
    assert share.coerce(gr.Checkbox(), "true") is True and share.coerce(gr.Checkbox(), "0") is False
    with pytest.raises(ValueError):
        share.coerce(gr.Checkbox(), "maybe")


def test_presets_are_valid_links():
    from urllib.parse import parse_qsl

    for label, query in share.PRESETS.items():
        params = dict(parse_qsl(query))
        assert params["tab"] in share.TAB_IDS, label


def test_table_to_csv(tmp_path):
    import csv

    import pandas as pd

    from playground.ui import common

    for value in (
        {"headers": ["step", "loss"], "data": [[1, 2.5], [2, 2.25]]},
        pd.DataFrame({"step": [1, 2], "loss": [2.5, 2.25]}),
    ):
        with open(common.table_to_csv(value), newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["step", "loss"] and [float(x) for x in rows[2]] == [2.0, 2.25]
    with pytest.raises(ValueError):
        common.table_to_csv({"headers": ["a"], "data": []})
