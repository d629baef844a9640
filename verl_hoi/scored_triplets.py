"""Model responses to scored HOI detections in the original image frame.

A response is parsed with :func:`verl_hoi.answer.parse_answer`, its boxes are mapped back from the
row's frame with :func:`verl_hoi.frames.from_frame`, every pair is expanded to one triplet per verb
(pairs in answer order, verbs in id order) and each triplet gets a score by a score policy, the same
registry for responses and for detection lines (``verl_hoi.prediction_files``):

- ``given``: detections that already carry a ``score`` (not applicable to responses);
- ``rank`` (HOI-R1): the ``i``-th of ``n`` triplets scores ``1 - 0.5 * i / (n - 1)`` (1.0 when alone);
- ``constant``: every triplet scores 1.0, so ties fall back to image order, then answer order;
- ``logprob``: the mean log-probability of the generated tokens that overlap the characters of the
  triplet's answer item (``{...}``), from the ``token_logprobs`` / ``token_offsets`` that
  ``verl_hoi.predict --logprobs`` stores; all triplets of an item share it; a pair whose item text
  cannot be located gets the mean over the whole answer (not applicable to detections);
- ``auto`` (:data:`AUTO_POLICY`) is not a policy but a choice made per kind of line by
  :func:`resolve_policy`: ``given`` for detections, ``rank`` for responses.

Another project adds a policy with :func:`register_score_policy`; every consumer looks the registry up
when it scores, so a policy registered after import is accepted everywhere.

At most :data:`MAX_PER_IMAGE` triplets per image are kept, the best scored (stable: earlier first),
as HOI-R1's evaluation does.

>>> response = ('<answer>[{"human": [0, 0, 50, 100], "object": [10, 10, 40, 40], "object class": "cup", '
...             '"verb class": ["hold", "drink with"]}]</answer>')
>>> dets = response_detections(response, frame="norm1000", image_size=(200, 100), model_size=(196, 112))
>>> dets.hoi.tolist(), dets.score.tolist(), dets.human.tolist()
([296, 297], [1.0, 0.5], [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from verl_hoi.answer import HOIPair, parse_answer
from verl_hoi.frames import Size, from_frame
from verl_hoi.vocab import hoi_id

__all__ = [
    "AUTO_POLICY",
    "MAX_PER_IMAGE",
    "ImageDetections",
    "ScoreInputs",
    "ScorePolicy",
    "get_score_policy",
    "item_spans",
    "rank_scores",
    "register_score_policy",
    "resolve_policy",
    "response_detections",
    "score_policy_choices",
    "token_arrays",
    "triplets",
]

MAX_PER_IMAGE = 100
AUTO_POLICY = "auto"
_AUTO_CHOICE: dict[str, str] = {"detections": "given", "responses": "rank"}
"""What :data:`AUTO_POLICY` stands for, per kind of prediction line."""


@dataclass(frozen=True)
class ImageDetections:
    """The triplets of one image (``n`` of them), boxes ``[x1, y1, x2, y2]`` in the original frame.

    Attributes:
        hoi: ``(n,)`` int64 HOI class.
        human, object: ``(n, 4)`` float64 boxes.
        score: ``(n,)`` float64.
        num_pairs: valid answer items parsed; ``num_invalid``: items dropped by the parser.
    """

    hoi: np.ndarray
    human: np.ndarray
    object: np.ndarray
    score: np.ndarray
    num_pairs: int = 0
    num_invalid: int = 0


def rank_scores(n: int) -> np.ndarray:
    """HOI-R1's position score ``1 - 0.5 * i / (n - 1)`` for ``i = 0 .. n-1`` (``[1.0]`` for one).

    >>> rank_scores(3).tolist(), rank_scores(1).tolist()
    ([1.0, 0.75, 0.5], [1.0])
    """
    if n <= 1:
        return np.ones(n)
    return 1 - 0.5 * np.arange(n) / (n - 1)


@dataclass(frozen=True)
class ScoreInputs:
    """What a score policy may rank the ``count`` triplets of one image by (arrays are ``(count,)``).

    Attributes:
        count: number of triplets, in line order.
        given: the detections' own ``score`` values; only for policies with ``uses_given_scores``.
        logprobs: the mean token log-probability of each triplet's answer item; only for policies with
            ``uses_logprobs``.
    """

    count: int
    given: np.ndarray | None = None
    logprobs: np.ndarray | None = None


@dataclass(frozen=True)
class ScorePolicy:
    """A registered score policy (see :func:`register_score_policy`).

    A policy that ranks by given scores applies to detection lines only (responses carry none), one that
    ranks by log-probabilities to responses only; any other to both.
    """

    name: str
    score: Callable[[ScoreInputs], np.ndarray]
    uses_given_scores: bool = False
    uses_logprobs: bool = False

    def __call__(self, inputs: ScoreInputs) -> np.ndarray:
        """``(count,)`` float64 scores of the triplets.

        Raises:
            ValueError: the policy's function returned another shape.
        """
        score = np.asarray(self.score(inputs), dtype=np.float64)
        if score.shape != (inputs.count,):
            raise ValueError(f"score policy {self.name!r} returned shape {score.shape}, expected ({inputs.count},)")
        return score


_POLICIES: dict[str, ScorePolicy] = {}


def register_score_policy(
    name: str,
    score: Callable[[ScoreInputs], np.ndarray],
    *,
    uses_given_scores: bool = False,
    uses_logprobs: bool = False,
) -> None:
    """Register a score policy under ``name`` (``--score-policy`` of the command lines).

    Args:
        name: the policy's name; not ``auto`` nor a registered one.
        score: ``fn(ScoreInputs) -> (count,)`` scores; only the order within an image matters.
        uses_given_scores: ``score`` reads ``ScoreInputs.given``; detections must then carry a ``score``.
        uses_logprobs: ``score`` reads ``ScoreInputs.logprobs``; responses must then carry token log-probabilities.

    Raises:
        ValueError: a name taken, or a policy that needs both given scores and log-probabilities.
    """
    if name == AUTO_POLICY or name in _POLICIES:
        raise ValueError(f"score policy {name!r} is already defined")
    if uses_given_scores and uses_logprobs:
        raise ValueError(
            f"score policy {name!r} would apply to nothing: no line has given scores and log-probabilities"
        )
    _POLICIES[name] = ScorePolicy(name, score, uses_given_scores, uses_logprobs)


def score_policy_choices() -> tuple[str, ...]:
    """:data:`AUTO_POLICY` and the registered policies, in registration order (read at each call)."""
    return (AUTO_POLICY, *_POLICIES)


def resolve_policy(name: str, kind: str) -> str:
    """``name``, or for :data:`AUTO_POLICY` the policy it stands for on ``kind`` (``"detections"`` or ``"responses"``).

    >>> resolve_policy("auto", "responses"), resolve_policy("constant", "responses")
    ('rank', 'constant')
    """
    return _AUTO_CHOICE[kind] if name == AUTO_POLICY else name


def get_score_policy(name: str) -> ScorePolicy | None:
    """The registered policy ``name``, or None (also for a name that is not a string)."""
    return _POLICIES.get(name) if isinstance(name, str) else None


register_score_policy("given", lambda inputs: inputs.given, uses_given_scores=True)
register_score_policy("rank", lambda inputs: rank_scores(inputs.count))
register_score_policy("constant", lambda inputs: np.ones(inputs.count))
register_score_policy("logprob", lambda inputs: inputs.logprobs, uses_logprobs=True)


def triplets(pairs: Sequence[HOIPair]) -> tuple[np.ndarray, np.ndarray]:
    """``(pair_index, hoi)``, both ``(n,)`` int64: one row per (pair, verb), answer order.

    >>> from verl_hoi.vocab import object_id, verb_id
    >>> triplets([HOIPair((0, 0, 1, 1), (0, 0, 1, 1), object_id("cup"), (verb_id("hold"), verb_id("wash")))])
    (array([0, 0]), array([297, 303]))
    """
    rows = [(k, hoi_id(verb, pair.object_id)) for k, pair in enumerate(pairs) for verb in pair.verb_ids]
    rows = [(k, h) for k, h in rows if h is not None]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pair_index, hoi = np.array(rows, dtype=np.int64).T
    return pair_index, hoi


def item_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of the top-level ``{...}`` objects after the think block.

    Quotes (single or double) are honoured so braces inside names do not count. Linear time.

    >>> item_spans('<think>{x}</think><answer>[{"a": "}"}, {"b": 1}]</answer>')
    [(27, 37), (39, 47)]
    """
    think_end = text.find("</think>")
    pos = think_end + len("</think>") if think_end >= 0 else 0
    spans: list[tuple[int, int]] = []
    depth, start, quote = 0, 0, ""
    for i in range(pos, len(text)):
        ch = text[i]
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'" and depth:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans


