"""The answer format: ground truth rendered as the model's answer JSON, and model text parsed back.

An answer is a JSON list with one item per (human box, object box, object) pair, all its verbs grouped::

    [{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2], "object class": "bicycle",
      "verb class": ["hold", "ride"]}, ...]

Boxes are ``[x1, y1, x2, y2]`` in whatever frame the caller works in (see ``verl_hoi.frames``).
A response wraps it as ``<think>reasoning</think><answer>[...]</answer>``.

>>> from verl_hoi.vocab import object_id, verb_id
>>> pair = HOIPair((1, 20, 110, 220), (5, 60, 150, 260), object_id("bicycle"), (verb_id("hold"), verb_id("ride")))
>>> render_answer([pair])
'[{"human": [1, 20, 110, 220], "object": [5, 60, 150, 260], "object class": "bicycle", "verb class": ["hold", "ride"]}]'
>>> parse_answer(render_response(render_answer([pair]), "a person rides a bike")).pairs == (pair,)
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from verl_hoi.vocab import HOI_CLASSES, OBJECTS, VERBS, object_id, verb_id

__all__ = [
    "MAX_COORD",
    "MAX_ERRORS",
    "MAX_ITEMS",
    "MAX_TEXT_CHARS",
    "HOIPair",
    "ParsedAnswer",
    "parse_answer",
    "render_answer",
    "render_response",
]

MAX_TEXT_CHARS = 100_000
"""Only the first ``MAX_TEXT_CHARS`` characters of a response are read."""
MAX_ITEMS = 100
"""Only the first ``MAX_ITEMS`` items of an answer are read (and counted); the rest are ignored."""
MAX_COORD = 1e6
"""Box coordinates must lie in ``[-MAX_COORD, MAX_COORD]`` (this also rejects NaN and infinities)."""
MAX_ERRORS = 10
"""At most this many error messages are kept."""
_MAX_DEPTH = 6  # nesting accepted by the repair parser; an answer item needs 3


@dataclass(frozen=True)
class HOIPair:
    """One (human box, object box, object) pair with all its verbs.

    Boxes are ``(x1, y1, x2, y2)`` numbers (int or float, as written) in the caller's frame.
    ``verb_ids`` are sorted, unique, and each forms an HOI class with ``object_id``.
    """

    human: tuple[float, float, float, float]
    object: tuple[float, float, float, float]
    object_id: int
    verb_ids: tuple[int, ...]


@dataclass(frozen=True)
class ParsedAnswer:
    """What :func:`parse_answer` found in a response.

    Attributes:
        pairs: valid items in answer order (verbs validated, duplicates collapsed); duplicate items are kept.
        has_think: a ``<think>`` (or, with ``prefilled_think``, the implicit opening) is followed by ``</think>``,
            before ``<answer>`` when there is one.
        has_answer_tags: ``<answer>`` followed later by ``</answer>`` (looked for after the first ``</think>``).
        tags_ok: the whole text is ``<think>...</think> <answer>...</answer>`` with exactly one of each tag and
            only white space around the blocks (``prefilled_think``: no ``<think>``, text starts in the block).
        json_ok: the answer block is strict JSON as it stands (no fence, prose or repair around it).
        truncated: the answer ended inside the list; its complete leading items were kept.
        num_items: items read (valid + invalid), at most ``MAX_ITEMS``.
        num_invalid: items dropped: not an object, missing key, bad box, unknown object, no valid verb.
        errors: short messages, at most ``MAX_ERRORS``.
    """

    pairs: tuple[HOIPair, ...]
    has_think: bool
    has_answer_tags: bool
    tags_ok: bool
    json_ok: bool
    truncated: bool
    num_items: int
    num_invalid: int
    errors: tuple[str, ...]


def _number(value: float) -> float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def render_answer(pairs: Iterable[HOIPair]) -> str:
    """The answer JSON of ground-truth pairs.

    Pairs with the same ``(human, object, object_id)`` become one item whose ``verb class`` is the sorted union
    of their verbs; items keep the order of first appearance; integral coordinates are written as ints.
    The pairs are trusted (no validation).

    >>> render_answer([HOIPair((1.0, 2.0, 3.5, 4.0), (1, 2, 3, 4), 0, (57,))])
    '[{"human": [1, 2, 3.5, 4], "object": [1, 2, 3, 4], "object class": "person", "verb class": ["no interaction"]}]'
    """
    groups: dict[tuple, set[int]] = {}
    for pair in pairs:
        groups.setdefault((pair.human, pair.object, pair.object_id), set()).update(pair.verb_ids)
    items = [
        {
            "human": [_number(v) for v in human],
            "object": [_number(v) for v in obj],
            "object class": OBJECTS[object_index],
            "verb class": [VERBS[v] for v in sorted(verbs)],
        }
        for (human, obj, object_index), verbs in groups.items()
    ]
    return json.dumps(items)


def render_response(answer: str, thinking: str | None = None) -> str:
    """``<think>{thinking}</think><answer>{answer}</answer>``, or only the answer block when ``thinking`` is None.

    >>> render_response("[]", "nobody here")
    '<think>nobody here</think><answer>[]</answer>'
    """
    block = f"<answer>{answer}</answer>"
    return block if thinking is None else f"<think>{thinking}</think>{block}"


# Exact names first (the common case), vocab's normalising lookups as the fallback.
_OBJECT_IDS = {name: i for i, name in enumerate(OBJECTS)}
_VERB_IDS = {name: i for i, name in enumerate(VERBS)}
_VALID = [frozenset(v for v, o in HOI_CLASSES if o == obj) for obj in range(len(OBJECTS))]
_NUM_TYPES = (int, float)


def _box(value: object) -> tuple | None:
    if type(value) is not list or len(value) != 4:
        return None
    x1, y1, x2, y2 = value
    if type(x1) in _NUM_TYPES and type(y1) in _NUM_TYPES and type(x2) in _NUM_TYPES and type(y2) in _NUM_TYPES:  # noqa: SIM102
        if -MAX_COORD <= x1 < x2 <= MAX_COORD and -MAX_COORD <= y1 < y2 <= MAX_COORD:
            return (x1, y1, x2, y2)
    return None


def _item(item: object, index: int, errors: list[str]) -> HOIPair | None:
    """Validate one answer item; report what is wrong into ``errors``."""
    if type(item) is not dict:
        return _error(errors, f"item {index}: not an object")
    human = _box(item.get("human"))
    if human is None:
        return _error(errors, f"item {index}: bad or missing 'human' box")
    obj = _box(item.get("object"))
    if obj is None:
        return _error(errors, f"item {index}: bad or missing 'object' box")
    name = item.get("object class")
    if type(name) is not str:
        return _error(errors, f"item {index}: bad or missing 'object class'")
    obj_id = _OBJECT_IDS.get(name)
    if obj_id is None and (obj_id := object_id(name)) is None:
        return _error(errors, f"item {index}: unknown object {name[:30]!r}")
    verbs = item.get("verb class")
    if type(verbs) is str:
        verbs = verbs.split(",")
    elif type(verbs) is not list:
        return _error(errors, f"item {index}: bad or missing 'verb class'")
    valid = _VALID[obj_id]
    ids = set()
    for verb in verbs:
        vid = _VERB_IDS.get(verb) if type(verb) is str else None
        if vid is None and type(verb) is str:
            if not verb.strip():
                continue
            vid = verb_id(verb)
        if vid in valid:
            ids.add(vid)
        elif vid is None:
            _error(errors, f"item {index}: unknown verb {str(verb)[:30]!r}")
        else:
            _error(errors, f"item {index}: {VERBS[vid]!r} is not a verb of {OBJECTS[obj_id]!r}")
    if not ids:
        return _error(errors, f"item {index}: no valid verb")
    return HOIPair(human, obj, obj_id, tuple(sorted(ids)))


def _error(errors: list[str], message: str) -> None:
    if len(errors) < MAX_ERRORS:
        errors.append(message)


# Repair path: a bounded recursive-descent parser over regex tokens (every pattern linear, no nested repeats).
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<punct>[\[\]{}:,])
    |"(?P<dq>[^"\\]*(?:\\.[^"\\]*)*)"
    |'(?P<sq>[^'\\]*(?:\\.[^'\\]*)*)'
    |(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|-?Infinity|NaN)
    |(?P<word>true|false|null|True|False|None)
    )""",
    re.VERBOSE,
)
_WORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_FENCE_OR_PROSE = object()


