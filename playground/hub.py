"""Hugging Face Hub names and the offline switch: one rule for what counts as a Hub id, and one reading of
HF_HUB_OFFLINE, for models, tokenizers and shared links alike."""

from __future__ import annotations

import os
import re

# org/name[@revision], each part as the Hub allows it (96 characters a name); never a path, a URL or '..'.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(@[A-Za-z0-9][\w./-]{0,99})?$")


def is_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and ".." not in text and "//" not in text


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """'org/name' or 'org/name@revision' -> (repo, revision); anything else (URLs, '..', spaces) -> ValueError."""
    if not is_hub_id(text):
        raise ValueError(f"{text!r} is not a bundled name, a folder, or a Hub id like 'org/name' or 'org/name@rev'")
    repo, _, revision = text.partition("@")
    return repo, revision or None


def hub_offline() -> bool:
    """True when the Hub must not be asked: HF_HUB_OFFLINE set (1/true/yes/on), read now or by huggingface_hub."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)