def _array(values: object, name: str, integers: bool) -> np.ndarray:
    """``values`` (a list, or a 1-D NumPy array) as float64, or int64 with ``integers``; bools, strings and
    nulls are not numbers, and with ``integers`` neither are floats."""
    kinds, types, what = ("iu", {int}, "integers") if integers else ("iuf", {int, float}, "numbers")
    if isinstance(values, np.ndarray):
        ok = values.ndim == 1 and values.dtype.kind in kinds
    else:
        ok = isinstance(values, (list, tuple)) and {type(v) for v in values} <= types
    if not ok:
        raise ValueError(f"{name} must be a list of {what}; got {values!r:.60}")
    return np.asarray(values, dtype=np.int64 if integers else np.float64)


def token_arrays(
    text: str, token_logprobs: Sequence[float], token_offsets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(logprobs, starts)`` of a response's generated tokens, checked against each other and ``text``.

    Raises:
        ValueError: not lists of numbers (offsets: integers), a log-probability that is not finite,
            lengths that differ, offsets that decrease or lie outside ``[0, len(text)]``.
    """
    logprobs = _array(token_logprobs, "token_logprobs", integers=False)
    starts = _array(token_offsets, "token_offsets", integers=True)
    if len(logprobs) != len(starts):
        raise ValueError(f"token_logprobs has {len(logprobs)} entries but token_offsets has {len(starts)}")
    bad = np.flatnonzero(~np.isfinite(logprobs))
    if len(bad):
        raise ValueError(f"token_logprobs[{bad[0]}] is not a finite number: {logprobs[bad[0]]}")
    if len(starts) and (starts[0] < 0 or starts[-1] > len(text) or (np.diff(starts) < 0).any()):
        raise ValueError(f"token_offsets must not decrease and must lie in [0, {len(text)}] (the response's length)")
    return logprobs, starts


def _pair_confidences(
    text: str, pairs: Sequence[HOIPair], token_logprobs: Sequence[float], token_offsets: Sequence[int]
) -> np.ndarray:
    """``(len(pairs),)`` mean log-probability of the tokens overlapping each pair's item text."""
    logprobs, starts = token_arrays(text, token_logprobs, token_offsets)
    ends = np.r_[starts[1:], len(text)] if len(starts) else starts

    def mean_over(a: int, b: int) -> float:
        inside = (starts < b) & (ends > a)
        return float(logprobs[inside].mean()) if inside.any() else -np.inf

    spans = item_spans(text)
    fallback = mean_over(spans[0][0], spans[-1][1]) if spans else -np.inf
    scores = np.full(len(pairs), fallback)
    k = 0
    for a, b in spans:
        if k == len(pairs):
            break
        parsed = parse_answer(text[a:b]).pairs
        if parsed and parsed[0] == pairs[k]:
            scores[k] = mean_over(a, b)
            k += 1
    return scores


def response_detections(
    response: str,
    *,
    frame: str,
    image_size: Size,
    model_size: Size,
    score_policy: str = _AUTO_CHOICE["responses"],
    token_logprobs: Sequence[float] | None = None,
    token_offsets: Sequence[int] | None = None,
    prefilled_think: bool = False,
    max_per_image: int = MAX_PER_IMAGE,
) -> ImageDetections:
    """Scored triplets of one response, boxes mapped from ``frame`` to the original image.

    Args:
        response: the generated text.
        frame, image_size, model_size: the row's frame metadata (``verl_hoi.frames``).
        score_policy: a registered policy that applies to responses (see the module docstring).
        token_logprobs, token_offsets: per generated token, its log-probability and the character
            offset in ``response`` where its text starts (needed by ``logprob``).
        prefilled_think: the chat template opened ``<think>`` (see ``parse_answer``).
        max_per_image: keep this many best-scored triplets.

    Raises:
        ValueError: an unknown or inapplicable policy, missing or bad log-probabilities
            (:func:`token_arrays`), a bad frame.
    """
    policy = get_score_policy(score_policy)
    if policy is None or policy.uses_given_scores:
        *others, last = [p.name for p in _POLICIES.values() if not p.uses_given_scores]
        choices = f"{', '.join(others)} or {last}" if others else last
        raise ValueError(f"score policy {score_policy!r} does not apply to responses; use {choices}")
    if policy.uses_logprobs and (token_logprobs is None or token_offsets is None):
        raise ValueError(f"score policy {score_policy!r} needs token_logprobs and token_offsets (predict --logprobs)")
    parsed = parse_answer(response, prefilled_think=prefilled_think)
    pairs = parsed.pairs
    pair_index, hoi = triplets(pairs)
    boxes = np.array([[p.human, p.object] for p in pairs], dtype=np.float64).reshape(-1, 2, 4)
    boxes = from_frame(boxes, frame, image_size, model_size)[pair_index]  # (n, 2, 4)
    logprobs = (
        _pair_confidences(response, pairs, token_logprobs, token_offsets)[pair_index] if policy.uses_logprobs else None
    )
    score = policy(ScoreInputs(len(hoi), logprobs=logprobs))
    keep = np.sort(np.argsort(-score, kind="stable")[:max_per_image])
    return ImageDetections(
        hoi=hoi[keep],
        human=boxes[keep, 0],
        object=boxes[keep, 1],
        score=score[keep],
        num_pairs=len(pairs),
        num_invalid=parsed.num_invalid,
    )
