"""Official HICO-DET mAP of a predictions file (command line over ``verl_hoi.prediction_files`` and
``verl_hoi.hoieval``).

    python -m verl_hoi.evaluate --annotations instances_test2015.json --predictions preds.jsonl \\
        [--json result.json] [--score-policy {auto,given,rank,constant,logprob}] \\
        [--known-object-source {boxes,anno.mat}] [--data test.parquet] [--zero-shot {rf_uc,nf_uc,uo,uv}] [--errors]

Predictions are JSONL, one line per image, in any line order; each line is one of

- ``{"file_name": ..., "detections": [{"human": [x1, y1, x2, y2], "object": [...], "hoi": <0-based
  HOI id>, "score": <float>}, ...]}``: boxes in the annotation's own frame (raw ``.mat`` values);
- ``{"file_name": ..., "response": "<model text>", "frame": ..., "image_size": [w, h],
  "model_size": [w, h], ...}`` (what ``verl_hoi.predict`` writes): parsed, mapped back to the original
  frame, one triplet per verb, scored by the score policy (``verl_hoi.scored_triplets``);
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
full precision with the settings used and the per-class AP, recall and ground-truth counts. A subset
without any class with ground truth (no rare class among the annotated images, say) has no mean:
``n/a`` in the table, ``null`` in the JSON, and a line in ``notes`` says why.

``--zero-shot`` names one of the zero-shot settings (``verl_hoi.zero_shot``) and adds Seen and Unseen
columns: means over the classes the setting trains on and over its unseen classes (Full, Rare and
Non-rare stay). Without it, the setting that the rows of ``--data`` record (``extra_info.zero_shot``)
applies; a ``--zero-shot`` that differs from it is an error.

``--errors`` adds the error analysis of the Default setting (``verl_hoi.hoi_errors``): every false
positive by type (duplicate, wrong verb, wrong object, human box, object box, both boxes, class and
box, background, in that priority order) and the missed pairs, each with its count and the official
mAP gained by fixing it (ΔmAP, Full / Rare / Non-rare), in a second table and under ``"errors"`` in
the JSON.

Prediction lines are checked value by value, nothing is coerced (``verl_hoi.prediction_files`` lists the
rules); a mistake in any input ends the run with one ``error:`` line naming the file and the line,
exit code 2. ``--json`` is checked before the evaluation starts: a folder, a missing folder or one of
the inputs is refused, and the file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from verl_hoi.cli import (
    UsageError,
    check_input_file,
    check_output_file,
    doc_parser,
    fail,
    refuse_overlap,
    write_json_atomic,
)
from verl_hoi.hicodet import SPLITS
from verl_hoi.hoi_errors import ALL_FIXED, MISSED, SETTING, analyze_prediction_files, error_label
from verl_hoi.hoieval import KNOWN_FROM_BOXES, SETTINGS
from verl_hoi.prediction_files import evaluate_predictions
from verl_hoi.scored_triplets import AUTO_POLICY, score_policy_choices
from verl_hoi.zero_shot import ZERO_SHOT_SETTINGS

__all__ = ["SETTING_TITLES", "format_errors", "format_table", "main"]

SETTING_TITLES = {"default": "Default", "known_object": "Known-Object"}
"""How tables name the evaluation settings."""


def format_table(result: dict[str, Any]) -> str:
    """The mAP / mean recall table (×100, two decimals) and the settings it was computed with."""
    s = result["settings"]
    n = result["num_classes"]
    zero_shot = s["zero_shot"]
    subsets = tuple(n)  # the subsets the result holds, in order
    header = f"{'setting':<14}{'':<8}" + "".join(f"{name.replace('_', '-'):>10}" for name in subsets)
    rows = [header]
    for setting in SETTINGS:
        for label, values in (("mAP", result[setting]), ("mRec", result["recall"][setting])):
            cells = ("n/a" if values[name] is None else f"{values[name]:.2f}" for name in subsets)
            rows.append(f"{SETTING_TITLES[setting]:<14}{label:<8}" + "".join(f"{cell:>10}" for cell in cells))
    classes = f"rare {n['rare']}, non-rare {n['non_rare']}"
    if zero_shot is not None:
        classes += f"; zero-shot {zero_shot}: seen {n['seen']}, unseen {n['unseen']}"
    rows += [
        f"classes with ground truth: {n['full']} ({classes})",
        f"images: {s['num_images']} ({s['num_images_predicted']} predicted, {s['num_images_missing']} without a line); "
        f"detections: {s['num_detections']}",
        f"score policy: {s['score_policy']}; known-object source: {s['known_object_source']}",
        f"frame: {s['frame']}",
        *(f"note: {note}" for note in result["notes"]),
    ]
    return "\n".join(rows)


def format_errors(errors: dict[str, Any]) -> str:
    """The error table of ``--errors``: count and ΔmAP per subset (×100, two decimals) of each type, from the
    ``"errors"`` object of the JSON."""
    subsets = tuple(errors["map"])
    header = f"{'error (' + SETTING_TITLES[errors['setting']] + ')':<22}{'count':>8}"
    header += "".join(f"{'Δ ' + name.replace('_', '-'):>11}" for name in subsets)
    rows = [header]
    entries = [(error_label(name), errors["types"][name]) for name in errors["order"]]
    entries += [(MISSED, errors[MISSED]), ("all of them", {"count": "", **errors[ALL_FIXED]})]
    for label, entry in entries:
        deltas = ("n/a" if entry["delta_map"][n] is None else f"{entry['delta_map'][n]:+.2f}" for n in subsets)
        rows.append(f"{label:<22}{entry['count']:>8}" + "".join(f"{cell:>11}" for cell in deltas))
    rows += [
        f"missed pairs whose boxes a wrong-verb detection matched: {errors[MISSED]['covered_by_wrong_verb']}",
        "Δ: the official mAP with the errors of that type fixed, minus the mAP above",
    ]
    return "\n".join(rows)


def add_evaluation_options(parser: argparse.ArgumentParser, data_help: str) -> None:
    """The evaluation's options (``--annotations``, ``--predictions``, ``--data``, ``--score-policy``,
    ``--known-object-source``, ``--split``, ``--zero-shot``), which ``python -m verl_hoi.report`` shares."""
    parser.add_argument("--annotations", required=True, help="anno_bbox.mat or instances_test2015.json")
    parser.add_argument("--predictions", required=True, help="predictions JSONL (or a verl validation dump)")
    parser.add_argument("--data", help=data_help)
    parser.add_argument(
        "--score-policy", choices=score_policy_choices(), default=AUTO_POLICY, help="how detections are ranked"
    )
    parser.add_argument(
        "--known-object-source",
        default=KNOWN_FROM_BOXES,
        metavar="{boxes,PATH/anno.mat}",
        help="'boxes' (images with box ground truth of the object; default) or HICO's anno.mat",
    )
    parser.add_argument("--split", choices=sorted(SPLITS), default="test", help="annotation split (default test)")
    parser.add_argument(
        "--zero-shot",
        choices=ZERO_SHOT_SETTINGS,
        help="add Seen / Unseen means of this zero-shot setting (default: the one --data's rows record, if any)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("python -m verl_hoi.evaluate", __doc__)
    add_evaluation_options(
        parser, "the parquet a verl validation dump was made on (its rows' zero-shot setting applies)"
    )
    parser.add_argument("--json", dest="json_out", help="write the full result here (percent, full precision)")
    parser.add_argument(
        "--errors",
        action="store_true",
        help=f"add the error analysis ({SETTING_TITLES[SETTING]} setting): count and ΔmAP of each error type",
    )
    return parser


def check_evaluation_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluation's input files (``--annotations``, ``--predictions``, ``--data``, ``--known-object-source``)
    by option, each one, when given, checked to be an existing file; ``python -m verl_hoi.report`` shares them.

    Raises:
        UsageError: what is wrong, naming the option.
    """
    known = None if args.known_object_source == KNOWN_FROM_BOXES else args.known_object_source
    inputs = {
        "--annotations": args.annotations,
        "--predictions": args.predictions,
        "--data": args.data,
        "--known-object-source": known,
    }
    for option, value in inputs.items():
        if value is not None:
            try:
                check_input_file(value, option)
            except UsageError as error:
                hint = " ('boxes' or HICO's anno.mat)" if option == "--known-object-source" else ""
                raise UsageError(f"{error}{hint}") from None
    return inputs


