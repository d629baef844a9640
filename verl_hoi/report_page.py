"""The evaluation report as one self-contained HTML page (``python -m verl_hoi.report`` is the command line).

:func:`render_report` fills ``verl_hoi/data/report.html.j2`` (a Jinja2 template; styles and the script
that sorts and filters the class table are in it) with what :func:`verl_hoi.hoi_errors.analyze_prediction_files`
found: the mAP table, the error breakdown (:mod:`verl_hoi.hoi_errors`), AP by object and by verb, the AP of
every class, optionally a gallery of the images with the most errors (drawn by :func:`verl_hoi.drawing.draw`)
and the official mAP and rewards of several validation dumps of a run (:func:`read_dumps`) against the
step. Charts are matplotlib PNGs and drawings JPEGs, inline as ``data:`` URIs: the page needs no network.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.drawing import DEFAULT_TOP, draw
from verl_hoi.evaluate import SETTING_TITLES
from verl_hoi.geometry import box_iou
from verl_hoi.hoi_errors import (
    ALL_FIXED,
    DESCRIPTIONS,
    ERROR_TYPES,
    MISSED,
    TRUE_POSITIVE,
    FileAnalysis,
    error_label,
)
from verl_hoi.hoieval import SETTINGS
from verl_hoi.images import decode_image, read_image_file
from verl_hoi.jsonl import iter_jsonl
from verl_hoi.prediction_files import evaluate_predictions
from verl_hoi.scored_triplets import AUTO_POLICY, ImageDetections
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI, OBJECTS, RARE_HOI, VERBS, hoi_name

__all__ = ["DEFAULT_GALLERY", "TYPE_COLOURS", "DumpPoint", "read_dumps", "render_report"]

logger = logging.getLogger(__name__)

DEFAULT_GALLERY = 12
"""Images in the gallery."""
TYPE_COLOURS: dict[str, str] = {
    "duplicate": "#9467bd",
    "wrong_verb": "#d62728",
    "wrong_object": "#ff7f0e",
    "human_box": "#1f77b4",
    "object_box": "#17becf",
    "both_boxes": "#8c564b",
    "class_and_box": "#e377c2",
    "background": "#7f7f7f",
    MISSED: "#bcbd22",
    "true_positive": "#2ca02c",
}
"""The colour of each error type in the charts and the gallery (matplotlib's ``tab10``)."""
_DUMP_SKIPPED_KEYS = frozenset({"input", "output", "gts", "step", "index"})
_DPI = 96
_CLASS_COLUMNS = tuple(
    {"key": key, "title": title, "kind": kind}
    for key, title, kind in (
        ("id", "hoi", "number"),
        ("verb", "verb", "text"),
        ("object", "object", "text"),
        ("subset", "subset", "text"),
        ("npos", "pairs", "number"),
        ("ap", "AP", "percent"),
        ("ap_known_object", "AP known-object", "percent"),
        ("recall", "recall", "percent"),
        ("false_positives", "false positives", "number"),
        ("missed", "missed", "number"),
    )
)


@dataclass(frozen=True)
class DumpPoint:
    """One validation dump of a run, evaluated.

    Attributes:
        name: the dump's file name.
        step: the training step it was made at.
        map: the Default mAP per subset (percent; ``None`` without a class to average).
        rewards: the mean of every numeric reward key of its lines (``score`` and the reward's extra keys).
    """

    name: str
    step: int
    map: dict[str, float | None]
    rewards: dict[str, float]


def read_dumps(
    annotations_path: str | Path,
    dumps: Sequence[str | Path],
    *,
    data: str | Path,
    score_policy: str = AUTO_POLICY,
    split: str = "test",
    zero_shot: str | None = None,
    progress: bool = False,
) -> list[DumpPoint]:
    """Evaluate verl validation dumps of one run (as ``evaluate --data``) and average their reward keys, by step.

    A dump's step is its lines' ``step`` (one value per dump), else its file name (verl writes ``<step>.jsonl``).

    Raises:
        ValueError: what :func:`verl_hoi.prediction_files.evaluate_predictions` refuses, a dump without one step,
            two dumps of the same step.
    """
    from tqdm import tqdm

    points: dict[int, DumpPoint] = {}
    paths: dict[int, str | Path] = {}
    for dump in tqdm(dumps, desc="dumps", unit="dump", disable=None if progress else True):
        result = evaluate_predictions(
            annotations_path, dump, score_policy=score_policy, data=data, split=split, zero_shot=zero_shot
        )
        lines = [line for _, line in iter_jsonl(dump)]
        step = _dump_step(Path(dump), lines)
        if step in points:
            raise ValueError(f"{dump}: step {step} again: {paths[step]} is that step's dump")
        points[step], paths[step] = DumpPoint(Path(dump).name, step, result["default"], _reward_means(lines)), dump
    return [points[step] for step in sorted(points)]


def _dump_step(path: Path, lines: list[dict]) -> int:
    steps = [line["step"] for line in lines if "step" in line]
    if len(steps) == len(lines) and all(type(step) is int and step == steps[0] for step in steps):
        return steps[0]
    if steps:
        shown = ", ".join(sorted({repr(step) for step in steps}))
        raise ValueError(f"{path}: 'step' must be one integer in every line of a dump; got {shown:.80}")
    if path.stem.isdigit():
        return int(path.stem)
    raise ValueError(f"{path}: its lines have no 'step' and its name is not <step>.jsonl")


def _reward_means(lines: list[dict]) -> dict[str, float]:
    """Mean of every key that is a number in every line (booleans and the dump's own keys left out)."""
    keys = [key for key in lines[0] if key not in _DUMP_SKIPPED_KEYS]
    numeric = [key for key in keys if all(type(line.get(key)) in (int, float) for line in lines)]
    return {key: float(np.mean([line[key] for line in lines])) for key in numeric}


def render_report(
    analysis: FileAnalysis,
    *,
    images: str | Path | None = None,
    gallery: int = DEFAULT_GALLERY,
    dumps: Sequence[DumpPoint] = (),
    progress: bool = False,
) -> str:
    """The report page of ``analysis`` as HTML text.

    Args:
        analysis: the evaluation and its errors.
        images: the folder of the original images: adds a gallery of the ``gallery`` images with the most
            errors (false positives among the :data:`verl_hoi.drawing.DEFAULT_TOP` best-scored triplets of
            an image, and missed pairs); images that are not there are skipped.
        dumps: validation dumps of a run (:func:`read_dumps`): adds their mAP and rewards against the step.
        progress: progress bars (on a terminal only).

    Raises:
        ValueError: a gallery image that cannot be decoded or whose size is not the annotated one.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    result, errors = analysis.result, analysis.errors
    subsets = tuple(result["num_classes"])
    context: dict[str, Any] = {
        "title": f"HOI evaluation of {Path(result['settings']['predictions']).name}",
        "settings": _settings_lines(result),
        "subsets": [_subset_title(name) for name in subsets],
        "map_rows": [
            {"setting": SETTING_TITLES[setting], "metric": metric, "cells": [_number(values[n]) for n in subsets]}
            for setting in SETTINGS
            for metric, values in (("mAP", result[setting]), ("mean recall", result["recall"][setting]))
        ],
        "classes_note": _classes_note(result),
        "base_map": f"the Default mAP ({_number(errors.map['full'])} Full)",
        "error_subsets": [_subset_title(name) for name in errors.map],
        "error_rows": _error_rows(analysis),
        "error_chart": _error_chart(analysis),
        "object_chart": _group_chart(result, position=1, names=OBJECTS, what="object"),
        "verb_chart": _group_chart(result, position=0, names=VERBS, what="verb"),
        "objects": sorted(OBJECTS),
        "verbs": sorted(VERBS),
        "class_columns": _CLASS_COLUMNS,
        "class_rows": _class_rows(analysis),
        "default_sort": "ap",
        "top": DEFAULT_TOP,
        "gallery": None,
        "dumps": [],
    }
    if images is not None:
        context["gallery"], context["gallery_note"] = _gallery(analysis, Path(images), gallery, progress)
    if dumps:
        context |= _dump_context(dumps)
    environment = Environment(
        loader=PackageLoader("verl_hoi", "data"), autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True
    )
    return environment.get_template("report.html.j2").render(context)


def _subset_title(name: str) -> str:
    return name.replace("_", "-")


def _number(value: float | None, sign: str = "") -> str:
    """Two decimals (``sign="+"``: with a sign), ``n/a`` for a mean over no class."""
    return "n/a" if value is None or math.isnan(value) else f"{value:{sign}.2f}"


def _settings_lines(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    lines = [
        f"annotations: {s['annotations']}: {s['num_images']} images, {s['num_ground_truth_pairs']} ground-truth pairs",
        f"predictions: {s['predictions']}: {s['num_detections']} detections; "
        f"{s['num_images_predicted']} of the {s['num_images']} images have a line",
        f"score policy: {s['score_policy']}; known-object source: {s['known_object_source']}",
        f"frame: {s['frame']}",
    ]
    if s["zero_shot"] is not None:
        lines.append(f"zero-shot setting: {s['zero_shot']}")
    return lines + [f"note: {note}" for note in result["notes"]]


def _classes_note(result: dict[str, Any]) -> str:
    n = result["num_classes"]
    note = ", ".join(f"{_subset_title(name)} {count}" for name, count in n.items() if name != "full")
    return f"Means over the {n['full']} classes with ground truth ({note}); mAP and recall ×100."


def _error_rows(analysis: FileAnalysis) -> list[dict[str, Any]]:
    errors = analysis.errors
    counts = errors.counts()
    covered = f"; {int(errors.covered.sum())} of them under a wrong-verb detection"
    rows = [
        {
            "label": error_label(name),
            "description": DESCRIPTIONS[name] + (covered if name == MISSED else ""),
            "count": counts[name],
            "colour": TYPE_COLOURS[name],
            "deltas": [_number(value, "+") for value in errors.delta(name).values()],
        }
        for name in (*ERROR_TYPES, MISSED)
    ]
    rows.append(
        {
            "label": "all of them",
            "description": "every error above fixed at once",
            "count": "",
            "colour": "transparent",
            "deltas": [_number(value, "+") for value in errors.delta(ALL_FIXED).values()],
        }
    )
    return rows


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _data_uri(figure) -> str:
    """The figure as a PNG ``data:`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _error_chart(analysis: FileAnalysis) -> str:
    errors = analysis.errors
    names = [*ERROR_TYPES, MISSED]
    counts = errors.counts()
    colours = [TYPE_COLOURS[name] for name in names]
    labels = [error_label(name) for name in names]
    figure = _figure(10, 3.4)
    left, right = figure.subplots(1, 2, sharey=True)
    positions = np.arange(len(names))
    bars = left.barh(positions, [counts[name] for name in names], color=colours)
    left.bar_label(bars, padding=3, fontsize=8)
    left.set(yticks=positions, yticklabels=labels, title="count (detections; pairs for missed)")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.invert_yaxis()
    deltas = [errors.delta(name)["full"] for name in names]
    bars = right.barh(positions, np.nan_to_num(deltas), color=colours)
    right.bar_label(bars, labels=[_number(value, "+") for value in deltas], padding=3, fontsize=8)
    right.set(title="ΔmAP Full if fixed (points)")
    for axes in (left, right):
        axes.margins(x=0.18)
        axes.spines[["top", "right"]].set_visible(False)
    return _data_uri(figure)


def _group_chart(result: dict[str, Any], *, position: int, names: Sequence[str], what: str) -> str:
    """Mean Default AP of the classes with ground truth of each object (``position=1``) or verb (``0``)."""
    ap = np.array([np.nan if v is None else v for v in result["per_class"]["ap"]["default"]], dtype=np.float64)
    group = np.array([pair[position] for pair in HOI_CLASSES])
    present = sorted(set(group[~np.isnan(ap)].tolist()))
    means = np.array([ap[group == g][~np.isnan(ap[group == g])].mean() for g in present])
    order = np.argsort(-means, kind="stable")
    figure = _figure(5.6, 0.9 + 0.17 * max(len(present), 1))
    axes = figure.subplots()
    positions = np.arange(len(present))
    bars = axes.barh(positions, means[order], color="#4c72b0")
    axes.bar_label(bars, fmt="%.1f", padding=2, fontsize=7)
    axes.set_yticks(positions, [names[present[k]] for k in order], fontsize=8)
    axes.invert_yaxis()
    axes.set(xlim=(0, 110), xlabel="mean AP of its classes, Default (%)", title=f"AP by {what} ({len(present)})")
    axes.spines[["top", "right"]].set_visible(False)
    return _data_uri(figure)


def _class_rows(analysis: FileAnalysis) -> list[dict[str, Any]]:
    per_class, errors = analysis.result["per_class"], analysis.errors
    false_positives = np.bincount(analysis.detections.hoi[errors.kind >= 0], minlength=NUM_HOI)
    missed = np.bincount(analysis.gt.hoi[errors.missed], minlength=NUM_HOI)
    return [
        {
            "id": c,
            "verb": VERBS[verb],
            "object": OBJECTS[obj],
            "subset": "rare" if c in RARE_HOI else "non-rare",
            "npos": per_class["npos"][c],
            "ap": per_class["ap"]["default"][c],
            "ap_known_object": per_class["ap"]["known_object"][c],
            "recall": per_class["recall"]["default"][c],
            "false_positives": int(false_positives[c]),
            "missed": int(missed[c]),
        }
        for c, (verb, obj) in enumerate(HOI_CLASSES)
    ]


def _gallery(analysis: FileAnalysis, folder: Path, size: int, progress: bool) -> tuple[list[dict[str, Any]], str]:
    """The gallery's items and, when it has none, why."""
    from tqdm import tqdm

    dets, gt, errors = analysis.detections, analysis.gt, analysis.errors
    by_image = np.lexsort((np.arange(len(dets)), -dets.score, dets.image))  # image, score desc, line order
    first = np.searchsorted(dets.image[by_image], dets.image[by_image], side="left")
    drawn = by_image[np.arange(len(dets)) - first < DEFAULT_TOP]  # the triplets draw() shows, by image
    num_images = len(analysis.annotations)
    counts = np.bincount(dets.image[drawn][errors.kind[drawn] >= 0], minlength=num_images)
    counts += np.bincount(gt.image[errors.missed], minlength=num_images)
    ranked = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    if not ranked:
        return [], "No image has an error."
    items, missing = [], 0
    with tqdm(total=min(size, len(ranked)), desc="gallery", unit="image", disable=None if progress else True) as bar:
        for image in ranked:
            if len(items) == size:
                break
            record = analysis.annotations[image]
            path = folder / record.file_name
            if not path.is_file():
                missing += 1
                continue
            items.append(_gallery_item(analysis, image, path))
            bar.update()
    if missing:
        logger.warning("%d image(s) with errors not found in %s: left out of the gallery", missing, folder)
    return items, "" if items else f"None of the {len(ranked)} images with errors is in {folder}."


def _gallery_item(analysis: FileAnalysis, image: int, path: Path) -> dict[str, Any]:
    dets, gt, errors = analysis.detections, analysis.gt, analysis.errors
    record = analysis.annotations[image]
    picture = decode_image(read_image_file(path), str(path))
    try:
        if picture.size != (record.width, record.height):
            raise ValueError(
                f"{path}: image is {picture.size[0]}x{picture.size[1]} but the annotations say "
                f"{record.width}x{record.height}"
            )
        mine = np.flatnonzero(dets.image == image)  # line order, as draw() receives a line
        triplets = ImageDetections(dets.hoi[mine], dets.human[mine], dets.object[mine], dets.score[mine])
        drawing = draw(picture, triplets, record, DEFAULT_TOP)
    finally:
        picture.close()
    buffer = io.BytesIO()
    drawing.save(buffer, format="JPEG", quality=85)
    entries = [_entry(analysis, int(k)) for k in mine[np.argsort(-dets.score[mine], kind="stable")[:DEFAULT_TOP]]]
    missed = np.flatnonzero(errors.missed & (gt.image == image))
    for k in missed:
        note = " (a wrong-verb detection matched its boxes)" if errors.covered[k] else ""
        entries.append(_caption_line(f"missed: {hoi_name(gt.hoi[k])}{note}", MISSED))
    false_positives = int((errors.kind[mine] >= 0).sum())
    return {
        "file_name": record.file_name,
        "src": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        "summary": f"{false_positives} false positive(s), {len(missed)} missed pair(s)",
        "entries": entries,
    }


def _entry(analysis: FileAnalysis, k: int) -> dict[str, Any]:
    """What the matching made of detection ``k``, for the gallery's caption."""
    dets, gt, errors = analysis.detections, analysis.gt, analysis.errors
    label = f"{hoi_name(dets.hoi[k])} {dets.score[k]:.2f}"
    kind, target = int(errors.kind[k]), int(errors.target[k])
    if kind == TRUE_POSITIVE:
        return _caption_line(f"{label}: true positive", "true_positive")
    name = ERROR_TYPES[kind]
    detail = ""
    if target >= 0:
        human = box_iou(dets.human[k : k + 1], gt.human[target : target + 1], inclusive=True)[0, 0]
        obj = box_iou(dets.object[k : k + 1], gt.object[target : target + 1], inclusive=True)[0, 0]
        detail = f" (pair {hoi_name(gt.hoi[target])}: human IoU {human:.2f}, object IoU {obj:.2f})"
    return _caption_line(f"{label}: {error_label(name)}{detail}", name)


def _caption_line(text: str, kind: str) -> dict[str, Any]:
    """A line of a gallery caption, coloured by ``kind`` (a key of :data:`TYPE_COLOURS`)."""
    return {"text": text, "colour": TYPE_COLOURS[kind], "true_positive": kind == "true_positive"}


def _dump_context(dumps: Sequence[DumpPoint]) -> dict[str, Any]:
    subsets = list(dumps[0].map)
    keys = list(dict.fromkeys(key for point in dumps for key in point.rewards))
    steps = [point.step for point in dumps]
    figure = _figure(10, 3.2)
    left, right = figure.subplots(1, 2)
    for name in subsets:
        left.plot(steps, [np.nan if p.map[name] is None else p.map[name] for p in dumps], marker="o", label=name)
    left.set(xlabel="step", ylabel="mAP (%)", title="official mAP, Default")
    for key in keys:
        right.plot(steps, [p.rewards.get(key, np.nan) for p in dumps], marker="o", label=key)
    right.set(xlabel="step", title="reward keys, mean over the dump")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
        axes.spines[["top", "right"]].set_visible(False)
    return {
        "dumps": [
            {
                "name": point.name,
                "step": point.step,
                "map_cells": [_number(point.map[name]) for name in subsets],
                "reward_cells": ["n/a" if key not in point.rewards else f"{point.rewards[key]:.4f}" for key in keys],
            }
            for point in dumps
        ],
        "dump_subsets": [_subset_title(name) for name in subsets],
        "reward_keys": keys,
        "dump_chart": _data_uri(figure),
    }
