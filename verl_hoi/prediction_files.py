"""Prediction files read into detections on the annotations' images, and evaluated (no printing).

A predictions file is JSONL, one line per image, in any line order; :func:`verl_hoi.jsonl.iter_jsonl` streams
its lines, :func:`line_detections` scores one line, :func:`load_predictions` aligns a whole file to
``verl_hoi.hicodet`` records as :class:`verl_hoi.hoieval.Detections`, and :func:`evaluate_predictions`
runs the official metric (:class:`verl_hoi.hoieval.HOIEval`) on an annotation and a predictions file,
with the Seen / Unseen means of a zero-shot setting (:mod:`verl_hoi.zero_shot`) when one is given or
:func:`data_zero_shot` finds it recorded in the parquet's rows.
A line is one of

- ``{"file_name", "detections": [{"human", "object", "hoi", "score"}, ...]}``: boxes in the
  annotation's own frame;
- ``{"file_name", "response", "frame", "image_size", "model_size", ...}`` (``verl_hoi.predict``):
  parsed and mapped back to the original frame by :func:`verl_hoi.scored_triplets.response_detections`,
  each line by its own frame and sizes (so lines of different model families mix); without
  ``model_size``, it is computed from ``min_pixels`` / ``max_pixels`` and the line's ``patch_size`` /
  ``merge_size`` (or its ``family``'s, Qwen2.5-VL when it names none);
- a line of verl's validation dump (``input``, ``output``, ``gts``, ...): it names no image, so each
  is matched to a row of the parquet the run validated on, by ``index`` when the dump has it, else by
  the ground-truth answer, ties broken by the prompt text in ``input``, then by row order; only the
  first response of an image is kept.

Values are checked as JSON reads them, nothing is coerced: a number is a JSON number (not a string,
not ``true``), an integer has no fraction (``"hoi": 3.0`` is refused), a box is ``[x1, y1, x2, y2]``
with ``x1 <= x2``, ``y1 <= y2`` and finite coordinates within ``±answer.MAX_COORD``, a ``score`` is a
finite number, ``image_size`` / ``model_size`` are ``[width, height]`` integers >= 1 (``image_size``
must be the annotated size of the image), ``prefilled_think`` is a boolean or null. Every error names
the file and the line (and the detection).

>>> line = {"file_name": "a.jpg", "detections": [{"human": [1, 1, 9, 9], "object": [5, 5, 20, 20], "hoi": 7}]}
>>> dets = line_detections(line, score_policy="constant")
>>> dets.hoi.tolist(), dets.score.tolist(), dets.object.tolist()
([7], [1.0], [[5.0, 5.0, 20.0, 20.0]])
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.answer import MAX_COORD
from verl_hoi.frames import model_size as compute_model_size
from verl_hoi.hicodet import ImageAnnotation, known_objects_from_anno_mat, load_annotations
from verl_hoi.hoieval import KNOWN_FROM_BOXES, SETTINGS, Detections, GroundTruth, HOIEval
from verl_hoi.jsonl import iter_jsonl
from verl_hoi.prompts import IMAGE_PLACEHOLDER, prefilled_think
from verl_hoi.rows import row_geometry
from verl_hoi.scored_triplets import (
    AUTO_POLICY,
    MAX_PER_IMAGE,
    ImageDetections,
    ScoreInputs,
    ScorePolicy,
    get_score_policy,
    resolve_policy,
    response_detections,
    score_policy_choices,
)
from verl_hoi.vocab import NUM_HOI, hoi_name
from verl_hoi.zero_shot import ZERO_SHOT_SETTINGS, check_setting, unseen_classes

__all__ = ["PredictionSet", "data_zero_shot", "evaluate_predictions", "line_detections", "load_predictions"]

logger = logging.getLogger(__name__)

_DUMP_KEYS = frozenset({"input", "output", "gts"})
_NUMBER_TYPES = frozenset({int, float})  # a JSON number as it is read; bool is a type of its own


def _check_policy(score_policy: str) -> None:
    choices = score_policy_choices()
    if score_policy not in choices:
        raise ValueError(f"unknown score policy {score_policy!r}; valid policies: {', '.join(choices)}")


class PredictionSet:
    """Detections of a predictions file aligned to the annotations, with what was found on the way.

    Attributes:
        detections: :class:`verl_hoi.hoieval.Detections`, image order then position within the line.
        score_policy: the policy applied, e.g. ``"given"`` or ``"rank"``.
        stats: counts (``lines``, ``images_predicted``, ``images_missing``, ``detections``,
            ``responses``, ``pairs``, ``invalid_items``, ``frames`` per frame, ``dump_*``).
    """

    def __init__(self, detections: Detections, score_policy: str, stats: dict[str, Any]) -> None:
        self.detections, self.score_policy, self.stats = detections, score_policy, stats


def _box_problem(box: object) -> str:
    """What is wrong with a detection's box, or ``""``."""
    if not isinstance(box, list) or len(box) != 4 or not all(type(v) in _NUMBER_TYPES for v in box):
        return f"must be [x1, y1, x2, y2], 4 numbers; got {box!r:.60}"
    if not all(-MAX_COORD <= v <= MAX_COORD for v in box):
        return f"{box!r:.60} has a coordinate that is not a finite number within ±{MAX_COORD:g}"
    if box[2] < box[0] or box[3] < box[1]:
        return f"{box!r:.60} has x2 < x1 or y2 < y1 (boxes are [x1, y1, x2, y2])"
    return ""


