"""Official HICO-DET mAP of a predictions file (command line over ``verl_hoi.evaluation``).

    python -m verl_hoi.evaluate --annotations instances_test2015.json --predictions preds.jsonl \\
        [--json result.json] [--score-policy {auto,given,rank,constant,logprob}] \\
        [--known-object-source {boxes,anno.mat}] [--data test.parquet]

Predictions are JSONL, one line per image, in any line order; each line is one of

- ``{"file_name": ..., "detections": [{"human": [x1, y1, x2, y2], "object": [...], "hoi": <0-based
  HOI id>, "score": <float>}, ...]}``: boxes in the annotation's own frame (raw ``.mat`` values);
- ``{"file_name": ..., "response": "<model text>", "frame": ..., "image_size": [w, h],
  "model_size": [w, h], ...}`` (what ``verl_hoi.predict`` writes): parsed, mapped back to the original
  frame, one triplet per verb, scored by the score policy (``verl_hoi.detections``);
- a line of verl's validation dump (``trainer.validation_data_dir``: ``input``, ``output``, ``gts``,
  ``score``, ``step`` and the reward's extra keys). The dump carries no file name, so ``--data``
  (the parquet the run validated on) is required: a line is matched to the row with the same
  ``index`` when the dump has that key, else to the row with the same ground-truth answer (``gts``),
  ties broken by the prompt text found in ``input``, then by row order (reported as ambiguous). With
  ``val_kwargs.n > 1`` only the first response of an image is scored.

Images of the annotations without a line count as images without detections (a warning says how
many); a file name that the annotations do not list is an error. Score ties are broken by image
order in the annotation file, then by a detection's position in its line.

Score policies: ``given`` (the detections' scores), ``rank`` (HOI-R1's ``1 - 0.5 * i / (n - 1)``),
``constant`` (1.0: ties fall back to input order), ``logprob`` (mean token log-probability of the
answer item; needs ``predict --logprobs``); ``auto`` (default): ``given`` for detection lines,
``rank`` for responses. Known-Object uses the image-level labels of ``anno.mat`` when
``--known-object-source`` names that file, else the images with box ground truth of the object.

The table shows mAP and mean recall ×100 with two decimals; ``--json`` writes the same numbers at
full precision with the settings used and the per-class AP, recall and ground-truth counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from verl_hoi.detections import MAX_PER_IMAGE, SCORE_POLICIES, ImageDetections, rank_scores, response_detections
from verl_hoi.evaluation import SETTINGS, SUBSETS, Detections, GroundTruth, HOIEval
from verl_hoi.frames import model_size as compute_model_size
from verl_hoi.hicodet import ImageAnnotation, load_annotations
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI, OBJECTS, hoi_name

__all__ = [
    "POLICIES",
    "PredictionSet",
    "evaluate_predictions",
    "format_table",
    "known_objects_from_anno_mat",
    "line_detections",
    "load_predictions",
    "main",
    "read_jsonl",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("auto", *SCORE_POLICIES)
_DUMP_KEYS = frozenset({"input", "output", "gts"})


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line, streamed; a cut-off last line is skipped with a warning.

    A last line without its newline that does not parse is taken as an interrupted write.

    Raises:
        ValueError: a line before the last is not a JSON object (the message gives its number).
    """
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                if not line.endswith(b"\n"):
                    logger.warning("%s: line %d is incomplete (an interrupted write?) and is skipped", path, number)
                    continue
                raise ValueError(f"{path}: line {number} is not valid JSON") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            yield number, value


class PredictionSet:
    """Detections of a predictions file aligned to the annotations, with what was found on the way.

    Attributes:
        detections: :class:`verl_hoi.evaluation.Detections`, image order then position within the line.
        score_policy: the policy applied, e.g. ``"given"`` or ``"rank"``.
        stats: counts (``lines``, ``images_predicted``, ``images_missing``, ``detections``,
            ``responses``, ``pairs``, ``invalid_items``, ``frames`` per frame, ``dump_*``).
    """

    def __init__(self, detections: Detections, score_policy: str, stats: dict[str, Any]) -> None:
        self.detections, self.score_policy, self.stats = detections, score_policy, stats


