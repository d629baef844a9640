"""``python -m verl_hoi.evaluate``: the three kinds of prediction lines, line order, missing and
unknown images, verl validation dumps, anno.mat Known-Object labels, and user mistakes. Single prediction lines
read in the library: test_prediction_files.py."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.io import savemat

import verl_hoi.scored_triplets
from verl_hoi.answer import render_answer, render_response
from verl_hoi.convert import ConvertOptions, ground_truth_pairs, iter_rows, row_schema, select_images, write_parquet
from verl_hoi.evaluate import main
from verl_hoi.families import DEFAULT_FAMILY, available_families, get_family
from verl_hoi.frames import model_size
from verl_hoi.hicodet import load_annotations
from verl_hoi.prediction_files import line_detections
from verl_hoi.scored_triplets import response_detections, score_policy_choices
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def gt_detection_lines(annotations_path: Path, score: float | None = 1.0) -> list[dict]:
    """Ground truth as detection lines, one per image with pairs."""
    lines = []
    for record in load_annotations(annotations_path):
        if record.pairs:
            dets = [{"human": list(p.human), "object": list(p.object), "hoi": p.hoi} for p in record.pairs]
            if score is not None:
                dets = [d | {"score": score} for d in dets]
            lines.append({"file_name": record.file_name, "detections": dets})
    return lines


def gt_response_lines(annotations_path: Path, frame: str, family: str = DEFAULT_FAMILY) -> list[dict]:
    """Ground truth rendered as model responses in ``frame`` for ``family``'s default budget, with the frame
    metadata."""
    found = get_family(family)
    lines = []
    for record in load_annotations(annotations_path):
        size = model_size((record.width, record.height), found.min_pixels, found.max_pixels, found.block)
        answer = render_answer(ground_truth_pairs(record, frame, size))
        lines.append(
            {
                "file_name": record.file_name,
                "response": render_response(answer, "people and things"),
                "frame": frame,
                "image_size": [record.width, record.height],
                "model_size": list(size),
                "family": family,
            }
        )
    return lines


def evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ground_truth_detections_give_100_and_a_complete_json(tmp_path, capsys, caplog, sample_annotations):
    preds = write_lines(tmp_path / "p.jsonl", gt_detection_lines(sample_annotations))
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(tmp_path / "r.json")]
    code, out, err = evaluate(capsys, *args)
    assert code == 0, err
    assert out.splitlines()[0] == "setting                     full      rare  non-rare"
    assert "Default       mAP         100.00    100.00    100.00\n" in out
    assert "Known-Object  mAP         100.00    100.00    100.00\n" in out
    assert "classes with ground truth: 12 (rare 1, non-rare 11)\n" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result) == {"default", "known_object", "recall", "num_classes", "notes", "settings", "per_class"}
    assert result["notes"] == []
    assert result["num_classes"] == {"full": 12, "rare": 1, "non_rare": 11}
    for setting in ("default", "known_object"):
        assert set(result[setting]) == set(result["recall"][setting]) == {"full", "rare", "non_rare"}
        assert round(result[setting]["full"], 2) == 100.0
    settings = result["settings"]
    assert settings["zero_shot"] is None
    assert settings["score_policy"] == "given"
    assert settings["known_object_source"].startswith("images with box ground truth")
    assert (settings["num_images"], settings["num_images_predicted"], settings["num_images_missing"]) == (8, 7, 1)
    assert settings["num_detections"] == settings["num_ground_truth_pairs"]
    assert len(result["per_class"]["ap"]["default"]) == NUM_HOI
    # A class without ground truth in the sample is null, not a number.
    assert result["per_class"]["ap"]["default"][result["per_class"]["npos"].index(0)] is None
    assert "1 of 8 annotated images have no prediction line" in caplog.text


def test_line_order_does_not_matter(tmp_path, capsys, sample_annotations):
    # Constant scores: every tie is broken by image order, then position in the line.
    lines = gt_detection_lines(sample_annotations)
    for line in lines:  # a wrong copy first in each image makes the order visible in the AP
        first = line["detections"][0]
        line["detections"].insert(0, first | {"human": [1, 1, 2, 2]})
    results = []
    for seed in (0, 1):
        shuffled = lines[:]
        random.Random(seed).shuffle(shuffled)
        preds = write_lines(tmp_path / f"p{seed}.jsonl", shuffled)
        out = tmp_path / f"r{seed}.json"
        code, _, err = evaluate(
            capsys, "--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)
        )
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    assert results[0]["default"] == results[1]["default"]
    assert results[0]["per_class"] == results[1]["per_class"]
    assert results[0]["default"]["full"] < 100


@pytest.mark.parametrize("frame", ["resized", "original", "norm1000"])
def test_ground_truth_responses_give_100(tmp_path, capsys, sample_annotations, frame):
    preds = write_lines(tmp_path / "p.jsonl", gt_response_lines(sample_annotations, frame))
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(tmp_path / "r.json")]
    code, out, err = evaluate(capsys, *args)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert round(result["default"]["full"], 2) == 100.0
    assert result["settings"]["score_policy"] == "rank"
    assert result["settings"]["prediction_stats"]["frames"] == {frame: 8}


@pytest.mark.parametrize("family", available_families())
def test_ground_truth_in_each_familys_frame_gives_100(tmp_path, capsys, sample_annotations, family):
    frame = get_family(family).frame
    preds = write_lines(tmp_path / "p.jsonl", gt_response_lines(sample_annotations, frame, family))
    out = tmp_path / "r.json"
    code, _, err = evaluate(
        capsys, "--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)
    )
    assert code == 0, err
    assert round(json.loads(out.read_text())["default"]["full"], 2) == 100.0


def test_lines_of_several_families_map_back_per_line(tmp_path, capsys, sample_annotations):
    """A Qwen3-VL answer in 0..1000 scores exactly as the same boxes in original pixels, line by line in one file."""
    pixels = gt_response_lines(sample_annotations, "original")
    norm1000 = gt_response_lines(sample_annotations, "norm1000", "qwen3_vl")
    resized = gt_response_lines(sample_annotations, "resized", "qwen3_5")
    # without model_size a line's size comes from its budget in its family's blocks
    for line in resized:
        line.update(min_pixels=get_family("qwen3_5").min_pixels, max_pixels=get_family("qwen3_5").max_pixels)
        del line["model_size"]
    results = []
    for lines in (pixels, [*norm1000[:3], *resized[3:6], *pixels[6:]]):
        out = tmp_path / f"r{len(results)}.json"
        preds = write_lines(tmp_path / f"p{len(results)}.jsonl", lines)
        code, _, err = evaluate(
            capsys, "--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)
        )
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    assert results[1]["per_class"] == results[0]["per_class"]
    assert round(results[1]["default"]["full"], 2) == 100.0
    assert results[1]["settings"]["prediction_stats"]["frames"] == {"norm1000": 3, "resized": 3, "original": 2}


@pytest.mark.parametrize(("policy", "applied"), [("auto", "given / rank"), ("constant", "constant")])
def test_mixed_lines_name_each_policy_applied(tmp_path, capsys, sample_annotations, policy, applied):
    detection_lines = gt_detection_lines(sample_annotations)
    names = {line["file_name"] for line in detection_lines}
    responses = gt_response_lines(sample_annotations, "resized")
    preds = write_lines(
        tmp_path / "p.jsonl", detection_lines + [line for line in responses if line["file_name"] not in names]
    )
    out = tmp_path / "r.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)]
    code, table, err = evaluate(capsys, *args, "--score-policy", policy)
    assert code == 0, err
    assert json.loads(out.read_text())["settings"]["score_policy"] == applied
    assert f"score policy: {applied};" in table


def test_a_policy_registered_after_import_works_in_every_consumer(tmp_path, capsys, monkeypatch, sample_annotations):
    registry = dict(verl_hoi.scored_triplets._POLICIES)
    monkeypatch.setattr(verl_hoi.scored_triplets, "_POLICIES", registry)  # the built-in registry comes back afterwards
    verl_hoi.scored_triplets.register_score_policy("reversed", lambda inputs: np.arange(inputs.count, dtype=np.float64))
    assert score_policy_choices()[-1] == "reversed"
    # verl_hoi.scored_triplets: a response
    response = gt_response_lines(sample_annotations, "original")[0]
    sizes = {"image_size": tuple(response["image_size"]), "model_size": tuple(response["model_size"])}
    scored = response_detections(response["response"], frame="original", score_policy="reversed", **sizes)
    assert len(scored.hoi) > 1 and scored.score.tolist() == list(range(len(scored.hoi)))
    # verl_hoi.prediction_files: both kinds of line
    detection_line = gt_detection_lines(sample_annotations, score=None)[0]
    scored_line = line_detections(detection_line, score_policy="reversed")
    assert scored_line.score.tolist() == list(range(len(detection_line["detections"])))
    assert line_detections(response, score_policy="reversed").score.tolist() == scored.score.tolist()
    # python -m verl_hoi.evaluate: the option's choices
    preds = write_lines(tmp_path / "p.jsonl", gt_detection_lines(sample_annotations, score=None))
    out = tmp_path / "r.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)]
    code, _, err = evaluate(capsys, *args, "--score-policy", "reversed")
    assert code == 0, err
    assert json.loads(out.read_text())["settings"]["score_policy"] == "reversed"


def test_constant_policy_on_responses_and_given_is_rejected(tmp_path, capsys, sample_annotations):
    preds = write_lines(tmp_path / "p.jsonl", gt_response_lines(sample_annotations, "resized"))
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds)]
    assert evaluate(capsys, *args, "--score-policy", "constant")[0] == 0
    code, out, err = evaluate(capsys, *args, "--score-policy", "given")
    assert code == 2 and err.startswith("error: ") and "'given' needs detections" in err and not out


def subset(annotations_path: Path, keep: list[int], out: Path) -> Path:
    """The annotation file with only the images ``keep`` (indices into the file)."""
    doc = json.loads(annotations_path.read_text())
    for key in ("filenames", "size", "annotation"):
        doc[key] = [doc[key][i] for i in keep]
    out.write_text(json.dumps(doc))
    return out


def test_a_subset_without_rare_classes_has_no_rare_mean(tmp_path, capsys, sample_annotations):
    # image 5 holds the sample's only rare class (62): without it the Rare mean is over no class
    annotations = subset(sample_annotations, [0, 1, 2, 3, 4, 6, 7], tmp_path / "ann.json")
    preds = write_lines(tmp_path / "p.jsonl", gt_detection_lines(annotations))
    out = tmp_path / "r.json"
    code, table, err = evaluate(
        capsys, "--annotations", str(annotations), "--predictions", str(preds), "--json", str(out)
    )
    assert code == 0, err
    assert "Default       mAP         100.00       n/a    100.00" in table
    assert "Known-Object  mRec        100.00       n/a    100.00" in table
    note = (
        "rare: no class of this subset has ground truth in these annotations, "
        "so its mAP and mean recall are undefined (null)"
    )
    assert f"note: {note}" in table
    result = json.loads(out.read_text())  # strict JSON: no NaN
    assert result["default"]["rare"] is None and result["recall"]["known_object"]["rare"] is None
    assert round(result["default"]["full"], 2) == 100.0
    assert result["notes"] == [note]
    assert result["num_classes"] == {"full": 11, "rare": 0, "non_rare": 11}


def test_annotations_without_any_pair_give_null_everywhere(tmp_path, capsys, sample_annotations):
    annotations = subset(sample_annotations, [7], tmp_path / "ann.json")  # the sample's image without pairs
    preds = write_lines(tmp_path / "p.jsonl", [{"file_name": "HICO_test2015_00000154.jpg", "detections": []}])
    out = tmp_path / "r.json"
    code, table, err = evaluate(
        capsys, "--annotations", str(annotations), "--predictions", str(preds), "--json", str(out)
    )
    assert code == 0, err
    assert "Default       mAP            n/a       n/a       n/a" in table
    result = json.loads(out.read_text())
    assert [result["default"][name] for name in ("full", "rare", "non_rare")] == [None, None, None]
    assert [note.split(":")[0] for note in result["notes"]] == ["full", "rare", "non-rare"]


NAME = "HICO_test2015_00000001.jpg"


@pytest.fixture
def dump_parquet(tmp_path) -> Callable[[list[dict]], Path]:
    def write(rows: list[dict]) -> Path:
        path = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path

    return write


ROW = {
    "prompt": [{"role": "user", "content": "<image>Find."}],
    "reward_model": {"ground_truth": "[]"},
    "extra_info": {"index": 0, "file_name": NAME, "frame": "original", "image_size": [640, 427]},
}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # two rows claim one index
        ([ROW, ROW], "d.parquet: row 1: index 0 is also the index of row 0"),
        # a ground truth that is not text
        (
            [ROW | {"reward_model": {"ground_truth": None}}],
            "d.parquet: row 0: reward_model.ground_truth must be the answer text; got {'ground_truth': None}",
        ),
    ],
)
def test_bad_dump_parquet(tmp_path, capsys, sample_annotations, dump_parquet, rows, message):
    parquet = dump_parquet(rows)
    dump = write_lines(tmp_path / "dump.jsonl", [{"input": "x", "output": "[]", "gts": "[]"}])
    args = ["--annotations", str(sample_annotations), "--predictions", str(dump), "--data", str(parquet)]
    code, out, err = evaluate(capsys, *args)
    assert (code, out, err) == (2, "", f"error: {tmp_path}/{message}\n")


def test_anno_mat_known_object_labels(tmp_path, capsys, sample_annotations):
    # A high-scored false positive of a sample class in an image without boxes of its object. With
    # anno.mat saying that image shows the object, Known-Object keeps it; box-derived labels drop it.
    records = load_annotations(sample_annotations)
    names = [r.file_name for r in records]
    record = next(r for r in records if r.pairs)
    hoi = record.pairs[0].hoi
    obj = HOI_CLASSES[hoi][1]
    other = next(r for r in records if all(HOI_CLASSES[p.hoi][1] != obj for p in r.pairs))
    wrong = {"human": [1, 1, 5, 5], "object": [1, 1, 5, 5], "hoi": hoi, "score": 2.0}
    lines = gt_detection_lines(sample_annotations)
    line = next((line for line in lines if line["file_name"] == other.file_name), None)
    if line is None:
        lines.append({"file_name": other.file_name, "detections": [wrong]})
    else:
        line["detections"].append(wrong)
    preds = write_lines(tmp_path / "p.jsonl", lines)
    labels = np.full((NUM_HOI, len(names)), np.nan)
    labels[hoi, names.index(other.file_name)] = 1
    for r in records:
        for p in r.pairs:
            labels[p.hoi, names.index(r.file_name)] = 1
    mat = tmp_path / "anno.mat"
    savemat(mat, {"anno_test": labels, "list_test": np.array(names, dtype=object).reshape(-1, 1)})
    out_boxes, out_mat = tmp_path / "boxes.json", tmp_path / "mat.json"
    base = ["--annotations", str(sample_annotations), "--predictions", str(preds)]
    assert evaluate(capsys, *base, "--json", str(out_boxes))[0] == 0
    assert evaluate(capsys, *base, "--json", str(out_mat), "--known-object-source", str(mat))[0] == 0
    boxes, labelled = json.loads(out_boxes.read_text()), json.loads(out_mat.read_text())
    assert boxes["per_class"]["ap"]["known_object"][hoi] == pytest.approx(100.0)
    assert labelled["per_class"]["ap"]["known_object"][hoi] < 100.0
    assert labelled["per_class"]["ap"]["known_object"][hoi] == labelled["per_class"]["ap"]["default"][hoi]
    assert "anno.mat" in labelled["settings"]["known_object_source"]


@pytest.fixture
def test_parquet(tmp_path, sample_annotations, sample_images) -> Path:
    records = load_annotations(sample_annotations)
    options = ConvertOptions(split="test")
    path = tmp_path / "test.parquet"
    write_parquet(iter_rows(records, select_images(records, "test"), sample_images, options), path, row_schema("embed"))
    return path


def dump_line(row: dict) -> dict:
    """What verl's _dump_generations writes for a row answered with its ground truth: input/output/gts/score/step
    plus the reward's extra keys."""
    answer = row["reward_model"]["ground_truth"]
    prompt = row["prompt"][0]["content"].replace("<image>", "")
    return {
        "input": f"system\nuser\n{prompt}\nassistant\n",
        "output": render_response(answer, "thinking"),
        "gts": answer,
        "score": 1.0,
        "step": 3,
        "reward": 1.0,
        "iou": 1.0,
    }


