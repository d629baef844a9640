"""The four standard zero-shot HICO-DET settings: which HOI classes are unseen, and training data without them.

The lists are package data (``verl_hoi/data/zero_shot_splits.json``): 0-based indices into the official 600 HOI
classes, as published with GEN-VLKT (CVPR 2022, ``hico_unseen_index``) and used unchanged by later zero-shot
HOI work.

==========  ===================================  =======  ==============================================
setting     name                                 unseen   what is unseen
==========  ===================================  =======  ==============================================
``rf_uc``   Rare-First Unseen Combination        120      120 combinations, all rare
``nf_uc``   Non-rare-First Unseen Combination    120      120 combinations, all non-rare
``uo``      Unseen Object                        100      every class of 12 objects
``uv``      Unseen Verb                          84       every class of 20 verbs
==========  ===================================  =======  ==============================================

The protocol: training drops every (human, object) pair that carries any unseen class (all the pair's
verbs go with it, since they share its two boxes), then every image left without a pair; testing uses the
whole test set and reports mAP over the Full (600), Seen and Unseen classes.

>>> len(unseen_classes("rf_uc")), len(unseen_classes("uv")), len(seen_classes("uo"))
(120, 84, 500)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from verl_hoi.hicodet import ImageAnnotation
from verl_hoi.vocab import NUM_HOI

__all__ = [
    "ZERO_SHOT_SETTINGS",
    "ZeroShotFilter",
    "check_setting",
    "seen_classes",
    "training_annotations",
    "unseen_classes",
]

_KEYS = {"rf_uc": "rare_first", "nf_uc": "non_rare_first", "uo": "unseen_object", "uv": "unseen_verb"}
ZERO_SHOT_SETTINGS: tuple[str, ...] = tuple(_KEYS)
"""Names of the settings, as ``--zero-shot`` takes them and rows record them."""


@cache
def _lists() -> dict[str, frozenset[int]]:
    text = resources.files("verl_hoi").joinpath("data/zero_shot_splits.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return {setting: frozenset(data[key]) for setting, key in _KEYS.items()}


def check_setting(setting: str) -> None:
    """Raise ``ValueError`` (listing the settings) unless ``setting`` is one of :data:`ZERO_SHOT_SETTINGS`."""
    if setting not in _KEYS:
        raise ValueError(f"unknown zero-shot setting {setting!r}; valid settings: {', '.join(ZERO_SHOT_SETTINGS)}")


def unseen_classes(setting: str) -> frozenset[int]:
    """The 0-based HOI classes ``setting`` keeps out of training.

    Raises:
        ValueError: unknown setting.
    """
    check_setting(setting)
    return _lists()[setting]


def seen_classes(setting: str) -> frozenset[int]:
    """The HOI classes ``setting`` trains on: all 600 but the unseen ones."""
    return frozenset(range(NUM_HOI)) - unseen_classes(setting)


@dataclass(frozen=True)
class ZeroShotFilter:
    """What :func:`training_annotations` removed: ground-truth pairs (one per HOI class, as annotated), the
    (human, object) box pairs they formed, and the images left without a pair."""

    pairs: int
    box_pairs: int
    images: int


def training_annotations(
    annotations: Sequence[ImageAnnotation], setting: str
) -> tuple[list[ImageAnnotation], ZeroShotFilter]:
    """The annotations of ``setting``'s training set: every (human box, object box) pair that carries an unseen
    class dropped with all its classes. Every image keeps its place (rows record it), so the images left without
    a pair are still listed, empty; the converter's train split leaves them out with the images that had none.

    Returns:
        The annotations with those pairs removed, and what was removed (``images``: those that had pairs and
        have none left).

    Raises:
        ValueError: unknown setting.

    >>> from verl_hoi.hicodet import GroundTruthPair
    >>> h, o, other = (1, 1, 9, 9), (5, 5, 20, 20), (30, 30, 40, 40)
    >>> image = ImageAnnotation("a.jpg", 64, 64, (GroundTruthPair(h, o, 8), GroundTruthPair(h, o, 9),
    ...                                           GroundTruthPair(h, other, 10)))
    >>> kept, removed = training_annotations([image], "rf_uc")  # class 8 is unseen in RF-UC: its box pair goes
    >>> [p.hoi for p in kept[0].pairs], removed
    ([10], ZeroShotFilter(pairs=2, box_pairs=1, images=0))
    """
    unseen = unseen_classes(setting)
    kept, pairs, box_pairs, images = [], 0, 0, 0
    for annotation in annotations:
        dropped = {(p.human, p.object) for p in annotation.pairs if p.hoi in unseen}
        if not dropped:
            kept.append(annotation)
            continue
        remaining = tuple(p for p in annotation.pairs if (p.human, p.object) not in dropped)
        pairs += len(annotation.pairs) - len(remaining)
        box_pairs += len(dropped)
        images += not remaining
        kept.append(replace(annotation, pairs=remaining))
    return kept, ZeroShotFilter(pairs, box_pairs, images)
