"""Where the mAP went: every false positive and every missed pair of the official matching, by error type,
with the exact mAP gain of fixing each type.

Pure arrays in, numbers out, on top of :class:`verl_hoi.hoieval.HOIEval` (Default setting, its
Full / Rare / Non-rare subsets, and Seen / Unseen when it has a zero-shot setting); only
:func:`analyze_prediction_files` reads files, as ``python -m verl_hoi.evaluate`` does. The idea is
TIDE's (Bolya et al., ECCV 2020) carried over to human-object pairs.

``ov`` of a detection and a ground-truth pair of its image is ``min(IoU human, IoU object)`` (+1
pixel convention), "boxes match" is ``ov >= 0.5`` (the evaluation's ``min_overlap``). Each false
positive gets the first type of :data:`ERROR_TYPES` whose condition holds:

1. ``duplicate``: its boxes match a pair of its own class, which a higher-scored detection already took;
2. ``wrong_verb``: its boxes match a pair of the same object but another class (none of its own);
3. ``wrong_object``: its boxes match a pair whose object category differs;
4. ``human_box`` / ``object_box`` / ``both_boxes``: a pair of its own class has ``ov`` in [0.1, 0.5):
   the human box's IoU is below 0.5 and the object's reaches it / the other way round / both are below;
5. ``class_and_box``: the class and a box are wrong: a pair of another class overlaps both boxes by
   0.1 or more, none by 0.5;
6. ``background``: no pair of the image overlaps both boxes by 0.1.

Every ground-truth pair that no true positive took is ``missed``; ``covered`` marks those whose boxes
a wrong-verb detection matched. The pair an error is measured against (its ``target``) is, among the
pairs its condition names, a missed one when there is one, then the one with the largest ``ov``, the
first in file order on ties (a duplicate's is the pair the matching chose: taken by definition).

**Fixing** a type and recomputing the official mAP gives its ΔmAP, so every Δ is exact under the
metric: duplicates, ``class_and_box`` and background detections are removed; a wrong verb or object
takes its target's class; a box error takes its target's box (both for ``both_boxes``); a missed pair
becomes a detection with its own boxes and class, scored below every detection. A fix that leaves
a false positive (a corrected detection whose pair a higher-scored one already found, or a true
positive that a corrected, higher-scored detection now precedes on its pair) removes it, as TIDE
suppresses the duplicates its fixes create. ``all`` fixes every type at once: 100 on any data where
no two ground-truth pairs of a class and image have the same boxes (the second of such twins can
never be matched, MATLAB's tie rule picks the first).

>>> from verl_hoi.hoieval import Detections, GroundTruth, HOIEval
>>> box = [1, 1, 10, 10]
>>> gt = GroundTruth(image=[0], hoi=[0], human=[box], object=[box], num_images=1)
>>> dets = Detections(image=[0, 0], hoi=[0, 0], human=[box] * 2, object=[box] * 2, score=[0.9, 0.8])
>>> analysis = analyze_errors(HOIEval(gt, dets, settings=("default",)))
>>> [ERROR_TYPES[k] if k >= 0 else "tp" for k in analysis.kind], analysis.counts()["duplicate"]
(['tp', 'duplicate'], 1)
>>> analysis.delta("duplicate")["full"]  # a duplicate after the last hit costs nothing
0.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.geometry import iou_from_corners
from verl_hoi.hicodet import ImageAnnotation
from verl_hoi.hoieval import Detections, GroundTruth, HOIEval
from verl_hoi.prediction_files import evaluate_prediction_files
from verl_hoi.vocab import HOI_CLASSES

__all__ = [
    "ALL_FIXED",
    "DESCRIPTIONS",
    "ERROR_TYPES",
    "LOW_OVERLAP",
    "MISSED",
    "SETTING",
    "TRUE_POSITIVE",
    "ErrorAnalysis",
    "FileAnalysis",
    "analyze_errors",
    "analyze_prediction_files",
    "error_label",
]

ERROR_TYPES: tuple[str, ...] = (
    "duplicate",
    "wrong_verb",
    "wrong_object",
    "human_box",
    "object_box",
    "both_boxes",
    "class_and_box",
    "background",
)
"""The false-positive types in priority order: a detection takes the first whose condition holds."""
MISSED = "missed"
"""Ground-truth pairs that no true positive took."""
DESCRIPTIONS: dict[str, str] = {
    "duplicate": "its boxes match a pair of its class that a higher-scored detection took",
    "wrong_verb": "its boxes match a pair of the same object but another verb",
    "wrong_object": "its boxes match a pair of another object",
    "human_box": "its class is right, the human box overlaps 0.1 to 0.5",
    "object_box": "its class is right, the object box overlaps 0.1 to 0.5",
    "both_boxes": "its class is right, both boxes overlap 0.1 to 0.5",
    "class_and_box": "a pair of another class overlaps both boxes by 0.1 to 0.5",
    "background": "no pair overlaps both boxes by 0.1",
    MISSED: "a ground-truth pair that no detection found",
}
"""One line per error type (and :data:`MISSED`), for tables and the report."""
ALL_FIXED = "all"
"""Every error type and the missed pairs fixed at once."""
TRUE_POSITIVE = -1
"""``ErrorAnalysis.kind`` of a true positive (an error's is its index in :data:`ERROR_TYPES`)."""
LOW_OVERLAP = 0.1
"""The overlap below which a pair does not count as near a detection (box errors, background)."""
SETTING = "default"
"""The evaluation setting the errors are counted in."""

_REMOVED = ("duplicate", "class_and_box", "background")
_RECLASSED = ("wrong_verb", "wrong_object")
_SNAPPED = {"human_box": (True, False), "object_box": (False, True), "both_boxes": (True, True)}  # human, object
_HOI_OBJECT = np.array([obj for _, obj in HOI_CLASSES], dtype=np.int64)


def error_label(name: str) -> str:
    """``"wrong_verb"`` → ``"wrong verb"``: how tables and charts name a type."""
    return name.replace("_", " ")


@dataclass(frozen=True)
class ErrorAnalysis:
    """The errors of one evaluation (``D`` detections, ``G`` ground-truth pairs) and the mAP with each type fixed.

    Attributes:
        kind: ``(D,)`` int64, :data:`TRUE_POSITIVE` or the index of the detection's type in :data:`ERROR_TYPES`.
        target: ``(D,)`` int64 ground-truth pair a true positive took or an error is measured against, ``-1``
            for background.
        missed: ``(G,)`` bool, no true positive took the pair.
        covered: ``(G,)`` bool, a missed pair whose boxes a wrong-verb detection matched.
        map: the Default mAP per subset (percent, as :meth:`HOIEval.summarize`).
        fixed: the Default mAP per subset with each of :data:`ERROR_TYPES`, :data:`MISSED` and
            :data:`ALL_FIXED` fixed.
    """

    kind: np.ndarray
    target: np.ndarray
    missed: np.ndarray
    covered: np.ndarray
    map: dict[str, float]
    fixed: dict[str, dict[str, float]]

    def counts(self) -> dict[str, int]:
        """Detections of each error type and missed pairs, in :data:`ERROR_TYPES` order then :data:`MISSED`."""
        per_type = np.bincount(self.kind[self.kind >= 0], minlength=len(ERROR_TYPES))
        return {**dict(zip(ERROR_TYPES, per_type.tolist(), strict=True)), MISSED: int(self.missed.sum())}

    def delta(self, name: str) -> dict[str, float]:
        """ΔmAP per subset (percentage points) of fixing ``name`` (a type, :data:`MISSED` or :data:`ALL_FIXED`)."""
        return {subset: self.fixed[name][subset] - base for subset, base in self.map.items()}

    def summary(self) -> dict[str, Any]:
        """The JSON object ``evaluate --errors`` writes under ``"errors"``.

        Returns:
            ``{"setting", "order", "map", "types": {type: {"count", "delta_map"}}, "missed": {"count",
            "covered_by_wrong_verb", "delta_map"}, "all": {"delta_map"}, "num_true_positives",
            "num_false_positives", "num_ground_truth_pairs"}``; ``map`` and ``delta_map`` are per subset, in
            percent, ``None`` where the subset has no class with ground truth.
        """
        counts = self.counts()
        return {
            "setting": SETTING,
            "order": list(ERROR_TYPES),
            "map": _nulls(self.map),
            "types": {name: {"count": counts[name], "delta_map": _nulls(self.delta(name))} for name in ERROR_TYPES},
            MISSED: {
                "count": counts[MISSED],
                "covered_by_wrong_verb": int(self.covered.sum()),
                "delta_map": _nulls(self.delta(MISSED)),
            },
            ALL_FIXED: {"delta_map": _nulls(self.delta(ALL_FIXED))},
            "num_true_positives": int((self.kind == TRUE_POSITIVE).sum()),
            "num_false_positives": int((self.kind >= 0).sum()),
            "num_ground_truth_pairs": len(self.missed),
        }


def _nulls(values: dict[str, float]) -> dict[str, float | None]:
    return {key: None if math.isnan(value) else value for key, value in values.items()}


class _Candidates:
    """One row per (detection, ground-truth pair of its image), grouped by detection, pairs in file order."""

    def __init__(self, gt: GroundTruth, dets: Detections) -> None:
        by_image = np.argsort(gt.image, kind="stable")
        bounds = np.searchsorted(gt.image[by_image], np.arange(gt.num_images + 1))
        count = (bounds[1:] - bounds[:-1])[dets.image]  # (D,) pairs in each detection's image
        ends = np.cumsum(count)
        self.num_dets = len(dets)
        self.det = np.repeat(np.arange(len(dets)), count)  # (P,)
        self.gt = by_image[np.repeat(bounds[:-1][dets.image] - ends + count, count) + np.arange(len(self.det))]
        self.starts = (ends - count)[count > 0]
        self.has_rows = np.flatnonzero(count)
        self.human_iou = _iou(dets.human[self.det], gt.human[self.gt])  # (P,)
        self.object_iou = _iou(dets.object[self.det], gt.object[self.gt])
        self.ov = np.minimum(self.human_iou, self.object_iou)
        self.same_class = gt.hoi[self.gt] == dets.hoi[self.det]
        self.same_object = _HOI_OBJECT[gt.hoi[self.gt]] == _HOI_OBJECT[dets.hoi[self.det]]

    def best(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per detection, over its rows where ``valid``: the largest ``ov`` (``-inf``: none) and the first row with it
        (``-1``: none); ``(D,)`` each."""
        value = np.where(valid, self.ov, -np.inf)
        best = np.full(self.num_dets, -np.inf)
        if len(self.has_rows):
            best[self.has_rows] = np.maximum.reduceat(value, self.starts)
        hit = np.flatnonzero(valid & (value == best[self.det]))
        first = hit[np.r_[True, self.det[hit[1:]] != self.det[hit[:-1]]]] if len(hit) else hit
        row = np.full(self.num_dets, -1)
        row[self.det[first]] = first
        return best, row


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(P,)`` IoU of ``a[k]`` with ``b[k]`` (+1 pixel convention); ``a``, ``b``: ``(P, 4)``."""
    return iou_from_corners(a.T, b.T, inclusive=True)


def _take(values: np.ndarray, row: np.ndarray, missing: float) -> np.ndarray:
    """``values[row]``, ``missing`` where ``row`` is -1."""
    out = np.full(len(row), missing, dtype=values.dtype)
    out[row >= 0] = values[row[row >= 0]]
    return out


def _classify(ev: HOIEval) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, target, missed, covered)`` of :class:`ErrorAnalysis` from the Default matching of ``ev``."""
    gt, dets, overlap = ev.gt, ev.dets, ev.min_overlap
    rows = _Candidates(gt, dets)
    tp = np.zeros(len(dets), dtype=bool)
    tp[ev.order[SETTING]] = ev.tp[SETTING]
    kind = np.full(len(dets), TRUE_POSITIVE, dtype=np.int64)
    target = np.full(len(dets), -1, dtype=np.int64)
    own_ov, own_row = rows.best(rows.same_class)  # the pair the official matching chose
    target[tp] = rows.gt[own_row[tp]]
    missed = np.ones(len(gt.image), dtype=bool)
    missed[target[tp]] = False
    open_ = ~tp

    def pick(valid: np.ndarray) -> np.ndarray:
        """Per detection, the row of its target among ``valid`` rows: a missed pair first (``-1``: none)."""
        _, free = rows.best(valid & missed[rows.gt])
        _, any_ = rows.best(valid)
        return np.where(free >= 0, free, any_)

    def assign(name: str, condition: np.ndarray, row: np.ndarray) -> None:
        nonlocal open_
        chosen = open_ & condition
        kind[chosen] = ERROR_TYPES.index(name)
        target[chosen] = _take(rows.gt, row[chosen], -1)
        open_ = open_ & ~condition

    assign("duplicate", own_ov >= overlap, own_row)
    verb_row = pick(rows.same_object & ~rows.same_class & (rows.ov >= overlap))
    assign("wrong_verb", verb_row >= 0, verb_row)
    object_row = pick(~rows.same_object & (rows.ov >= overlap))
    assign("wrong_object", object_row >= 0, object_row)
    box_row = pick(rows.same_class & (rows.ov >= LOW_OVERLAP))
    human_ok = _take(rows.human_iou, box_row, 0.0) >= overlap
    object_ok = _take(rows.object_iou, box_row, 0.0) >= overlap
    near = box_row >= 0
    assign("human_box", near & ~human_ok & object_ok, box_row)
    assign("object_box", near & human_ok & ~object_ok, box_row)
    assign("both_boxes", near & ~human_ok & ~object_ok, box_row)
    any_row = pick(rows.ov >= LOW_OVERLAP)
    assign("class_and_box", any_row >= 0, any_row)
    assign("background", np.ones(len(dets), dtype=bool), np.full(len(dets), -1))

    wrong_verb = kind[rows.det] == ERROR_TYPES.index("wrong_verb")
    found = rows.gt[wrong_verb & rows.same_object & ~rows.same_class & (rows.ov >= overlap)]
    covered = missed & np.isin(np.arange(len(gt.image)), found)
    return kind, target, missed, covered


def _fixed_map(
    ev: HOIEval, kind: np.ndarray, target: np.ndarray, missed: np.ndarray, names: Iterable[str], rank: np.ndarray
) -> dict[str, float]:
    """The Default mAP per subset with the errors ``names`` (types and/or :data:`MISSED`) fixed; ``rank``: the
    detections' scores as dense ranks (the same order and ties, infinite scores included), so -1 is below them all."""
    gt, dets = ev.gt, ev.dets
    names = set(names)
    code = {name: ERROR_TYPES.index(name) for name in ERROR_TYPES if name in names}
    fixing = np.isin(kind, list(code.values()))
    keep = ~np.isin(kind, [code[n] for n in _REMOVED if n in code])
    human, obj, hoi = dets.human.copy(), dets.object.copy(), dets.hoi.copy()
    for name in code.keys() & _SNAPPED.keys():
        chosen = kind == code[name]
        snap_human, snap_object = _SNAPPED[name]
        if snap_human:
            human[chosen] = gt.human[target[chosen]]
        if snap_object:
            obj[chosen] = gt.object[target[chosen]]
    for name in code.keys() & set(_RECLASSED):
        chosen = kind == code[name]
        hoi[chosen] = gt.hoi[target[chosen]]
    added = np.flatnonzero(missed) if MISSED in names else np.zeros(0, dtype=np.int64)
    fixed = {
        "image": np.r_[dets.image[keep], gt.image[added]],
        "hoi": np.r_[hoi[keep], gt.hoi[added]],
        "human": np.r_[human[keep], gt.human[added]],
        "object": np.r_[obj[keep], gt.object[added]],
        "score": np.r_[rank[keep], np.full(len(added), -1.0)],
    }
    touched = np.r_[(fixing | (kind == TRUE_POSITIVE))[keep], np.ones(len(added), dtype=bool)]
    result = _evaluate(ev, fixed)
    tp = np.zeros(len(touched), dtype=bool)
    tp[result.order[SETTING]] = result.tp[SETTING]
    if (touched & ~tp).any():  # false positives the fix made: removed (false positives take no pair)
        result = _evaluate(ev, {key: value[tp | ~touched] for key, value in fixed.items()})
    return result.summarize()[SETTING]


def _evaluate(ev: HOIEval, arrays: dict[str, np.ndarray]) -> HOIEval:
    result = HOIEval(ev.gt, Detections(**arrays), settings=(SETTING,), min_overlap=ev.min_overlap, unseen=ev.unseen)
    result.evaluate()
    return result


def analyze_errors(ev: HOIEval, *, progress: bool = False) -> ErrorAnalysis:
    """Classify the Default setting's false positives and missed pairs and compute the mAP with each type fixed.

    Args:
        ev: an evaluation with the ``"default"`` setting (evaluated here if it is not yet).
        progress: show a progress bar over the recomputations (on a terminal only).

    Raises:
        ValueError: ``ev`` has no Default setting.
    """
    from tqdm import tqdm

    if SETTING not in ev.settings:
        raise ValueError(f"the error analysis needs the {SETTING!r} setting; the evaluation has {list(ev.settings)}")
    if SETTING not in ev.ap:
        ev.accumulate()
    base = ev.summarize()[SETTING]
    kind, target, missed, covered = _classify(ev)
    has = {name: bool((kind == k).any()) for k, name in enumerate(ERROR_TYPES)} | {MISSED: bool(missed.any())}
    groups = {name: (name,) for name in (*ERROR_TYPES, MISSED)} | {ALL_FIXED: (*ERROR_TYPES, MISSED)}
    rank = np.unique(ev.dets.score, return_inverse=True)[1].astype(np.float64)
    fixed = {}
    for name, names in tqdm(groups.items(), desc="ΔmAP", unit="fix", disable=None if progress else True):
        needed = any(has[n] for n in names)
        fixed[name] = _fixed_map(ev, kind, target, missed, names, rank) if needed else dict(base)
    return ErrorAnalysis(kind=kind, target=target, missed=missed, covered=covered, map=base, fixed=fixed)


@dataclass(frozen=True)
class FileAnalysis:
    """What :func:`analyze_prediction_files` read and found.

    Attributes:
        result: :func:`verl_hoi.prediction_files.evaluate_predictions`'s dictionary.
        errors: the error analysis of the Default setting.
        annotations: the annotation records; image ``i`` of the detections is ``annotations[i]``.
        gt: the ground truth the analysis indexes (``errors.missed[k]`` is ``gt``'s pair ``k``).
        detections: the predictions as evaluated (``errors.kind[k]`` is detection ``k``'s).
    """

    result: dict[str, Any]
    errors: ErrorAnalysis
    annotations: list[ImageAnnotation]
    gt: GroundTruth
    detections: Detections


def analyze_prediction_files(
    annotations_path: str | Path, predictions_path: str | Path, *, progress: bool = False, **options: Any
) -> FileAnalysis:
    """:func:`verl_hoi.prediction_files.evaluate_prediction_files` (same arguments) and the error analysis of its
    files, which are read once.

    Raises:
        ValueError: what ``evaluate_predictions`` refuses.
    """
    evaluated = evaluate_prediction_files(annotations_path, predictions_path, **options)
    ev = evaluated.evaluation  # its Default setting is the one analysed: no second evaluation
    return FileAnalysis(
        result=evaluated.result,
        errors=analyze_errors(ev, progress=progress),
        annotations=evaluated.annotations,
        gt=ev.gt,
        detections=ev.dets,
    )
