"""Prediction files read into detections on the annotations' images (pure reading, no printing).

A predictions file is JSONL, one line per image, in any line order; :func:`verl_hoi.jsonl.iter_jsonl` streams
its lines, :func:`line_detections` scores one line and :func:`load_predictions` aligns a whole file to
``verl_hoi.hicodet`` records as :class:`verl_hoi.evaluation.Detections`. A line is one of

- ``{"file_name", "detections": [{"human", "object", "hoi", "score"}, ...]}``: boxes in the
  annotation's own frame;
- ``{"file_name", "response", "frame", "image_size", "model_size", ...}`` (``verl_hoi.predict``):
  parsed and mapped back to the original frame by :func:`verl_hoi.detections.response_detections`;
- a line of verl's validation dump (``input``, ``output``, ``gts``, ...): it names no image, so each
  is matched to a row of the parquet the run validated on, by ``index`` when the dump has it, else by
  the ground-truth answer, ties broken by the prompt text in ``input``, then by row order; only the
  first response of an image is kept.

>>> line = {"file_name": "a.jpg", "detections": [{"human": [1, 1, 9, 9], "object": [5, 5, 20, 20], "hoi": 7}]}
>>> dets = line_detections(line, score_policy="constant")
>>> dets.hoi.tolist(), dets.score.tolist(), dets.object.tolist()
([7], [1.0], [[5.0, 5.0, 20.0, 20.0]])
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.detections import MAX_PER_IMAGE, SCORE_POLICIES, ImageDetections, rank_scores, response_detections
from verl_hoi.evaluation import Detections
from verl_hoi.frames import model_size as compute_model_size
from verl_hoi.hicodet import ImageAnnotation
from verl_hoi.jsonl import iter_jsonl
from verl_hoi.vocab import NUM_HOI

__all__ = ["POLICIES", "PredictionSet", "line_detections", "load_predictions"]

logger = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("auto", *SCORE_POLICIES)
"""Score policies a prediction line accepts: ``auto`` (``given`` for detections, ``rank`` for responses) and
:data:`verl_hoi.detections.SCORE_POLICIES`."""
_DUMP_KEYS = frozenset({"input", "output", "gts"})


def _check_policy(score_policy: str) -> None:
    if score_policy not in POLICIES:
        raise ValueError(f"unknown score policy {score_policy!r}; valid policies: {', '.join(POLICIES)}")


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
    _check_policy(score_policy)
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
    _check_policy(score_policy)
    index = {record.file_name: i for i, record in enumerate(annotations)}
    lines: Iterator[tuple[int, dict]] | list[tuple[int, dict]] = iter_jsonl(path)
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
