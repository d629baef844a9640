"""Error analysis of the official matching: a hand-built set where every error type occurs once, with the counts
and ΔmAP worked out by hand; the priority order and the overlap thresholds, case by case; a perfect prediction
file without errors; ``python -m verl_hoi.evaluate --errors``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from verl_hoi.evaluate import format_table, main
from verl_hoi.hicodet import load_annotations
from verl_hoi.hoi_errors import (
    ALL_FIXED,
    ERROR_TYPES,
    MISSED,
    TRUE_POSITIVE,
    analyze_errors,
    analyze_prediction_files,
)
from verl_hoi.hoieval import Detections, GroundTruth, HOIEval
from verl_hoi.vocab import RARE_HOI

# Classes of the hand-built set (0-based HOI ids); the two rare ones are marked.
HOLD_CUP, SIP_CUP = 297, 300
RIDE_BICYCLE, WASH_BICYCLE = 18, 22  # wash bicycle: rare
RIDE_HORSE, FEED_HORSE = 139, 129
HOLD_KITE, FLY_KITE = 371, 370
HOLD_UMBRELLA, CARRY_UMBRELLA, LOSE_UMBRELLA = 577, 576, 578  # lose umbrella: rare

HUMAN, OBJECT = [1.0, 1.0, 10.0, 10.0], [21.0, 1.0, 30.0, 10.0]  # 10 x 10 pixels each (+1 convention)
OTHER_HUMAN, OTHER_OBJECT = [41.0, 1.0, 50.0, 10.0], [61.0, 1.0, 70.0, 10.0]


def shift(box: list[float], s: float) -> list[float]:
    """``box`` moved ``s`` pixels right: IoU (10 - s) / (10 + s) with it (s = 4: 0.43, 8: 0.11, 9: 0.05)."""
    return [box[0] + s, box[1], box[2] + s, box[3]]


def evaluation(gt_rows: list[tuple], det_rows: list[tuple], num_images: int) -> HOIEval:
    """gt_rows: (image, hoi, human, object); det_rows: (image, hoi, human, object, score)."""
    gt = GroundTruth(*zip(*gt_rows, strict=True), num_images=num_images)
    image, hoi, human, obj, score = zip(*det_rows, strict=True)
    return HOIEval(gt, Detections(image, hoi, human, obj, score), settings=("default",))


def kinds(analysis) -> list[str]:
    return ["tp" if k == TRUE_POSITIVE else ERROR_TYPES[k] for k in analysis.kind]


# Every type once. Each error detection is scored 0.9, before the true positive of its class (0.2 or 0.5),
# so its class has AP 1/2 (precision 1/2 at recall 1), and fixing it gives AP 1.
GT = [
    (0, HOLD_CUP, HUMAN, OBJECT),  # g0
    (0, HOLD_CUP, OTHER_HUMAN, OTHER_OBJECT),  # g1
    (1, WASH_BICYCLE, HUMAN, OBJECT),  # g2: missed; a wrong-verb detection matches its boxes
    (2, RIDE_BICYCLE, HUMAN, OBJECT),  # g3
    (3, RIDE_HORSE, HUMAN, OBJECT),  # g4
    (4, HOLD_KITE, HUMAN, OBJECT),  # g5
    (5, HOLD_UMBRELLA, HUMAN, OBJECT),  # g6
    (6, CARRY_UMBRELLA, HUMAN, OBJECT),  # g7
    (7, LOSE_UMBRELLA, HUMAN, OBJECT),  # g8
    (8, FEED_HORSE, HUMAN, OBJECT),  # g9
    (9, FLY_KITE, HUMAN, OBJECT),  # g10
    (11, SIP_CUP, HUMAN, OBJECT),  # g11; image 10 has no ground truth
]
DETS = [
    (0, HOLD_CUP, HUMAN, OBJECT, 0.9),  # tp g0
    (0, HOLD_CUP, HUMAN, OBJECT, 0.8),  # duplicate of g0, before g1's hit: AP 28/33
    (0, HOLD_CUP, OTHER_HUMAN, OTHER_OBJECT, 0.7),  # tp g1
    (1, RIDE_BICYCLE, HUMAN, OBJECT, 0.9),  # wrong verb: g2's boxes, ride instead of wash
    (2, RIDE_BICYCLE, HUMAN, OBJECT, 0.2),  # tp g3
    (3, HOLD_KITE, HUMAN, OBJECT, 0.9),  # wrong object: g4's boxes, a kite for a horse
    (3, RIDE_HORSE, HUMAN, OBJECT, 0.5),  # tp g4
    (4, HOLD_KITE, HUMAN, OBJECT, 0.2),  # tp g5
    (5, HOLD_UMBRELLA, shift(HUMAN, 4), OBJECT, 0.9),  # human box: IoU 6/14 = 0.43, object 1
    (5, HOLD_UMBRELLA, HUMAN, OBJECT, 0.2),  # tp g6
    (6, CARRY_UMBRELLA, HUMAN, shift(OBJECT, 4), 0.9),  # object box
    (6, CARRY_UMBRELLA, HUMAN, OBJECT, 0.2),  # tp g7
    (7, LOSE_UMBRELLA, shift(HUMAN, 4), shift(OBJECT, 4), 0.9),  # both boxes
    (7, LOSE_UMBRELLA, HUMAN, OBJECT, 0.2),  # tp g8
    (8, FLY_KITE, shift(HUMAN, 4), shift(OBJECT, 4), 0.9),  # class and box: g9 (feed horse) at 0.43
    (8, FEED_HORSE, HUMAN, OBJECT, 0.5),  # tp g9
    (9, FLY_KITE, HUMAN, OBJECT, 0.2),  # tp g10
    (10, SIP_CUP, HUMAN, OBJECT, 0.9),  # background: image 10 has no pair
    (11, SIP_CUP, HUMAN, OBJECT, 0.2),  # tp g11
]
EXPECTED_KINDS = [
    "tp",
    "duplicate",
    "tp",
    "wrong_verb",
    "tp",
    "wrong_object",
    "tp",
    "tp",
    "human_box",
    "tp",
    "object_box",
    "tp",
    "both_boxes",
    "tp",
    "class_and_box",
    "tp",
    "tp",
    "background",
    "tp",
]
EXPECTED_TARGETS = [0, 0, 1, 2, 3, 4, 4, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, -1, 11]

# AP per class before any fix: hold cup 28/33 (prec 1, 1/2, 2/3 at rec 1/2, 1/2, 1: (6 + 5 * 2/3) / 11);
# wash bicycle 0 (missed); ride horse and feed horse 1; the seven classes with an error before their hit 1/2.
# 11 classes with ground truth, rare: wash bicycle and lose umbrella.
BASE = {"full": (28 / 33 + 7 * 0.5 + 2) / 11, "rare": (0 + 0.5) / 2, "non_rare": (28 / 33 + 6 * 0.5 + 2) / 9}
# Fixing a type: its classes' AP becomes 1; change per class / number of classes in the subset.
HALF = {"full": 0.5 / 11, "rare": 0.0, "non_rare": 0.5 / 9}  # one non-rare class from 1/2 to 1
EXPECTED_DELTAS = {
    "duplicate": {"full": (5 / 33) / 11, "rare": 0.0, "non_rare": (5 / 33) / 9},  # hold cup 28/33 -> 1
    # ride bicycle 1/2 -> 1 (its false positive leaves), wash bicycle 0 -> 1 (the detection takes its class)
    "wrong_verb": {"full": 1.5 / 11, "rare": 1 / 2, "non_rare": 0.5 / 9},
    # hold kite 1/2 -> 1; ride horse stays 1: the corrected detection (0.9) takes g4 first and the old hit,
    # now a false positive, is removed
    "wrong_object": HALF,
    "human_box": HALF,  # the snapped detection takes g6 first, the old hit is removed
    "object_box": HALF,
    "both_boxes": {"full": 0.5 / 11, "rare": 0.5 / 2, "non_rare": 0.0},  # lose umbrella is rare
    "class_and_box": HALF,  # fly kite
    "background": HALF,  # sip cup
    MISSED: {"full": 1 / 11, "rare": 1 / 2, "non_rare": 0.0},  # wash bicycle 0 -> 1
    ALL_FIXED: {name: 1 - value for name, value in BASE.items()},  # every class 1
}


@pytest.fixture(scope="module")
def every_type_once():
    return analyze_errors(evaluation(GT, DETS, num_images=12))


def test_every_type_once_is_classified_and_targeted(every_type_once):
    assert kinds(every_type_once) == EXPECTED_KINDS
    assert every_type_once.target.tolist() == EXPECTED_TARGETS
    assert every_type_once.counts() == dict.fromkeys((*ERROR_TYPES, MISSED), 1)
    assert every_type_once.missed.tolist() == [k == 2 for k in range(12)]
    assert every_type_once.covered.tolist() == [k == 2 for k in range(12)]
    assert {WASH_BICYCLE, LOSE_UMBRELLA} <= RARE_HOI and not {HOLD_CUP, RIDE_BICYCLE, SIP_CUP} & RARE_HOI


def test_every_type_once_map_and_deltas_by_hand(every_type_once):
    for subset, value in BASE.items():
        assert every_type_once.map[subset] == pytest.approx(100 * value, abs=1e-9)
    for name, expected in EXPECTED_DELTAS.items():
        delta = every_type_once.delta(name)
        assert delta == pytest.approx({s: 100 * v for s, v in expected.items()}, abs=1e-9), name
    assert every_type_once.fixed[ALL_FIXED]["full"] == pytest.approx(100, abs=1e-9)


def test_summary_is_the_json_object(every_type_once):
    summary = every_type_once.summary()
    assert list(summary) == [
        "setting",
        "order",
        "map",
        "types",
        "missed",
        "all",
        "num_true_positives",
        "num_false_positives",
        "num_ground_truth_pairs",
    ]
    assert summary["setting"] == "default" and summary["order"] == list(ERROR_TYPES)
    assert summary["types"]["wrong_verb"]["count"] == 1
    assert summary["missed"]["count"] == 1 and summary["missed"]["covered_by_wrong_verb"] == 1
    assert summary["missed"]["delta_map"]["rare"] == pytest.approx(50, abs=1e-9)
    assert (summary["num_true_positives"], summary["num_false_positives"], summary["num_ground_truth_pairs"]) == (
        11,
        8,
        12,
    )
    json.dumps(summary, allow_nan=False)  # plain JSON


C, D = HOLD_CUP, SIP_CUP  # two cup classes (same object)
E = RIDE_HORSE  # another object


@pytest.mark.parametrize(
    ("gt_rows", "det_rows", "expected"),
    [
        # A copy of a found pair that also matches a pair of another verb: duplicate comes first.
        (
            [(0, C, HUMAN, OBJECT), (0, D, HUMAN, OBJECT)],
            [(0, C, HUMAN, OBJECT, 0.9), (0, C, HUMAN, OBJECT, 0.8)],
            ["tp", "duplicate"],
        ),
        # Boxes that match a pair of another verb and one of another object: wrong verb comes first.
        ([(0, E, HUMAN, OBJECT), (0, D, HUMAN, OBJECT)], [(0, C, HUMAN, OBJECT, 0.9)], ["wrong_verb"]),
        # Loose boxes for its own class (0.43) but exact ones for another object's pair: wrong object first.
        (
            [(0, C, shift(HUMAN, 4), OBJECT), (0, E, HUMAN, OBJECT)],
            [(0, C, HUMAN, OBJECT, 0.9)],
            ["wrong_object"],
        ),
        # Human box 0.43 and object box 0.43: both boxes.
        ([(0, C, HUMAN, OBJECT)], [(0, C, shift(HUMAN, 4), shift(OBJECT, 4), 0.9)], ["both_boxes"]),
        # Both boxes at 2/18 = 0.11 >= 0.1: still a box error.
        ([(0, C, HUMAN, OBJECT)], [(0, C, shift(HUMAN, 8), shift(OBJECT, 8), 0.9)], ["both_boxes"]),
        # Both boxes at 1/19 = 0.05 < 0.1: background.
        ([(0, C, HUMAN, OBJECT)], [(0, C, shift(HUMAN, 9), shift(OBJECT, 9), 0.9)], ["background"]),
        # Human box 0.43 but object box 0.05: the pair overlaps 0.05 < 0.1, background, not a human-box error.
        ([(0, C, HUMAN, OBJECT)], [(0, C, shift(HUMAN, 4), shift(OBJECT, 9), 0.9)], ["background"]),
        # Human box 1.0, object box 0.11: object box.
        ([(0, C, HUMAN, OBJECT)], [(0, C, HUMAN, shift(OBJECT, 8), 0.9)], ["object_box"]),
        # A pair of another object (horse) at 0.43 for a cup detection: class and box.
        ([(0, E, HUMAN, OBJECT)], [(0, C, shift(HUMAN, 4), shift(OBJECT, 4), 0.9)], ["class_and_box"]),
        # The same class in another image only: background here.
        ([(1, C, HUMAN, OBJECT)], [(0, C, HUMAN, OBJECT, 0.9)], ["background"]),
    ],
)
def test_priority_and_thresholds(gt_rows, det_rows, expected):
    assert kinds(analyze_errors(evaluation(gt_rows, det_rows, num_images=2))) == expected


def test_an_error_targets_a_missed_pair_before_a_found_one():
    # Two pairs of other verbs under the same boxes: the first (g0, sip cup) is found by a hit, the second
    # (g1, wash cup) is missed. The wrong-verb detection targets g1 although g0 comes first in the file;
    # fixing it finds g1: wash cup 0 -> 1, hold cup (no ground truth) does not count.
    wash_cup = 303
    gt = [(0, D, HUMAN, OBJECT), (0, wash_cup, HUMAN, OBJECT)]
    dets = [(0, D, HUMAN, OBJECT, 0.5), (0, C, HUMAN, OBJECT, 0.9)]
    analysis = analyze_errors(evaluation(gt, dets, num_images=1))
    assert kinds(analysis) == ["tp", "wrong_verb"]
    assert analysis.target.tolist() == [0, 1]
    assert analysis.covered.tolist() == [False, True]
    assert analysis.delta("wrong_verb")["full"] == pytest.approx(50, abs=1e-9)  # (1 + 1) / 2 - (1 + 0) / 2


def test_a_fix_that_leaves_a_false_positive_removes_it():
    # The human-box error (0.9) comes after the hit on its pair (0.95): snapped, it would be a duplicate, so
    # fixing it removes it. Before: [hit, miss, hit on g1] -> 28/33; after: [hit, hit] -> 1.
    gt = [(0, C, HUMAN, OBJECT), (0, C, OTHER_HUMAN, OTHER_OBJECT)]
    dets = [
        (0, C, HUMAN, OBJECT, 0.95),
        (0, C, shift(HUMAN, 4), OBJECT, 0.9),
        (0, C, OTHER_HUMAN, OTHER_OBJECT, 0.8),
    ]
    analysis = analyze_errors(evaluation(gt, dets, num_images=1))
    assert kinds(analysis) == ["tp", "human_box", "tp"]
    assert analysis.delta("human_box")["full"] == pytest.approx(100 * 5 / 33, abs=1e-9)


def test_twin_ground_truth_pairs_cannot_both_be_found():
    # Two pairs of one class with the same boxes: the official matching gives every detection the first
    # (MATLAB's tie rule), so the second twin is missed and a copy of it is a duplicate. Fixing removes the
    # duplicate and the added miss (a duplicate again): AP stays 6/11 (recall 1/2), no ΔmAP.
    gt = [(0, C, HUMAN, OBJECT), (0, C, HUMAN, OBJECT)]
    dets = [(0, C, HUMAN, OBJECT, 0.9), (0, C, HUMAN, OBJECT, 0.8)]
    analysis = analyze_errors(evaluation(gt, dets, num_images=1))
    assert kinds(analysis) == ["tp", "duplicate"]
    assert analysis.missed.tolist() == [False, True]
    assert analysis.map["full"] == pytest.approx(100 * 6 / 11, abs=1e-9)
    for name in ("duplicate", MISSED, ALL_FIXED):
        assert analysis.delta(name)["full"] == pytest.approx(0, abs=1e-9)


def test_no_detections_every_pair_missed():
    gt = GroundTruth([0, 1], [C, E], [HUMAN, HUMAN], [OBJECT, OBJECT], num_images=2)
    analysis = analyze_errors(HOIEval(gt, Detections([], [], [], [], []), settings=("default",)))
    assert analysis.counts()[MISSED] == 2 and analysis.map["full"] == 0.0
    assert analysis.delta(MISSED)["full"] == pytest.approx(100, abs=1e-9)


def test_infinite_scores_keep_their_order_when_misses_are_added():
    # -inf ranks last among detections; the added miss still comes after it. Before: [hit g0] of 2 pairs ->
    # 6/11; missed fixed: [hit g0 (-inf), hit g1 (added)] -> 1.
    gt = [(0, C, HUMAN, OBJECT), (0, C, OTHER_HUMAN, OTHER_OBJECT)]
    analysis = analyze_errors(evaluation(gt, [(0, C, HUMAN, OBJECT, -np.inf)], num_images=1))
    assert analysis.delta(MISSED)["full"] == pytest.approx(100 * 5 / 11, abs=1e-9)


def test_needs_the_default_setting():
    ev = evaluation([(0, C, HUMAN, OBJECT)], [(0, C, HUMAN, OBJECT, 1.0)], num_images=1)
    with pytest.raises(ValueError, match="needs the 'default' setting"):
        analyze_errors(HOIEval(ev.gt, ev.dets, settings=("known_object",)))


def ground_truth_lines(annotations: Path) -> list[dict]:
    return [
        {
            "file_name": record.file_name,
            "detections": [
                {"human": list(p.human), "object": list(p.object), "hoi": p.hoi, "score": 1.0} for p in record.pairs
            ],
        }
        for record in load_annotations(annotations)
    ]


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_perfect_prediction_file_has_no_errors(tmp_path, sample_annotations):
    preds = write_lines(tmp_path / "p.jsonl", ground_truth_lines(sample_annotations))
    analysis = analyze_prediction_files(sample_annotations, preds)
    assert analysis.errors.counts() == dict.fromkeys((*ERROR_TYPES, MISSED), 0)
    for name in (*ERROR_TYPES, MISSED, ALL_FIXED):
        assert analysis.errors.delta(name) == {"full": 0.0, "rare": 0.0, "non_rare": 0.0}
    assert analysis.errors.map["full"] == analysis.result["default"]["full"]


def test_evaluate_errors_adds_a_table_and_a_json_object(tmp_path, capsys, sample_annotations):
    sample_predictions = sample_annotations.parent / "visualize_example.jsonl"
    args = ["--annotations", str(sample_annotations), "--predictions", str(sample_predictions)]
    assert main([*args, "--json", str(tmp_path / "plain.json")]) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--json", str(tmp_path / "errors.json"), "--errors"]) == 0
    with_errors = capsys.readouterr().out
    result = json.loads((tmp_path / "plain.json").read_text())
    assert plain == format_table(result) + "\n"
    assert with_errors.startswith(plain)
    # The sample example: the ground truth of image 116 with one verb wrong (carry book for read book), the
    # other 7 images without a line. read book's pair is missed, under the wrong-verb detection; fixing the
    # verb gives read book AP 1: +1/12 of Full, +1/11 of Non-rare (the rare class, wash bus, is missed).
    assert with_errors[len(plain) :].splitlines() == [
        "error (Default)          count     Δ full     Δ rare Δ non-rare",
        "duplicate                    0      +0.00      +0.00      +0.00",
        "wrong verb                   1      +8.33      +0.00      +9.09",
        "wrong object                 0      +0.00      +0.00      +0.00",
        "human box                    0      +0.00      +0.00      +0.00",
        "object box                   0      +0.00      +0.00      +0.00",
        "both boxes                   0      +0.00      +0.00      +0.00",
        "class and box                0      +0.00      +0.00      +0.00",
        "background                   0      +0.00      +0.00      +0.00",
        "missed                      16     +80.30    +100.00     +78.51",
        "all of them                        +80.30    +100.00     +78.51",
        "missed pairs whose boxes a wrong-verb detection matched: 1",
        "Δ: the official mAP with the errors of that type fixed, minus the mAP above",
    ]
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert errors.pop("errors")["types"]["wrong_verb"]["delta_map"] == pytest.approx(
        {"full": 100 / 12, "rare": 0.0, "non_rare": 100 / 11}, abs=1e-9
    )
    assert errors == result


def test_evaluate_errors_with_a_zero_shot_setting_and_a_subset_without_classes(tmp_path, capsys, sample_annotations):
    # Without the image of the sample's one rare class, Rare has no class: null in the JSON, n/a in the table.
    doc = json.loads(sample_annotations.read_text())
    keep = [k for k, entry in enumerate(doc["annotation"]) if not set(entry["hoi"]) & RARE_HOI]
    doc = {key: [doc[key][k] for k in keep] for key in ("filenames", "size", "annotation")}
    annotations = tmp_path / "instances_test2015.json"
    annotations.write_text(json.dumps(doc))
    preds = write_lines(tmp_path / "p.jsonl", ground_truth_lines(annotations)[:2])
    out = tmp_path / "r.json"
    args = ["--annotations", str(annotations), "--predictions", str(preds), "--json", str(out), "--errors"]
    assert main([*args, "--zero-shot", "uv"]) == 0
    table = capsys.readouterr().out
    errors = json.loads(out.read_text())["errors"]
    assert list(errors["map"]) == ["full", "rare", "non_rare", "seen", "unseen"]
    assert errors["map"]["rare"] is None and errors["missed"]["delta_map"]["rare"] is None
    assert "missed" in table and " n/a" in table.splitlines()[-4]
