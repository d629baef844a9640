"""Time and peak memory of converting a HICO-DET split to parquet, in both image modes.

    python benchmarks/bench_convert.py ANNOTATIONS [--split test] [--workdir DIR] [--modes embed path]

ANNOTATIONS is ``instances_test2015.json`` (or ``anno_bbox.mat``). Blank JPEGs of the annotated sizes
stand in for the images (``--noise``: large, incompressible ones); one encoding per distinct size, made
unique per image by trailing bytes after the JPEG end marker, so that parquet cannot deduplicate them.
Each mode runs in a fresh process through the converter's command line code; the figures are the
conversion's wall time and rate (interpreter start and imports excluded, reported apart) and the
process's peak resident memory (everything included).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "data_prep" / "hicodet_to_parquet.py"


def make_blank_images(annotations: Path, split: str, folder: Path, noise: bool = False) -> int:
    """Write a blank (or, with ``noise``, a random-noise) JPEG of the annotated size for every image.

    Blank JPEGs are a few kB; noise ones are larger than typical photographs, an upper bound for the
    memory of embed mode. Returns how many images were written.
    """
    import numpy as np

    from verl_hoi.hicodet import load_annotations

    rng = np.random.default_rng(0)

    encoded: dict[tuple[int, int], bytes] = {}
    records = load_annotations(annotations, split)
    for record in records:
        size = (record.width, record.height)
        if size not in encoded:
            buffer = io.BytesIO()
            if noise:
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                image = Image.fromarray(pixels)
            else:
                image = Image.new("RGB", size, (128, 128, 128))
            image.save(buffer, format="JPEG", quality=90)
            encoded[size] = buffer.getvalue()
        (folder / record.file_name).write_bytes(encoded[size] + record.file_name.encode())
    return len(records)


def child(argv: list[str]) -> None:
    """Run the converter in this process, imports done first; print the conversion's seconds as JSON."""
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", CLI)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    from verl_hoi.families import DEFAULT_FAMILY, get_family
    from verl_hoi.frames import model_size

    family = get_family(DEFAULT_FAMILY)
    model_size((640, 480), family.min_pixels, family.max_pixels, family.block)  # imports qwen_vl_utils (and torch)
    args = cli.build_parser().parse_args(argv)
    start = time.perf_counter()
    cli.run(args)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def measure(argv: list[str]) -> dict:
    """Run :func:`child` in a fresh process: its conversion seconds, total wall seconds and peak RSS.

    The peak comes from ``RUSAGE_CHILDREN``, the largest of all reaped children, so the calling
    process must have no other child: :func:`main` runs each measurement from its own process.
    """
    import resource

    start = time.perf_counter()
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: conversion failed:\n{done.stderr}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    return {"seconds": seconds, "wall": wall, "peak_mb": peak_mb}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", type=Path, help="instances_{train,test}2015.json or anno_bbox.mat")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--workdir", type=Path, help="where images and parquet go (default: a temporary folder)")
    parser.add_argument("--noise", action="store_true", help="random-noise images instead of blank ones (larger)")
    parser.add_argument("--modes", nargs="+", choices=("embed", "path"), default=["path", "embed"])
    args = parser.parse_args()
    if not args.annotations.is_file():
        parser.exit(2, f"error: annotation file not found: {args.annotations}\n")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        images, out = Path(tmp) / "images", Path(tmp) / "out"
        images.mkdir()
        start = time.perf_counter()
        count = make_blank_images(args.annotations, args.split, images, args.noise)
        megabytes = sum(f.stat().st_size for f in images.iterdir()) / 2**20
        kind = "noise" if args.noise else "blank"
        print(f"{count} {kind} images ({megabytes:.0f} MiB) written in {time.perf_counter() - start:.1f} s")
        for mode in args.modes:
            argv = ["--annotations", str(args.annotations), "--images", str(images), "--split", args.split,
                    "--out", str(out / mode), "--image-mode", mode]  # fmt: skip
            done = subprocess.run(
                [sys.executable, __file__, "--measure", *argv], capture_output=True, text=True, check=True
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            size = (out / mode / f"{args.split}.parquet").stat().st_size
            print(
                f"{mode:5s}: {result['seconds']:6.1f} s, {count / result['seconds']:7.0f} images/s "
                f"(whole process {result['wall']:.1f} s), peak RSS {result['peak_mb']:.0f} MB, "
                f"parquet {size / 2**20:.1f} MiB"
            )


if __name__ == "__main__":
    main()