def _detection_line(line: dict, where: str, policy: str) -> ImageDetections:
    """The detections of a ``{"file_name", "detections"}`` line, scored by ``policy``."""
    items = line["detections"]
    if not isinstance(items, list):
        raise ValueError(f"{where}: 'detections' must be a list of objects")
    if policy == "logprob":
        raise ValueError(f"{where}: score policy 'logprob' needs responses, not detections")
    given = policy == "given"
    try:  # one pass and one array per line: this loop dominates reading a million detections
        rows = [[*d["human"], *d["object"], d["hoi"], d["score"] if given else 0] for d in items]
        table = np.array(rows, dtype=np.float64).reshape(len(items), 10)
    except (KeyError, TypeError, ValueError):
        needed = "'human' and 'object' boxes of 4 numbers, an integer 'hoi'" + (" and a 'score'" if given else "")
        raise ValueError(f"{where}: every detection needs {needed}") from None
    hoi = table[:, 8]
    if not ((hoi == np.floor(hoi)) & (hoi >= 0) & (hoi < NUM_HOI)).all():
        raise ValueError(f"{where}: 'hoi' must be an integer in [0, {NUM_HOI})")
    if not np.isfinite(table[:, :8]).all():
        raise ValueError(f"{where}: boxes must be finite")
    if policy == "given":
        score = table[:, 9]
        if np.isnan(score).any():
            raise ValueError(f"{where}: a score is NaN")
    elif policy == "rank":
        score = rank_scores(len(items))
    else:
        score = np.ones(len(items))
    return ImageDetections(hoi.astype(np.int64), table[:, :4], table[:, 4:8], score)


def _size(value: Any, name: str, where: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name!r} must be [width, height]") from None
    return w, h


def _response_line(line: dict, image_size: tuple[int, int] | None, where: str, policy: str) -> ImageDetections:
    if policy == "given":
        raise ValueError(f"{where}: score policy 'given' needs detections with scores, not responses")
    frame = line.get("frame")
    if not isinstance(frame, str):
        raise ValueError(f"{where}: a response line needs its 'frame' (and 'image_size', 'model_size')")
    if "image_size" in line:
        image_size = _size(line["image_size"], "image_size", where)
    elif image_size is None:
        raise ValueError(f"{where}: a response line needs its 'image_size'")
    if "model_size" in line:
        size = _size(line["model_size"], "model_size", where)
    elif "min_pixels" in line and "max_pixels" in line:
        size = compute_model_size(image_size, int(line["min_pixels"]), int(line["max_pixels"]))
    elif frame == "resized":
        raise ValueError(f"{where}: frame 'resized' needs 'model_size' (or 'min_pixels' and 'max_pixels')")
    else:
        size = image_size
    return response_detections(
        line["response"],
        frame=frame,
        image_size=image_size,
        model_size=size,
        score_policy=policy,
        token_logprobs=line.get("token_logprobs"),
        token_offsets=line.get("token_offsets"),
        prefilled_think=bool(line.get("prefilled_think", False)),
        max_per_image=MAX_PER_IMAGE,
    )


def line_detections(
    line: dict, *, score_policy: str = "auto", image_size: tuple[int, int] | None = None, where: str = "line"
) -> ImageDetections:
    """Scored detections of one prediction line (detections or a response), original frame.

    Args:
        line: a ``{"file_name", "detections"}`` or ``{"file_name", "response", frame metadata}`` object.
        score_policy: one of :data:`POLICIES` (``auto``: ``given`` for detections, ``rank`` for responses).
        image_size: ``(w, h)`` of the original image when the line does not carry it.
        where: prefix of error messages, e.g. ``"preds.jsonl: line 3"``.

    Raises:
        ValueError: a malformed line or a policy that does not apply to it.
    """
    if score_policy not in POLICIES:
        raise ValueError(f"unknown score policy {score_policy!r}; valid policies: {', '.join(POLICIES)}")
    if "detections" in line:
        return _detection_line(line, where, "given" if score_policy == "auto" else score_policy)
    if "response" in line:
        return _response_line(line, image_size, where, "rank" if score_policy == "auto" else score_policy)
    raise ValueError(f"{where}: a line needs 'detections' or 'response'")


