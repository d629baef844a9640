"""Tests for verl_hoi.geometry: IoU in both pixel conventions and Hungarian pair matching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.geometry import COMBINE, box_iou, combine_iou, hungarian, match_pairs, pair_iou

IOU_CASES = [
    # identical boxes
    ([0, 0, 10, 10], [0, 0, 10, 10], False, 1.0),
    # half overlap horizontally: inter 50, union 150
    ([0, 0, 10, 10], [5, 0, 15, 10], False, 1 / 3),
    # b inside a: inter 25, union 100
    ([0, 0, 10, 10], [0, 0, 5, 5], False, 0.25),
    # touching edges, no area in common
    ([0, 0, 10, 10], [10, 0, 20, 10], False, 0.0),
    # disjoint
    ([0, 0, 1, 1], [5, 5, 6, 6], False, 0.0),
    # degenerate vs degenerate: empty union gives 0, not NaN
    ([3, 3, 3, 3], [3, 3, 3, 3], False, 0.0),
    # inclusive: [1..10]x[1..10] = 100 px, [1..10]x[1..5] = 50 px
    ([1, 1, 10, 10], [1, 1, 10, 5], True, 0.5),
    # inclusive: touching edges share one pixel column: inter 1*10, union 100+100-10
    ([1, 1, 10, 10], [10, 1, 19, 10], True, 10 / 190),
    # inclusive: a single pixel is a box of area 1
    ([3, 3, 3, 3], [3, 3, 3, 3], True, 1.0),
    # inclusive: 2x2 vs 4x4 sharing a corner: inter 4, union 4 + 16 - 4
    ([0, 0, 1, 1], [0, 0, 3, 3], True, 0.25),
]


@pytest.mark.parametrize(("a", "b", "inclusive", "expected"), IOU_CASES)
def test_box_iou_cases(a: list, b: list, inclusive: bool, expected: float) -> None:
    assert box_iou([a], [b], inclusive=inclusive)[0, 0] == pytest.approx(expected, abs=1e-12)
    assert box_iou([b], [a], inclusive=inclusive)[0, 0] == pytest.approx(expected, abs=1e-12)


def test_box_iou_shapes_and_matrix() -> None:
    a = [[0, 0, 10, 10], [0, 0, 5, 5]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 101, 101]]
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0], [0.25, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)
    assert box_iou(a, []).shape == (2, 0)


def test_box_iou_leading_dimensions_pairwise() -> None:
    # (K, 1, 4) with (K, 1, 4): one IoU per row, the official +1 convention
    a = np.array([[[1, 1, 10, 10]], [[0, 0, 1, 1]]])
    b = np.array([[[1, 1, 10, 5]], [[0, 0, 3, 3]]])
    iou = box_iou(a, b, inclusive=True)
    assert iou.shape == (2, 1, 1)
    np.testing.assert_allclose(iou[:, 0, 0], [0.5, 0.25])


def test_box_iou_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        box_iou([[0, 0, 1]], [[0, 0, 1, 1]])


def test_pair_iou_is_box_iou_per_role() -> None:
    ph, po = [[0, 0, 10, 10]], [[0, 0, 4, 4]]
    gh, go = [[5, 0, 15, 10], [0, 0, 10, 10]], [[0, 0, 4, 2], [0, 0, 4, 4]]
    human, obj = pair_iou(ph, po, gh, go)
    np.testing.assert_allclose(human, [[1 / 3, 1.0]])
    np.testing.assert_allclose(obj, [[0.5, 1.0]])


COMBINE_CASES = [
    # (combine, human 0.5 / object 0.8 ->)
    ("min", 0.5),
    ("mean", 0.65),
    ("product", 0.4),
]


@pytest.mark.parametrize(("combine", "expected"), COMBINE_CASES)
def test_combine_iou(combine: str, expected: float) -> None:
    assert combine_iou(np.array([0.5]), np.array([0.8]), combine)[0] == pytest.approx(expected)


def test_combine_iou_unknown_lists_choices() -> None:
    with pytest.raises(ValueError, match="min, mean, product"):
        combine_iou(np.array([0.5]), np.array([0.5]), "max")
    assert COMBINE[0] == "min"


def test_match_pairs_is_one_to_one_and_global() -> None:
    # gt 0 = [0, 10] and gt 1 = [5, 15] along x. pred 0 = [2, 12]: IoU 80/120 = 2/3 with gt 0,
    # 70/130 = 7/13 with gt 1; pred 1 = [-4, 6]: 60/140 = 3/7 with gt 0, 10/190 = 1/19 with gt 1.
    # Greedy takes 2/3 + 1/19 = 0.72; Hungarian maximises the sum: 7/13 + 3/7 = 0.97.
    gt_h = [[0, 0, 10, 10], [5, 0, 15, 10]]
    pred_h = [[2, 0, 12, 10], [-4, 0, 6, 10]]
    boxes = [[0, 0, 1, 1]] * 2  # identical objects, IoU 1 everywhere
    pred_idx, gt_idx, iou = match_pairs(*pair_iou(pred_h, boxes, gt_h, boxes))
    assert pred_idx.tolist() == [0, 1]
    assert gt_idx.tolist() == [1, 0]
    np.testing.assert_allclose(iou, [7 / 13, 3 / 7])


def test_match_pairs_duplicates_match_once() -> None:
    pair = [[0, 0, 10, 10]]
    pred_idx, gt_idx, iou = match_pairs(*pair_iou(pair * 3, pair * 3, pair, pair))
    assert len(pred_idx) == 1 and gt_idx.tolist() == [0] and iou.tolist() == [1.0]


def test_match_pairs_drops_non_overlapping_and_empty() -> None:
    pred_idx, gt_idx, iou = match_pairs(*pair_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]], [[5, 5, 6, 6]], [[0, 0, 1, 1]]))
    assert pred_idx.size == gt_idx.size == iou.size == 0
    pred_idx, gt_idx, iou = match_pairs(*pair_iou(np.zeros((0, 4)), np.zeros((0, 4)), [[0, 0, 1, 1]], [[0, 0, 1, 1]]))
    assert pred_idx.size == 0 and pred_idx.dtype == np.int64


@pytest.mark.parametrize(
    ("combine", "expected"),
    [
        ("min", 1 / 3),  # human 1/3, object 1
        ("mean", 2 / 3),
        ("product", 1 / 3),
    ],
)
def test_match_pairs_combine(combine: str, expected: float) -> None:
    human, obj = pair_iou([[0, 0, 10, 10]], [[0, 0, 2, 2]], [[5, 0, 15, 10]], [[0, 0, 2, 2]])
    _, _, iou = match_pairs(human, obj, combine=combine)
    assert iou[0] == pytest.approx(expected)


def test_match_pairs_min_iou_leaves_weak_pairs_out_of_the_assignment() -> None:
    # Unthresholded, the sum is largest crosswise (0.05 + 0.28); below min_iou those pairs count as 0, so
    # prediction 0 keeps ground truth 0 (0.3) and prediction 1 is left without a match.
    iou = np.array([[0.3, 0.05], [0.28, 0.0]])
    pred_idx, gt_idx, merged = match_pairs(iou, iou)
    assert pred_idx.tolist() == [0, 1] and gt_idx.tolist() == [1, 0] and merged.tolist() == [0.05, 0.28]
    pred_idx, gt_idx, merged = match_pairs(iou, iou, min_iou=0.1)
    assert pred_idx.tolist() == [0] and gt_idx.tolist() == [0] and merged.tolist() == [0.3]
    assert iou.tolist() == [[0.3, 0.05], [0.28, 0.0]]  # the inputs are left as they were


HUNGARIAN_CASES = [
    # 2x2: the anti-diagonal sums to 1.5 > 0.9
    ([[0.9, 0.8], [0.7, 0.0]], [0, 1], [1, 0]),
    # one row: the argmax column
    ([[0.1, 0.7, 0.3]], [0], [1]),
    # one column: the argmax row
    ([[0.1], [0.7], [0.3]], [1], [0]),
    # more rows than columns: every column used once, rows sorted
    ([[0.0, 0.2], [0.9, 0.1], [0.0, 0.0]], [0, 1], [1, 0]),
    # empty
    (np.zeros((0, 3)), [], []),
]


@pytest.mark.parametrize(("similarity", "rows", "cols"), HUNGARIAN_CASES)
def test_hungarian(similarity: list, rows: list, cols: list) -> None:
    got_rows, got_cols = hungarian(np.asarray(similarity, dtype=np.float64))
    assert got_rows.tolist() == rows and got_cols.tolist() == cols
    assert got_rows.dtype == got_cols.dtype == np.int64


coordinate = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
box = st.tuples(coordinate, coordinate, coordinate, coordinate).map(
    lambda c: (min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3]))
)


@given(st.lists(box, max_size=6), st.lists(box, max_size=6), st.booleans())
def test_box_iou_properties(a: list, b: list, inclusive: bool) -> None:
    iou = box_iou(a, b, inclusive=inclusive)
    assert iou.shape == (len(a), len(b))
    assert np.all((iou >= 0) & (iou <= 1 + 1e-12))
    np.testing.assert_allclose(iou, box_iou(b, a, inclusive=inclusive).T)


@given(st.lists(st.tuples(box, box), max_size=6), st.lists(st.tuples(box, box), max_size=6))
def test_match_pairs_properties(pred: list, gt: list) -> None:
    pred_h, pred_o = [p[0] for p in pred], [p[1] for p in pred]
    gt_h, gt_o = [g[0] for g in gt], [g[1] for g in gt]
    pred_idx, gt_idx, iou = match_pairs(*pair_iou(pred_h, pred_o, gt_h, gt_o))
    assert len(set(pred_idx.tolist())) == len(pred_idx) == len(gt_idx) == len(set(gt_idx.tolist()))
    assert np.all(iou > 0) and np.all(iou <= 1 + 1e-12)
    assert list(pred_idx) == sorted(pred_idx)
