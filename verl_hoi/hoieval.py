"""The official HICO-DET mAP, exactly as ``ho-rcnn``'s ``eval_one.m`` / ``VOCevaldet_bboxpair.m``.

Pure arrays in, numbers out; no file reading (``verl_hoi.prediction_files`` reads prediction files,
``verl_hoi.evaluate`` is the command line). The shape follows pycocotools' ``COCOeval``:
:meth:`HOIEval.evaluate` matches detections to ground truth, :meth:`HOIEval.accumulate` builds
precision/recall and the 11-point AP per class, :meth:`HOIEval.summarize` returns the Full / Rare /
Non-rare means, and the Seen / Unseen means of a zero-shot setting when given its unseen classes.
Intermediate arrays are kept, so a per-class number is a slice.

The MATLAB behaviour reproduced here (and where common Python ports differ):

- detections of a class are sorted by score with a **stable** sort: ties keep image order (the
  annotation file's), then the order within the image;
- each detection takes the ground-truth pair of its class in its image with the largest
  ``min(iou_human, iou_object)`` among **all** of them, already matched ones included, the first
  one on ties; ``>= 0.5`` and not yet matched is a true positive, anything else (including a
  taken best match, with no fall-back to the second best) a false positive;
- IoU with the +1 pixel convention (``verl_hoi.geometry.box_iou(..., inclusive=True)``); ground
  truth is never merged; a detection in an image without ground truth of its class is a false
  positive;
- AP is the VOC2007 11-point interpolation over MATLAB's ``0:0.1:1`` (:data:`THRESHOLDS`:
  ``0.30000000000000004``, but plain ``0.6`` and ``0.7``), summed as ``ap = ap + p / 11`` (so a
  perfect class scores ``1.0000000000000002``, as in MATLAB);
- recall of a class is the last point of its curve (0 without detections); Known-Object keeps a
  class's detections only in images known to contain its object, with ``npos`` unchanged.

Boxes are ``[x1, y1, x2, y2]`` in the annotation's raw frame (``anno_bbox.mat`` values, 1-based
inclusive); detections must be given in that same frame. A class without any ground truth (only
possible on a subset of the test set) has AP and recall ``nan`` and is left out of the means (the
MATLAB code would count it as 0); on the full test set every class has ground truth.

Arrays kept on :class:`HOIEval` (``D`` detections of a setting, ``C = 600`` classes):

- ``order[s]``    (D,) int64   detection indices in evaluation order: class, score desc, input order
- ``tp[s]``       (D,) bool    true positive, in evaluation order
- ``bounds[s]``   (C+1,) int64 class ``c`` occupies ``order[s][bounds[s][c]:bounds[s][c+1]]``
- ``recall_curve[s]``, ``precision_curve[s]``  (D,) float64, per class cumulative, in that order
- ``ap[s]``, ``recall[s]``  (C,) float64, in [0, 1] (``nan`` where ``npos == 0``)
- ``npos``        (C,) int64   ground-truth pairs per class

>>> gt = GroundTruth(image=[0], hoi=[0], human=[[1, 1, 10, 10]], object=[[1, 1, 10, 10]], num_images=1)
>>> dets = Detections(image=[0, 0], hoi=[0, 0], human=[[1, 1, 10, 10]] * 2, object=[[1, 1, 10, 10]] * 2,
...                   score=[0.9, 0.8])
>>> result = HOIEval(gt, dets, settings=("default",)).run()
>>> result["default"]["full"], result["recall"]["default"]["full"]  # MATLAB's ap + p/11 eleven times
(100.00000000000003, 100.0)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from verl_hoi.geometry import box_iou
from verl_hoi.hicodet import ImageAnnotation
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI, OBJECTS, RARE_HOI

__all__ = [
    "KNOWN_FROM_BOXES",
    "MIN_OVERLAP",
    "SETTINGS",
    "SUBSETS",
    "THRESHOLDS",
    "ZERO_SHOT_SUBSETS",
    "Detections",
    "GroundTruth",
    "HOIEval",
    "known_objects_from_boxes",
]

logger = logging.getLogger(__name__)

THRESHOLDS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""MATLAB's ``0:0.1:1``, value for value (numpy's ``arange``/``linspace`` give other 0.6/0.7)."""
MIN_OVERLAP = 0.5
SETTINGS: tuple[str, ...] = ("default", "known_object")
SUBSETS: tuple[str, ...] = ("full", "rare", "non_rare")
ZERO_SHOT_SUBSETS: tuple[str, ...] = ("seen", "unseen")
"""Added to :data:`SUBSETS` when :class:`HOIEval` is given a zero-shot setting's unseen classes."""
KNOWN_FROM_BOXES = "boxes"
"""The Known-Object source that takes the images with box ground truth of an object (:func:`known_objects_from_boxes`),
as the command line names it; the alternative is HICO's ``anno.mat``."""

