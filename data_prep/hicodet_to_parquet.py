"""Convert HICO-DET annotations and images into a verl RLHFDataset parquet file, one row per image.

    python data_prep/hicodet_to_parquet.py --annotations hico_20160224_det/anno_bbox.mat \\
        --images hico_20160224_det/images/train2015 --split train --out data/hicodet

Writes OUT/<split>.parquet (row layout: verl_hoi/convert.py). The annotations are anno_bbox.mat or
instances_{train,test}2015.json; --split train leaves out images without a visible pair, --split
test keeps every image.

Rows are made for one model family (--family, default qwen2_5_vl; families: verl_hoi/families.py): images
are resized to multiples of its block (patch x merge: 28 pixels for qwen2_5_vl, 32 for qwen3_vl and qwen3_5)
within its pixel budget, and boxes are written in its frame (resized for qwen2_5_vl, norm1000 for the
others); --frame, --min-pixels and --max-pixels change them. --processor DIR reads the patch and merge
sizes and the pixel budget from the image processor of a model or processor folder instead (and the
family from its config.json), for a checkpoint whose processor differs from its family's defaults. Each
row records the family, patch and merge sizes it was made for, which training, prediction and evaluation
read back.

--zero-shot {rf_uc,nf_uc,uo,uv} makes the rows of a zero-shot setting (verl_hoi/zero_shot.py): on --split
train every (human, object) pair that carries one of the setting's unseen HOI classes is dropped with all
its classes, then every image left without a pair (both counted on stderr); --split test keeps the whole
test set, as the protocol evaluates on it. Either way each row records the setting, which evaluation reads
back. --prompt-vocabulary seen leaves the unseen combinations out of the prompt's class list (default full:
every class is named, as for open-vocabulary use).

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
    first_line,
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
from verl_hoi.families import DEFAULT_FAMILY, available_families, family_for_model_type, get_family
from verl_hoi.frames import available_frames
from verl_hoi.hicodet import SPLITS, load_annotations
from verl_hoi.prompts import (
    DEFAULT_PROMPT,
    PLAIN_PROMPT,
    VOCABULARIES,
    available_prompts,
    get_prompt,
    load_prompt_file,
)
from verl_hoi.rows import processor_geometry, processor_pixels
from verl_hoi.zero_shot import ZERO_SHOT_SETTINGS, training_annotations


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("python data_prep/hicodet_to_parquet.py", __doc__)
    parser.add_argument("--annotations", required=True, type=Path, metavar="PATH", help="anno_bbox.mat or *.json")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder with the split's images")
    parser.add_argument("--split", required=True, choices=SPLITS, help="train skips images without a visible pair")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument(
        "--family",
        choices=available_families(),
        help=f"model family the rows are for (default: {DEFAULT_FAMILY}, or --processor's)",
    )
    parser.add_argument(
        "--processor",
        type=Path,
        metavar="DIR",
        help="model or processor folder: patch and merge sizes and pixel budget from its image processor's config",
    )
    parser.add_argument("--frame", choices=available_frames(), help="box coordinates (default: the family's)")
    parser.add_argument(
        "--min-pixels", type=positive_int, metavar="N", help="default: --processor's, else the family's"
    )
    parser.add_argument(
        "--max-pixels", type=positive_int, metavar="N", help="default: --processor's, else the family's"
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
        "--prompt-file",
        type=Path,
        metavar="FILE",
        help="the user text from a UTF-8 file instead of a template; {width}, {height} and {coordinates} are filled "
        "in for each image (docs/evaluation.md)",
    )
    parser.add_argument(
        "--zero-shot",
        choices=ZERO_SHOT_SETTINGS,
        metavar="SETTING",
        help=f"a zero-shot setting: {', '.join(ZERO_SHOT_SETTINGS)} (train: its unseen classes removed)",
    )
    parser.add_argument(
        "--prompt-vocabulary",
        choices=VOCABULARIES,
        default=VOCABULARIES[0],
        help="with --zero-shot: full names every class in the prompt, seen leaves the unseen ones out "
        "(default: %(default)s)",
    )
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


def _prompt_name(prompt: str | None, no_thinking: bool, prompt_file: Path | None) -> str:
    if prompt_file is not None:
        if prompt is not None or no_thinking:
            raise UsageError("--prompt-file replaces --prompt and --no-thinking: give only one of them")
        check_input_file(prompt_file, "--prompt-file")
        try:
            return load_prompt_file(prompt_file)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if prompt is None:
        return PLAIN_PROMPT if no_thinking else DEFAULT_PROMPT
    if no_thinking and get_prompt(prompt).thinking:
        raise UsageError(f"--no-thinking conflicts with --prompt {prompt}, a template with thinking")
    return prompt


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Where a checkpoint folder keeps its image processor's configuration (transformers 5 writes the second)."""


