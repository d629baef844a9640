"""The zero-shot settings (``verl_hoi.zero_shot``): the published class lists, the training protocol, the converter's
``--zero-shot`` and ``--prompt-vocabulary``, and the dataset adapter's rebuilt prompts. Seen / Unseen mAP:
test_hoieval.py and test_evaluate_cli.py."""

from __future__ import annotations

import importlib.util

import pyarrow.parquet as pq
import pytest
from conftest import REPO, as_train_split

from verl_hoi import vocab
from verl_hoi.answer import parse_answer
from verl_hoi.hicodet import GroundTruthPair, ImageAnnotation
from verl_hoi.prompts import build_messages, class_list, hidden_classes
from verl_hoi.zero_shot import ZERO_SHOT_SETTINGS, ZeroShotFilter, seen_classes, training_annotations, unseen_classes

UNSEEN_OBJECTS = ["baseball bat", "clock", "dog", "elephant", "frisbee", "pizza", "refrigerator", "skateboard", "skis",
                  "tennis racket", "toothbrush", "zebra"]  # fmt: skip
UNSEEN_VERBS = ["block", "dribble", "feed", "herd", "hose", "inspect", "install", "move", "park", "ride", "sail",
                "scratch", "sign", "squeeze", "stab", "stop at", "swing", "tag", "toast", "wear"]  # fmt: skip


def test_class_counts_per_setting():
    counts = {setting: len(unseen_classes(setting)) for setting in ZERO_SHOT_SETTINGS}
    assert counts == {"rf_uc": 120, "nf_uc": 120, "uo": 100, "uv": 84}
    assert all(len(seen_classes(s)) == 600 - counts[s] for s in ZERO_SHOT_SETTINGS)
    with pytest.raises(ValueError, match="unknown zero-shot setting 'rf'; valid settings: rf_uc, nf_uc, uo, uv"):
        unseen_classes("rf")


def test_rare_first_is_rare_and_non_rare_first_is_not():
    assert unseen_classes("rf_uc") <= vocab.RARE_HOI
    assert not unseen_classes("nf_uc") & vocab.RARE_HOI


@pytest.mark.parametrize(("setting", "names", "part"), [("uo", UNSEEN_OBJECTS, 1), ("uv", UNSEEN_VERBS, 0)])
def test_unseen_object_and_verb_cover_every_class_of_theirs(setting, names, part):
    """UO: every class of its 12 objects and no other; UV: every class of its 20 verbs and no other."""
    table = vocab.OBJECTS if part == 1 else vocab.VERBS
    ids = {table.index(name) for name in names}
    assert {h for h, classes in enumerate(vocab.HOI_CLASSES) if classes[part] in ids} == unseen_classes(setting)


def test_training_annotations_drop_the_whole_box_pair():
    h, o, other = (1, 1, 9, 9), (5, 5, 20, 20), (30, 30, 40, 40)
    ride_bicycle, hold_bicycle = vocab.hoi_id(vocab.verb_id("ride"), 1), vocab.hoi_id(vocab.verb_id("hold"), 1)
    kept_image = ImageAnnotation("a.jpg", 64, 64, (GroundTruthPair(h, other, hold_bicycle),))
    mixed = ImageAnnotation(
        "b.jpg", 64, 64, (GroundTruthPair(h, o, hold_bicycle), GroundTruthPair(h, o, ride_bicycle),
                          GroundTruthPair(h, other, hold_bicycle))
    )  # fmt: skip
    emptied = ImageAnnotation("c.jpg", 64, 64, (GroundTruthPair(h, o, ride_bicycle),))
    kept, removed = training_annotations([kept_image, mixed, emptied], "uv")  # ride is an unseen verb
    assert kept[0] is kept_image
    assert kept[1].pairs == (GroundTruthPair(h, other, hold_bicycle),)  # hold went with ride: same two boxes
    assert kept[2].pairs == ()
    assert removed == ZeroShotFilter(pairs=3, box_pairs=2, images=1)


def _converter():
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", REPO / "data_prep" / "hicodet_to_parquet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def train_fixture(tmp_path, sample_annotations, sample_images):
    """The sample as a train split, with one more class on image 1's "walk horse" boxes: "ride horse".

    Its box pairs and classes (unseen in): image 0: 2x sit on bench (NF); 1: hold horse (NF), ride horse (NF, UV),
    walk horse + ride horse on one box pair (NF, UV through ride); 2: ride boat (NF, UV); 3: 4x ride motorcycle
    (NF, UV), 2x sit on motorcycle (NF); 4: 2x no interaction motorcycle (NF); 5: wash bus (RF); 6: sit on bench,
    hold book, open book, read book (NF); 7: no pair.
    """

    def add_ride_on_walk(doc: dict) -> None:
        image = doc["annotation"][1]
        walk, ride = image["hoi"].index(143), image["hoi"].index(139)
        for key in ("boxes_h", "boxes_o"):
            image[key].append(image[key][walk])
        for key in ("hoi", "object", "verb"):
            image[key].append(image[key][ride])

    return as_train_split(sample_annotations, sample_images, tmp_path, add_ride_on_walk)