def _check_arguments(args: argparse.Namespace) -> None:
    """Every input is an existing file and ``--json`` can be written, before any work.

    Raises:
        UsageError: what is wrong, naming the option.
    """
    inputs = check_evaluation_inputs(args)
    if args.json_out is not None:
        check_output_file(args.json_out, "--json")
        refuse_overlap({"--json": args.json_out}, inputs)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on a user mistake)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        _check_arguments(args)
        options = {
            "score_policy": args.score_policy,
            "known_object_source": args.known_object_source,
            "data": args.data,
            "split": args.split,
            "zero_shot": args.zero_shot,
        }
        if args.errors:
            analysis = analyze_prediction_files(args.annotations, args.predictions, **options, progress=True)
            result = analysis.result | {"errors": analysis.errors.summary()}
        else:
            result = evaluate_predictions(args.annotations, args.predictions, **options)
    except (UsageError, ValueError) as error:
        return fail(error)
    except OSError as error:  # an input that cannot be read (permissions, a device error)
        return fail(f"{error.filename}: {error.strerror}" if error.filename else error)
    if args.json_out is not None:
        try:
            write_json_atomic(args.json_out, result)
        except OSError as error:  # checked before the work, yet the disk may be full
            return fail(f"--json {args.json_out}: cannot be written: {error.strerror or error}")
    print(format_table(result))
    if args.errors:
        print(format_errors(result["errors"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
