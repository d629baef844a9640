"""Draw predicted (and ground-truth) human-object pairs with their verb-object labels on the images.

    python -m verl_hoi.visualize --predictions preds.jsonl --images DIR --out DIR \\
        [--annotations instances_test2015.json] [--top 10] [--score-policy auto] [--limit N]

Each prediction line (any kind ``verl_hoi.prediction_files`` reads, boxes mapped back to the original image)
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
from verl_hoi.drawing import DEFAULT_TOP, draw
from verl_hoi.hicodet import ImageAnnotation, load_annotations
from verl_hoi.images import decoded_size, read_image_file
from verl_hoi.jsonl import iter_jsonl
from verl_hoi.prediction_files import line_detections
from verl_hoi.scored_triplets import AUTO_POLICY, ImageDetections, score_policy_choices

__all__ = ["main"]

logger = logging.getLogger(__name__)


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
        "--top",
        type=positive_int,
        default=DEFAULT_TOP,
        help="best-scored triplets drawn per image (default %(default)s)",
    )
    parser.add_argument(
        "--score-policy", choices=score_policy_choices(), default=AUTO_POLICY, help="how triplets are ranked"
    )
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
        size = decoded_size(read_image_file(path), str(path))
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