_HOI_OBJECT = np.array([obj for _, obj in HOI_CLASSES], dtype=np.int64)  # (C,) object id of each class
_RARE_MASK = np.isin(np.arange(NUM_HOI), sorted(RARE_HOI))  # (C,)


def _ints(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _boxes(values: ArrayLike, n: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.shape != (n, 4):
        raise ValueError(f"{name} must have shape ({n}, 4), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_range(array: np.ndarray, upper: int, name: str) -> None:
    if array.size and (array.min() < 0 or array.max() >= upper):
        raise ValueError(f"{name} must lie in [0, {upper}), got values in [{array.min()}, {array.max()}]")


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth pairs of an evaluation set as flat arrays (``G`` pairs, ``I`` images).

    Args:
        image: ``(G,)`` image index of each pair, ``0 <= image < num_images``.
        hoi: ``(G,)`` 0-based HOI class.
        human, object: ``(G, 4)`` boxes ``[x1, y1, x2, y2]``, raw annotation frame.
        num_images: ``I``; images are identified by index, in annotation-file order.
        known_objects: ``(I, 80)`` bool, image ``i`` is known to contain object ``o`` (Known-Object
            setting); ``None``: derived from the boxes (:func:`known_objects_from_boxes`).
        known_object_source: how ``known_objects`` was obtained, recorded with the result.

    Pairs of one class in one image keep their order (the first wins ties in matching).
    """

    image: ArrayLike
    hoi: ArrayLike
    human: ArrayLike
    object: ArrayLike
    num_images: int
    known_objects: ArrayLike | None = None
    known_object_source: str = KNOWN_FROM_BOXES

    def __post_init__(self) -> None:
        image = _ints(self.image)
        n = len(image)
        hoi = _ints(self.hoi)
        if len(hoi) != n:
            raise ValueError(f"hoi has {len(hoi)} entries, image has {n}")
        _check_range(image, self.num_images, "image")
        _check_range(hoi, NUM_HOI, "hoi")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "hoi", hoi)
        object.__setattr__(self, "human", _boxes(self.human, n, "human"))
        object.__setattr__(self, "object", _boxes(self.object, n, "object"))
        if self.known_objects is None:
            known = known_objects_from_boxes(image, hoi, self.num_images)
        else:
            known = np.asarray(self.known_objects, dtype=bool)
            if known.shape != (self.num_images, len(OBJECTS)):
                raise ValueError(
                    f"known_objects must have shape ({self.num_images}, {len(OBJECTS)}), got {known.shape}"
                )
        object.__setattr__(self, "known_objects", known)

    @classmethod
    def from_annotations(
        cls,
        annotations: Sequence[ImageAnnotation],
        known_objects: ArrayLike | None = None,
        known_object_source: str = KNOWN_FROM_BOXES,
    ) -> GroundTruth:
        """Flatten :func:`verl_hoi.hicodet.load_annotations` records; image ``i`` is ``annotations[i]``."""
        pairs = [(i, pair) for i, record in enumerate(annotations) for pair in record.pairs]
        return cls(
            image=[i for i, _ in pairs],
            hoi=[pair.hoi for _, pair in pairs],
            human=[pair.human for _, pair in pairs],
            object=[pair.object for _, pair in pairs],
            num_images=len(annotations),
            known_objects=known_objects,
            known_object_source=known_object_source,
        )

    @property
    def npos(self) -> np.ndarray:
        """``(C,)`` int64 number of ground-truth pairs per class."""
        return np.bincount(self.hoi, minlength=NUM_HOI)


def known_objects_from_boxes(image: ArrayLike, hoi: ArrayLike, num_images: int) -> np.ndarray:
    """``(num_images, 80)`` bool: images with box ground truth of each object.

    The usual stand-in for ``anno.mat``'s image-level labels in the Known-Object setting.

    >>> known_objects_from_boxes([1], [0], 2)[:, 4].tolist()   # HOI 0 is "board airplane"
    [False, True]
    """
    known = np.zeros((num_images, len(OBJECTS)), dtype=bool)
    known[_ints(image), _HOI_OBJECT[_ints(hoi)]] = True
    return known


@dataclass(frozen=True)
class Detections:
    """Detected triplets as flat arrays (``D`` detections).

    Args:
        image: ``(D,)`` image index (same indexing as :class:`GroundTruth`).
        hoi: ``(D,)`` 0-based HOI class.
        human, object: ``(D, 4)`` boxes ``[x1, y1, x2, y2]`` in the ground truth's frame.
        score: ``(D,)`` finite or infinite float, not NaN; only its order matters.

    The order of the arrays breaks score ties within an image (the first comes first); across
    images ties follow the image index, whatever the array order.
    """

    image: ArrayLike
    hoi: ArrayLike
    human: ArrayLike
    object: ArrayLike
    score: ArrayLike

    def __post_init__(self) -> None:
        image = _ints(self.image)
        n = len(image)
        hoi = _ints(self.hoi)
        score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        if len(hoi) != n or len(score) != n:
            raise ValueError(f"image, hoi and score must have the same length, got {n}, {len(hoi)}, {len(score)}")
        if np.isnan(score).any():
            raise ValueError("score contains NaN")
        _check_range(hoi, NUM_HOI, "hoi")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "hoi", hoi)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "human", _boxes(self.human, n, "human"))
        object.__setattr__(self, "object", _boxes(self.object, n, "object"))

    def __len__(self) -> int:
        return len(self.image)


@dataclass
class HOIEval:
    """Official HICO-DET evaluation in three phases: ``evaluate`` → ``accumulate`` → ``summarize``.

    Args:
        gt: the ground truth.
        dets: the detections; their image indices must be below ``gt.num_images``.
        settings: any of :data:`SETTINGS` (``"default"``, ``"known_object"``).
        min_overlap: ``ov >= min_overlap`` is a match (0.5 officially).
        unseen: the 0-based HOI classes a zero-shot setting kept out of training
            (``verl_hoi.zero_shot.unseen_classes``); the summary then adds Seen (the other classes)
            and Unseen means. ``None``: no zero-shot setting.

    The arrays each phase fills are listed in the module docstring.
    """

    gt: GroundTruth
    dets: Detections
    settings: Sequence[str] = SETTINGS
    min_overlap: float = MIN_OVERLAP
    unseen: frozenset[int] | None = None
    order: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    tp: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    bounds: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    recall_curve: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    precision_curve: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    ap: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    recall: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = [s for s in self.settings if s not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(SETTINGS)}")
        _check_range(self.dets.image, self.gt.num_images, "detection image")
        if self.unseen is not None:
            _check_range(np.array(sorted(self.unseen), dtype=np.int64), NUM_HOI, "unseen")
        self.npos = self.gt.npos
        gt_key = self.gt.hoi * self.gt.num_images + self.gt.image
        self._gt_order = np.argsort(gt_key, kind="stable")  # (G,) grouped by (class, image), file order kept
        self._gt_key = gt_key[self._gt_order]

    def evaluate(self) -> None:
        """Match every detection; fills ``order``, ``tp`` and ``bounds`` for each setting."""
        dets = self.dets
        for setting in self.settings:
            if setting == "known_object":
                keep = np.flatnonzero(self.gt.known_objects[dets.image, _HOI_OBJECT[dets.hoi]])
            else:
                keep = np.arange(len(dets))
            # lexsort is stable: the last key is primary, ties keep the input order within an image.
            order = keep[np.lexsort((dets.image[keep], -dets.score[keep], dets.hoi[keep]))]
            self.order[setting] = order
            self.tp[setting] = self._match(order)
            self.bounds[setting] = np.searchsorted(dets.hoi[order], np.arange(NUM_HOI + 1))
            logger.debug("%s: %d detections matched, %d true positives", setting, len(order), self.tp[setting].sum())

    def _match(self, order: np.ndarray) -> np.ndarray:
        """``(D,)`` bool true positives for the detections ``order`` (evaluation order)."""
        dets, gt = self.dets, self.gt
        key = dets.hoi[order] * gt.num_images + dets.image[order]  # (D,)
        first = np.searchsorted(self._gt_key, key, side="left")  # (D,) first candidate in sorted gt
        count = np.searchsorted(self._gt_key, key, side="right") - first  # (D,) candidates per detection
        # One row per (detection, candidate ground truth of its class in its image).
        pair_det = np.repeat(np.arange(len(order)), count)  # (P,)
        pair_gt = np.repeat(first - np.cumsum(count) + count, count) + np.arange(len(pair_det))  # (P,)
        gt_index = self._gt_order[pair_gt]
        det_index = order[pair_det]
        ov = np.minimum(
            _paired_iou(dets.human[det_index], gt.human[gt_index]),
            _paired_iou(dets.object[det_index], gt.object[gt_index]),
        )  # (P,)
        has_gt = np.flatnonzero(count)
        starts = (np.cumsum(count) - count)[has_gt]
        best = np.full(len(order), -np.inf)
        if len(has_gt):
            best[has_gt] = np.maximum.reduceat(ov, starts)
        # First candidate reaching the maximum (MATLAB's strict ``>`` update).
        at_max = np.flatnonzero(ov == best[pair_det])
        first_max = at_max[np.r_[True, pair_det[at_max[1:]] != pair_det[at_max[:-1]]]] if len(at_max) else at_max
        chosen = np.full(len(order), -1)
        chosen[pair_det[first_max]] = pair_gt[first_max]
        candidate = np.flatnonzero(best >= self.min_overlap)
        # A detection is a true positive when it is the first (in evaluation order) to pick its pair.
        _, first_pick = np.unique(chosen[candidate], return_index=True)
        tp = np.zeros(len(order), dtype=bool)
        tp[candidate[first_pick]] = True
        return tp

    def accumulate(self) -> None:
        """Precision/recall curves, AP and recall per class; fills the remaining arrays."""
        if not self.tp:
            self.evaluate()
        for setting in self.settings:
            tp, bounds = self.tp[setting], self.bounds[setting]
            n = len(tp)
            hoi = self.dets.hoi[self.order[setting]]
            cum = np.cumsum(tp)  # (D,)
            before = np.r_[0, cum][bounds[:-1]]  # (C,) true positives before each class starts
            tp_cum = (cum - before[hoi]).astype(np.float64)
            rank = np.arange(1, n + 1) - bounds[:-1][hoi]  # (D,) tp + fp so far, within the class
            with np.errstate(divide="ignore", invalid="ignore"):
                rec = tp_cum / self.npos[hoi]
                prec = tp_cum / rank
            self.recall_curve[setting], self.precision_curve[setting] = rec, prec
            ap = np.zeros(NUM_HOI)
            prec_padded = np.r_[prec, 0.0]
            for t in THRESHOLDS:
                below = np.r_[0, np.cumsum(~(rec >= t))]  # rec is non-decreasing within a class
                start = bounds[:-1] + below[bounds[1:]] - below[bounds[:-1]]  # first index with rec >= t
                nonempty = np.flatnonzero(start < bounds[1:])
                p = np.zeros(NUM_HOI)
                if len(nonempty):
                    edges = np.empty(2 * len(nonempty), dtype=np.int64)
                    edges[0::2], edges[1::2] = start[nonempty], bounds[1:][nonempty]
                    p[nonempty] = np.maximum.reduceat(prec_padded, edges)[0::2]
                ap = ap + p / 11
            ends = bounds[1:]
            recall = np.zeros(NUM_HOI)
            has_dets = np.flatnonzero(ends > bounds[:-1])
            recall[has_dets] = rec[ends[has_dets] - 1]
            no_gt = self.npos == 0
            ap[no_gt] = np.nan
            recall[no_gt] = np.nan
            self.ap[setting], self.recall[setting] = ap, recall

    @property
    def subsets(self) -> tuple[str, ...]:
        """What :meth:`summarize` averages over: :data:`SUBSETS`, and :data:`ZERO_SHOT_SUBSETS` given ``unseen``."""
        return SUBSETS if self.unseen is None else SUBSETS + ZERO_SHOT_SUBSETS

    def summarize(self) -> dict:
        """Means over Full / Rare / Non-rare (and Seen / Unseen with ``unseen``), in percent (×100), full precision.

        Returns:
            ``{setting: {"full", "rare", "non_rare"}, "recall": {setting: {...}},
            "num_classes": {"full", "rare", "non_rare"}}`` for each evaluated setting, each dictionary
            keyed by :attr:`subsets`; ``num_classes`` counts the classes with ground truth that the
            means cover; a subset where that count is 0 has no mean: ``nan``
            (``verl_hoi.prediction_files.evaluate_predictions`` makes it null).
        """
        if not self.ap:
            self.accumulate()
        masks = _subset_masks(self.npos, self.unseen)
        result: dict = {}
        for setting in self.settings:
            result[setting] = {name: _mean_percent(self.ap[setting], mask) for name, mask in masks.items()}
        result["recall"] = {
            setting: {name: _mean_percent(self.recall[setting], mask) for name, mask in masks.items()}
            for setting in self.settings
        }
        result["num_classes"] = {name: int(mask.sum()) for name, mask in masks.items()}
        for setting in self.settings:
            means = " ".join(f"{name.replace('_', '-')} {value:.2f}" for name, value in result[setting].items())
            logger.info("%s mAP %s", setting, means)
        return result

    def run(self) -> dict:
        """``evaluate()``, ``accumulate()`` and ``summarize()`` in one call."""
        self.evaluate()
        self.accumulate()
        return self.summarize()


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(P,)`` IoU of ``a[k]`` with ``b[k]``, +1 pixel convention; ``a``, ``b``: ``(P, 4)``."""
    return box_iou(a[:, None, :], b[:, None, :], inclusive=True)[:, 0, 0]


def _subset_masks(npos: np.ndarray, unseen: frozenset[int] | None) -> dict[str, np.ndarray]:
    """``(C,)`` bool per subset: the classes with ground truth that its mean covers."""
    has_gt = npos > 0
    masks = {"full": has_gt, "rare": has_gt & _RARE_MASK, "non_rare": has_gt & ~_RARE_MASK}
    if unseen is not None:
        unseen_mask = np.isin(np.arange(NUM_HOI), sorted(unseen))
        masks |= {"seen": has_gt & ~unseen_mask, "unseen": has_gt & unseen_mask}
    return masks


def _mean_percent(values: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean(values[mask]) * 100) if mask.any() else float("nan")