def _detection_problem(detection: object, policy: ScorePolicy) -> str:
    """What is wrong with one detection (``score`` only when ``policy`` ranks by it), or ``""``."""
    given = policy.uses_given_scores
    if not isinstance(detection, dict):
        return f"not an object; got {detection!r:.60}"
    for key in ("human", "object", "hoi", *(("score",) if given else ())):
        if key not in detection:
            return f"no {key!r}" + (f" (score policy {policy.name!r} ranks by it)" if key == "score" else "")
    for key in ("human", "object"):
        if problem := _box_problem(detection[key]):
            return f"{key!r} {problem}"
    hoi = detection["hoi"]
    if type(hoi) is not int or not 0 <= hoi < NUM_HOI:
        return f"'hoi' must be an integer in [0, {NUM_HOI}) (a 0-based HOI class); got {hoi!r:.60}"
    score = detection.get("score")
    if given and (type(score) not in _NUMBER_TYPES or not np.isfinite(score)):
        return f"'score' must be a finite number; got {score!r:.60}"
    return ""


def _detection_table(items: list, given: bool) -> np.ndarray | None:
    """``(n, 10)`` float64 rows ``human, object, score, hoi`` when every detection is valid, else None.

    The same checks as :func:`_detection_problem`, on whole columns: this runs on every detection of a file.
    """
    try:
        rows = [[*d["human"], *d["object"], d["score"] if given else 0, d["hoi"]] for d in items]
    except (KeyError, TypeError):
        return None
    if any(len(row) != 10 for row in rows):
        return None
    if {type(v) for row in rows for v in row[:9]} - _NUMBER_TYPES or {type(row[9]) for row in rows} - {int}:
        return None
    table = np.array(rows, dtype=np.float64).reshape(len(items), 10)
    boxes, score, hoi = table[:, :8], table[:, 8], table[:, 9]
    valid = (
        (np.abs(boxes) <= MAX_COORD).all()  # NaN fails too
        and (boxes[:, 2::4] >= boxes[:, 0::4]).all()
        and (boxes[:, 3::4] >= boxes[:, 1::4]).all()
        and np.isfinite(score).all()
        and ((hoi >= 0) & (hoi < NUM_HOI)).all()
    )
    return table if valid else None


