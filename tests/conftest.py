"""Shared fixtures: the shipped HICO-DET sample, a tiny Qwen2.5-VL built once per session, and the
Hypothesis profiles.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default, used by ``.ci/run``) derandomizes
every property test, so a commit always passes or always fails; ``random`` draws new examples on
every run, ten times as many, for a search before a release. A test that sets a smaller count for
its cost keeps that count in both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from verl_hoi.tiny_model import build_tiny_qwen2_5_vl

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "recipes" / "sample"
TINY_MIN_PIXELS = 4 * 28 * 28
TINY_MAX_PIXELS = 64 * 28 * 28

settings.register_profile("ci", derandomize=True, database=None, max_examples=300, deadline=None, print_blob=True)
settings.register_profile("random", max_examples=3000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
    return build_tiny_qwen2_5_vl(
        tmp_path_factory.mktemp("tiny_qwen2_5_vl"), min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS
    )
