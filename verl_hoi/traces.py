"""Cleaning and filtering the reasoning traces a teacher writes.

:func:`clean_trace` strips a trace; :func:`check_trace` says why it is unusable as an SFT target
(one of :data:`REJECT_REASONS`: empty, a refusal, too long, a leak of the given answer, or stray
``<think>``/``<answer>`` tags), or None when it is fine. Pure functions, no I/O.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TRACE_CHARS", "REJECT_REASONS", "check_trace", "clean_trace"]

REJECT_REASONS = ("empty", "refusal", "too_long", "leak", "tags")
MAX_TRACE_CHARS = 4000
"""Longest trace accepted by default."""
_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry,|i can'?t|i cannot|i'?m unable|i am unable|i'?m not able|"
    r"i am not able|as an ai|unfortunately,? i)",
    re.IGNORECASE,
)
_LEAK = re.compile(
    r"ground[\s-]*truth|annotat(?:ed|ion|ions|or)\b|\blabels? (?:say|says|show|given|provided)|"
    r"(?:reference|provided|given|expected|correct|target|supplied) answer|"
    r"answer (?:was |is )?(?:provided|given|supplied)|"
    r"(?:was|were|am|been|being) (?:given|provided|told|shown|supplied) (?:with )?(?:the |an |this )?"
    r"(?:answer|solution|annotations?|labels?)|according to the (?:answer|solution|labels?)",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?\s*(?:think|answer)\s*>", re.IGNORECASE)


def clean_trace(text: str | None) -> str:
    """Strip whitespace and one ``<think>...</think>`` wrapper around the whole text.

    >>> clean_trace("  <think>Two people.</think> ")
    'Two people.'
    """
    text = (text or "").strip()
    if text[:7].lower() == "<think>" and text[-8:].lower() == "</think>":
        text = text[7:-8].strip()
    return text


def check_trace(text: str, *, max_chars: int = MAX_TRACE_CHARS, finish_reason: str | None = None) -> str | None:
    """Why a cleaned trace is unusable (one of ``REJECT_REASONS``), or None when it is fine.

    - ``empty``: no text; ``too_long``: over ``max_chars`` or cut by the token limit
      (``finish_reason == "length"``); ``refusal``: starts like a refusal ("I'm sorry", "I can't");
      ``leak``: says it was given the answer ("ground truth", "the provided answer",
      "annotation"); ``tags``: contains ``<think>``/``<answer>`` tags, which would break the
      target format.

    >>> check_trace("There are two people; the one on the left rides the bicycle.") is None
    True
    >>> check_trace("I'm sorry, I can't help with that."), check_trace("The ground truth lists a horse.")
    ('refusal', 'leak')
    """
    if not text.strip():
        return "empty"
    if finish_reason == "length" or len(text) > max_chars:
        return "too_long"
    if _REFUSAL.match(text[:200]):
        return "refusal"
    if _LEAK.search(text):
        return "leak"
    if _TAG.search(text):
        return "tags"
    return None