def _detection_line(line: dict, where: str, policy: ScorePolicy) -> ImageDetections:
    """The detections of a ``{"file_name", "detections"}`` line, scored by ``policy``."""
    items = line["detections"]
    if not isinstance(items, list):
        raise ValueError(f"{where}: 'detections' must be a list of objects; got {items!r:.60}")
    if policy.uses_logprobs:
        raise ValueError(f"{where}: score policy {policy.name!r} needs responses, not detections")
    table = _detection_table(items, policy.uses_given_scores)
    if table is None:
        problems = (f"detection {k}: {p}" for k, d in enumerate(items) if (p := _detection_problem(d, policy)))
        raise ValueError(f"{where}: {next(problems, 'a detection is malformed')}")
    score = policy(ScoreInputs(len(items), given=table[:, 8] if policy.uses_given_scores else None))
    return ImageDetections(table[:, 9].astype(np.int64), table[:, :4], table[:, 4:8], score)


def _size(value: Any, name: str, where: str) -> tuple[int, int]:
    """``[width, height]``, two integers >= 1."""
    if not isinstance(value, list) or len(value) != 2 or any(type(v) is not int or v < 1 for v in value):
        raise ValueError(f"{where}: {name!r} must be [width, height], two integers >= 1; got {value!r:.60}")
    return value[0], value[1]


def _response_line(line: dict, image_size: tuple[int, int] | None, where: str, policy: ScorePolicy) -> ImageDetections:
    if policy.uses_given_scores:
        raise ValueError(f"{where}: score policy {policy.name!r} needs detections with scores, not responses")
    response = line["response"]
    if not isinstance(response, str):
        raise ValueError(f"{where}: 'response' must be the model's text; got {response!r:.60}")
    frame = line.get("frame")
    if not isinstance(frame, str):
        raise ValueError(f"{where}: a response line needs its 'frame' (and 'image_size', 'model_size')")
    if "image_size" in line:
        line_size = _size(line["image_size"], "image_size", where)
        if image_size is not None and line_size != tuple(image_size):
            raise ValueError(
                f"{where}: 'image_size' {list(line_size)} is not the image's size {list(image_size)} "
                "(a prediction for another image, or for a resized copy?)"
            )
        image_size = line_size
    elif image_size is None:
        raise ValueError(f"{where}: a response line needs its 'image_size'")
    if "model_size" in line:
        size = _size(line["model_size"], "model_size", where)
    elif "min_pixels" in line and "max_pixels" in line:
        budget = line["min_pixels"], line["max_pixels"]
        if any(type(v) is not int or v < 1 for v in budget):
            raise ValueError(f"{where}: 'min_pixels' and 'max_pixels' must be integers >= 1; got {list(budget)!r:.60}")
        try:
            _, patch, merge = row_geometry(line, "the line")
            size = compute_model_size(image_size, *budget, patch * merge)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    elif frame == "resized":
        raise ValueError(f"{where}: frame 'resized' needs 'model_size' (or 'min_pixels' and 'max_pixels')")
    else:
        size = image_size
    prefilled = line.get("prefilled_think")
    if prefilled is not None and type(prefilled) is not bool:
        raise ValueError(f"{where}: 'prefilled_think' must be true, false or null; got {prefilled!r:.60}")
    try:
        return response_detections(
            response,
            frame=frame,
            image_size=image_size,
            model_size=size,
            score_policy=policy.name,
            token_logprobs=line.get("token_logprobs"),
            token_offsets=line.get("token_offsets"),
            prefilled_think=bool(prefilled),
            max_per_image=MAX_PER_IMAGE,
        )
    except ValueError as error:  # an unknown frame, missing or bad log-probabilities
        raise ValueError(f"{where}: {error}") from None


