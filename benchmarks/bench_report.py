"""Time the error analysis and the HTML report on a full-size synthetic prediction set, against the plain evaluation.

    python benchmarks/bench_report.py [ANNOTATIONS] [--per-image 100] [--seed 0]

Without ANNOTATIONS (``instances_test2015.json`` or ``anno_bbox.mat``) it writes a stand-in the size of
HICO-DET's test set: 9,658 images with 1 + Poisson(2.46) pairs each (about 33,400) of random classes and
boxes. The detections are ``bench_evaluate.py``'s: jittered copies of each image's pairs, then random
ones, ``--per-image`` in all. It prints the time of ``HOIEval`` (Default) and of ``analyze_errors`` on the
arrays, then of three command lines on the same predictions JSONL: ``evaluate`` (the baseline, measured in
this run), ``evaluate --errors`` and ``report`` without images, each with its ratio to the baseline. The
target: the report in under 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_evaluate import _since, synthetic_detections, write_jsonl

from verl_hoi.hicodet import load_annotations
from verl_hoi.hoi_errors import ALL_FIXED, analyze_errors
from verl_hoi.hoieval import GroundTruth, HOIEval
from verl_hoi.vocab import NUM_HOI

TEST_IMAGES = 9658
PAIRS_PER_IMAGE = 2.46  # Poisson mean of the pairs after the first: 33,405 test pairs / 9,658 images - 1


def write_synthetic_annotations(path: Path, seed: int) -> None:
    """An ``instances_test2015.json`` of :data:`TEST_IMAGES` images with random pairs (every class present)."""
    rng = np.random.default_rng(seed)
    counts = 1 + rng.poisson(PAIRS_PER_IMAGE, TEST_IMAGES)
    hoi = rng.integers(0, NUM_HOI, counts.sum())
    hoi[:NUM_HOI] = np.arange(NUM_HOI)
    sizes = np.stack([rng.integers(400, 641, TEST_IMAGES), rng.integers(300, 641, TEST_IMAGES)], axis=1)
    image = np.repeat(np.arange(TEST_IMAGES), counts)

    def boxes() -> list[list[float]]:
        w, h = sizes[image, 0], sizes[image, 1]
        x1, y1 = rng.integers(1, w * 0.6), rng.integers(1, h * 0.6)
        x2, y2 = x1 + rng.integers(10, w * 0.4), y1 + rng.integers(10, h * 0.4)
        return np.stack([x1, y1, x2, y2], axis=1).astype(float).tolist()

    human, obj = boxes(), boxes()
    bounds = np.r_[0, np.cumsum(counts)]
    doc = {
        "filenames": [f"HICO_test2015_{i + 1:08d}.jpg" for i in range(TEST_IMAGES)],
        "size": sizes.tolist(),
        "annotation": [
            {"boxes_h": human[a:b], "boxes_o": obj[a:b], "hoi": hoi[a:b].tolist()}
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ],
    }
    path.write_text(json.dumps(doc))


def _timed_command(main, argv: list[str]) -> float:
    """Wall seconds of a command line's ``main`` (its printed tables discarded); raises if it fails."""
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code:
        raise SystemExit(f"{argv} failed with exit code {code}")
    seconds = time.perf_counter() - start
    print(f"  {_since(start, cpu)}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", type=Path, nargs="?", help="instances_test2015.json or anno_bbox.mat")
    parser.add_argument("--per-image", type=int, default=100, help="detections per image (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from verl_hoi.evaluate import main as evaluate_main
    from verl_hoi.report import main as report_main

    with tempfile.TemporaryDirectory() as tmp:
        annotations = args.annotations
        if annotations is None:
            annotations = Path(tmp) / "instances_test2015.json"
            write_synthetic_annotations(annotations, args.seed)
        records = load_annotations(annotations)
        gt = GroundTruth.from_annotations(records)
        sizes = np.array([[r.width, r.height] for r in records], dtype=np.float64)
        dets = synthetic_detections(gt, sizes, args.per_image, args.seed)
        print(f"{len(records)} images, {len(gt.image)} ground-truth pairs, {len(dets)} detections")

        start, cpu = time.perf_counter(), time.process_time()
        ev = HOIEval(gt, dets, settings=("default",))
        ev.run()
        print(f"HOIEval, Default: {_since(start, cpu)}")
        start, cpu = time.perf_counter(), time.process_time()
        errors = analyze_errors(ev)
        print(f"analyze_errors (classification and {len(errors.fixed)} recomputations): {_since(start, cpu)}")
        counts = ", ".join(f"{name} {count}" for name, count in errors.counts().items())
        print(f"  {counts}")
        print(f"  mAP {errors.map['full']:.2f}, with everything fixed {errors.fixed[ALL_FIXED]['full']:.2f}")

        predictions = Path(tmp) / "predictions.jsonl"
        write_jsonl(predictions, [r.file_name for r in records], dets)
        print(f"predictions JSONL: {predictions.stat().st_size / 1e6:.0f} MB")
        common = ["--annotations", str(annotations), "--predictions", str(predictions)]
        print("python -m verl_hoi.evaluate (baseline):")
        baseline = _timed_command(evaluate_main, common)
        print("python -m verl_hoi.evaluate --errors:")
        with_errors = _timed_command(evaluate_main, [*common, "--errors"])
        print("python -m verl_hoi.report (no images):")
        report = _timed_command(report_main, [*common, "--out", str(Path(tmp) / "report.html")])
        size = (Path(tmp) / "report.html").stat().st_size
        print(f"ratio to the baseline: evaluate --errors {with_errors / baseline:.2f}, report {report / baseline:.2f}")
        print(f"report: {report:.1f} s wall (target: under 60 s), {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