def _processor_options(folder: Path, family: str | None) -> dict[str, object]:
    """``ConvertOptions`` fields from a processor folder: family, patch and merge sizes, pixel budget."""
    import json

    from transformers import AutoImageProcessor

    check_input_folder(folder, "--processor")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise UsageError(f"--processor {folder}: no {' or '.join(PROCESSOR_FILES)} (not a model or processor folder)")
    try:
        image_processor = AutoImageProcessor.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--processor {folder}: cannot load its image processor ({first_line(error)})") from None
    geometry = processor_geometry({"image_processor": image_processor})
    pixels = processor_pixels({"image_processor": image_processor})
    if geometry is None or pixels is None:
        raise UsageError(f"--processor {folder}: its image processor has no patch and merge sizes or pixel budget")
    model_type = None
    if (folder / "config.json").is_file():
        try:
            model_type = json.loads((folder / "config.json").read_bytes()).get("model_type")
        except (ValueError, AttributeError):
            raise UsageError(f"--processor {folder}: config.json is not a JSON object") from None
    found = family_for_model_type(model_type) if isinstance(model_type, str) else None
    if family is None:
        if found is None:
            raise UsageError(f"--processor {folder}: model_type {model_type!r} is of no known family; give --family")
        family = found.name
    elif found is not None and found.name != family:
        raise UsageError(f"--family {family} disagrees with --processor {folder}, a {found.name} ({model_type})")
    named = get_family(family)
    if geometry != (named.patch_size, named.merge_size):
        print(
            f"note: --processor {folder} cuts {geometry[0]}-pixel patches merged {geometry[1]}x{geometry[1]} "
            f"({named.name} defaults: {named.patch_size}, {named.merge_size}); rows follow the processor",
            file=sys.stderr,
        )
    return {
        "family": family,
        "patch_size": geometry[0],
        "merge_size": geometry[1],
        "min_pixels": pixels[0],
        "max_pixels": pixels[1],
    }


def _output_file(out: Path, split: str, inputs: dict[str, Path]) -> Path:
    """``out/<split>.parquet``, checked before any work: no input, and in a folder that is or can be made writable."""
    path = out / f"{split}.parquet"
    for output in (out, path):
        refuse_overlap({"--out": output}, inputs)
    check_output_folder(out, "--out", [path.name])
    return path


def run(args: argparse.Namespace) -> Path:
    """Convert as ``args`` say; returns the written parquet path. Raises UsageError on user mistakes."""
    settings = {"family": args.family or DEFAULT_FAMILY}
    if args.processor is not None:
        settings = _processor_options(args.processor, args.family)
    given = {"frame": args.frame, "min_pixels": args.min_pixels, "max_pixels": args.max_pixels}
    settings |= {name: value for name, value in given.items() if value is not None}
    try:
        options = ConvertOptions(
            split=args.split,
            prompt=_prompt_name(args.prompt, args.no_thinking, args.prompt_file),
            image_mode=args.image_mode,
            zero_shot=args.zero_shot,
            prompt_vocabulary=args.prompt_vocabulary,
            **settings,
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

    if args.zero_shot is not None and args.split == "train":
        annotations, removed = training_annotations(annotations, args.zero_shot)
        print(
            f"zero-shot {args.zero_shot}: removed {removed.pairs} ground-truth pairs ({removed.box_pairs} human-object "
            f"pairs) with an unseen class; {removed.images} images left without a pair",
            file=sys.stderr,
        )
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
