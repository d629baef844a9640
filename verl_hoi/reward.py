"""HOI rewards: format, label and IoU scores of a response against ground-truth pairs (HOI-R1).

:func:`compute_score` has verl's custom-reward signature and returns a dict with always the same
keys (:data:`KEYS`). The layers are separate: :func:`verl_hoi.answer.parse_answer` reads the text,
:mod:`verl_hoi.geometry` computes IoUs and the Hungarian assignment, :func:`score_pairs` turns the
matches into numbers. Options are :class:`RewardConfig` fields, passed as keyword arguments (verl's
``reward.reward_kwargs``).

With ``P`` the valid predicted pairs, ``G`` the ground-truth pairs and ``D = max(|P|, |G|)``,
Hungarian matching maximises the summed pair IoU ``c(h, o)`` (``combine``: min, mean or product of
the human and object box IoUs); a match counts only if ``c >= match_iou`` and ``c > 0``. Over the
matched pairs ``M``:

- ``label = (1/D) Σ_M [object_weight·1[same object] + (1 − object_weight)·F1(verbs)]``, with
  ``F1(A, B) = 2|A ∩ B| / (|A| + |B|)`` over the verb sets;
- ``iou = (1/D) Σ_M (IoU_human + IoU_object) / 2``;
- ``D = 0`` (nothing to find, nothing claimed): ``label = iou = 1`` if the response holds an answer
  list, else 0;
- ``format = 1[tags] · 1[strict JSON] · 1[not truncated] · 1[items <= max(max_pairs, |G|)] · valid/items``
  (``valid/items`` = 1 for an empty list); ``tags``: ``<think>…</think><answer>…</answer>`` and
  nothing else (``require_think=False``: ``<answer>…</answer>`` present);
- ``score = (format_weight·format + label_weight·label + iou_weight·iou) / Σ weights``.

Misses, duplicates and flooding all raise ``D`` without adding matches, so they cost label and IoU.

>>> from verl_hoi.answer import HOIPair, render_answer, render_response
>>> truth = render_answer([HOIPair((0, 0, 10, 10), (5, 5, 20, 20), 1, (76,))])
>>> compute_score("hico", render_response(truth, "one person"), truth)["score"]
1.0
>>> result = compute_score("hico", "<answer>[]</answer>", truth, require_think=False)
>>> result["score"], result["format"], result["label"], result["num_gt"]
(0.2, 1.0, 0.0, 1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

from verl_hoi.answer import MAX_ITEMS, MAX_TEXT_CHARS, HOIPair, parse_answer
from verl_hoi.geometry import COMBINE, DEFAULT_COMBINE, iou_from_corners, match_pairs
from verl_hoi.hoieval import MIN_OVERLAP
from verl_hoi.prompts import get_prompt

__all__ = ["KEYS", "RewardConfig", "compute_score", "reward_config", "score_pairs"]

KEYS: tuple[str, ...] = (
    "score",
    "format",
    "label",
    "iou",
    "num_pred",
    "num_gt",
    "num_matched",
    "num_invalid",
    "num_duplicates",
    "precision",
    "recall",
    "f1",
    "answered",
    "tags_ok",
    "json_ok",
    "truncated",
    "flooded",
)
"""Keys of every :func:`compute_score` result, in order."""

_VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})
"""Keyword arguments verl's reward managers may pass to any ``compute_score``; ignored."""
_WEIGHTS = ("format_weight", "label_weight", "iou_weight")
"""The :class:`RewardConfig` fields that weigh the format, label and IoU scores in ``score``."""