def test_verl_validation_dump(tmp_path, capsys, sample_annotations, test_parquet):
    # Lines shuffled (validation_shuffle) and each image twice (val_kwargs.n = 2).
    rows = pq.read_table(test_parquet).to_pylist()
    lines = [dump_line(row) for row in rows for _ in range(2)]
    random.Random(0).shuffle(lines)
    dump = write_lines(tmp_path / "3.jsonl", lines)
    args = ["--annotations", str(sample_annotations), "--predictions", str(dump)]
    code, _, err = evaluate(capsys, *args)
    assert code == 2 and "--data" in err
    code, out, err = evaluate(capsys, *args, "--data", str(test_parquet), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert round(result["default"]["full"], 2) == 100.0
    assert result["settings"]["zero_shot"] is None and "seen" not in result["default"]
    stats = result["settings"]["prediction_stats"]
    assert stats["dump_lines"] == 16 and stats["dump_repeats_skipped"] == 8
    assert result["settings"]["num_images_predicted"] == 8


# The sample's 12 classes with ground truth; unseen among them: RF-UC 62 (the rare one), UV 38, 139 and 153
# (images 2, 1 and 3), UO none.
ZERO_SHOT_SUBSETS = ("full", "rare", "non_rare", "seen", "unseen")


@pytest.mark.parametrize("kind", ["detections", "responses"])
def test_zero_shot_ground_truth_gives_100_seen_and_unseen(tmp_path, capsys, sample_annotations, kind):
    lines = (
        gt_detection_lines(sample_annotations)
        if kind == "detections"
        else gt_response_lines(sample_annotations, "resized")
    )
    preds = write_lines(tmp_path / "p.jsonl", lines)
    out = tmp_path / "r.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)]
    code, table, err = evaluate(capsys, *args, "--zero-shot", "rf_uc")
    assert code == 0, err
    assert "Default       mAP         100.00    100.00    100.00    100.00    100.00\n" in table
    result = json.loads(out.read_text())
    assert result["settings"]["zero_shot"] == "rf_uc"
    assert result["num_classes"] == {"full": 12, "rare": 1, "non_rare": 11, "seen": 11, "unseen": 1}
    for values in (result["default"], result["known_object"], *result["recall"].values()):
        assert list(values) == list(ZERO_SHOT_SUBSETS)
        assert {name: round(value, 2) for name, value in values.items()} == dict.fromkeys(ZERO_SHOT_SUBSETS, 100.0)
    assert result["notes"] == []


def test_zero_shot_table_with_detections_of_unseen_classes_only(tmp_path, capsys, sample_annotations):
    # Ground truth of UV's 3 unseen classes only: AP and recall 1 for them, 0 for the 9 seen ones. Full 3/12,
    # Rare 0 (62 is seen), Non-rare 3/11 = 27.27, Seen 0, Unseen 1.
    unseen = {38, 139, 153}
    lines = []
    for line in gt_detection_lines(sample_annotations):
        detections = [d for d in line["detections"] if d["hoi"] in unseen]
        if detections:
            lines.append(line | {"detections": detections})
    preds = write_lines(tmp_path / "p.jsonl", lines)
    out = tmp_path / "r.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)]
    code, table, err = evaluate(capsys, *args, "--zero-shot", "uv")
    assert code == 0, err
    assert table == (
        "setting                     full      rare  non-rare      seen    unseen\n"
        "Default       mAP          25.00      0.00     27.27      0.00    100.00\n"
        "Default       mRec         25.00      0.00     27.27      0.00    100.00\n"
        "Known-Object  mAP          25.00      0.00     27.27      0.00    100.00\n"
        "Known-Object  mRec         25.00      0.00     27.27      0.00    100.00\n"
        "classes with ground truth: 12 (rare 1, non-rare 11; zero-shot uv: seen 9, unseen 3)\n"
        "images: 8 (3 predicted, 5 without a line); detections: 6\n"
        "score policy: given; known-object source: images with box ground truth of the object (no anno.mat)\n"
        "frame: original (annotation boxes as stored, 1-based inclusive; IoU with +1 pixel)\n"
    )
    result = json.loads(out.read_text())
    assert result["default"]["seen"] == 0.0 and result["recall"]["default"]["seen"] == 0.0
    assert result["default"]["unseen"] == pytest.approx(100.0, abs=1e-9)
    assert result["default"]["full"] == pytest.approx(25.0, abs=1e-9)
    assert result["default"]["non_rare"] == pytest.approx(300 / 11, abs=1e-9)


def test_zero_shot_without_unseen_ground_truth_has_no_unseen_mean(tmp_path, capsys, sample_annotations):
    preds = write_lines(tmp_path / "p.jsonl", gt_detection_lines(sample_annotations))
    out = tmp_path / "r.json"
    args = ["--annotations", str(sample_annotations), "--predictions", str(preds), "--json", str(out)]
    code, table, err = evaluate(capsys, *args, "--zero-shot", "uo")
    assert code == 0, err
    assert "Default       mAP         100.00    100.00    100.00    100.00       n/a\n" in table
    assert "Known-Object  mRec        100.00    100.00    100.00    100.00       n/a\n" in table
    assert "classes with ground truth: 12 (rare 1, non-rare 11; zero-shot uo: seen 12, unseen 0)\n" in table
    note = (
        "unseen: no class of this subset has ground truth in these annotations, "
        "so its mAP and mean recall are undefined (null)"
    )
    assert table.endswith(f"note: {note}\n")
    result = json.loads(out.read_text())
    assert result["notes"] == [note]
    assert result["num_classes"]["unseen"] == 0
    for values in (result["default"], result["known_object"], *result["recall"].values()):
        assert values["unseen"] is None and round(values["seen"], 2) == 100.0


def zero_shot_parquet(test_parquet: Path, settings: list[str | None], out: Path) -> Path:
    """``test_parquet`` with ``extra_info.zero_shot`` of row ``r`` set to ``settings[r]``."""
    rows = pq.read_table(test_parquet).to_pylist()
    for row, setting in zip(rows, settings, strict=True):
        row["extra_info"]["zero_shot"] = setting
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def test_verl_validation_dump_takes_the_setting_its_rows_record(tmp_path, capsys, sample_annotations, test_parquet):
    data = zero_shot_parquet(test_parquet, ["uv"] * 8, tmp_path / "uv.parquet")
    dump = write_lines(tmp_path / "3.jsonl", [dump_line(row) for row in pq.read_table(data).to_pylist()])
    args = ["--annotations", str(sample_annotations), "--predictions", str(dump), "--data", str(data)]
    results = []
    for option in ((), ("--zero-shot", "uv")):
        out = tmp_path / f"r{len(results)}.json"
        code, table, err = evaluate(capsys, *args, *option, "--json", str(out))
        assert code == 0, err
        assert "classes with ground truth: 12 (rare 1, non-rare 11; zero-shot uv: seen 9, unseen 3)\n" in table
        results.append(json.loads(out.read_text()))
    assert results[0] == results[1] | {"settings": results[0]["settings"]}
    assert results[0]["settings"]["zero_shot"] == "uv"
    assert {name: round(value, 2) for name, value in results[0]["default"].items()} == dict.fromkeys(
        ZERO_SHOT_SUBSETS, 100.0
    )


@pytest.mark.parametrize(
    ("settings", "option", "message"),
    [
        (
            ["uv"] * 8,
            ("--zero-shot", "rf_uc"),
            "--zero-shot rf_uc disagrees with {data}, whose rows record the setting uv",
        ),
        (
            ["uv"] * 7 + [None],
            (),
            "{data}: row 7: extra_info.zero_shot is None but row 0's is 'uv': "
            "the rows of one evaluation must record one zero-shot setting",
        ),
        (
            [None, "UV", *[None] * 6],
            (),
            "{data}: row 1: extra_info.zero_shot must be one of rf_uc, nf_uc, uo, uv or null; got 'UV'",
        ),
    ],
)
def test_zero_shot_settings_that_disagree(
    tmp_path, capsys, sample_annotations, test_parquet, settings, option, message
):
    data = zero_shot_parquet(test_parquet, settings, tmp_path / "z.parquet")
    dump = write_lines(tmp_path / "3.jsonl", [dump_line(row) for row in pq.read_table(data).to_pylist()])
    args = ["--annotations", str(sample_annotations), "--predictions", str(dump), "--data", str(data), *option]
    assert evaluate(capsys, *args) == (2, "", f"error: {message.format(data=data)}\n")
