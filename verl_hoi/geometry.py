"""Box geometry and one-to-one matching of (human box, object box) pairs.

Boxes are ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``, in any frame as long as both
sides of a comparison share it. Two area conventions:

- ``inclusive=False`` (default): continuous coordinates, width ``x2 - x1``; what rewards use.
- ``inclusive=True``: HICO-DET's official evaluation convention, boxes are inclusive pixel
  ranges, width ``x2 - x1 + 1``.

>>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10]]).tolist()
[[0.3333333333333333, 1.0]]
>>> pred_idx, gt_idx, iou = match_pairs([[0, 0, 10, 10]], [[0, 0, 4, 4]], [[0, 0, 10, 10]], [[0, 0, 4, 2]])
>>> pred_idx.tolist(), gt_idx.tolist(), iou.tolist()
([0], [0], [0.5])
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

__all__ = ["COMBINE", "assign", "box_iou", "combine_iou", "match_pairs", "pair_iou"]

COMBINE: tuple[str, ...] = ("min", "mean", "product")
"""Ways to merge the human IoU and the object IoU of a pair into one number (first = default)."""


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
    a = _as_boxes(a)[..., :, None, :]  # (..., N, 1, 4)
    b = _as_boxes(b)[..., None, :, :]  # (..., 1, M, 4)
    extra = 1.0 if inclusive else 0.0
    area_a = (a[..., 2] - a[..., 0] + extra) * (a[..., 3] - a[..., 1] + extra)  # (..., N, 1)
    area_b = (b[..., 2] - b[..., 0] + extra) * (b[..., 3] - b[..., 1] + extra)  # (..., 1, M)
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + extra  # (..., N, M)
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + extra
    inter = np.clip(width, 0.0, None) * np.clip(height, 0.0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def combine_iou(human_iou: np.ndarray, object_iou: np.ndarray, combine: str = "min") -> np.ndarray:
    """Merge human and object IoUs elementwise: ``min``, ``mean`` or ``product`` (see :data:`COMBINE`).

    >>> combine_iou(np.array([0.5]), np.array([0.8]), "product").tolist()
    [0.4]
    """
    if combine == "min":
        return np.minimum(human_iou, object_iou)
    if combine == "mean":
        return (human_iou + object_iou) / 2.0
    if combine == "product":
        return human_iou * object_iou
    raise ValueError(f"combine must be one of {', '.join(COMBINE)}; got {combine!r}")


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
    pred_human: ArrayLike,
    pred_object: ArrayLike,
    gt_human: ArrayLike,
    gt_object: ArrayLike,
    combine: str = "min",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one Hungarian matching of predicted to ground-truth pairs, maximising the summed pair IoU.

    A pair's IoU is its human IoU and object IoU merged by ``combine`` (:func:`combine_iou`).
    Assignments with a pair IoU of 0 (no overlap) are dropped, so each returned match overlaps.

    Args:
        pred_human, pred_object: ``(N, 4)`` predicted boxes ``[x1, y1, x2, y2]``.
        gt_human, gt_object: ``(M, 4)`` ground-truth boxes, same frame.
        combine: ``"min"``, ``"mean"`` or ``"product"``.

    Returns:
        ``(pred_idx, gt_idx, pair_iou)``: three ``(K,)`` arrays (int64, int64, float64),
        ``K <= min(N, M)``, sorted by ``pred_idx``.

    >>> p, g, iou = match_pairs([[0, 0, 2, 2], [0, 0, 4, 4]], [[0, 0, 4, 4]] * 2, [[0, 0, 4, 4]], [[0, 0, 4, 4]])
    >>> p.tolist(), g.tolist(), iou.tolist()
    ([1], [0], [1.0])
    """
    human_iou, object_iou = pair_iou(pred_human, pred_object, gt_human, gt_object)
    return assign(combine_iou(human_iou, object_iou, combine))


def assign(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian assignment on an ``(N, M)`` similarity matrix; zero-similarity assignments dropped.

    Returns:
        ``(row_idx, col_idx, value)``: ``(K,)`` arrays sorted by ``row_idx``.

    >>> rows, cols, values = assign(np.array([[0.9, 0.8], [0.7, 0.0]]))
    >>> rows.tolist(), cols.tolist(), values.tolist()
    ([0, 1], [1, 0], [0.8, 0.7])
    """
    if iou.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0)
    if iou.shape == (1, 1):
        rows = np.zeros(1, dtype=np.int64)
        cols = rows.copy()
    else:
        rows, cols = linear_sum_assignment(iou, maximize=True)
    values = iou[rows, cols]
    keep = values > 0
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64), values[keep]
