"""Draw predicted (and ground-truth) human-object pairs with their verb-object labels on the images.

    python -m verl_hoi.visualize --predictions preds.jsonl --images DIR --out DIR \\
        [--annotations instances_test2015.json] [--top 10] [--score-policy auto] [--limit N]

Each prediction line (any kind ``verl_hoi.predictions`` reads, boxes mapped back to the original image)
becomes ``OUT/<file_name>``: the ``--top`` best-scored triplets grouped by pair, the human box in
blue, the object box in orange, a line between their centres and a numbered tag; a legend lists each
pair's labels with scores (``1 hold bicycle 1.00, ride bicycle 0.93``). With ``--annotations`` the
image's ground-truth pairs are drawn in green, tagged ``G1``, ``G2``, ... Missing images are
reported and skipped.

Everything is checked before the first image is written: the prediction lines (as ``verl_hoi.evaluate``
checks them; a line's ``image_size`` must be the image's), each image (decoded in full: a truncated,
corrupt or oversized file is an error naming it), and ``--out``, which must not be the ``--images``
folder or a file. A mistake ends the run with one ``error:`` line and exit code 2. Each drawing is
written to a temporary file and renamed, so an interrupted run leaves only complete drawings.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from verl_hoi.cli import (
    UsageError,
    atomic_path,
    check_input_file,
    check_input_folder,
    check_output_folder,
    doc_parser,
    fail,
    positive_int,
    refuse_overlap,
)
from verl_hoi.convert import read_image
from verl_hoi.detections import ImageDetections
from verl_hoi.hicodet import ImageAnnotation, load_annotations
from verl_hoi.jsonl import iter_jsonl
from verl_hoi.predictions import POLICIES, line_detections
from verl_hoi.vocab import hoi_name

__all__ = ["PAIR_COLOURS", "draw", "group_pairs", "main"]

logger = logging.getLogger(__name__)

PAIR_COLOURS = {"human": (40, 110, 255), "object": (255, 140, 0), "ground_truth": (0, 190, 70)}
"""RGB colours of predicted human and object boxes and of ground-truth pairs."""


def group_pairs(
    human: np.ndarray, obj: np.ndarray, labels: Sequence[str]
) -> list[tuple[list[float], list[float], list[str]]]:
    """``[(human box, object box, labels)]``: triplets sharing both boxes become one pair, first-seen order.

    >>> group_pairs(np.array([[0, 0, 1, 1]] * 2), np.array([[2, 2, 3, 3]] * 2), ["ride bicycle", "hold bicycle"])
    [([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], ['ride bicycle', 'hold bicycle'])]
    """
    groups: dict[tuple, list[str]] = {}
    for h, o, label in zip(np.asarray(human, float).tolist(), np.asarray(obj, float).tolist(), labels, strict=True):
        groups.setdefault((tuple(h), tuple(o)), []).append(label)
    return [(list(h), list(o), names) for (h, o), names in groups.items()]


def draw(image, dets: ImageDetections, ground_truth: ImageAnnotation | None = None, top: int = 10):
    """A copy of the PIL ``image`` with the ``top`` best detections (and the ground truth) drawn on it.

    Each pair is tagged (``1``, ``2``, ... for predictions, ``G1``, ... for ground truth) at its object
    box; a legend in the top-left corner lists every tag with its labels.
    """
    from PIL import ImageDraw, ImageFont

    canvas = image.convert("RGB")
    pen = ImageDraw.Draw(canvas, "RGBA")
    font = ImageFont.load_default(size=max(11, round(max(canvas.size) / 45)))
    width = max(2, round(max(canvas.size) / 300))
    legend: list[tuple[str, tuple]] = []
    if ground_truth is not None and ground_truth.pairs:
        pairs = ground_truth.pairs
        labels = [hoi_name(p.hoi) for p in pairs]
        grouped = group_pairs(np.array([p.human for p in pairs]), np.array([p.object for p in pairs]), labels)
        colour = PAIR_COLOURS["ground_truth"]
        for k, (human, obj, names) in enumerate(grouped, start=1):
            _pair(pen, font, human, obj, f"G{k}", (colour, colour), width)
            legend.append((f"G{k} " + ", ".join(names), colour))
    order = np.argsort(-dets.score, kind="stable")[:top]
    labels = [f"{hoi_name(int(dets.hoi[k]))} {dets.score[k]:.2f}" for k in order]
    colours = (PAIR_COLOURS["human"], PAIR_COLOURS["object"])
    for k, (human, obj, names) in enumerate(group_pairs(dets.human[order], dets.object[order], labels), start=1):
        _pair(pen, font, human, obj, str(k), colours, width)
        legend.append((f"{k} " + ", ".join(names), colours[1]))
    y = 2
    for text, colour in legend:
        left, top_, right, bottom = pen.textbbox((4, y), text, font=font)
        pen.rectangle((0, y, right + 4, bottom + 2), fill=(0, 0, 0, 160))
        pen.text((4, y), text, fill=colour, font=font)
        y = bottom + 3
    return canvas


def _pair(pen, font, human: list[float], obj: list[float], tag: str, colours: tuple, width: int) -> None:
    for box, colour in zip((human, obj), colours, strict=True):
        pen.rectangle(box, outline=colour, width=width)
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (human, obj)]
    pen.line(centres, fill=colours[1], width=max(1, width // 2))
    left, top, right, bottom = pen.textbbox((obj[0] + width, obj[1] + width), tag, font=font)
    pen.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colours[1])
    pen.text((obj[0] + width, obj[1] + width), tag, fill=(255, 255, 255), font=font)


def _save_atomic(image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG" if path.suffix.lower() == ".png" else "JPEG", quality=90)


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("python -m verl_hoi.visualize", __doc__)
    parser.add_argument("--predictions", required=True, help="predictions JSONL (verl_hoi.predict or detections)")
    parser.add_argument("--images", required=True, help="folder with the original images")
    parser.add_argument("--out", required=True, help="output folder (created if needed; not the --images folder)")
    parser.add_argument("--annotations", help="also draw the ground truth (anno_bbox.mat or instances json)")
    parser.add_argument(
        "--top", type=positive_int, default=10, help="best-scored triplets drawn per image (default 10)"
    )
    parser.add_argument("--score-policy", choices=POLICIES, default="auto", help="how triplets are ranked")
    parser.add_argument("--limit", type=positive_int, help="only the first N lines")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """The inputs exist and ``--out`` is a folder that is not an input, before any work.

    Raises:
        UsageError: what is wrong, naming the option.
    """
    check_input_file(args.predictions, "--predictions")
    if args.annotations is not None:
        check_input_file(args.annotations, "--annotations")
    check_input_folder(args.images, "--images")
    refuse_overlap(
        {"--out": args.out},
        {"--images": args.images, "--predictions": args.predictions, "--annotations": args.annotations},
    )
    check_output_folder(args.out, "--out")


def _plan(args: argparse.Namespace, truth: dict[str, ImageAnnotation]) -> tuple[list[tuple[str, ImageDetections]], int]:
    """``([(file name, detections)], missing images)`` of the lines to draw, every line and image checked.

    Raises:
        ValueError: a prediction mistake, an image that cannot be read or whose size is not the annotated
            one (the message names the file).
    """
    lines = iter_jsonl(args.predictions)
    first = next(lines, None)
    if first is None:
        raise ValueError(f"{args.predictions}: no prediction lines (the file is empty or blank)")
    jobs: list[tuple[str, ImageDetections]] = []
    seen: dict[str, int] = {}
    missing = 0
    for number, line in itertools.islice(itertools.chain([first], lines), args.limit):
        where = f"{args.predictions}: line {number}"
        name = line.get("file_name")
        if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(f"{where}: 'file_name' must be an image's file name; got {name!r:.60}")
        if name in seen:
            raise ValueError(f"{where}: {name} was already drawn from line {seen[name]}")
        seen[name] = number
        path = Path(args.images) / name
        if not path.is_file():
            missing += 1
            continue
        _, size = read_image(path, "path")
        record = truth.get(name)
        if record is not None and (record.width, record.height) != size:
            raise ValueError(
                f"{path}: image is {size[0]}x{size[1]} but {args.annotations} says {record.width}x{record.height}"
            )
        jobs.append((name, line_detections(line, score_policy=args.score_policy, image_size=size, where=where)))
    return jobs, missing


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    from PIL import Image
    from tqdm import tqdm

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        _check_arguments(args)
        truth = {a.file_name: a for a in load_annotations(args.annotations)} if args.annotations else {}
        jobs, missing = _plan(args, truth)
    except (UsageError, ValueError) as error:
        return fail(error)
    except OSError as error:  # an input that cannot be read (permissions, a device error)
        return fail(f"{error.filename}: {error.strerror}" if error.filename else error)
    if missing:
        logger.warning("%d image(s) not found in %s", missing, args.images)
    out = Path(args.out)
    try:
        if jobs:
            out.mkdir(parents=True, exist_ok=True)
        for name, dets in tqdm(jobs, desc="visualize", unit="image"):
            with Image.open(Path(args.images) / name) as image:
                _save_atomic(draw(image, dets, truth.get(name), args.top), out / name)
    except OSError as error:  # a full disk, or an image changed since it was checked
        return fail(f"{error.filename or out}: {error.strerror or error}")
    logger.info("%d image(s) drawn into %s", len(jobs), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