class _Incomplete(Exception):
    """The text ended inside a value."""


class _Malformed(Exception):
    """The text has something that is not (repairable) JSON."""


class _Repair:
    """Parses JSON with single quotes, trailing or missing commas and Python literals, depth-bounded."""

    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos, self.end = text, pos, len(text)

    def token(self) -> tuple[str, object]:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise _Incomplete if not self.text[self.pos :].strip() else _Malformed(self.pos)
        self.pos = match.end()
        kind = match.lastgroup
        raw = match.group(kind)
        if kind == "dq" or kind == "sq":
            return "value", _string(raw, kind == "sq")
        if kind == "num":
            return "value", float(raw) if len(raw) > 18 or not raw.lstrip("+-").isdigit() else int(raw)
        if kind == "word":
            return "value", _WORDS[raw]
        return raw, None

    def value(self, depth: int, kind: str, value: object) -> object:
        if kind == "value":
            return value
        if depth >= _MAX_DEPTH or kind not in "[{":
            raise _Malformed(self.pos)
        close = "]" if kind == "[" else "}"
        result: list | dict = [] if kind == "[" else {}
        while True:
            kind, value = self.token()
            if kind == ",":
                continue
            if kind == close:
                return result
            if type(result) is list:
                result.append(self.value(depth + 1, kind, value))
                continue
            if kind != "value" or type(value) is not str or self.token()[0] != ":":
                raise _Malformed(self.pos)
            result[value] = self.value(depth + 1, *self.token())


