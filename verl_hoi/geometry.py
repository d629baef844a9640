"""Box geometry and one-to-one matching of (human box, object box) pairs.

Boxes are ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``, in any frame as long as both
sides of a comparison share it. Two area conventions:

- ``inclusive=False`` (default): continuous coordinates, width ``x2 - x1``; what rewards use.
- ``inclusive=True``: HICO-DET's official evaluation convention, boxes are inclusive pixel
  ranges, width ``x2 - x1 + 1``.

>>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10]]).tolist()
[[0.3333333333333333, 1.0]]
>>> pred_idx, gt_idx, iou = match_pairs(*pair_iou([[0, 0, 10, 10]], [[0, 0, 4, 4]], [[0, 0, 10, 10]], [[0, 0, 4, 2]]))
>>> pred_idx.tolist(), gt_idx.tolist(), iou.tolist()
([0], [0], [0.5])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

__all__ = [
    "COMBINE",
    "DEFAULT_COMBINE",
    "box_iou",
    "combine_iou",
    "hungarian",
    "iou_from_corners",
    "match_pairs",
    "pair_iou",
]

_COMBINERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "min": np.minimum,
    "mean": lambda human_iou, object_iou: (human_iou + object_iou) / 2.0,
    "product": np.multiply,
}
COMBINE: tuple[str, ...] = tuple(_COMBINERS)
"""Ways to merge the human IoU and the object IoU of a pair into one number (first = default)."""
DEFAULT_COMBINE: str = COMBINE[0]


def _as_boxes(boxes: ArrayLike) -> np.ndarray:
    """``(..., 4)`` float64 array; an empty input becomes ``(0, 4)``."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0 and array.shape[-1] != 4:
        return np.zeros((0, 4))
    if array.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {array.shape}")
    return array


