"""HICO-DET box annotations: one record per image from ``anno_bbox.mat`` or ``instances_*2015.json``.

Two file layouts are read into the same :class:`ImageAnnotation` records:

- the official ``anno_bbox.mat`` (struct arrays ``bbox_train`` / ``bbox_test``): per image a
  ``filename``, a ``size`` struct (``width``, ``height``, ``depth``) and a ``hoi`` struct array with
  ``id`` (1-based official HOI id), ``bboxhuman`` / ``bboxobject`` (struct arrays with fields
  ``x1``, ``x2``, ``y1``, ``y2``), ``connection`` (rows of 1-based [human box, object box]
  indices) and ``invis`` (1: the interaction is annotated but not visible, no boxes);
- the ``instances_{train,test}2015.json`` layout (``filenames``, ``size`` [w, h], ``annotation``
  with ``boxes_h``, ``boxes_o``, ``hoi`` per pair), as converted from the ``.mat`` file by the
  widely used ``fredzzhang/hicodet`` repository.

Boxes stay as the raw ``.mat`` values ``[x1, y1, x2, y2]`` (1-based, inclusive pixel indices) and
HOI classes are 0-based (official id - 1). Pairs follow the file: one per ``connection`` row, in
``hoi`` entry order then row order, never merged or de-duplicated. Images without a visible pair
are kept with no pairs, so a test split always lists every image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.vocab import NUM_HOI

__all__ = ["SPLITS", "GroundTruthPair", "ImageAnnotation", "load_annotations"]

Box = tuple[float, float, float, float]
SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_IN_NAME = re.compile(r"HICO_(train|test)2015_")


@dataclass(frozen=True)
class GroundTruthPair:
    """One row of the official ``connection`` table.

    Attributes:
        human: ``(x1, y1, x2, y2)`` of the human box, raw 1-based inclusive values.
        object: ``(x1, y1, x2, y2)`` of the object box, same convention.
        hoi: 0-based HOI class in the official order (``verl_hoi.vocab.HOI_CLASSES``).
    """

    human: Box
    object: Box
    hoi: int


@dataclass(frozen=True)
class ImageAnnotation:
    """The ground truth of one image.

    Attributes:
        file_name: image file name, e.g. ``"HICO_test2015_00000001.jpg"``.
        width, height: size of the original image in pixels.
        pairs: every ground-truth pair of the image in file order (empty when none is visible).
    """

    file_name: str
    width: int
    height: int
    pairs: tuple[GroundTruthPair, ...]


def load_annotations(path: str | Path, split: str = "test") -> list[ImageAnnotation]:
    """Read HICO-DET box annotations, one record per image in file order.

    Args:
        path: ``anno_bbox.mat`` (the struct array ``bbox_<split>`` is read) or a JSON file in the
            ``instances_{train,test}2015.json`` layout (one split per file; image names that carry
            a split, ``HICO_<split>2015_*``, must match ``split``). The suffix picks the reader.
        split: ``"train"`` or ``"test"``.

    Returns:
        A list of :class:`ImageAnnotation`, images without visible pairs included.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown split, unsupported suffix, or a file that is not valid HICO-DET
            annotation data (the message names the file and what was wrong).

    >>> import json, tempfile, os
    >>> doc = {"filenames": ["HICO_test2015_00000001.jpg"], "size": [[640, 427]],
    ...        "annotation": [{"boxes_h": [[320, 306, 359, 349]], "boxes_o": [[148, 345, 376, 414]], "hoi": [245]}]}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = open(os.path.join(tmp, "a.json"), "w").write(json.dumps(doc))
    ...     records = load_annotations(os.path.join(tmp, "a.json"))
    >>> records[0].pairs[0]
    GroundTruthPair(human=(320.0, 306.0, 359.0, 349.0), object=(148.0, 345.0, 376.0, 414.0), hoi=245)
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _load_mat(path, split)
    if suffix == ".json":
        return _load_json(path, split)
    raise ValueError(f"{path}: unsupported annotation file (expected anno_bbox.mat or instances_*2015.json)")