def _string(raw: str, single: bool) -> str:
    if "\\" not in raw:
        return raw
    if single:
        raw = raw.replace("\\'", "'").replace('"', '\\"')
    try:
        return json.loads(f'"{raw}"')
    except ValueError:
        return raw


def _first_bracket(text: str) -> int:
    positions = [p for p in (text.find("["), text.find("{")) if p >= 0]
    return min(positions) if positions else -1


def _items(block: str, errors: list[str]) -> tuple[list, bool, bool]:
    """The raw items of an answer block: ``(items, json_ok, truncated)``."""
    try:
        value = json.loads(block)
        if type(value) is list:
            return value, True, False
    except (ValueError, RecursionError):
        pass
    start = _first_bracket(block)
    if start < 0:
        _error(errors, "no JSON list in the answer")
        return [], False, False
    stop = max(block.rfind("]"), block.rfind("}"))
    if stop > start:  # a fence or prose around strict JSON
        try:
            value = json.loads(block[start : stop + 1])
            return (value if type(value) is list else [value]), False, False
        except (ValueError, RecursionError):
            pass
    return _repair_items(block, start, errors)


def _repair_items(block: str, start: int, errors: list[str]) -> tuple[list, bool, bool]:
    repair = _Repair(block, start)
    items: list = []
    in_list = block[start] == "["
    if in_list:
        repair.pos += 1
    try:
        while len(items) <= MAX_ITEMS:
            try:
                kind, value = repair.token()
            except _Incomplete:
                return items, False, in_list  # a bare sequence of objects may simply end
            if kind == ",":
                continue
            if kind == "]" and in_list:
                return items, False, False
            items.append(repair.value(1, kind, value))
    except _Incomplete:
        return items, False, True
    except _Malformed as error:
        _error(errors, f"answer is not JSON at character {error.args[0]}")
    return items, False, False