def line_detections(
    line: dict, *, score_policy: str = AUTO_POLICY, image_size: tuple[int, int] | None = None, where: str = "line"
) -> ImageDetections:
    """Scored detections of one prediction line (detections or a response), original frame.

    Args:
        line: a ``{"file_name", "detections"}`` or ``{"file_name", "response", frame metadata}`` object.
        score_policy: one of :func:`verl_hoi.scored_triplets.score_policy_choices` (``auto``: ``given`` for
            detections, ``rank`` for responses).
        image_size: ``(w, h)`` of the original image (from the annotations or the image file); a
            response line's own ``image_size`` must agree with it, and is used when this is None.
        where: prefix of error messages, e.g. ``"preds.jsonl: line 3"``.

    Raises:
        ValueError: a malformed line (see the module docstring) or a policy that does not apply to it.
    """
    _check_policy(score_policy)
    if "detections" in line:
        return _detection_line(line, where, get_score_policy(resolve_policy(score_policy, "detections")))
    if "response" in line:
        return _response_line(line, image_size, where, get_score_policy(resolve_policy(score_policy, "responses")))
    raise ValueError(f"{where}: a line needs 'detections' or 'response'")


def _read_dump_rows(data: str | Path) -> list[dict]:
    """The rows of the parquet a validation dump was made on, each checked for what matching needs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(data, columns=["prompt", "reward_model", "extra_info"]).to_pylist()
    except (OSError, pa.ArrowException) as error:
        reason = " ".join(str(error).split())  # pyarrow's messages span lines
        raise ValueError(
            f"{data}: not a parquet with 'prompt', 'reward_model' and 'extra_info' columns ({reason})"
        ) from None
    for r, row in enumerate(table):
        reward, extra, prompt = row["reward_model"], row["extra_info"], row["prompt"]
        if not isinstance(reward, dict) or not isinstance(reward.get("ground_truth"), str):
            raise ValueError(f"{data}: row {r}: reward_model.ground_truth must be the answer text; got {reward!r:.60}")
        if not isinstance(extra, dict) or (extra.get("index") is not None and type(extra["index"]) is not int):
            raise ValueError(f"{data}: row {r}: extra_info must hold the row's metadata, its index an integer")
        if not isinstance(prompt, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
        ):
            raise ValueError(f"{data}: row {r}: prompt must be a list of {{role, content}} messages")
    return table


def data_zero_shot(data: str | Path) -> str | None:
    """The zero-shot setting the rows of a converted parquet record (``extra_info.zero_shot``), or None.

    Raises:
        ValueError: not a parquet of rows (as a validation dump needs them), a value that is not one of
            :data:`verl_hoi.zero_shot.ZERO_SHOT_SETTINGS` or null, or rows that record different settings.
    """
    recorded = [row["extra_info"].get("zero_shot") for row in _read_dump_rows(data)]
    for r, setting in enumerate(recorded):
        if setting is not None and setting not in ZERO_SHOT_SETTINGS:
            raise ValueError(
                f"{data}: row {r}: extra_info.zero_shot must be one of {', '.join(ZERO_SHOT_SETTINGS)} or null; "
                f"got {setting!r:.60}"
            )
        if setting != recorded[0]:
            raise ValueError(
                f"{data}: row {r}: extra_info.zero_shot is {setting!r} but row 0's is {recorded[0]!r}: "
                "the rows of one evaluation must record one zero-shot setting"
            )
    return recorded[0] if recorded else None


def _zero_shot_setting(zero_shot: str | None, data: str | Path | None) -> str | None:
    """``zero_shot``, else the setting ``data``'s rows record (:func:`data_zero_shot`); the two must agree."""
    if zero_shot is not None:
        check_setting(zero_shot)
    recorded = None if data is None else data_zero_shot(data)
    if zero_shot is not None and recorded not in (None, zero_shot):
        raise ValueError(f"--zero-shot {zero_shot} disagrees with {data}, whose rows record the setting {recorded}")
    return zero_shot or recorded