class _Invalid(Exception):
    """A structural problem in an annotation file; turned into a ValueError naming the file."""


def _box(values: Sequence[Any], where: str) -> Box:
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise _Invalid(f"{where}: box is not numeric: {values!r}") from None
    if len(box) != 4 or not all(np.isfinite(box)):
        raise _Invalid(f"{where}: expected a finite [x1, y1, x2, y2] box, got {values!r}")
    return box  # type: ignore[return-value]


def _hoi(value: Any, where: str, offset: int) -> int:
    """0-based HOI class from ``value`` (``offset`` = 1 for official 1-based ids)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid(f"{where}: HOI class is not a number: {value!r}") from None
    hoi = int(number) - offset
    if hoi != number - offset or not 0 <= hoi < NUM_HOI:
        raise _Invalid(f"{where}: HOI class {value!r} out of range (expected {offset}..{NUM_HOI - 1 + offset})")
    return hoi


def _image_size(width: Any, height: Any, where: str) -> tuple[int, int]:
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise _Invalid(f"{where}: image size is not a pair of integers: {width!r}, {height!r}") from None
    if w <= 0 or h <= 0 or w != float(width) or h != float(height):
        raise _Invalid(f"{where}: invalid image size {width!r} x {height!r}")
    return w, h


def _check_split(file_name: str, split: str, where: str) -> None:
    found = _SPLIT_IN_NAME.match(file_name)
    if found and found.group(1) != split:
        raise _Invalid(f"{where}: image {file_name!r} belongs to the {found.group(1)} split, not {split!r}")


# ---------------------------------------------------------------------------------------------
# instances_{train,test}2015.json


def _load_json(path: Path, split: str) -> list[ImageAnnotation]:
    try:
        with path.open(encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read annotation JSON: {error}") from None
    try:
        return _parse_json(doc, split)
    except _Invalid as error:
        raise ValueError(f"{path}: {error}") from None


def _parse_json(doc: Any, split: str) -> list[ImageAnnotation]:
    if not isinstance(doc, dict):
        raise _Invalid("expected a JSON object with keys 'filenames', 'size', 'annotation'")
    missing = [key for key in ("filenames", "size", "annotation") if key not in doc]
    if missing:
        raise _Invalid(f"missing key(s) {', '.join(map(repr, missing))} (not the instances_*2015.json layout)")
    names, sizes, annotations = doc["filenames"], doc["size"], doc["annotation"]
    if not (isinstance(names, list) and isinstance(sizes, list) and isinstance(annotations, list)):
        raise _Invalid("'filenames', 'size' and 'annotation' must be lists")
    if not len(names) == len(sizes) == len(annotations):
        raise _Invalid(
            f"'filenames', 'size' and 'annotation' differ in length ({len(names)}, {len(sizes)}, {len(annotations)})"
        )
    records = []
    for index, (name, size, entry) in enumerate(zip(names, sizes, annotations, strict=True)):
        where = f"image {index} ({name!r})"
        if not isinstance(name, str):
            raise _Invalid(f"{where}: file name is not a string")
        _check_split(name, split, where)
        if not (isinstance(size, list) and len(size) >= 2):
            raise _Invalid(f"{where}: size must be [width, height], got {size!r}")
        width, height = _image_size(size[0], size[1], where)
        if not isinstance(entry, dict) or any(key not in entry for key in ("boxes_h", "boxes_o", "hoi")):
            raise _Invalid(f"{where}: annotation needs 'boxes_h', 'boxes_o' and 'hoi'")
        humans, objects, hois = entry["boxes_h"], entry["boxes_o"], entry["hoi"]
        if not len(humans) == len(objects) == len(hois):
            raise _Invalid(f"{where}: 'boxes_h', 'boxes_o' and 'hoi' differ in length")
        pairs = tuple(
            GroundTruthPair(_box(h, where), _box(o, where), _hoi(c, where, offset=0))
            for h, o, c in zip(humans, objects, hois, strict=True)
        )
        records.append(ImageAnnotation(name, width, height, pairs))
    return records


# ---------------------------------------------------------------------------------------------
# anno_bbox.mat


def _load_mat(path: Path, split: str) -> list[ImageAnnotation]:
    import scipy.io

    key = f"bbox_{split}"
    try:
        # struct_as_record=False: structs become objects with attribute access; squeeze_me=True:
        # 1x1 arrays collapse to scalars and 1xN to N (normalised back by _items / _rows).
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[key])
    except Exception as error:  # scipy raises a zoo of types (ValueError, TypeError, MatReadError, ...)
        raise ValueError(f"{path}: cannot read MATLAB file: {type(error).__name__}: {error}") from None
    if key not in content:
        raise ValueError(f"{path}: no variable {key!r} (is this HICO-DET's anno_bbox.mat?)")
    try:
        return [_mat_image(entry, split, index) for index, entry in enumerate(_items(content[key]))]
    except _Invalid as error:
        raise ValueError(f"{path}: {key}: {error}") from None


def _items(value: Any) -> list[Any]:
    """A struct array as a list, whatever ``squeeze_me`` made of it (one struct, an array, or [])."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _field(struct: Any, name: str, where: str) -> Any:
    try:
        return getattr(struct, name)
    except AttributeError:
        raise _Invalid(f"{where}: missing field {name!r}") from None