def box_iou(a: ArrayLike, b: ArrayLike, *, inclusive: bool = False) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(N, 4)`` boxes ``[x1, y1, x2, y2]`` (more leading dimensions are allowed: ``(..., N, 4)``).
        b: ``(M, 4)`` boxes, same frame as ``a`` (``(..., M, 4)`` with leading dimensions that
            broadcast against ``a``'s).
        inclusive: add one pixel to widths and heights (the official HICO-DET convention).

    Returns:
        ``(N, M)`` float64 (``(..., N, M)``), in ``[0, 1]``; 0 where the union is empty
        (two degenerate boxes).

    >>> box_iou([[0, 0, 10, 10]], [[0, 0, 10, 5]]).tolist()
    [[0.5]]
    >>> box_iou([[1, 1, 10, 10]], [[1, 1, 10, 5]], inclusive=True).tolist()
    [[0.5]]
    """
    a = np.moveaxis(_as_boxes(a), -1, 0)[..., :, None]  # (4, ..., N, 1)
    b = np.moveaxis(_as_boxes(b), -1, 0)[..., None, :]  # (4, ..., 1, M)
    return iou_from_corners(a, b, inclusive=inclusive)


def iou_from_corners(a: np.ndarray, b: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
    """IoU of boxes stored coordinate first: ``a[0..3]`` are the ``x1, y1, x2, y2`` arrays.

    The kernel behind :func:`box_iou`, for callers that keep boxes in this layout (contiguous
    coordinate planes are faster than ``(N, 4)`` rows for small batches).

    Args:
        a: ``(4, *S)`` float array.
        b: ``(4, *T)`` float array; ``S`` and ``T`` broadcast, e.g. ``(N, 1)`` and ``(1, M)``.
        inclusive: add one pixel to widths and heights (the official HICO-DET convention).

    Returns:
        The broadcast shape of ``S`` and ``T``, float64 in ``[0, 1]``.

    >>> iou_from_corners(np.array([[0.0], [0], [10], [10]]), np.array([[5.0, 0], [0, 0], [15, 10], [10, 5]])).tolist()
    [0.3333333333333333, 0.5]
    """
    a_low, a_high, b_low, b_high = a[:2], a[2:], b[:2], b[2:]  # (x1, y1) and (x2, y2) planes
    if inclusive:  # one more pixel past the far edges adds one to every width and height
        a_high, b_high = a_high + 1.0, b_high + 1.0
    overlap = np.minimum(a_high, b_high) - np.maximum(a_low, b_low)  # (2, *broadcast): width, height
    np.maximum(overlap, 0.0, out=overlap)
    inter = overlap[0] * overlap[1]
    size_a, size_b = a_high - a_low, b_high - b_low
    union = size_a[0] * size_a[1] + size_b[0] * size_b[1] - inter
    # An empty union means two degenerate boxes and an empty intersection: IoU 0, not NaN.
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def combine_iou(human_iou: np.ndarray, object_iou: np.ndarray, combine: str = DEFAULT_COMBINE) -> np.ndarray:
    """Merge human and object IoUs elementwise into a new array: ``min``, ``mean`` or ``product`` (:data:`COMBINE`).

    >>> combine_iou(np.array([0.5]), np.array([0.8]), "product").tolist()
    [0.4]
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {', '.join(COMBINE)}; got {combine!r}")
    return _COMBINERS[combine](human_iou, object_iou)


def pair_iou(
    pred_human: ArrayLike, pred_object: ArrayLike, gt_human: ArrayLike, gt_object: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Human and object IoU of every predicted pair with every ground-truth pair, in one pass.

    Args:
        pred_human, pred_object: ``(N, 4)`` boxes of the predicted pairs.
        gt_human, gt_object: ``(M, 4)`` boxes of the ground-truth pairs.

    Returns:
        ``(human_iou, object_iou)``, each ``(N, M)`` float64 (non-inclusive convention).
    """
    pred = np.stack([_as_boxes(pred_human), _as_boxes(pred_object)])  # (2, N, 4)
    gt = np.stack([_as_boxes(gt_human), _as_boxes(gt_object)])  # (2, M, 4)
    iou = box_iou(pred, gt)  # (2, N, M)
    return iou[0], iou[1]


def match_pairs(
    human_iou: np.ndarray, object_iou: np.ndarray, *, combine: str = DEFAULT_COMBINE, min_iou: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one Hungarian matching of predicted to ground-truth pairs, maximising the summed pair IoU.

    A pair's IoU is its human IoU and object IoU merged by ``combine`` (:func:`combine_iou`); a pair IoU
    below ``min_iou`` counts as 0 in the assignment. Assignments with a pair IoU of 0 are dropped, so
    each returned match overlaps, by ``min_iou`` at least.

    Args:
        human_iou, object_iou: ``(N, M)`` IoU of each predicted pair's box with each ground-truth
            pair's (:func:`pair_iou`).
        combine: ``"min"``, ``"mean"`` or ``"product"``.
        min_iou: least pair IoU of a match, in [0, 1].

    Returns:
        ``(pred_idx, gt_idx, pair_iou)``: three ``(K,)`` arrays (int64, int64, float64),
        ``K <= min(N, M)``, sorted by ``pred_idx``.

    >>> human, obj = pair_iou([[0, 0, 2, 2], [0, 0, 4, 4]], [[0, 0, 4, 4]] * 2, [[0, 0, 4, 4]], [[0, 0, 4, 4]])
    >>> p, g, iou = match_pairs(human, obj)
    >>> p.tolist(), g.tolist(), iou.tolist()
    ([1], [0], [1.0])
    """
    merged = combine_iou(human_iou, object_iou, combine)
    if min_iou > 0:
        merged[merged < min_iou] = 0.0
    rows, cols = hungarian(merged)
    values = merged[rows, cols]
    if values.all():  # IoUs are never negative: all overlap (the common case, without the copies below)
        return rows, cols, values
    keep = values > 0
    return rows[keep], cols[keep], values[keep]


def hungarian(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one assignment with the largest summed similarity.

    Args:
        similarity: ``(N, M)`` matrix.

    Returns:
        ``(rows, cols)``: two ``(min(N, M),)`` int64 arrays, sorted by ``rows`` (zero-similarity
        assignments included: filter them as needed).

    >>> rows, cols = hungarian(np.array([[0.9, 0.8], [0.7, 0.0]]))
    >>> rows.tolist(), cols.tolist()
    ([0, 1], [1, 0])
    """
    num_rows, num_cols = similarity.shape
    if num_rows == 0 or num_cols == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if num_rows == 1:  # one row or one column: the assignment is an argmax
        return np.zeros(1, dtype=np.int64), np.array([similarity[0].argmax()], dtype=np.int64)
    if num_cols == 1:
        return np.array([similarity[:, 0].argmax()], dtype=np.int64), np.zeros(1, dtype=np.int64)
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return rows.astype(np.int64, copy=False), cols.astype(np.int64, copy=False)