def _dump_lines(
    path: str | Path, lines: list[tuple[int, dict]], data: str | Path | None, stats: dict
) -> list[tuple[int, dict]]:
    """Turn verl validation-dump lines into response lines with the parquet rows' metadata."""
    if data is None:
        raise ValueError(
            f"{path}: the predictions are a verl validation dump: pass --data with the parquet it validated on"
        )
    table = _read_dump_rows(data)
    rows_by_gt: dict[str, list[int]] = {}
    rows_by_index: dict[int, int] = {}
    for r, row in enumerate(table):
        rows_by_gt.setdefault(row["reward_model"]["ground_truth"], []).append(r)
        index = row["extra_info"].get("index")
        if index is not None and rows_by_index.setdefault(index, r) != r:
            raise ValueError(f"{data}: row {r}: index {index} is also the index of row {rows_by_index[index]}")
    used: set[int] = set()
    converted, ambiguous, repeats, unmatched = [], 0, 0, []
    for number, line in lines:
        where = f"{path}: line {number}"
        if not line.keys() >= _DUMP_KEYS:
            raise ValueError(f"{where}: not a line of a verl validation dump (needs 'input', 'output' and 'gts')")
        for key in ("input", "output"):
            if not isinstance(line[key], str):
                raise ValueError(f"{where}: {key!r} must be text; got {line[key]!r:.60}")
        index = line.get("index")
        if index is not None and type(index) is not int:
            raise ValueError(f"{where}: 'index' must be an integer; got {index!r:.60}")
        if index in rows_by_index:
            candidates = [rows_by_index[index]]
        else:
            gts = line["gts"] if isinstance(line["gts"], str) else json.dumps(line["gts"])
            candidates = rows_by_gt.get(gts, [])
            if len(candidates) > 1:
                by_prompt = [r for r in candidates if _prompt_text(table[r]) in line["input"]]
                candidates = by_prompt or candidates
                ambiguous += len({table[r]["extra_info"].get("file_name") for r in candidates}) > 1
        if not candidates:
            unmatched.append(number)
            continue
        free = [r for r in candidates if r not in used]
        if not free:
            repeats += 1
            continue
        row = free[0]
        used.add(row)
        extra = table[row]["extra_info"]
        prefilled = prefilled_think(extra.get("prefilled_think"), line["input"])
        converted.append((number, {**extra, "response": line["output"], "prefilled_think": prefilled}))
    if unmatched:
        raise ValueError(
            f"{path}: line {unmatched[0]}: matches no row of {data} (another parquet or frame?); "
            f"{len(unmatched)} line(s) in all"
        )
    stats.update(dump_lines=len(lines), dump_ambiguous=ambiguous, dump_repeats_skipped=repeats)
    if ambiguous:
        logger.warning(
            "%d dump line(s) matched several images with the same ground truth; row order decided", ambiguous
        )
    if repeats:
        logger.warning("%d repeated response(s) of an already scored image skipped (val_kwargs.n > 1)", repeats)
    return converted


def _prompt_text(row: dict) -> str:
    return "".join(m["content"] for m in row["prompt"] if m["role"] == "user").replace(IMAGE_PLACEHOLDER, "").strip()


