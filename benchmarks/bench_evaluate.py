"""Time the official HICO-DET evaluation on a full-size synthetic prediction set.

    python benchmarks/bench_evaluate.py ANNOTATIONS [--per-image 100] [--seed 0] [--jsonl]

For every image of ANNOTATIONS (``instances_test2015.json`` or ``anno_bbox.mat``) it makes
``--per-image`` detections: jittered copies of the image's ground-truth pairs (right class), then
random classes and boxes, random scores. It prints the time of ``HOIEval`` (both settings) on the
arrays and, with ``--jsonl``, of the whole command line path (read a predictions JSONL, evaluate).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from verl_hoi.hicodet import load_annotations
from verl_hoi.hoieval import Detections, GroundTruth, HOIEval
from verl_hoi.vocab import NUM_HOI


def synthetic_detections(gt: GroundTruth, sizes: np.ndarray, per_image: int, seed: int) -> Detections:
    """``per_image`` detections per image: jittered ground truth first, then random ones."""
    rng = np.random.default_rng(seed)
    num_images = gt.num_images
    image = np.repeat(np.arange(num_images), per_image)  # (D,)
    w, h = sizes[image, 0], sizes[image, 1]
    x1, y1 = rng.uniform(1, w * 0.7), rng.uniform(1, h * 0.7)
    human = np.stack([x1, y1, x1 + rng.uniform(10, w * 0.3), y1 + rng.uniform(10, h * 0.3)], axis=1)
    x1, y1 = rng.uniform(1, w * 0.7), rng.uniform(1, h * 0.7)
    obj = np.stack([x1, y1, x1 + rng.uniform(10, w * 0.3), y1 + rng.uniform(10, h * 0.3)], axis=1)
    hoi = rng.integers(0, NUM_HOI, len(image))
    # Overwrite the first slots of each image with jittered ground truth.
    gt_slot = np.arange(len(gt.image)) - np.searchsorted(gt.image, gt.image)
    keep = gt_slot < per_image
    target = gt.image[keep] * per_image + gt_slot[keep]
    human[target] = gt.human[keep] + rng.normal(0, 4, (keep.sum(), 4))
    obj[target] = gt.object[keep] + rng.normal(0, 4, (keep.sum(), 4))
    hoi[target] = gt.hoi[keep]
    return Detections(image=image, hoi=hoi, human=_ordered(human), object=_ordered(obj), score=rng.random(len(image)))


def _ordered(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` boxes with ``x1 <= x2`` and ``y1 <= y2``: jitter can swap a small box's corners."""
    low, high = boxes[:, :2], boxes[:, 2:]
    return np.concatenate([np.minimum(low, high), np.maximum(low, high)], axis=1)


def write_jsonl(path: Path, file_names: list[str], dets: Detections) -> None:
    """One ``{"file_name", "detections"}`` line per image."""
    bounds = np.searchsorted(dets.image, np.arange(len(file_names) + 1))
    with open(path, "w", encoding="utf-8") as f:
        for i, name in enumerate(file_names):
            a, b = bounds[i], bounds[i + 1]
            items = [
                {"human": hb, "object": ob, "hoi": c, "score": s}
                for hb, ob, c, s in zip(
                    dets.human[a:b].round(2).tolist(),
                    dets.object[a:b].round(2).tolist(),
                    dets.hoi[a:b].tolist(),
                    dets.score[a:b].tolist(),
                    strict=True,
                )
            ]
            f.write(json.dumps({"file_name": name, "detections": items}) + "\n")


def _since(start: float, cpu: float) -> str:
    """Wall and CPU seconds (they differ when other processes share the cores)."""
    return f"{time.perf_counter() - start:.2f} s wall, {time.process_time() - cpu:.2f} s CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", type=Path, help="instances_test2015.json or anno_bbox.mat")
    parser.add_argument("--per-image", type=int, default=100, help="detections per image (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", action="store_true", help="also time the JSONL path of python -m verl_hoi.evaluate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    records = load_annotations(args.annotations)
    gt = GroundTruth.from_annotations(records)
    sizes = np.array([[r.width, r.height] for r in records], dtype=np.float64)
    dets = synthetic_detections(gt, sizes, args.per_image, args.seed)
    print(f"{len(records)} images, {len(gt.image)} ground-truth pairs, {len(dets)} detections")

    start, cpu = time.perf_counter(), time.process_time()
    result = HOIEval(gt, dets).run()
    print(f"HOIEval, both settings: {_since(start, cpu)}")
    print(f"  default mAP {result['default']['full']:.2f}, known-object mAP {result['known_object']['full']:.2f}")

    if args.jsonl:
        from verl_hoi.evaluate import main as evaluate_main

        with tempfile.TemporaryDirectory() as tmp:
            predictions = Path(tmp) / "predictions.jsonl"
            write_jsonl(predictions, [r.file_name for r in records], dets)
            start, cpu = time.perf_counter(), time.process_time()
            if evaluate_main(["--annotations", str(args.annotations), "--predictions", str(predictions)]):
                return 1  # its error line is printed: a timing of a refused input would mislead
            print(f"python -m verl_hoi.evaluate (read annotations and JSONL, evaluate): {_since(start, cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
