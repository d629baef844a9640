"""Shared fixtures: the shipped HICO-DET sample, a tiny Qwen2.5-VL built once per session (and its processor),
the sample's first rows converted for it, and the Hypothesis profiles.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default, used by ``.ci/run``) derandomizes
every property test, so a commit always passes or always fails; ``random`` draws new examples on
every run, ten times as many, for a search before a release
(``HYPOTHESIS_PROFILE=random bash tests/run.sh -m property``). A test that sets a smaller count for
its cost keeps that count in both.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import is_hypothesis_test, settings

from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, write_parquet
from verl_hoi.hicodet import load_annotations
from verl_hoi.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "recipes" / "sample"
TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 64 * 28 * 28
ROWS = [0, 1, 2]  # few rows, few tokens: the tiny model is random, only the plumbing is tested

settings.register_profile("ci", derandomize=True, database=None, max_examples=300, deadline=None, print_blob=True)
settings.register_profile("random", max_examples=3000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every Hypothesis test ``property``, so ``-m property`` runs exactly those."""
    for item in items:
        if is_hypothesis_test(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.property)


@pytest.fixture(scope="session")
def sample_annotations() -> Path:
    """instances_test2015.json layout, 8 real test images (one without pairs)."""
    return SAMPLE_DIR / "annotations.json"


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """Synthetic JPEGs of the sample's image sizes, boxes drawn in."""
    return SAMPLE_DIR / "images"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint (min/max pixels = TINY_MIN_PIXELS / TINY_MAX_PIXELS)."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny_qwen2_5_vl"), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS
    )


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    """The tiny checkpoint's processor."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def as_train_split(
    annotations: Path, images: Path, out: Path, edit: Callable[[dict], None] | None = None
) -> tuple[Path, Path]:
    """The sample renamed into a train split under ``out``: ``instances_train2015.json`` (changed by ``edit``, if
    given) and ``train_images/``."""
    doc = json.loads(annotations.read_text())
    doc["filenames"] = [name.replace("test2015", "train2015") for name in doc["filenames"]]
    if edit is not None:
        edit(doc)
    train_images = out / "train_images"
    train_images.mkdir()
    for image in images.iterdir():
        shutil.copy(image, train_images / image.name.replace("test2015", "train2015"))
    train_annotations = out / "instances_train2015.json"
    train_annotations.write_text(json.dumps(doc))
    return train_annotations, train_images


def convert(tmp_path: Path, annotations: Path, images: Path, name: str, **options) -> Path:
    """Rows ``ROWS`` of ``annotations`` as an embedded-image parquet ``tmp_path / name``, for the tiny model's
    pixel budget unless ``options`` say otherwise."""
    options = ConvertOptions(**{"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS, **options})
    path = tmp_path / name
    write_parquet(iter_rows(load_annotations(annotations), ROWS, images, options), path, row_schema("embed"))
    return path


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory, sample_annotations: Path, sample_images: Path) -> Path:
    """The sample's first rows (``ROWS``) converted for the tiny model."""
    return convert(tmp_path_factory.mktemp("data"), sample_annotations, sample_images, "test.parquet")
