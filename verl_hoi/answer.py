"""The answer format: ground truth rendered as the model's answer JSON, and model text parsed back.

An answer is a JSON list with one item per (human box, object box, object) pair, all its verbs grouped::

    [{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2], "object class": "bicycle",
      "verb class": ["hold", "ride"]}, ...]

Boxes are ``[x1, y1, x2, y2]`` in whatever frame the caller works in (see ``verl_hoi.frames``).
A response wraps it as ``<think>reasoning</think><answer>[...]</answer>``.

Line comments are read past: from the list's first ``[`` or ``{`` on, a ``//`` or ``#`` outside a string starts
a comment that runs to the end of its line and is blanked out before parsing. A string runs to its closing quote
(double or single, backslash escapes), or to the end of a cut-off text, so ``"#1"`` or a URL is never cut. An
answer with a comment is not strict JSON (``json_ok`` is false), but its pairs are read.

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
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from verl_hoi.vocab import OBJECTS, VERBS, object_id, valid_verbs, verb_id

__all__ = [
    "MAX_COORD",
    "MAX_ERRORS",
    "MAX_ITEMS",
    "MAX_TEXT_CHARS",
    "HOIPair",
    "ParsedAnswer",
    "group_triplets",
    "merge_pairs",
    "parse_answer",
    "render_answer",
    "render_response",
]

MAX_TEXT_CHARS = 100_000
"""Only the first ``MAX_TEXT_CHARS`` characters of a response are read."""
MAX_ITEMS = 100
"""By default only the first ``MAX_ITEMS`` items of an answer are read (and counted); the rest are ignored."""
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
        has_answer_tags: ``<answer>`` followed later by ``</answer>`` (looked for after the first ``</think>``);
            the answer block is the text between them, else the text after ``</think>`` (or all of it).
        tags_ok: the whole text is ``<think>...</think> <answer>...</answer>`` with exactly one of each tag and
            only white space around the blocks (``prefilled_think``: no ``<think>``, text starts in the block).
        json_ok: the answer block is a strict JSON list as it stands (no fence, prose, comment, NaN or repair).
        truncated: the list ends without its closing bracket; its complete leading items were kept.
        overflow: the answer had more than ``max_items`` items; only the first ``max_items`` were read.
        num_items: items read (valid + invalid), at most ``max_items``.
        num_invalid: items dropped: not an object, missing key (keys are spelled exactly), bad box, unknown
            object, no valid verb.
        errors: short messages, at most ``MAX_ERRORS``.
    """

    pairs: tuple[HOIPair, ...]
    has_think: bool
    has_answer_tags: bool
    tags_ok: bool
    json_ok: bool
    truncated: bool
    overflow: bool
    num_items: int
    num_invalid: int
    errors: tuple[str, ...]


_Key = TypeVar("_Key", bound=Hashable)
_Value = TypeVar("_Value")


def group_triplets(keys: Iterable[_Key], values: Iterable[_Value]) -> list[tuple[_Key, list[_Value]]]:
    """Triplets grouped into pairs: ``[(key, values)]`` for the equal ``keys``, groups and values in first-seen order.

    A triplet's key is what makes its pair: both boxes, and the object where one pair holds one object.

    >>> group_triplets([((0, 0, 5, 5), (2, 2, 9, 9)), ((1, 1, 6, 6), (2, 2, 9, 9)), ((0, 0, 5, 5), (2, 2, 9, 9))],
    ...                ["ride", "hold", "sit on"])
    [(((0, 0, 5, 5), (2, 2, 9, 9)), ['ride', 'sit on']), (((1, 1, 6, 6), (2, 2, 9, 9)), ['hold'])]
    """
    groups: dict[_Key, list[_Value]] = {}
    for key, value in zip(keys, values, strict=True):
        groups.setdefault(key, []).append(value)
    return list(groups.items())