def _tags(text: str, prefilled_think: bool) -> tuple[bool, bool, bool, int, int]:
    """``(has_think, has_answer_tags, tags_ok, start, end)``; ``text[start:end]`` is the answer block."""
    think_open, think_close = text.find("<think>"), text.find("</think>")
    answer_open = text.find("<answer>", think_close + 8 if think_close >= 0 else 0)
    if answer_open < 0:
        answer_open = text.find("<answer>")
    answer_close = text.find("</answer>", answer_open + 8) if answer_open >= 0 else -1
    has_think = (
        think_close >= 0
        and (prefilled_think or 0 <= think_open < think_close)
        and (answer_open < 0 or think_close < answer_open)
    )
    has_answer = answer_close >= 0
    tags_ok = (
        has_think
        and has_answer
        and text.count("<think>") == (0 if prefilled_think else 1)
        and text.count("</think>") == 1
        and text.count("<answer>") == 1
        and text.count("</answer>") == 1
        and (prefilled_think or not text[:think_open].strip())
        and not text[think_close + 8 : answer_open].strip()
        and not text[answer_close + 9 :].strip()
    )
    if answer_open < 0:  # no tags: the answer is whatever follows the think block
        return has_think, False, False, think_close + 8 if think_close >= 0 else 0, len(text)
    return has_think, has_answer, tags_ok, answer_open + 8, answer_close if has_answer else len(text)


def parse_answer(text: str, *, prefilled_think: bool = False) -> ParsedAnswer:
    """Parse a model response into validated pairs and a record of what was wrong; never raises.

    Tolerates missing tags, code fences and prose around the list, single quotes, trailing commas, Python
    literals, a bare sequence of items, verbs as a list or a ``"hold, ride"`` string, names in any case with
    underscores or spaces. A list cut off mid-item keeps its complete leading items (``truncated``). Reads at
    most ``MAX_TEXT_CHARS`` characters and ``MAX_ITEMS`` items; nothing is evaluated as code.

    Args:
        text: the response (anything that is not a ``str`` parses as an empty answer).
        prefilled_think: the chat template already wrote ``<think>``, so ``text`` starts inside the think block.

    >>> parsed = parse_answer("ok</think><answer>[{'human': [0, 0, 5, 9], 'object': [1, 1, 4, 4], "
    ...                       "'object class': 'Cup', 'verb class': 'hold, drink_with',}]", prefilled_think=True)
    >>> parsed.pairs[0].verb_ids, parsed.has_think, parsed.has_answer_tags, parsed.json_ok, parsed.truncated
    ((20, 36), True, False, False, False)
    """
    errors: list[str] = []
    if not isinstance(text, str):
        _error(errors, f"response is a {type(text).__name__}, not text")
        text = ""
    elif len(text) > MAX_TEXT_CHARS:
        _error(errors, f"response longer than {MAX_TEXT_CHARS} characters; the rest is ignored")
        text = text[:MAX_TEXT_CHARS]
    has_think, has_answer, tags_ok, start, end = _tags(text, prefilled_think)
    items, json_ok, truncated = _items(text[start:end], errors)
    if len(items) > MAX_ITEMS:
        _error(errors, f"more than {MAX_ITEMS} items; the rest are ignored")
        items = items[:MAX_ITEMS]
    pairs = [pair for index, item in enumerate(items) if (pair := _item(item, index, errors)) is not None]
    return ParsedAnswer(
        pairs=tuple(pairs),
        has_think=has_think,
        has_answer_tags=has_answer,
        tags_ok=tags_ok,
        json_ok=json_ok,
        truncated=truncated,
        num_items=len(items),
        num_invalid=len(items) - len(pairs),
        errors=tuple(errors),
    )