def load_predictions(
    path: str | Path,
    annotations: Sequence[ImageAnnotation],
    *,
    score_policy: str = AUTO_POLICY,
    data: str | Path | None = None,
) -> PredictionSet:
    """Read a predictions JSONL (any of the three line kinds) into detections on ``annotations``' images.

    Args:
        path: the JSONL file.
        annotations: ``verl_hoi.hicodet.load_annotations`` records; image ``i`` is ``annotations[i]``.
        score_policy: one of :func:`verl_hoi.scored_triplets.score_policy_choices`.
        data: the parquet a verl validation dump was made on (only for dumps).

    Raises:
        ValueError: no lines, malformed lines, unknown or repeated file names, an inapplicable policy
            (the message names the file and the line).
    """
    _check_policy(score_policy)
    index = {record.file_name: i for i, record in enumerate(annotations)}
    lines: Iterator[tuple[int, dict]] | list[tuple[int, dict]] = iter_jsonl(path)
    stats: dict[str, Any] = {}
    first = next(lines, None)
    if first is None:
        raise ValueError(f"{path}: no prediction lines (the file is empty or blank)")
    if first[1].keys() >= _DUMP_KEYS:
        lines = _dump_lines(path, [first, *lines], data, stats)
    else:
        lines = itertools.chain([first], lines)
    num_lines = 0
    per_image: dict[int, ImageDetections] = {}
    seen_line: dict[int, int] = {}
    frames: dict[str, int] = {}
    kinds: set[str] = set()
    responses = pairs = invalid = 0
    for number, line in lines:
        num_lines += 1
        where = f"{path}: line {number}"
        if "file_name" not in line:
            raise ValueError(f"{where}: a line needs its 'file_name'")
        name = line["file_name"]
        if not isinstance(name, str):
            raise ValueError(f"{where}: 'file_name' must be a string; got {name!r:.60}")
        if name not in index:
            raise ValueError(f"{where}: file name {name!r} is not in the annotations")
        image = index[name]
        if image in seen_line:
            raise ValueError(f"{where}: {name} was already predicted on line {seen_line[image]}")
        seen_line[image] = number
        record = annotations[image]
        dets = line_detections(line, score_policy=score_policy, image_size=(record.width, record.height), where=where)
        per_image[image] = dets
        if "response" in line and "detections" not in line:
            kinds.add("responses")
            responses += 1
            pairs += dets.num_pairs
            invalid += dets.num_invalid
            frames[line["frame"]] = frames.get(line["frame"], 0) + 1
        else:
            kinds.add("detections")
    images = sorted(per_image)
    parts = [per_image[i] for i in images]
    detections = Detections(
        image=np.repeat(np.array(images, dtype=np.int64), [len(p.hoi) for p in parts]),
        hoi=np.concatenate([p.hoi for p in parts]) if parts else np.zeros(0, dtype=np.int64),
        human=np.concatenate([p.human for p in parts]) if parts else np.zeros((0, 4)),
        object=np.concatenate([p.object for p in parts]) if parts else np.zeros((0, 4)),
        score=np.concatenate([p.score for p in parts]) if parts else np.zeros(0),
    )
    missing = len(annotations) - len(per_image)
    if missing:
        logger.warning("%d of %d annotated images have no prediction line: no detections there", missing, len(index))
    # auto stands for one policy per kind of line: name each one applied
    applied = dict.fromkeys(resolve_policy(score_policy, kind) for kind in ("detections", "responses") if kind in kinds)
    stats.update(
        lines=num_lines,
        images_predicted=len(per_image),
        images_missing=missing,
        detections=len(detections),
        responses=responses,
        pairs=pairs,
        invalid_items=invalid,
        frames=frames,
    )
    return PredictionSet(detections, " / ".join(applied), stats)


def _percent_list(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v * 100 for v in values.tolist()]


@dataclass(frozen=True)
class EvaluatedFiles:
    """What :func:`evaluate_prediction_files` read and computed: the result dictionary, the annotation records and
    the evaluation behind it (its ground truth ``evaluation.gt`` and detections ``evaluation.dets``)."""

    result: dict[str, Any]
    annotations: list[ImageAnnotation]
    evaluation: HOIEval


def evaluate_predictions(annotations_path: str | Path, predictions_path: str | Path, **options: Any) -> dict[str, Any]:
    """The result dictionary of :func:`evaluate_prediction_files` (same arguments): what ``--json`` writes."""
    return evaluate_prediction_files(annotations_path, predictions_path, **options).result