@dataclass(frozen=True)
class RewardConfig:
    """Reward options (verl: ``+reward.reward_kwargs.<name>=<value>``), validated on construction.

    Numbers must be real numbers (int or float, NumPy scalars included), finite and in range; a
    boolean or a string is not a number. Flags must be booleans.

    Attributes:
        format_weight: weight of the format score in ``score`` (finite, >= 0).
        label_weight: weight of the label score (finite, >= 0).
        iou_weight: weight of the IoU score (finite, >= 0); the three weights must not all be 0, and
            their sum must be finite.
        combine: how a pair's human and object IoUs merge for matching: ``min``, ``mean`` or ``product``.
        match_iou: least merged IoU for a Hungarian match to count, in [0, 1].
        object_weight: share of object agreement in a matched pair's label score, the rest is verb F1; [0, 1].
        triplet_iou: least human and object IoU for a matched pair's triplets to count as true positives in
            ``precision`` / ``recall`` / ``f1`` (default: HICO-DET evaluation's, ``evaluation.MIN_OVERLAP``); (0, 1].
        max_pairs: answers with more items than ``max(max_pairs, ground-truth pairs)`` are flooding: format 0
            (the parser reads ``max(answer.MAX_ITEMS, max_pairs, ground-truth pairs)`` items).
        require_think: the tags must include a think block; ``None`` (default): as the row's prompt template
            says (``extra_info["prompt"]``, see ``verl_hoi.prompts``), required when there is no known template.
        prefilled_think: the chat template already opened ``<think>``, so responses start inside the think
            block; ``extra_info["prefilled_think"]`` overrides it per sample.
    """

    format_weight: float = 0.2
    label_weight: float = 0.4
    iou_weight: float = 0.4
    combine: str = DEFAULT_COMBINE
    match_iou: float = 0.1
    object_weight: float = 0.5
    triplet_iou: float = MIN_OVERLAP
    max_pairs: int = MAX_ITEMS
    require_think: bool | None = None
    prefilled_think: bool = False

    def __post_init__(self) -> None:
        for name in _WEIGHTS:
            _check_number(name, getattr(self, name), 0.0, math.inf)
        total = float(self.format_weight) + float(self.label_weight) + float(self.iou_weight)
        if total <= 0:
            raise ValueError("format_weight, label_weight and iou_weight must not all be 0")
        if total == math.inf:
            raise ValueError("format_weight + label_weight + iou_weight must be finite; their sum overflows")
        if self.combine not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}; got {self.combine!r}")
        _check_number("match_iou", self.match_iou, 0.0, 1.0)
        _check_number("object_weight", self.object_weight, 0.0, 1.0)
        _check_number("triplet_iou", self.triplet_iou, 0.0, 1.0)
        if self.triplet_iou == 0:
            raise ValueError("triplet_iou must be in (0, 1]; got 0")
        count = self.max_pairs
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise ValueError(f"max_pairs must be an integer >= 1; got {self.max_pairs!r}")
        if self.require_think is not None:
            _check_flag("require_think", self.require_think, "true, false or null")
        _check_flag("prefilled_think", self.prefilled_think)
        # Stored as Python numbers: NumPy scalars would compute the score in their own precision (float32 overflows).
        for name in (*_WEIGHTS, "match_iou", "object_weight", "triplet_iou"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "max_pairs", int(count))
        if self.require_think is not None:
            object.__setattr__(self, "require_think", bool(self.require_think))
        object.__setattr__(self, "prefilled_think", bool(self.prefilled_think))


def _check_number(name: str, value: object, low: float, high: float) -> None:
    """``value`` is a finite real number in ``[low, high]`` (``high`` may be infinity: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= _finite_or_nan(value) <= high:
        bounds = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number {bounds}; got {value!r}")


def _finite_or_nan(value: numbers.Real) -> float:
    """``float(value)`` when finite, else NaN (in no range): infinities and integers too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _check_flag(name: str, value: object, allowed: str = "true or false") -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")


_FIELDS = tuple(field.name for field in fields(RewardConfig))
DEFAULT_CONFIG = RewardConfig()


def reward_config(**kwargs: Any) -> RewardConfig:
    """A validated :class:`RewardConfig` from keyword arguments (cached per distinct arguments).

    verl's own keyword arguments (``reward_router_address``, ``reward_model_tokenizer``) are ignored.

    Raises:
        ValueError: an unknown option (the message lists the known ones) or a bad value.

    >>> reward_config(combine="mean", reward_router_address=None).combine
    'mean'
    """
    options = {key: value for key, value in kwargs.items() if key not in _VERL_KWARGS}
    if not options:
        return DEFAULT_CONFIG
    # The key holds each value's type: 1 == True == 1.0 must not reuse a config validated for another type.
    key = tuple((name, type(value), value) for name, value in sorted(options.items()))
    try:
        return _cached_config(key)
    except TypeError:  # an unhashable value: validate without the cache
        return _make_config(options)


@lru_cache(maxsize=64)
def _cached_config(items: tuple[tuple[str, type, Any], ...]) -> RewardConfig:
    return _make_config({name: value for name, _, value in items})


def _make_config(options: dict[str, Any]) -> RewardConfig:
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown reward option(s) {', '.join(unknown)}; known options: {', '.join(_FIELDS)}")
    return RewardConfig(**options)


@dataclass(frozen=True)
class _Truth:
    """Ground-truth pairs in array form, built once per distinct ground truth."""

    corners: np.ndarray  # (4, 2, 1, M): x1, y1, x2, y2 planes of the human, then the object boxes
    objects: tuple[int, ...]
    verbs: tuple[frozenset[int], ...]
    num_triplets: int


