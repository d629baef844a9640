"""The official HICO-DET mAP: hand-computed cases where the usual Python ports go wrong, a literal
port of ``VOCevaldet_bboxpair.m`` as a reference on random inputs, and ground truth as predictions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_hoi.hicodet import load_annotations
from verl_hoi.hoieval import THRESHOLDS, Detections, GroundTruth, HOIEval, known_objects_from_boxes
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI, RARE_HOI, hoi_id, object_id, verb_id
from verl_hoi.zero_shot import unseen_classes

C = 0  # HOI class used by the hand-computed cases ("board airplane", non-rare)
BOX = [1.0, 1.0, 10.0, 10.0]  # 10 x 10 pixels with the +1 convention


def box_at(k: int) -> list[float]:
    """Disjoint 10 x 10 boxes, one per k."""
    return [1.0 + 20 * k, 1.0, 10.0 + 20 * k, 10.0]


def run(gt_rows, det_rows, num_images=1, settings_=("default",), unseen=None):
    """gt_rows: (image, hoi, human, object); det_rows: (image, hoi, human, object, score)."""
    gt = GroundTruth(
        image=[r[0] for r in gt_rows],
        hoi=[r[1] for r in gt_rows],
        human=[r[2] for r in gt_rows],
        object=[r[3] for r in gt_rows],
        num_images=num_images,
    )
    dets = Detections(
        image=[r[0] for r in det_rows],
        hoi=[r[1] for r in det_rows],
        human=[r[2] for r in det_rows],
        object=[r[3] for r in det_rows],
        score=[r[4] for r in det_rows],
    )
    ev = HOIEval(gt, dets, settings=settings_, unseen=unseen)
    ev.evaluate()
    ev.accumulate()
    return ev


def test_thresholds_are_matlab_values():
    # MATLAB's 0:0.1:1 is k * 0.1 except for the last steps it computes from the end.
    assert THRESHOLDS[3] == 0.30000000000000004
    assert THRESHOLDS[6] == 0.6 and THRESHOLDS[7] == 0.7
    assert np.arange(0, 1.1, 0.1)[6] != 0.6  # why the values are hard-coded


def test_recall_exactly_0_6_and_0_7_reaches_the_threshold():
    # 10 pairs; 6 hits, 4 misses, 1 hit: rec 0.1..0.6 at prec 1, then rec 0.7 at prec 7/11.
    # MATLAB: p = 1 for t <= 0.6 (7 thresholds), 7/11 at t = 0.7 -> AP = (7 + 7/11) / 11 = 84/121.
    # With numpy's arange thresholds (0.6000000000000001, ...) it would be 73/121.
    gt = [(0, C, box_at(k), box_at(k)) for k in range(10)]
    hits = [(0, C, box_at(k), box_at(k), 1.0 - 0.01 * k) for k in range(6)]
    misses = [(0, C, box_at(20 + k), box_at(20 + k), 0.5 - 0.01 * k) for k in range(4)]
    last = [(0, C, box_at(6), box_at(6), 0.1)]
    ev = run(gt, hits + misses + last)
    assert ev.ap["default"][C] == pytest.approx(84 / 121, abs=1e-12)
    assert ev.recall["default"][C] == 0.7


def test_recall_0_3_misses_the_matlab_threshold():
    # rec = 3/10 = 0.3 < 0.30000000000000004: at t = 0.3 only the later point counts.
    # 3 hits (prec 1, rec 0.3), 1 miss, 1 hit (rec 0.4, prec 4/5):
    # t = 0, 0.1, 0.2 -> 1; t = 0.3, 0.4 -> 4/5; rest 0 -> AP = (3 + 1.6) / 11.
    gt = [(0, C, box_at(k), box_at(k)) for k in range(10)]
    dets = [(0, C, box_at(k), box_at(k), 1.0 - 0.1 * k) for k in range(3)]
    dets += [(0, C, box_at(30), box_at(30), 0.6), (0, C, box_at(3), box_at(3), 0.5)]
    ev = run(gt, dets)
    assert ev.ap["default"][C] == pytest.approx(4.6 / 11, abs=1e-12)


@pytest.mark.parametrize(
    ("det_rows", "expected_ap"),
    [
        # Tie across images, input lists image 1 (no ground truth: false positive) first:
        # image order wins -> hit then miss: prec [1, 1/2], rec [1, 1] -> AP 1.
        ([(1, C, BOX, BOX, 0.5), (0, C, BOX, BOX, 0.5)], 1.0),
        # Tie within one image: the miss listed first stays first -> prec [0, 1/2] -> AP 1/2
        # (a reversed argsort would give 1).
        ([(0, C, box_at(5), box_at(5), 0.5), (0, C, BOX, BOX, 0.5)], 0.5),
        # Same two detections, hit listed first -> AP 1.
        ([(0, C, BOX, BOX, 0.5), (0, C, box_at(5), box_at(5), 0.5)], 1.0),
    ],
)
def test_score_ties_keep_image_then_input_order(det_rows, expected_ap):
    ev = run([(0, C, BOX, BOX)], det_rows, num_images=2)
    assert ev.ap["default"][C] == pytest.approx(expected_ap, abs=1e-12)


def test_duplicate_detection_is_a_false_positive():
    # Two images, one pair each. Hit in image 0, its duplicate, hit in image 1:
    # prec [1, 1/2, 2/3], rec [1/2, 1/2, 1] -> t <= 0.5: 1 (6 thresholds), t >= 0.6: 2/3 (5)
    # -> AP = (6 + 10/3) / 11 = 28/33.
    gt = [(0, C, BOX, BOX), (1, C, BOX, BOX)]
    dets = [(0, C, BOX, BOX, 0.9), (0, C, BOX, BOX, 0.8), (1, C, BOX, BOX, 0.7)]
    ev = run(gt, dets, num_images=2)
    assert ev.ap["default"][C] == pytest.approx(28 / 33, abs=1e-12)
    assert ev.tp["default"].tolist() == [True, False, True]


# Two ground-truth pairs sharing the human box; objects [1,1,10,10] and [6,1,15,10] (10 x 10 each).
G1_OBJ, G2_OBJ = [1.0, 1.0, 10.0, 10.0], [6.0, 1.0, 15.0, 10.0]


@pytest.mark.parametrize(
    ("second_obj", "comment"),
    [
        # Object [3,1,12,10]: IoU 80/120 with g1 (taken), 70/130 = 0.54 with g2 -> false positive
        # (no fall-back to the best free pair, which would make it a hit).
        ([3.0, 1.0, 12.0, 10.0], "best match already taken"),
        # An exact copy of g1's object: IoU 1 with g1 (taken), 60/140 with g2 -> false positive.
        ([1.0, 1.0, 10.0, 10.0], "exact duplicate of the taken pair"),
    ],
)
def test_best_match_already_taken_is_a_false_positive(second_obj, comment):
    # prec [1, 1/2], rec [1/2, 1/2] -> AP = 6/11 (a fall-back port gives 1).
    gt = [(0, C, BOX, G1_OBJ), (0, C, BOX, G2_OBJ)]
    dets = [(0, C, BOX, G1_OBJ, 0.9), (0, C, BOX, second_obj, 0.8)]
    ev = run(gt, dets)
    assert ev.tp["default"].tolist() == [True, False], comment
    assert ev.ap["default"][C] == pytest.approx(6 / 11, abs=1e-12)


def test_equal_overlap_goes_to_the_first_pair():
    # g1 object [1,1,10,10], g2 object [5,1,14,10]; detection object [3,1,12,10] overlaps both by
    # 80/120. It takes g1 (the first); then an exact copy of g1 finds g1 taken -> miss.
    # prec [1, 1/2], rec [1/2, 1/2] -> AP 6/11 ("last wins" would match both: AP 1).
    g2 = [5.0, 1.0, 14.0, 10.0]
    middle = [3.0, 1.0, 12.0, 10.0]
    gt = [(0, C, BOX, G1_OBJ), (0, C, BOX, g2)]
    ev = run(gt, [(0, C, BOX, middle, 0.9), (0, C, BOX, G1_OBJ, 0.8)])
    assert ev.tp["default"].tolist() == [True, False]
    assert ev.ap["default"][C] == pytest.approx(6 / 11, abs=1e-12)


@pytest.mark.parametrize(
    ("det_obj", "hit"),
    [
        ([1.0, 1.0, 10.0, 5.0], True),  # 50/100 = 0.5 exactly with +1 pixels: >= 0.5 is a hit
        ([1.0, 1.0, 10.0, 4.0], False),  # 40/100
        ([1.0, 1.0, 9.5, 5.5], True),  # 9.5 x 5.5 = 52.25 / 100: fractional boxes are fine
        ([11.0, 1.0, 20.0, 10.0], False),  # touching, no pixel in common
    ],
)
def test_plus_one_pixel_iou_and_threshold(det_obj, hit):
    # Exclusive IoU of the first row would be 36/81 < 0.5.
    ev = run([(0, C, BOX, BOX)], [(0, C, BOX, det_obj, 1.0)])
    assert ev.tp["default"].tolist() == [hit]


def test_ground_truth_is_not_merged():
    # Two identical pairs count twice in npos; one detection reaches rec 1/2 -> AP 6/11.
    ev = run([(0, C, BOX, BOX), (0, C, BOX, BOX)], [(0, C, BOX, BOX, 1.0)])
    assert ev.npos[C] == 2
    assert ev.ap["default"][C] == pytest.approx(6 / 11, abs=1e-12)


def test_known_object_drops_detections_in_images_without_the_object():
    # Class C's object (airplane) has boxes only in image 0. A higher-scored miss in image 1
    # counts in Default (prec [0, 1/2] -> AP 1/2) but not in Known-Object (AP 1).
    gt = [(0, C, BOX, BOX)]
    dets = [(1, C, BOX, BOX, 0.9), (0, C, BOX, BOX, 0.8)]
    ev = run(gt, dets, num_images=2, settings_=("default", "known_object"))
    assert ev.ap["default"][C] == pytest.approx(0.5, abs=1e-12)
    assert ev.ap["known_object"][C] == pytest.approx(1.0, abs=1e-12)


def test_known_objects_from_image_labels_are_used_as_given():
    # anno.mat-style labels say image 1 shows an airplane too: the miss there counts again.
    known = known_objects_from_boxes([0], [C], 2)
    known[1, HOI_CLASSES[C][1]] = True
    gt = GroundTruth(image=[0], hoi=[C], human=[BOX], object=[BOX], num_images=2, known_objects=known)
    dets = Detections(image=[1, 0], hoi=[C, C], human=[BOX, BOX], object=[BOX, BOX], score=[0.9, 0.8])
    ev = HOIEval(gt, dets, settings=("known_object",))
    ev.accumulate()
    assert ev.ap["known_object"][C] == pytest.approx(0.5, abs=1e-12)


def test_summary_means_rare_and_non_rare_and_skips_classes_without_ground_truth():
    rare = min(RARE_HOI)
    gt = [(0, C, BOX, BOX), (0, rare, BOX, BOX)]
    dets = [(0, C, BOX, BOX, 1.0), (0, rare, box_at(3), box_at(3), 1.0), (0, 5, BOX, BOX, 1.0)]
    ev = run(gt, dets)
    result = ev.summarize()
    assert result["num_classes"] == {"full": 2, "rare": 1, "non_rare": 1}
    assert result["default"]["rare"] == 0.0
    assert result["default"]["non_rare"] == pytest.approx(100.0, abs=1e-9)
    assert result["default"]["full"] == pytest.approx(50.0, abs=1e-9)
    assert result["recall"]["default"] == pytest.approx({"full": 50.0, "rare": 0.0, "non_rare": 100.0})
    assert np.isnan(ev.ap["default"][5])  # class 5 has no ground truth: not in the means


def test_summary_adds_seen_and_unseen_means_over_classes_with_ground_truth():
    # Class AP (recall): C 1 (1), 1 1/2 (1: a higher-scored miss, then the hit), rare 8 0 (0: no detection).
    # Unseen {C, 5}; class 5 has a detection but no ground truth, so Unseen covers C alone and Seen 1 and 8.
    rare = min(RARE_HOI)
    gt = [(0, C, BOX, BOX), (0, 1, BOX, BOX), (0, rare, BOX, BOX)]
    dets = [(0, C, BOX, BOX, 1.0), (0, 1, box_at(5), box_at(5), 0.9), (0, 1, BOX, BOX, 0.8), (0, 5, BOX, BOX, 1.0)]
    ev = run(gt, dets, unseen=frozenset({C, 5}))
    result = ev.summarize()
    assert ev.subsets == ("full", "rare", "non_rare", "seen", "unseen")
    assert result["num_classes"] == {"full": 3, "rare": 1, "non_rare": 2, "seen": 2, "unseen": 1}
    # full (1 + 1/2 + 0) / 3, rare 0, non-rare (1 + 1/2) / 2, seen (1/2 + 0) / 2, unseen 1
    expected = {"full": 50.0, "rare": 0.0, "non_rare": 75.0, "seen": 25.0, "unseen": 100.0}
    assert result["default"] == pytest.approx(expected, abs=1e-9)
    # recall: full (1 + 1 + 0) / 3, rare 0, non-rare 1, seen (1 + 0) / 2, unseen 1
    expected_recall = {"full": 200 / 3, "rare": 0.0, "non_rare": 100.0, "seen": 50.0, "unseen": 100.0}
    assert result["recall"]["default"] == pytest.approx(expected_recall, abs=1e-9)


def test_summary_without_unseen_classes_has_no_seen_or_unseen():
    ev = run([(0, C, BOX, BOX)], [(0, C, BOX, BOX, 1.0)])
    assert ev.subsets == ("full", "rare", "non_rare")
    assert set(ev.summarize()["default"]) == {"full", "rare", "non_rare"}


def test_unseen_class_out_of_range_is_rejected():
    gt = GroundTruth(image=[0], hoi=[C], human=[BOX], object=[BOX], num_images=1)
    dets = Detections(image=[0], hoi=[C], human=[BOX], object=[BOX], score=[1.0])
    with pytest.raises(ValueError, match=r"unseen must lie in \[0, 600\)"):
        HOIEval(gt, dets, unseen=frozenset({600}))


def test_no_detections_gives_zero():
    ev = run([(0, C, BOX, BOX)], [])
    assert ev.ap["default"][C] == 0.0 and ev.recall["default"][C] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score": [float("nan")]}, "NaN"),  # scores only order detections: NaN has no order
        ({"hoi": [600]}, r"\[0, 600\)"),  # class out of range
        ({"human": [[0, 0, 1]]}, "shape"),  # not 4 coordinates
        ({"object": [[0, 0, float("inf"), 1]]}, "infinite"),  # box values must be finite
    ],
)
def test_invalid_detections_are_rejected(kwargs, message):
    fields = {"image": [0], "hoi": [C], "human": [BOX], "object": [BOX], "score": [1.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        Detections(**fields)


def test_detection_image_beyond_ground_truth_is_rejected():
    gt = GroundTruth(image=[0], hoi=[C], human=[BOX], object=[BOX], num_images=1)
    dets = Detections(image=[3], hoi=[C], human=[BOX], object=[BOX], score=[1.0])
    with pytest.raises(ValueError, match="detection image"):
        HOIEval(gt, dets)


def test_ground_truth_as_predictions_on_the_sample_gives_100(sample_annotations):
    records = load_annotations(sample_annotations)
    gt = GroundTruth.from_annotations(records)
    dets = Detections(image=gt.image, hoi=gt.hoi, human=gt.human, object=gt.object, score=np.ones(len(gt.image)))
    result = HOIEval(gt, dets).run()
    for setting in ("default", "known_object"):
        assert round(result[setting]["full"], 2) == 100.00
        assert result["recall"][setting]["full"] == 100.0
    assert result["num_classes"]["full"] == len(set(gt.hoi.tolist()))


@pytest.mark.parametrize(("setting", "seen", "unseen"), [("rf_uc", 11, 1), ("nf_uc", 2, 10), ("uv", 9, 3)])
def test_ground_truth_as_predictions_on_the_sample_gives_100_seen_and_unseen(sample_annotations, setting, seen, unseen):
    # The sample's 12 classes: RF-UC leaves out 62; NF-UC all but 62 and 143; UV 38, 139 and 153.
    gt = GroundTruth.from_annotations(load_annotations(sample_annotations))
    dets = Detections(image=gt.image, hoi=gt.hoi, human=gt.human, object=gt.object, score=np.ones(len(gt.image)))
    result = HOIEval(gt, dets, unseen=unseen_classes(setting)).run()
    assert (result["num_classes"]["seen"], result["num_classes"]["unseen"]) == (seen, unseen)
    for values in (result["default"], result["known_object"]):
        assert {name: round(value, 2) for name, value in values.items()} == dict.fromkeys(
            ("full", "rare", "non_rare", "seen", "unseen"), 100.0
        )


def test_ground_truth_as_predictions_on_many_classes_gives_100():
    # Every class in 50 images, several pairs per image with overlapping boxes, in shuffled order.
    rng = np.random.default_rng(0)
    n = 3000
    image = rng.integers(0, 50, n)
    corner = rng.integers(1, 400, (n, 2, 2)).astype(float)
    human = np.concatenate([corner[:, 0], corner[:, 0] + rng.integers(5, 200, (n, 2))], axis=1)
    obj = np.concatenate([corner[:, 1], corner[:, 1] + rng.integers(5, 200, (n, 2))], axis=1)
    hoi = np.r_[np.arange(NUM_HOI), rng.integers(0, NUM_HOI, n - NUM_HOI)]
    gt = GroundTruth(image=image, hoi=hoi, human=human, object=obj, num_images=50)
    perm = rng.permutation(n)
    dets = Detections(image=image[perm], hoi=hoi[perm], human=human[perm], object=obj[perm], score=np.ones(n))
    result = HOIEval(gt, dets).run()
    assert result["num_classes"] == {"full": 600, "rare": 138, "non_rare": 462}
    assert {k: round(v, 2) for k, v in result["default"].items()} == {"full": 100.0, "rare": 100.0, "non_rare": 100.0}
    assert round(result["known_object"]["full"], 2) == 100.0


# A literal transcription of VOCevaldet_bboxpair.m, one loop per detection, as the reference.
def matlab_ap(det_id, det_bb, det_conf, gt_bbox, min_overlap=0.5):
    npos = sum(len(g) for g in gt_bbox.values())
    taken = {i: [False] * len(g) for i, g in gt_bbox.items()}
    si = sorted(range(len(det_conf)), key=lambda k: -det_conf[k])  # Python's sort is stable
    tp, fp = [], []
    for d in si:
        i, bb = det_id[d], det_bb[d]
        ov_max, j_max = -np.inf, None
        for j, bbgt in enumerate(gt_bbox.get(i, [])):
            ovs = []
            for b, g in ((bb[:4], bbgt[:4]), (bb[4:], bbgt[4:])):
                iw = min(b[2], g[2]) - max(b[0], g[0]) + 1
                ih = min(b[3], g[3]) - max(b[1], g[1]) + 1
                if iw > 0 and ih > 0:
                    ua = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih
                    ovs.append(iw * ih / ua)
                else:
                    ovs.append(0)
            if min(ovs) > ov_max:
                ov_max, j_max = min(ovs), j
        if ov_max >= min_overlap and not taken[i][j_max]:
            tp.append(1)
            fp.append(0)
            taken[i][j_max] = True
        else:
            tp.append(0)
            fp.append(1)
    tp_c, fp_c = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    rec = tp_c / npos
    prec = tp_c / (fp_c + tp_c)
    ap = 0.0
    for t in THRESHOLDS:
        p = prec[rec >= t]
        ap = ap + (p.max() if len(p) else 0.0) / 11
    return ap, (rec[-1] if len(rec) else 0.0)


coordinate = st.integers(1, 12).map(float)


@st.composite
def random_case(draw):
    """Few images and classes, tiny integer boxes: many overlap ties, duplicates and score ties."""
    num_images = draw(st.integers(1, 3))
    classes = [C, 1, 2]

    def row():
        x1, y1, x2, y2 = draw(coordinate), draw(coordinate), draw(coordinate), draw(coordinate)
        a1, b1, a2, b2 = draw(coordinate), draw(coordinate), draw(coordinate), draw(coordinate)
        return (
            draw(st.integers(0, num_images - 1)),
            draw(st.sampled_from(classes)),
            [min(x1, x2), min(y1, y2), max(x1, x2) + 2, max(y1, y2) + 2],
            [min(a1, a2), min(b1, b2), max(a1, a2) + 2, max(b1, b2) + 2],
        )

    gt_rows = [row() for _ in range(draw(st.integers(1, 8)))]
    det_rows = [(*row(), draw(st.sampled_from([0.1, 0.5, 0.9]))) for _ in range(draw(st.integers(0, 20)))]
    # Detections sorted by image, as the loaders give them (ties then follow image order).
    det_rows.sort(key=lambda r: r[0])
    return num_images, gt_rows, det_rows


@given(random_case())
def test_matches_a_literal_port_of_the_matlab_code(case):
    num_images, gt_rows, det_rows = case
    ev = run(gt_rows, det_rows, num_images=num_images)
    for c in {r[1] for r in gt_rows}:
        gt_bbox: dict[int, list] = {}
        for image, hoi, h, o in gt_rows:
            if hoi == c:
                gt_bbox.setdefault(image, []).append(h + o)
        mine = [r for r in det_rows if r[1] == c]
        ap, rec = matlab_ap([r[0] for r in mine], [r[2] + r[3] for r in mine], [r[4] for r in mine], gt_bbox)
        assert ev.ap["default"][c] == ap  # bit for bit
        assert ev.recall["default"][c] == rec


def test_names_used_by_the_cases():
    assert hoi_id(verb_id("board"), object_id("airplane")) == C and C not in RARE_HOI
    assert 1 not in RARE_HOI