def _dump_lines(lines: list[tuple[int, dict]], data: str | Path | None, stats: dict) -> list[tuple[int, dict]]:
    """Turn verl validation-dump lines into response lines with the parquet rows' metadata."""
    if data is None:
        raise ValueError("the predictions are a verl validation dump: pass --data with the parquet it validated on")
    import pyarrow.parquet as pq

    table = pq.read_table(data, columns=["prompt", "reward_model", "extra_info"]).to_pylist()
    rows_by_gt: dict[str, list[int]] = {}
    rows_by_index: dict[int, int] = {}
    for r, row in enumerate(table):
        rows_by_gt.setdefault(row["reward_model"]["ground_truth"], []).append(r)
        rows_by_index[int(row["extra_info"]["index"])] = r
    used: set[int] = set()
    converted, ambiguous, repeats, unmatched = [], 0, 0, 0
    for number, line in lines:
        if "index" in line and int(line["index"]) in rows_by_index:
            candidates = [rows_by_index[int(line["index"])]]
        else:
            gts = line["gts"] if isinstance(line["gts"], str) else json.dumps(line["gts"])
            candidates = rows_by_gt.get(gts, [])
            if len(candidates) > 1:
                text = str(line.get("input", ""))
                by_prompt = [r for r in candidates if _prompt_text(table[r]) in text]
                candidates = by_prompt or candidates
                ambiguous += len({table[r]["extra_info"]["file_name"] for r in candidates}) > 1
        if not candidates:
            unmatched += 1
            continue
        free = [r for r in candidates if r not in used]
        if not free:
            repeats += 1
            continue
        row = free[0]
        used.add(row)
        meta = table[row]["extra_info"]
        prefilled = str(line.get("input", "")).rstrip().endswith("<think>")  # the template opened the block
        converted.append((number, {**meta, "response": line["output"], "prefilled_think": prefilled}))
    if unmatched:
        raise ValueError(f"{unmatched} dump line(s) match no row of {data} (another parquet or frame?)")
    stats.update(dump_lines=len(lines), dump_ambiguous=ambiguous, dump_repeats_skipped=repeats)
    if ambiguous:
        logger.warning(
            "%d dump line(s) matched several images with the same ground truth; row order decided", ambiguous
        )
    if repeats:
        logger.warning("%d repeated response(s) of an already scored image skipped (val_kwargs.n > 1)", repeats)
    return converted


def _prompt_text(row: dict) -> str:
    return "".join(m["content"] for m in row["prompt"] if m["role"] == "user").replace("<image>", "").strip()


def load_predictions(
    path: str | Path,
    annotations: Sequence[ImageAnnotation],
    *,
    score_policy: str = "auto",
    data: str | Path | None = None,
) -> PredictionSet:
    """Read a predictions JSONL (any of the three line kinds) into detections on ``annotations``' images.

    Args:
        path: the JSONL file.
        annotations: ``verl_hoi.hicodet.load_annotations`` records; image ``i`` is ``annotations[i]``.
        score_policy: one of :data:`POLICIES`.
        data: the parquet a verl validation dump was made on (only for dumps).

    Raises:
        ValueError: malformed lines, unknown or repeated file names, an inapplicable policy.
    """
    if score_policy not in POLICIES:
        raise ValueError(f"unknown score policy {score_policy!r}; valid policies: {', '.join(POLICIES)}")
    index = {record.file_name: i for i, record in enumerate(annotations)}
    lines: Iterator[tuple[int, dict]] | list[tuple[int, dict]] = read_jsonl(path)
    stats: dict[str, Any] = {}
    first = next(lines, None)
    if first is not None and first[1].keys() >= _DUMP_KEYS:
        lines = _dump_lines([first, *lines], data, stats)
    elif first is not None:
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
        name = line.get("file_name")
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
    if score_policy == "auto":
        policy = " / ".join(p for k, p in (("detections", "given"), ("responses", "rank")) if k in kinds) or "given"
    else:
        policy = score_policy
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
    return PredictionSet(detections, policy, stats)


