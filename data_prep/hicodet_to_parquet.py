"""Convert HICO-DET annotations and images into a verl RLHFDataset parquet file, one row per image.

    python data_prep/hicodet_to_parquet.py --annotations hico_20160224_det/anno_bbox.mat \\
        --images hico_20160224_det/images/train2015 --split train --out data/hicodet

Writes OUT/<split>.parquet (row layout: verl_hoi/convert.py). The annotations are anno_bbox.mat or
instances_{train,test}2015.json; --split train leaves out images without a visible pair, --split
test keeps every image.

Before anything is written: the annotations must be valid (numbers of the right type and in range,
never read from strings; each file name once: the rules are in verl_hoi/hicodet.py), every image
present (or left out with --skip-missing-images), and --out a folder that can be written, neither
the annotation file nor the image folder. While converting, every image is decoded as training will
decode it: one that cannot be (not an image, truncated, corrupt, or larger than PIL's
decompression-bomb limit, verl_hoi.images.MAX_IMAGE_PIXELS) stops the run, or with --skip-bad-images
is left out and counted; one whose size is not the annotated one always stops it. A run that stops,
Ctrl-C included, leaves an earlier <split>.parquet as it was and no partial file.

A mistake ends with one line `error: ...` naming the file (and the image), exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from verl_hoi.cli import (
    INTERRUPTED,
    UsageError,
    check_input_file,
    check_input_folder,
    check_output_folder,
    doc_parser,
    fail,
    new_folders_removed_on_error,
    positive_int,
    refuse_overlap,
)
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
from verl_hoi.frames import DEFAULT_FRAME, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, available_frames
from verl_hoi.hicodet import SPLITS, load_annotations
from verl_hoi.prompts import DEFAULT_PROMPT, PLAIN_PROMPT, available_prompts, get_prompt


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("python data_prep/hicodet_to_parquet.py", __doc__)
    parser.add_argument("--annotations", required=True, type=Path, metavar="PATH", help="anno_bbox.mat or *.json")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder with the split's images")
    parser.add_argument("--split", required=True, choices=SPLITS, help="train skips images without a visible pair")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument(
        "--frame", choices=available_frames(), default=DEFAULT_FRAME, help="box coordinates (default: %(default)s)"
    )
    parser.add_argument(
        "--min-pixels", type=positive_int, default=DEFAULT_MIN_PIXELS, metavar="N", help="default: %(default)s"
    )
    parser.add_argument(
        "--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N", help="default: %(default)s"
    )
    parser.add_argument(
        "--image-mode",
        choices=IMAGE_MODES,
        default=IMAGE_MODES[0],
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
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="convert only the first N images (the first N that are not skipped)",
    )
    parser.add_argument(
        "--skip-missing-images", action="store_true", help="leave out images missing from --images instead of failing"
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out images that cannot be decoded (counted on stderr) instead of failing",
    )
    return parser


def _prompt_name(prompt: str | None, no_thinking: bool) -> str:
    if prompt is None:
        return PLAIN_PROMPT if no_thinking else DEFAULT_PROMPT
    if no_thinking and get_prompt(prompt).thinking:
        raise UsageError(f"--no-thinking conflicts with --prompt {prompt}, a template with thinking")
    return prompt


def _output_file(out: Path, split: str, inputs: dict[str, Path]) -> Path:
    """``out/<split>.parquet``, checked before any work: no input, and in a folder that is or can be made writable."""
    path = out / f"{split}.parquet"
    for output in (out, path):
        refuse_overlap({"--out": output}, inputs)
    check_output_folder(out, "--out", [path.name])
    return path


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
    except ValueError as error:
        raise UsageError(str(error)) from None
    path = _output_file(args.out, args.split, {"--annotations": args.annotations, "--images": args.images})
    check_input_folder(args.images, "--images")
    check_input_file(args.annotations, "--annotations")
    try:
        annotations = load_annotations(args.annotations, args.split)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None

    indices = select_images(annotations, args.split)
    if not indices:
        raise UsageError(f"{args.annotations}: no image to convert (none has a visible pair)")
    if len(indices) < len(annotations):
        print(f"skipping {len(annotations) - len(indices)} training images without a visible pair", file=sys.stderr)
    if not (args.skip_missing_images or args.skip_bad_images):
        indices = indices[: args.limit]  # only these need to be present
    missing = set(missing_images([annotations[i] for i in indices], args.images))
    if missing:
        first = next(annotations[i].file_name for i in indices if annotations[i].file_name in missing)
        if not args.skip_missing_images:
            raise UsageError(
                f"{len(missing)} of {len(indices)} images missing from {args.images} (first: {first}); "
                "use --skip-missing-images to leave them out"
            )
        print(f"skipping {len(missing)} images missing from {args.images} (first: {first})", file=sys.stderr)
        indices = [i for i in indices if annotations[i].file_name not in missing]

    bad: list[str] = []
    rows = iter_rows(annotations, indices, args.images, options, bad if args.skip_bad_images else None)
    total = min(len(indices), args.limit or len(indices))
    mode = options.image_mode
    try:
        with new_folders_removed_on_error(args.out):
            args.out.mkdir(parents=True, exist_ok=True)
            count = write_parquet(
                tqdm(islice(rows, args.limit), total=total, unit="img", desc=path.name),
                path,
                row_schema(mode),
                rows_per_group=ROWS_PER_GROUP[mode],
            )
    except ValueError as error:  # a bad image, a size that disagrees with the annotation, no row left
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error}") from None
    finally:
        if bad:
            print(f"skipped {len(bad)} images that cannot be decoded (first: {bad[0]})", file=sys.stderr)
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
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
