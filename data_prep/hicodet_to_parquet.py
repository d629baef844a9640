"""Convert HICO-DET annotations and images into a verl RLHFDataset parquet file (one row per image).

Example:
    python data_prep/hicodet_to_parquet.py --annotations hico_20160224_det/anno_bbox.mat \\
        --images hico_20160224_det/images/train2015 --split train --out data/hicodet

writes data/hicodet/train.parquet. Row layout: see verl_hoi/convert.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from verl_hoi.cli import UsageError, fail, positive_int
from verl_hoi.convert import (
    IMAGE_MODES,
    ROWS_PER_GROUP,
    ConvertOptions,
    iter_rows,
    missing_images,
    row_schema,
    select_images,
    write_parquet,
)
from verl_hoi.frames import DEFAULT_FRAME, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FRAMES
from verl_hoi.hicodet import SPLITS, load_annotations
from verl_hoi.prompts import DEFAULT_PROMPT, available_prompts, get_prompt

PLAIN_PROMPT = "hoi_r1_plain"
"""The template ``--no-thinking`` selects when no ``--prompt`` is given."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert HICO-DET (anno_bbox.mat or instances_{train,test}2015.json) into DIR/<split>.parquet "
        "for verl's RLHFDataset: one row per image with the prompt, the image, and the ground-truth answer "
        "JSON in the chosen coordinate frame.",
    )
    parser.add_argument("--annotations", required=True, type=Path, metavar="PATH", help="anno_bbox.mat or *.json")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder with the split's images")
    parser.add_argument("--split", required=True, choices=SPLITS, help="train skips images without a visible pair")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--frame", choices=FRAMES, default=DEFAULT_FRAME, help="box coordinates (default: %(default)s)")
    parser.add_argument(
        "--min-pixels", type=positive_int, default=DEFAULT_MIN_PIXELS, metavar="N", help="default: %(default)s"
    )
    parser.add_argument(
        "--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N", help="default: %(default)s"
    )
    parser.add_argument(
        "--image-mode",
        choices=IMAGE_MODES,
        default="embed",
        help="embed: JPEG bytes in the parquet (portable); path: absolute image paths (small file, the images "
        "must stay where they are) (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt",
        metavar="NAME",
        help=f"prompt template: {', '.join(available_prompts())} (default: {DEFAULT_PROMPT}, {PLAIN_PROMPT} with "
        "--no-thinking)",
    )
    parser.add_argument("--no-thinking", action="store_true", help=f"ask for the answer only (template {PLAIN_PROMPT})")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="convert only the first N images")
    parser.add_argument(
        "--skip-missing-images", action="store_true", help="leave out images missing from --images instead of failing"
    )
    return parser


def _prompt_name(prompt: str | None, no_thinking: bool) -> str:
    if prompt is None:
        return PLAIN_PROMPT if no_thinking else DEFAULT_PROMPT
    if no_thinking and get_prompt(prompt).thinking:
        raise UsageError(f"--no-thinking conflicts with --prompt {prompt}, a template with thinking")
    return prompt


def run(args: argparse.Namespace) -> Path:
    """Convert as ``args`` say; returns the written parquet path. Raises UsageError on user mistakes."""
    try:
        options = ConvertOptions(
            split=args.split,
            frame=args.frame,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            prompt=_prompt_name(args.prompt, args.no_thinking),
            image_mode=args.image_mode,
        )
        annotations = load_annotations(args.annotations, args.split)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if not args.images.is_dir():
        raise UsageError(f"image folder not found: {args.images}")

    indices = select_images(annotations, args.split)
    if len(indices) < len(annotations):
        print(f"skipping {len(annotations) - len(indices)} training images without a visible pair", file=sys.stderr)
    if not args.skip_missing_images:
        indices = indices[: args.limit]
    missing = set(missing_images([annotations[i] for i in indices], args.images))
    if missing:
        first = next(annotations[i].file_name for i in indices if annotations[i].file_name in missing)
        if not args.skip_missing_images:
            raise UsageError(
                f"{len(missing)} of {len(indices)} images missing from {args.images} (first: {first}); "
                "use --skip-missing-images to leave them out"
            )
        print(f"skipping {len(missing)} images missing from {args.images} (first: {first})", file=sys.stderr)
        indices = [i for i in indices if annotations[i].file_name not in missing][: args.limit]

    path = args.out / f"{args.split}.parquet"
    rows = tqdm(iter_rows(annotations, indices, args.images, options), total=len(indices), unit="img", desc=path.name)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        mode = options.image_mode
        count = write_parquet(rows, path, row_schema(mode), rows_per_group=ROWS_PER_GROUP[mode])
    except ValueError as error:  # an unreadable image or one whose size disagrees with the annotation
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error}") from None
    print(f"wrote {count} rows to {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UsageError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