def known_objects_from_anno_mat(path: str | Path, file_names: Sequence[str], split: str = "test") -> np.ndarray:
    """``(len(file_names), 80)`` bool from ``anno.mat``'s image-level labels, as ``eval_one.m`` reads them.

    Image ``i`` contains object ``o`` when any HOI class of ``o`` is labelled 1 (positive) for it in
    ``anno_<split>`` (600 × images), images matched by name through ``list_<split>``.

    Raises:
        ValueError: the file lacks those variables or misses an annotated image.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), variable_names=[f"anno_{split}", f"list_{split}"])
        labels = np.asarray(mat[f"anno_{split}"], dtype=np.float64)
        names = [str(np.asarray(n).reshape(-1)[0]) for n in np.asarray(mat[f"list_{split}"]).reshape(-1)]
    except (KeyError, ValueError, TypeError, OSError) as error:
        raise ValueError(f"{path}: not a HICO anno.mat with anno_{split} and list_{split} ({error})") from None
    if labels.shape != (NUM_HOI, len(names)):
        raise ValueError(f"{path}: anno_{split} has shape {labels.shape}, expected ({NUM_HOI}, {len(names)})")
    column = {name: k for k, name in enumerate(names)}
    missing = [name for name in file_names if name not in column]
    if missing:
        raise ValueError(f"{path}: {len(missing)} annotated image(s) not in list_{split}, e.g. {missing[0]}")
    positive = labels[:, [column[name] for name in file_names]] == 1  # (C, I)
    known = np.zeros((len(file_names), len(OBJECTS)), dtype=bool)
    for hoi, (_, obj) in enumerate(HOI_CLASSES):
        known[:, obj] |= positive[hoi]
    return known


def _percent_list(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v * 100 for v in values.tolist()]


def evaluate_predictions(
    annotations_path: str | Path,
    predictions_path: str | Path,
    *,
    score_policy: str = "auto",
    known_object_source: str = "boxes",
    data: str | Path | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Everything the command line does but printing: the result dictionary written by ``--json``.

    Returns:
        ``{"default": {"full", "rare", "non_rare"}, "known_object": {...}, "recall": {setting: {...}},
        "num_classes": {...}, "settings": {...}, "per_class": {"name", "npos", "ap": {setting: [600]},
        "recall": {setting: [600]}}}``; mAP and recall in percent, full precision, ``None`` for
        classes without ground truth.
    """
    annotations = load_annotations(annotations_path, split)
    file_names = [record.file_name for record in annotations]
    if known_object_source == "boxes":
        known, source = None, "images with box ground truth of the object (no anno.mat)"
    else:
        known = known_objects_from_anno_mat(known_object_source, file_names, split)
        source = f"image-level labels of {Path(known_object_source).name} (anno_{split} == 1)"
    gt = GroundTruth.from_annotations(annotations, known_objects=known, known_object_source=source)
    predictions = load_predictions(predictions_path, annotations, score_policy=score_policy, data=data)
    ev = HOIEval(gt, predictions.detections)
    result = ev.run()
    result["settings"] = {
        "annotations": str(annotations_path),
        "predictions": str(predictions_path),
        "score_policy": predictions.score_policy,
        "known_object_source": source,
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
    return result


def format_table(result: dict[str, Any]) -> str:
    """The mAP / mean recall table (×100, two decimals) and the settings it was computed with."""
    titles = {"default": "Default", "known_object": "Known-Object"}
    header = f"{'setting':<14}{'':<8}" + "".join(f"{name.replace('_', '-'):>10}" for name in SUBSETS)
    rows = [header]
    for setting in SETTINGS:
        for label, values in (("mAP", result[setting]), ("mRec", result["recall"][setting])):
            rows.append(f"{titles[setting]:<14}{label:<8}" + "".join(f"{values[name]:>10.2f}" for name in SUBSETS))
    s = result["settings"]
    n = result["num_classes"]
    rows += [
        f"classes with ground truth: {n['full']} (rare {n['rare']}, non-rare {n['non_rare']})",
        f"images: {s['num_images']} ({s['num_images_predicted']} predicted, {s['num_images_missing']} without a line); "
        f"detections: {s['num_detections']}",
        f"score policy: {s['score_policy']}; known-object source: {s['known_object_source']}",
        f"frame: {s['frame']}",
    ]
    return "\n".join(rows)


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_hoi.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--annotations", required=True, help="anno_bbox.mat or instances_test2015.json")
    parser.add_argument("--predictions", required=True, help="predictions JSONL (or a verl validation dump)")
    parser.add_argument("--json", dest="json_out", help="write the full result here (percent, full precision)")
    parser.add_argument("--score-policy", choices=POLICIES, default="auto", help="how detections are ranked")
    parser.add_argument(
        "--known-object-source",
        default="boxes",
        metavar="{boxes,PATH/anno.mat}",
        help="'boxes' (images with box ground truth of the object; default) or HICO's anno.mat",
    )
    parser.add_argument("--data", help="the parquet a verl validation dump was made on")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="annotation split (default test)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for name, value in (("annotations", args.annotations), ("predictions", args.predictions), ("data", args.data)):
        if value is not None and not Path(value).is_file():
            print(f"error: --{name}: file not found: {value}", file=sys.stderr)
            return 2
    if args.known_object_source != "boxes" and not Path(args.known_object_source).is_file():
        print(
            f"error: --known-object-source: 'boxes' or an existing anno.mat, got {args.known_object_source}",
            file=sys.stderr,
        )
        return 2
    try:
        result = evaluate_predictions(
            args.annotations,
            args.predictions,
            score_policy=args.score_policy,
            known_object_source=args.known_object_source,
            data=args.data,
            split=args.split,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json_out:
        write_json_atomic(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
