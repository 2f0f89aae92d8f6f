"""The chat format: how a prompt and a reply become token ids and labels for the model.

A prompt (text, or role/content messages) is rendered with the tokenizer's own chat template (ours is the course's
`<|user|>` / `<|assistant|>` one, `tokenizer.CHAT_TEMPLATE`) plus the generation prompt that opens the assistant's
turn; the reply follows and ends with end-of-sequence. Only the reply is scored: the prompt's positions and the
padding get the label -100 (`losses.IGNORE_INDEX`), which cross-entropy skips. `collate` pads a batch of pairs,
chosen replies first, then rejected ones.

Used by the preference data (`data.py`, which tokenizes whole datasets), ORPO (`orpo.py`) and the Aligned-vs-base
tab; it depends on no training code, so that data can use it without a cycle.

Notation: B pairs in a batch, T positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from playground.losses import IGNORE_INDEX


def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A prompt given as text becomes one user message; a list of role/content messages is kept as it is."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("The prompt is empty: write a question or instruction first.")
        return [{"role": "user", "content": prompt}]
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt)
    ):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise ValueError(f"A prompt is a string or a non-empty list of role/content messages, got {prompt!r:.200}")


def render_prompt(tokenizer, prompt: str | list[dict]) -> str:
    """The prompt as the model sees it: chat template + the generation prompt that opens the assistant's turn."""
    return tokenizer.render_chat(as_messages(prompt), add_generation_prompt=True)


def prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(as_messages(prompt), add_generation_prompt=True))


def reply_ids(tokenizer, prompt: str | list[dict], reply: str, head: list[int] | None = None) -> list[int]:
    """The ids the model must produce after the prompt: the reply and the template's end of turn (eos for ours).

    Taken from the rendered whole conversation, so the reply is tokenized exactly as in a chat. If a tokenizer
    merges tokens across the prompt/reply boundary, the reply's text is encoded on its own instead.
    `head`: the prompt's ids if already known (saves rendering the template again).
    """
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError("A reply is empty: both the chosen and the rejected reply need some text.")
    messages = as_messages(prompt)
    head = prompt_ids(tokenizer, messages) if head is None else head
    whole = list(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}]))
    if whole[: len(head)] == head and len(whole) > len(head):
        return whole[len(head) :]
    head_text = tokenizer.render_chat(messages, add_generation_prompt=True)
    whole_text = tokenizer.render_chat(messages + [{"role": "assistant", "content": reply}])
    if whole_text.startswith(head_text):
        return list(tokenizer.encode_structured(whole_text[len(head_text) :]))
    return list(tokenizer.encode(reply)) + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])


@dataclass
class EncodedExample:
    """One pair as token ids. chosen_* and rejected_* have the same length (padded), so the two stack into one
    forward pass. Labels are the ids on the reply and -100 on the prompt and on the padding."""

    prompt_len: int
    chosen_input_ids: list[int]
    chosen_labels: list[int]
    rejected_input_ids: list[int]
    rejected_labels: list[int]
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.chosen_input_ids)


def encode_example(tokenizer, prompt: str | list[dict], chosen: str, rejected: str, max_len: int) -> EncodedExample:
    """Token ids and labels of one pair, at most `max_len` tokens each (the model's context).

    Too long: the prompt keeps its last tokens (the end holds the question and the assistant marker), as many as
    leave room for the longer reply but at least max_len // 2; then the replies are cut to what is left, and
    `truncated` is set.
    """
    if not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be a whole number >= 2, got {max_len!r}")
    head = prompt_ids(tokenizer, prompt)
    good, bad = reply_ids(tokenizer, prompt, chosen, head), reply_ids(tokenizer, prompt, rejected, head)
    truncated = len(head) + max(len(good), len(bad)) > max_len
    if truncated:
        keep = max(max_len // 2, max_len - max(len(good), len(bad)))
        head = head[-keep:] if len(head) > keep else head
        room = max_len - len(head)
        good, bad = good[:room], bad[:room]
    length = len(head) + max(len(good), len(bad))
    pad = tokenizer.pad_id

    def row(reply: list[int]) -> tuple[list[int], list[int]]:
        n_pad = length - len(head) - len(reply)
        return head + reply + [pad] * n_pad, [IGNORE_INDEX] * len(head) + reply + [IGNORE_INDEX] * n_pad

    chosen_ids, chosen_labels = row(good)
    rejected_ids, rejected_labels = row(bad)
    return EncodedExample(len(head), chosen_ids, chosen_labels, rejected_ids, rejected_labels, truncated)


def collate(
    examples: Sequence[EncodedExample | dict], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """B pairs -> input_ids (2B, T) and labels (2B, T): the B chosen rows first, then the B rejected rows.

    Rows are right-padded to the longest (pad_id, label -100). Right padding needs no attention mask in a causal
    model: a real token never attends to the padding that comes after it.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    rows = [e if isinstance(e, dict) else asdict(e) for e in examples]
    seqs = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
    labs = [r["chosen_labels"] for r in rows] + [r["rejected_labels"] for r in rows]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (2B, T)
    labels = torch.full((len(seqs), T), IGNORE_INDEX, dtype=torch.long)  # (2B, T)
    for i, (s, lab) in enumerate(zip(seqs, labs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return ids.to(device), labels.to(device)