def _truth(pairs: Sequence[HOIPair]) -> _Truth:
    return _Truth(
        corners=_corners(pairs)[..., None, :],
        objects=tuple(pair.object_id for pair in pairs),
        verbs=tuple(frozenset(pair.verb_ids) for pair in pairs),
        num_triplets=sum(len(pair.verb_ids) for pair in pairs),
    )


def _corners(pairs: Sequence[HOIPair]) -> np.ndarray:
    """``(4, 2, N)`` float64, contiguous: coordinate, role (human, object), pair."""
    flat = np.array([pair.human + pair.object for pair in pairs], dtype=np.float64)  # (N, 8)
    return np.ascontiguousarray(flat.reshape(len(pairs), 2, 4).transpose(2, 1, 0))


@lru_cache(maxsize=8192)
def _ground_truth(ground_truth: str) -> _Truth:
    parsed = parse_answer(ground_truth, max_items=MAX_TEXT_CHARS)  # every pair: ground truth is never capped
    if not parsed.json_ok or parsed.num_invalid:
        raise ValueError(f"ground truth is not a valid answer JSON list: {'; '.join(parsed.errors)}")
    return _truth(parsed.pairs)


def score_pairs(
    pred: Sequence[HOIPair], truth: Sequence[HOIPair], config: RewardConfig = DEFAULT_CONFIG, *, answered: bool = True
) -> dict[str, float | int]:
    """Label, IoU and triplet scores of predicted pairs against ground-truth pairs (no format).

    Args:
        pred: predicted pairs, duplicates included.
        truth: ground-truth pairs, same frame.
        config: options (``combine``, ``match_iou``, ``object_weight``, ``triplet_iou`` are used).
        answered: the response held an answer list; if not, an empty ground truth scores 0, not 1.

    Returns:
        ``label``, ``iou``, ``precision``, ``recall``, ``f1`` (floats in [0, 1]) and ``num_pred``,
        ``num_gt``, ``num_matched``, ``num_duplicates`` (ints). Formulas in the module docstring.

    >>> gt = HOIPair((0, 0, 10, 10), (0, 0, 4, 4), 1, (36, 76))
    >>> pred = HOIPair((0, 0, 10, 10), (0, 0, 4, 2), 1, (36,))
    >>> result = score_pairs([pred], [gt])
    >>> result["iou"], result["label"], result["precision"], result["recall"]
    (0.75, 0.8333333333333334, 1.0, 0.5)
    """
    return _score(tuple(pred), _truth(truth), config, answered)


def _score(pred: tuple[HOIPair, ...], truth: _Truth, config: RewardConfig, answered: bool) -> dict:
    num_pred, num_gt = len(pred), len(truth.objects)
    label = iou = 0.0
    matched = true_positives = 0
    if num_pred and num_gt:
        both = iou_from_corners(_corners(pred)[..., None], truth.corners)  # (2, N, M): human, object
        rows, cols, _ = match_pairs(both[0], both[1], combine=config.combine, min_iou=config.match_iou)
        matched = len(rows)
        human, obj = both[:, rows, cols].tolist()
        object_weight, verb_weight = config.object_weight, 1.0 - config.object_weight
        for i, j, h, o in zip(rows.tolist(), cols.tolist(), human, obj, strict=True):
            iou += h + o
            pair, gt_verbs = pred[i], truth.verbs[j]
            common = len(gt_verbs.intersection(pair.verb_ids))
            same_object = pair.object_id == truth.objects[j]
            # 1 minus what is missing, so that a right pair scores exactly 1 whatever the weights
            sizes = len(pair.verb_ids) + len(gt_verbs)
            label += max(0.0, 1.0 - object_weight * (not same_object) - verb_weight * (sizes - 2 * common) / sizes)
            if same_object and h >= config.triplet_iou and o >= config.triplet_iou:
                true_positives += common
    denominator = max(num_pred, num_gt)
    if denominator:
        label, iou = label / denominator, iou / (2.0 * denominator)
    else:
        label = iou = float(answered)
    num_pred_triplets = sum(len(pair.verb_ids) for pair in pred)
    precision = _share(true_positives, num_pred_triplets, truth.num_triplets, answered)
    recall = _share(true_positives, truth.num_triplets, num_pred_triplets, answered)
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "label": label,
        "iou": iou,
        "num_pred": num_pred,
        "num_gt": num_gt,
        "num_matched": matched,
        "num_duplicates": num_pred - len(set(pred)) if num_pred > 1 else 0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _share(hits: int, total: int, other_total: int, answered: bool) -> float:
    """``hits / total``; with nothing on this side, 1 if the other side is empty too (and there was an answer)."""
    if total:
        return hits / total
    return 0.0 if other_total else float(answered)


