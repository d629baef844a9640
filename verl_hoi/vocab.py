"""HICO-DET vocabulary: 80 objects, 117 verbs, the 600 HOI classes and the rare set.

Names use spaces (``"hop on"``, ``"hair drier"``), as the model reads and writes them.
Ids are 0-based: objects in COCO order, verbs alphabetical, HOI classes in the official
HICO-DET order (``hoi id = official id - 1``). The lists ship as package data
(``verl_hoi/data/hicodet_classes.json``, MIT licence, see ``LICENSE.hicodet`` beside it).

>>> OBJECTS[0], VERBS[57], len(HOI_CLASSES), len(RARE_HOI)
('person', 'no interaction', 600, 138)
>>> hoi_id(verb_id("hop on"), object_id("bicycle"))
14
>>> hoi_id(verb_id("hop on"), object_id("dining table")) is None
True
"""

from __future__ import annotations

import json
from importlib import resources

__all__ = [
    "HOI_CLASSES",
    "NO_INTERACTION",
    "NUM_HOI",
    "OBJECTS",
    "RARE_HOI",
    "VERBS",
    "hoi_id",
    "hoi_name",
    "normalize_name",
    "object_id",
    "valid_verbs",
    "verb_id",
]


def _load() -> dict:
    text = resources.files("verl_hoi").joinpath("data/hicodet_classes.json").read_text(encoding="utf-8")
    return json.loads(text)


_DATA = _load()

OBJECTS: tuple[str, ...] = tuple(_DATA["objects"])
VERBS: tuple[str, ...] = tuple(_DATA["verbs"])
HOI_CLASSES: tuple[tuple[int, int], ...] = tuple((verb, obj) for obj, verb in _DATA["hoi"])
"""``HOI_CLASSES[h] == (verb id, object id)`` for HOI class ``h``."""
NUM_HOI = len(HOI_CLASSES)
RARE_HOI: frozenset[int] = frozenset(_DATA["rare"])
NO_INTERACTION = VERBS.index("no interaction")

_OBJECT_IDS = {name: i for i, name in enumerate(OBJECTS)}
_VERB_IDS = {name: i for i, name in enumerate(VERBS)}
_HOI_IDS = {pair: h for h, pair in enumerate(HOI_CLASSES)}
_VALID_VERBS: tuple[tuple[int, ...], ...] = tuple(
    tuple(sorted(verb for verb, obj in HOI_CLASSES if obj == object_index)) for object_index in range(len(OBJECTS))
)


def normalize_name(name: str) -> str:
    """Lower-case, underscores as spaces, runs of white space folded: ``"Hop_On "`` → ``"hop on"``."""
    return " ".join(name.replace("_", " ").lower().split())


def object_id(name: str) -> int | None:
    """Object id for a name in any common spelling, or ``None`` if it is not a HICO-DET object."""
    return _OBJECT_IDS.get(normalize_name(name))


def verb_id(name: str) -> int | None:
    """Verb id for a name in any common spelling, or ``None`` if it is not a HICO-DET verb."""
    return _VERB_IDS.get(normalize_name(name))


def hoi_id(verb: int | None, obj: int | None) -> int | None:
    """HOI class id of a (verb id, object id) combination, or ``None`` if HICO-DET has no such class."""
    return _HOI_IDS.get((verb, obj))


def hoi_name(hoi: int) -> str:
    """``"ride bicycle"``-style label of an HOI class."""
    verb, obj = HOI_CLASSES[hoi]
    return f"{VERBS[verb]} {OBJECTS[obj]}"


def valid_verbs(obj: int) -> tuple[int, ...]:
    """Ids of the verbs that form an HOI class with object ``obj``, ascending."""
    return _VALID_VERBS[obj]