def evaluate_prediction_files(
    annotations_path: str | Path,
    predictions_path: str | Path,
    *,
    score_policy: str = AUTO_POLICY,
    known_object_source: str = KNOWN_FROM_BOXES,
    data: str | Path | None = None,
    split: str = "test",
    zero_shot: str | None = None,
) -> EvaluatedFiles:
    """Everything ``python -m verl_hoi.evaluate`` does but printing: the result dictionary written by ``--json``,
    with the annotations, ground truth and detections it was computed from.

    Args:
        annotations_path: ``anno_bbox.mat`` or ``instances_<split>2015.json``.
        predictions_path: the predictions JSONL (or a verl validation dump, with ``data``).
        score_policy: one of :func:`verl_hoi.scored_triplets.score_policy_choices`.
        known_object_source: :data:`verl_hoi.hoieval.KNOWN_FROM_BOXES` or the path of HICO's ``anno.mat``.
        data: the parquet a verl validation dump was made on; a zero-shot setting its rows record
            (:func:`data_zero_shot`) applies when ``zero_shot`` is None.
        split: the annotation split.
        zero_shot: one of :data:`verl_hoi.zero_shot.ZERO_SHOT_SETTINGS`: adds the ``"seen"`` and ``"unseen"``
            means (over the setting's unseen classes and the others) to every subset dictionary.

    Returns:
        :class:`EvaluatedFiles` whose ``result`` is
        ``{"default": {"full", "rare", "non_rare"[, "seen", "unseen"]}, "known_object": {...},
        "recall": {setting: {...}}, "num_classes": {...}, "notes": [...], "settings": {..., "zero_shot"},
        "per_class": {"name", "npos", "ap": {setting: [600]}, "recall": {setting: [600]}}}``; mAP and
        recall in percent, full precision, ``None`` for classes without ground truth and for subsets
        without such a class (``notes`` says which).

    Raises:
        ValueError: a malformed annotation, predictions, parquet or ``anno.mat`` file (the message names it),
            an unknown zero-shot setting, or one that differs from the setting ``data`` records.
    """
    annotations = load_annotations(annotations_path, split)
    zero_shot = _zero_shot_setting(zero_shot, data)
    file_names = [record.file_name for record in annotations]
    if known_object_source == KNOWN_FROM_BOXES:
        known, source = None, "images with box ground truth of the object (no anno.mat)"
    else:
        known = known_objects_from_anno_mat(known_object_source, file_names, split)
        source = f"image-level labels of {Path(known_object_source).name} (anno_{split} == 1)"
    gt = GroundTruth.from_annotations(annotations, known_objects=known, known_object_source=source)
    predictions = load_predictions(predictions_path, annotations, score_policy=score_policy, data=data)
    ev = HOIEval(gt, predictions.detections, unseen=None if zero_shot is None else unseen_classes(zero_shot))
    result = ev.run()
    result["notes"] = []
    for name in ev.subsets:
        if result["num_classes"][name] == 0:  # the mean over no class is undefined: NaN, written as null
            for setting in SETTINGS:
                result[setting][name] = result["recall"][setting][name] = None
            result["notes"].append(
                f"{name.replace('_', '-')}: no class of this subset has ground truth in these annotations, "
                "so its mAP and mean recall are undefined (null)"
            )
    result["settings"] = {
        "annotations": str(annotations_path),
        "predictions": str(predictions_path),
        "score_policy": predictions.score_policy,
        "known_object_source": source,
        "zero_shot": zero_shot,
        "frame": "original (annotation boxes as stored, 1-based inclusive; IoU with +1 pixel)",
        "min_overlap": ev.min_overlap,
        "max_per_image_for_responses": MAX_PER_IMAGE,
        "num_images": len(annotations),
        "num_images_predicted": predictions.stats["images_predicted"],
        "num_images_missing": predictions.stats["images_missing"],
        "num_detections": predictions.stats["detections"],
        "num_ground_truth_pairs": int(len(gt.image)),
        "prediction_stats": predictions.stats,
    }
    result["per_class"] = {
        "name": [hoi_name(c) for c in range(NUM_HOI)],
        "npos": ev.npos.tolist(),
        "ap": {s: _percent_list(ev.ap[s]) for s in SETTINGS},
        "recall": {s: _percent_list(ev.recall[s]) for s in SETTINGS},
    }
    return EvaluatedFiles(result, annotations, ev)
