"""Where the mAP of a predictions file went, as one self-contained HTML page that opens in any browser.

    python -m verl_hoi.report --annotations instances_test2015.json --predictions preds.jsonl --out report.html \\
        [--images DIR [--gallery 12]] [--data test.parquet] [--dumps 0.jsonl 50.jsonl ...] \\
        [--score-policy auto] [--known-object-source boxes] [--split test] [--zero-shot SETTING]

The page holds the official mAP table (Default and Known-Object, Full / Rare / Non-rare, mean recall), the
error analysis of ``python -m verl_hoi.evaluate --errors`` as a table and a chart (count and ΔmAP of each
error type), AP by object and by verb as charts, and the AP of every class in a table that sorts (click a
column) and filters by object, verb and rare / non-rare. ``--images`` adds a gallery of the ``--gallery``
images with the most errors, predicted and ground-truth pairs drawn as ``verl_hoi.visualize`` draws them,
each triplet labelled with what the matching made of it. ``--dumps`` (verl validation dumps of one run,
with the ``--data`` parquet they validated on) adds the official mAP and the mean of every reward key
against the training step. Styles, scripts, charts and pictures are inside the file: no network is needed.

``--predictions`` is any file ``python -m verl_hoi.evaluate`` reads, with the same options. The tables are
also printed. Every input is checked before the page is written (whole, or not at all); a mistake ends the
run with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from verl_hoi.cli import (
    UsageError,
    atomic_path,
    check_input_file,
    check_input_folder,
    check_output_file,
    doc_parser,
    fail,
    positive_int,
    refuse_overlap,
)
from verl_hoi.evaluate import add_evaluation_options, check_evaluation_inputs, format_errors, format_table
from verl_hoi.hoi_errors import analyze_prediction_files
from verl_hoi.report_page import DEFAULT_GALLERY, read_dumps, render_report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("python -m verl_hoi.report", __doc__)
    add_evaluation_options(parser, "the parquet the validation dumps (or a dump as --predictions) were made on")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument(
        "--images", metavar="DIR", help="folder with the original images: adds a gallery of the worst images"
    )
    parser.add_argument(
        "--gallery",
        type=positive_int,
        metavar="N",
        help=f"images in the gallery (default {DEFAULT_GALLERY}; needs --images)",
    )
    parser.add_argument("--dumps", nargs="+", metavar="DUMP", help="verl validation dumps of one run (needs --data)")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """Every input exists and ``--out`` can be written, before any work.

    Raises:
        UsageError: what is wrong, naming the option.
    """
    if args.gallery is not None and args.images is None:
        raise UsageError("--gallery needs --images (the folder of the original images)")
    if args.dumps and args.data is None:
        raise UsageError("--dumps are verl validation dumps: pass --data with the parquet they validated on")
    inputs = check_evaluation_inputs(args)
    for dump in args.dumps or ():
        check_input_file(dump, "--dumps")
    if args.images is not None:
        check_input_folder(args.images, "--images")
    check_output_file(args.out, "--out")
    refuse_overlap({"--out": args.out}, inputs)
    for dump in args.dumps or ():
        refuse_overlap({"--out": args.out}, {"--dumps": dump})


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    options = {"score_policy": args.score_policy, "split": args.split, "zero_shot": args.zero_shot}
    try:
        _check_arguments(args)
        analysis = analyze_prediction_files(
            args.annotations,
            args.predictions,
            **options,
            known_object_source=args.known_object_source,
            data=args.data,
            progress=True,
        )
        dumps = read_dumps(args.annotations, args.dumps, data=args.data, **options, progress=True) if args.dumps else []
        page = render_report(
            analysis, images=args.images, gallery=args.gallery or DEFAULT_GALLERY, dumps=dumps, progress=True
        )
    except (UsageError, ValueError) as error:
        return fail(error)
    except OSError as error:  # an input that cannot be read (permissions, a device error)
        return fail(f"{error.filename}: {error.strerror}" if error.filename else error)
    try:
        with atomic_path(args.out) as tmp:
            tmp.write_text(page, encoding="utf-8")
    except OSError as error:  # checked before the work, yet the disk may be full
        return fail(f"--out {args.out}: cannot be written: {error.strerror or error}")
    print(format_table(analysis.result))
    print(format_errors(analysis.errors.summary()))
    print(f"report: {args.out} ({len(page.encode()) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