@pytest.mark.parametrize(
    ("setting", "message", "rows"),
    [
        # RF-UC: wash bus (image 5): 1 pair, image 5 emptied
        ("rf_uc", "removed 1 ground-truth pairs (1 human-object pairs) with an unseen class; 1 images left", 6),
        # NF-UC: every class but wash bus and walk horse, whose box pair also carries ride horse:
        # 2 + 4 + 1 + 6 + 2 + 4 = 19 pairs on 2 + 3 + 1 + 6 + 2 + 4 = 18 box pairs; images 0-4 and 6 emptied
        ("nf_uc", "removed 19 ground-truth pairs (18 human-object pairs) with an unseen class; 6 images left", 1),
        # UO: no unseen object in the sample
        ("uo", "removed 0 ground-truth pairs (0 human-object pairs) with an unseen class; 0 images left", 7),
        # UV (ride): image 1's ride horse and walk+ride box pairs (3 pairs), image 2 (1), image 3's 4 ride motorcycle
        ("uv", "removed 8 ground-truth pairs (7 human-object pairs) with an unseen class; 1 images left", 6),
    ],
)
def test_converter_applies_the_protocol_on_train(tmp_path, capsys, train_fixture, setting, message, rows):
    annotations, images = train_fixture
    args = ["--annotations", annotations, "--images", images, "--split", "train", "--out", tmp_path / "out"]
    assert _converter().main([str(a) for a in [*args, "--zero-shot", setting]]) == 0
    assert f"zero-shot {setting}: {message} without a pair" in capsys.readouterr().err
    table = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    assert len(table) == rows
    unseen = unseen_classes(setting)
    for row in table:
        assert (row["extra_info"]["zero_shot"], row["extra_info"]["prompt_vocabulary"]) == (setting, "full")
        # the reward's ground truth never holds an unseen class
        parsed = parse_answer(row["reward_model"]["ground_truth"])
        classes = {vocab.hoi_id(verb, pair.object_id) for pair in parsed.pairs for verb in pair.verb_ids}
        assert classes and not classes & unseen


def test_converter_keeps_the_whole_test_set(tmp_path, capsys, sample_annotations, sample_images):
    args = ["--annotations", sample_annotations, "--images", sample_images, "--split", "test", "--out", tmp_path]
    assert _converter().main([str(a) for a in [*args, "--zero-shot", "nf_uc", "--prompt-vocabulary", "seen"]]) == 0
    assert "zero-shot" not in capsys.readouterr().err
    table = pq.read_table(tmp_path / "test.parquet").to_pylist()
    assert len(table) == 8
    assert {(r["extra_info"]["zero_shot"], r["extra_info"]["prompt_vocabulary"]) for r in table} == {("nf_uc", "seen")}
    # the class list leaves NF-UC's unseen combinations out, sit on bench (245) among them
    content = table[0]["prompt"][0]["content"]
    assert "bench: " in content and "sit on" not in content.split("bench: ")[1].splitlines()[0]


def test_prompt_vocabulary_seen_leaves_the_unseen_classes_out():
    def listed(text: str) -> set[int]:
        lines = text.splitlines()
        objects = lines[0].removeprefix("Valid object classes: ").removesuffix(".").split(", ")
        pairs = set()
        for line in lines[2:]:
            name, verbs = line.split(": ")
            pairs |= {vocab.hoi_id(vocab.verb_id(v), vocab.object_id(name)) for v in verbs.split(", ")}
        return pairs, objects

    assert listed(class_list())[0] == set(range(600))
    for setting in ZERO_SHOT_SETTINGS:
        pairs, objects = listed(class_list(hidden_classes("seen", setting)))
        assert pairs == seen_classes(setting)
        assert ("zebra" in objects) == (setting != "uo")
    assert hidden_classes("full", "uo") == frozenset()
    with pytest.raises(ValueError, match="prompt vocabulary 'seen' needs a zero-shot setting"):
        hidden_classes("seen", None)
    text = build_messages("hoi_r1", "norm1000", (1000, 1000), hidden_classes("seen", "uo"))[0]["content"]
    assert "zebra" not in text and "giraffe: " in text
