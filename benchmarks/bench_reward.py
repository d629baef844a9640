"""Throughput of ``verl_hoi.reward.compute_score`` on a mixed batch of responses, on one core.

The batch imitates GRPO: ``--groups`` images with up to 20 ground-truth pairs each, and
``--n / --groups`` responses per image, mixed as 40 % correct (shuffled order), 30 % noisy
(jittered boxes, a wrong verb or object, a missed or duplicated pair), 10 % empty, 20 % malformed
(truncated, single-quoted, fenced, prose, wrong keys). Prints responses/s (best of ``--repeat``)::

    python benchmarks/bench_reward.py              # 4,096 responses
    python benchmarks/bench_reward.py --baseline   # also a plain per-pair Python scorer, for scale
    python benchmarks/bench_reward.py --profile    # plus the top functions by own time

The baseline parses with the same parser but computes IoUs pair by pair in Python and re-parses
the ground truth every time; its speed relative to ``compute_score`` carries across machines.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from collections.abc import Callable

from scipy.optimize import linear_sum_assignment

from verl_hoi.answer import HOIPair, parse_answer, render_answer, render_response
from verl_hoi.reward import compute_score
from verl_hoi.vocab import OBJECTS, valid_verbs

MAX_PAIRS = 20


def _box(rng: random.Random, width: int = 640, height: int = 480) -> tuple[int, int, int, int]:
    x1, y1 = rng.randrange(0, width - 40), rng.randrange(0, height - 40)
    return x1, y1, rng.randrange(x1 + 20, width), rng.randrange(y1 + 20, height)


def _pair(rng: random.Random) -> HOIPair:
    obj = rng.randrange(len(OBJECTS))
    verbs = rng.sample(valid_verbs(obj), k=min(len(valid_verbs(obj)), rng.randint(1, 3)))
    return HOIPair(_box(rng), _box(rng), obj, tuple(sorted(verbs)))


def _jitter(box: tuple, rng: random.Random) -> tuple:
    x1, y1, x2, y2 = (v + rng.randint(-8, 8) for v in box)
    return min(x1, x2 - 1), min(y1, y2 - 1), max(x2, x1 + 1), max(y2, y1 + 1)


def _noisy(truth: list[HOIPair], rng: random.Random) -> list[HOIPair]:
    pred = [HOIPair(_jitter(p.human, rng), _jitter(p.object, rng), p.object_id, p.verb_ids) for p in truth]
    if pred and rng.random() < 0.5:
        k = rng.randrange(len(pred))
        pred[k] = HOIPair(pred[k].human, pred[k].object, pred[k].object_id, (valid_verbs(pred[k].object_id)[0],))
    if pred and rng.random() < 0.3:
        pred.pop(rng.randrange(len(pred)))
    if pred and rng.random() < 0.3:
        pred.append(pred[0])
    if rng.random() < 0.3:
        pred.append(_pair(rng))
    return pred


def _malformed(answer: str, rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return render_response(answer[: rng.randrange(1, len(answer) + 1)], "cut off")
    if kind == 1:
        return render_response(answer.replace('"', "'"), "single quotes")
    if kind == 2:
        return f"<think>fenced</think><answer>```json\n{answer}\n```</answer>"
    if kind == 3:
        return f"Here are the interactions I found: {answer} Hope this helps."
    return render_response(answer.replace('"verb class"', '"verbs"'), "wrong key")


def make_batch(n: int, groups: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (response, ground truth) pairs over ``groups`` synthetic images."""
    rng = random.Random(seed)
    truths = [[_pair(rng) for _ in range(rng.randint(1, MAX_PAIRS))] for _ in range(groups)]
    batch = []
    for i in range(n):
        truth = truths[i % groups]
        kind = rng.random()
        if kind < 0.4:
            response = render_response(render_answer(rng.sample(truth, len(truth))), "all of them")
        elif kind < 0.7:
            response = render_response(render_answer(_noisy(truth, rng)[:MAX_PAIRS]), "roughly")
        elif kind < 0.8:
            response = rng.choice(["", "<think></think><answer>[]</answer>", "I cannot tell."])
        else:
            response = _malformed(render_answer(truth), rng)
        batch.append((response, render_answer(truth)))
    return batch


def _plain_iou(a: tuple, b: tuple) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def plain_score(response: str, truth: str) -> float:
    """The baseline: label and IoU scores with per-pair Python IoUs and no caching."""
    pred, gt = parse_answer(response).pairs, parse_answer(truth).pairs
    if not pred or not gt:
        return 0.0
    human = [[_plain_iou(p.human, g.human) for g in gt] for p in pred]
    obj = [[_plain_iou(p.object, g.object) for g in gt] for p in pred]
    merged = [[min(h, o) for h, o in zip(hs, os_, strict=True)] for hs, os_ in zip(human, obj, strict=True)]
    label = iou = 0.0
    for i, j in zip(*linear_sum_assignment(merged, maximize=True), strict=True):
        if merged[i][j] > 0:
            common = len(set(pred[i].verb_ids) & set(gt[j].verb_ids))
            label += 0.5 * (pred[i].object_id == gt[j].object_id)
            label += common / (len(pred[i].verb_ids) + len(gt[j].verb_ids))
            iou += (human[i][j] + obj[i][j]) / 2
    return (label + iou) / max(len(pred), len(gt))


def _compute_score(response: str, truth: str) -> object:
    return compute_score("hico_det", response, truth)


def run(batch: list[tuple[str, str]], score: Callable[[str, str], object] = _compute_score) -> float:
    """Seconds to score the batch once."""
    start = time.perf_counter()
    for response, truth in batch:
        score(response, truth)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096, help="responses in the batch (default: 4096)")
    parser.add_argument("--groups", type=int, default=512, help="distinct images (default: 512)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the best counts (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--baseline", action="store_true", help="also time a plain per-pair Python scorer")
    parser.add_argument("--profile", action="store_true", help="also print the top 15 functions by own time")
    args = parser.parse_args(argv)
    if args.n < 1 or args.groups < 1 or args.repeat < 1:
        parser.error("--n, --groups and --repeat must be positive")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    batch = make_batch(args.n, args.groups, args.seed)
    run(batch)  # warm-up: fills the ground-truth cache as the first GRPO step would
    best = min(run(batch) for _ in range(args.repeat))
    print(f"compute_score: {args.n / best:,.0f} responses/s ({args.n} responses, {best * 1e3:.1f} ms, one core)")
    if args.baseline:
        plain = min(run(batch, plain_score) for _ in range(args.repeat))
        print(f"plain per-pair Python: {args.n / plain:,.0f} responses/s; compute_score is {plain / best:.1f}x faster")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, batch)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