def merge_pairs(pairs: Iterable[HOIPair]) -> list[HOIPair]:
    """Pairs with the same ``(human, object, object_id)`` merged into one with the sorted union of their verbs.

    Pairs keep the order of their first appearance. The pairs are trusted (no validation).

    >>> merge_pairs([HOIPair((0, 0, 5, 5), (2, 2, 9, 9), 0, (76,)), HOIPair((0, 0, 5, 5), (2, 2, 9, 9), 0, (57, 76))])
    [HOIPair(human=(0, 0, 5, 5), object=(2, 2, 9, 9), object_id=0, verb_ids=(57, 76))]
    """
    pairs = list(pairs)
    groups = group_triplets(((p.human, p.object, p.object_id) for p in pairs), (p.verb_ids for p in pairs))
    return [
        HOIPair(human, obj, object_index, tuple(sorted({v for verbs in verb_lists for v in verbs})))
        for (human, obj, object_index), verb_lists in groups
    ]


def _number(value: float) -> int | float:
    value = float(value)  # also NumPy scalars, which json cannot write
    return int(value) if value.is_integer() else value


def render_answer(pairs: Iterable[HOIPair]) -> str:
    """The answer JSON of ground-truth pairs.

    Pairs with the same ``(human, object, object_id)`` become one item (:func:`merge_pairs`); integral
    coordinates are written as ints. The pairs are trusted (no validation).

    >>> render_answer([HOIPair((1.0, 2.0, 3.5, 4.0), (1, 2, 3, 4), 0, (57,))])
    '[{"human": [1, 2, 3.5, 4], "object": [1, 2, 3, 4], "object class": "person", "verb class": ["no interaction"]}]'
    """
    items = [
        {
            "human": [_number(v) for v in pair.human],
            "object": [_number(v) for v in pair.object],
            "object class": OBJECTS[pair.object_id],
            "verb class": [VERBS[v] for v in pair.verb_ids],
        }
        for pair in merge_pairs(pairs)
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
_VERBS_OF = [{VERBS[v]: v for v in valid_verbs(obj)} for obj in range(len(OBJECTS))]
_NUM_TYPES = (int, float)


def _box(value: object) -> tuple | None:
    if type(value) is list and len(value) == 4:
        x1, y1, x2, y2 = value
        if (
            type(x1) in _NUM_TYPES
            and type(y1) in _NUM_TYPES
            and type(x2) in _NUM_TYPES
            and type(y2) in _NUM_TYPES
            and -MAX_COORD <= x1 < x2 <= MAX_COORD
            and -MAX_COORD <= y1 < y2 <= MAX_COORD
        ):
            return tuple(value)
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
        verbs = [verb.strip() for verb in verbs.split(",")]
    elif type(verbs) is not list:
        return _error(errors, f"item {index}: bad or missing 'verb class'")
    table = _VERBS_OF[obj_id]
    found = []
    for verb in verbs:
        vid = table.get(verb) if type(verb) is str else None
        if vid is not None or (vid := _slow_verb(verb, obj_id, index, errors)) is not None:
            found.append(vid)
    if not found:
        return _error(errors, f"item {index}: no valid verb")
    return HOIPair(human, obj, obj_id, (found[0],) if len(found) == 1 else tuple(sorted(set(found))))


def _slow_verb(verb: object, obj_id: int, index: int, errors: list[str]) -> int | None:
    """Id of a verb not spelled exactly (valid with the object), or None after reporting why not; blanks skip."""
    if type(verb) is not str:
        return _error(errors, f"item {index}: a verb is not a string ({type(verb).__name__})")
    if not verb.strip():
        return None
    vid = verb_id(verb)
    if vid is None:
        _error(errors, f"item {index}: unknown verb {verb[:30]!r}")
    elif VERBS[vid] not in _VERBS_OF[obj_id]:
        _error(errors, f"item {index}: {VERBS[vid]!r} is not a verb of {OBJECTS[obj_id]!r}")
        vid = None
    return vid


def _error(errors: list[str], message: str) -> None:
    if len(errors) < MAX_ERRORS:
        errors.append(message)


def _items(block: str, errors: list[str], max_items: int) -> tuple[list, bool, bool]:
    """The raw items of an answer block: ``(items, json_ok, truncated)``."""
    value = _loads(block)
    if value is not None:
        return value, True, False
    start = min((p for p in (block.find("["), block.find("{")) if p >= 0), default=-1)
    if start < 0:
        _error(errors, "no JSON list in the answer")
        return [], False, False
    block = block[:start] + _blank_comments(block[start:])
    # Cheap repairs first (orjson on a fixed-up copy); the token parser below handles everything else.
    region = block[start : max(block.rfind("]"), block.rfind("}")) + 1]  # drops a fence or prose around it
    value = _loads_list(region if block[start] == "[" else f"[{region}]")  # a bare sequence of items
    if value is not None:
        return value, False, False
    if block[start] == "[":  # the list up to its last complete item: cut off, or other brackets follow it
        cut = block.rfind("}") + 1
        value = _loads_list(block[start:cut] + "]")
        if value is not None:
            return value, False, not block[cut:].lstrip(" \t\r\n,").startswith("]")
    return _repair_items(block, start, errors, max_items)


_TRAILING_COMMA = re.compile(r",(\s*[\]}])")


def _loads(text: str) -> list | None:
    """The JSON list ``text`` holds, or None."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is list else None


def _loads_list(text: str) -> list | None:
    """The list in ``text`` as it stands or with single quotes and trailing commas fixed, or None."""
    value = _loads(text)
    if value is None:
        value = _loads(_TRAILING_COMMA.sub(r"\1", text if '"' in text else text.replace("'", '"')))
    return value


# The inside of a double- and of a single-quoted string (unrolled loops: linear, no ambiguous repeats).
_DOUBLE = r'[^"\\]*(?:\\.[^"\\]*)*'
_SINGLE = r"[^'\\]*(?:\\.[^'\\]*)*"
# A string (a quote never closed runs to the end: the text was cut inside it), else a line comment.
_COMMENT = re.compile(rf"""("{_DOUBLE}"|'{_SINGLE}'|["'](?s:.*))|(?://|#).*""")


def _blank_comments(text: str) -> str:
    """``text`` with its line comments turned into spaces (so error positions still point into the answer)."""
    return _COMMENT.sub(lambda match: match[1] or " " * len(match[0]), text)


# A bounded recursive-descent parser over regex tokens (each pattern linear: no nested or ambiguous repeats).
_TOKEN = re.compile(
    rf"""\s*(?:([\[\]{{}}:,])|"({_DOUBLE})"|'({_SINGLE})'"""
    r"""|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?(?:\d+|\s*\Z))?|-?Infinity|NaN|true|false|null|True|False|None))"""
)
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
# What the end of the text can leave of a token: the start of a literal, or of a number before its first digit.
_PARTIAL = {word[:n] for word in (*_LITERALS, "NaN", "-Infinity", "Infinity") for n in range(1, len(word))}
_PARTIAL |= {"+", ".", "+.", "-."}


class _Incomplete(Exception):
    """The text ended inside a value."""


class _Malformed(Exception):
    """The text holds something that is not (repairable) JSON."""


class _Repair:
    """Reads JSON with single quotes, trailing or missing commas, Python literals and NaN; depth-bounded."""

    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos

    def token(self) -> tuple[str, object]:
        """``(punctuation, None)`` or ``("", scalar value)``."""
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            rest = self.text[self.pos :].strip()
            if not rest or rest[0] in "\"'" or rest in _PARTIAL:  # the text ends inside a token
                raise _Incomplete
            raise _Malformed(f"answer is not JSON near character {self.pos}")
        self.pos = match.end()
        punct, double, single, scalar = match.groups()
        if punct:
            return punct, None
        if scalar is None:
            return "", _string(double, False) if double is not None else _string(single, True)
        if scalar in _LITERALS:
            return "", _LITERALS[scalar]
        if scalar.rstrip()[-1] in "eE+-":  # an exponent without digits, which _TOKEN takes only at the end
            raise _Incomplete
        return "", float(scalar) if len(scalar) > 18 or not scalar.lstrip("+-").isdigit() else int(scalar)

    def value(self, depth: int, punct: str, value: object) -> object:
        if not punct:
            return value
        if punct not in "[{":
            raise _Malformed(f"answer is not JSON near character {self.pos}")
        if depth >= _MAX_DEPTH:
            raise _Malformed(f"answer nested deeper than {_MAX_DEPTH} levels")
        close = "]" if punct == "[" else "}"
        result: list | dict = [] if punct == "[" else {}
        while True:
            punct, value = self.token()
            if punct == close:
                return result
            if punct == ",":
                continue
            if close == "]":
                result.append(self.value(depth + 1, punct, value))
            elif punct or type(value) is not str or self.token()[0] != ":":
                raise _Malformed(f"answer is not JSON near character {self.pos}")
            else:
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


def _repair_items(block: str, start: int, errors: list[str], max_items: int) -> tuple[list, bool, bool]:
    repair = _Repair(block, start + (block[start] == "["))
    items: list = []
    try:
        while len(items) <= max_items:
            punct, value = repair.token()
            if punct == "]":
                break
            if punct != ",":
                items.append(repair.value(1, punct, value))
    except _Incomplete:
        return items, False, True
    except _Malformed as error:
        _error(errors, str(error))
    return items, False, False


_TAG = re.compile(r"</?(?:think|answer)>")
_TAGS_OK = (["<think>", "</think>", "<answer>", "</answer>"], ["</think>", "<answer>", "</answer>"])


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
        and _TAG.findall(text) == _TAGS_OK[prefilled_think]
        and (prefilled_think or not text[:think_open].strip())
        and not text[think_close + 8 : answer_open].strip()
        and not text[answer_close + 9 :].strip()
    )
    if answer_open < 0:  # no tags: the answer is whatever follows the think block
        return has_think, False, False, think_close + 8 if think_close >= 0 else 0, len(text)
    return has_think, has_answer, tags_ok, answer_open + 8, answer_close if has_answer else len(text)


def parse_answer(text: str, *, prefilled_think: bool = False, max_items: int = MAX_ITEMS) -> ParsedAnswer:
    """Parse a model response into validated pairs and a record of what was wrong; never raises.

    Tolerates missing tags, code fences and prose around the list, ``//`` and ``#`` line comments (see the
    module docstring), single quotes, trailing commas, Python literals, a bare sequence of items, verbs as a
    list or a ``"hold, ride"`` string, names in any case with underscores or spaces. A list cut off mid-item
    keeps its complete leading items (``truncated``). Reads at most ``MAX_TEXT_CHARS`` characters and
    ``max_items`` items; nothing is evaluated as code.

    Args:
        text: the response (anything that is not a ``str`` parses as an empty answer).
        prefilled_think: the chat template already wrote ``<think>``, so ``text`` starts inside the think block.
        max_items: read at most this many items (``overflow`` says when there were more).

    >>> parsed = parse_answer("ok</think><answer>[{'human': [0, 0, 5, 9], 'object': [1, 1, 4, 4], "
    ...                       "'object class': 'Cup', 'verb class': 'hold, drink_with',}]", prefilled_think=True)
    >>> parsed.pairs[0].verb_ids, parsed.has_think, parsed.has_answer_tags, parsed.json_ok, parsed.truncated
    ((20, 36), True, False, False, False)
    """
    if not isinstance(text, str):
        return ParsedAnswer(
            (), False, False, False, False, False, False, 0, 0, (f"response is a {type(text).__name__}, not text",)
        )
    errors: list[str] = []
    if len(text) > MAX_TEXT_CHARS:
        _error(errors, f"response longer than {MAX_TEXT_CHARS} characters; the rest is ignored")
        text = text[:MAX_TEXT_CHARS]
    has_think, has_answer, tags_ok, start, end = _tags(text, prefilled_think)
    items, json_ok, truncated = _items(text[start:end], errors, max_items)
    overflow = len(items) > max_items
    if overflow:
        _error(errors, f"more than {max_items} items; the rest are ignored")
        items = items[:max_items]
    pairs = [pair for index, item in enumerate(items) if (pair := _item(item, index, errors)) is not None]
    return ParsedAnswer(
        pairs=tuple(pairs),
        has_think=has_think,
        has_answer_tags=has_answer,
        tags_ok=tags_ok,
        json_ok=json_ok,
        truncated=truncated,
        overflow=overflow,
        num_items=len(items),
        num_invalid=len(items) - len(pairs),
        errors=tuple(errors),
    )