def _scalar(value: Any, name: str, where: str) -> Any:
    array = np.asarray(value)
    if array.size != 1:
        raise _Invalid(f"{where}: field {name!r} should be a single value, got shape {array.shape}")
    return array.item()


def _mat_boxes(value: Any, where: str) -> list[Box]:
    boxes = []
    for struct in _items(value):
        values = [_scalar(_field(struct, name, where), name, where) for name in ("x1", "y1", "x2", "y2")]
        boxes.append(_box(values, where))
    return boxes


def _mat_connections(value: Any, where: str) -> np.ndarray:
    rows = np.asarray(value, dtype=np.float64)
    if rows.size % 2:
        raise _Invalid(f"{where}: connection must have 2 columns, got shape {rows.shape}")
    return rows.reshape(-1, 2)


def _mat_image(entry: Any, split: str, index: int) -> ImageAnnotation:
    where = f"image {index + 1}"
    name = _field(entry, "filename", where)
    if not isinstance(name, str):
        raise _Invalid(f"{where}: filename is not a string: {name!r}")
    where = f"image {index + 1} ({name!r})"
    _check_split(name, split, where)
    size = _field(entry, "size", where)
    width, height = _image_size(
        _scalar(_field(size, "width", where), "width", where),
        _scalar(_field(size, "height", where), "height", where),
        where,
    )
    pairs = []
    for number, hoi_entry in enumerate(_items(_field(entry, "hoi", where)), start=1):
        hoi_where = f"{where}, hoi {number}"
        if _scalar(_field(hoi_entry, "invis", hoi_where), "invis", hoi_where):
            continue
        hoi = _hoi(_scalar(_field(hoi_entry, "id", hoi_where), "id", hoi_where), hoi_where, offset=1)
        humans = _mat_boxes(_field(hoi_entry, "bboxhuman", hoi_where), hoi_where)
        objects = _mat_boxes(_field(hoi_entry, "bboxobject", hoi_where), hoi_where)
        for human_index, object_index in _mat_connections(_field(hoi_entry, "connection", hoi_where), hoi_where):
            if not (1 <= human_index <= len(humans) and 1 <= object_index <= len(objects)):
                raise _Invalid(
                    f"{hoi_where}: connection [{human_index:g}, {object_index:g}] out of range "
                    f"({len(humans)} human and {len(objects)} object boxes)"
                )
            pairs.append(GroundTruthPair(humans[int(human_index) - 1], objects[int(object_index) - 1], hoi))
    return ImageAnnotation(str(name), width, height, tuple(pairs))