def _prompt_thinks(name: object) -> bool:
    """Whether the prompt template ``name`` asks for a think block (True for unknown names)."""
    if not isinstance(name, str):
        return True
    try:
        return get_prompt(name).thinking
    except ValueError:
        return True


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float | int]:
    """Score one response against its ground truth (verl's custom-reward signature).

    Args:
        data_source: the dataset name (unused: every source is scored the same way).
        solution_str: the decoded response; any text (never raises on it).
        ground_truth: the answer JSON of the ground-truth pairs in the frame the model answers in
            (what ``verl_hoi.answer.render_answer`` writes). Parsed once and cached.
        extra_info: the row's ``extra_info`` (a mapping); ``extra_info["prefilled_think"]`` (a boolean), when
            not None, overrides the ``prefilled_think`` option; ``extra_info["prompt"]`` (a template name) decides
            whether a think block is required when ``require_think`` is None.
        **kwargs: :class:`RewardConfig` options; verl's own ``reward_router_address`` and
            ``reward_model_tokenizer`` are ignored.

    Returns:
        A dict with the keys :data:`KEYS`: ``score``, ``format``, ``label``, ``iou``, ``precision``,
        ``recall``, ``f1`` (floats in [0, 1]; triplets counted at ``triplet_iou``), ``answered``,
        ``tags_ok``, ``json_ok``, ``truncated``, ``flooded`` (0.0 / 1.0 flags) and ``num_pred``
        (valid predicted pairs), ``num_gt``, ``num_matched``, ``num_invalid`` (dropped items),
        ``num_duplicates`` (repeated predicted pairs) as ints.

    Raises:
        ValueError: a bad option, a ground truth that is not a valid answer JSON list, an ``extra_info``
            that is not a mapping or whose ``prefilled_think`` is not a boolean.
    """
    config = reward_config(**kwargs)
    if not isinstance(ground_truth, str):
        raise ValueError(f"ground_truth must be the answer JSON string, got {type(ground_truth).__name__}")
    truth = _ground_truth(ground_truth)
    prefilled, require_think = config.prefilled_think, config.require_think
    if extra_info is not None:
        if not isinstance(extra_info, Mapping):
            raise ValueError(f"extra_info must be a mapping or None; got {type(extra_info).__name__}")
        row_prefilled = extra_info.get("prefilled_think")
        if row_prefilled is not None:
            _check_flag("extra_info['prefilled_think']", row_prefilled, "true, false or null")
            prefilled = bool(row_prefilled)
        if require_think is None:
            require_think = _prompt_thinks(extra_info.get("prompt"))
    # An image may hold more pairs than max_pairs: answering all of them is not flooding.
    allowed = max(config.max_pairs, len(truth.objects))
    parsed = parse_answer(solution_str, prefilled_think=prefilled, max_items=max(MAX_ITEMS, allowed))
    flooded = parsed.overflow or parsed.num_items > allowed
    answered = parsed.json_ok or parsed.num_items > 0 or parsed.truncated
    result = _score(parsed.pairs, truth, config, answered)
    tags = parsed.tags_ok if require_think is not False else parsed.has_answer_tags
    gate = tags and parsed.json_ok and not parsed.truncated and not flooded
    valid_share = (parsed.num_items - parsed.num_invalid) / parsed.num_items if parsed.num_items else 1.0
    format_score = valid_share if gate else 0.0
    total = config.format_weight + config.label_weight + config.iou_weight
    score = (
        config.format_weight * format_score + config.label_weight * result["label"] + config.iou_weight * result["iou"]
    ) / total
    return {
        "score": score,
        "format": format_score,
        "label": result["label"],
        "iou": result["iou"],
        "num_pred": result["num_pred"],
        "num_gt": result["num_gt"],
        "num_matched": result["num_matched"],
        "num_invalid": parsed.num_invalid,
        "num_duplicates": result["num_duplicates"],
        "precision": result["precision"],
        "recall": result["recall"],
        "f1": result["f1"],
        "answered": float(answered),
        "tags_ok": float(tags),
        "json_ok": float(parsed.json_ok),
        "truncated": float(parsed.truncated),
        "flooded": float(flooded),
    }
