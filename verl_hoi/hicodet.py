"""HICO-DET annotations: one box record per image from ``anno_bbox.mat`` or ``instances_*2015.json``, and
the image-level labels of ``anno.mat`` (:func:`known_objects_from_anno_mat`).

Two file layouts are read into the same :class:`ImageAnnotation` records:

- the official ``anno_bbox.mat`` (struct arrays ``bbox_train`` / ``bbox_test``): per image a
  ``filename``, a ``size`` struct (``width``, ``height``, ``depth``) and a ``hoi`` struct array with
  ``id`` (1-based official HOI id), ``bboxhuman`` / ``bboxobject`` (struct arrays with fields
  ``x1``, ``x2``, ``y1``, ``y2``), ``connection`` (rows of 1-based [human box, object box]
  indices) and ``invis`` (1: the interaction is annotated but not visible, no boxes);
- the ``instances_{train,test}2015.json`` layout (``filenames``, ``size`` [w, h], ``annotation``
  with ``boxes_h``, ``boxes_o``, ``hoi`` per pair, and optionally ``object`` / ``verb`` per pair), as
  converted from the ``.mat`` file by the widely used ``fredzzhang/hicodet`` repository.

Boxes stay as the raw ``.mat`` values ``[x1, y1, x2, y2]`` (1-based, inclusive pixel indices) and
HOI classes are 0-based (official id - 1). Pairs follow the file: one per ``connection`` row, in
``hoi`` entry order then row order, never merged or de-duplicated. Images without a visible pair
are kept with no pairs, so a test split always lists every image.

Every value is checked and none is coerced; a file breaking one of these rules is refused:

- the file lists at least one image, each file name once, as a plain file name (no folder part);
- an image size is an integer in ``1..MAX_COORD``; a box is 4 numbers within ``±MAX_COORD``
  (``verl_hoi.answer.MAX_COORD``; NaN and infinities refused) with ``x1 <= x2`` and ``y1 <= y2``
  (equal: a one-pixel box in the inclusive convention);
- an HOI class is an integer in range; the JSON layout's optional ``object`` and ``verb`` of a pair
  are integers that must name the pair's HOI class (``verl_hoi.vocab.HOI_CLASSES``);
- JSON numbers must be JSON numbers: strings (even ``"5"``), booleans and ``null`` are refused, and an
  integer must be written as one (``5``, not ``5.0``). MATLAB stores numbers as doubles, so in the
  ``.mat`` file an integer is a double with an integral value; ``invis`` may also be a logical.

Errors are ``ValueError``s naming the file and the image as ``image N ('file name')``, ``N`` its
0-based position in the file (the ``index`` of converted rows and of predictions). Inside an image,
JSON positions are 0-based as JSON lists are (``boxes_h[2]``) and ``.mat`` ones 1-based as MATLAB
writes them (``hoi(3)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.answer import MAX_COORD
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI, OBJECTS, VERBS

__all__ = ["SPLITS", "GroundTruthPair", "ImageAnnotation", "known_objects_from_anno_mat", "load_annotations"]

Box = tuple[float, float, float, float]
SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_IN_NAME = re.compile(rf"HICO_({'|'.join(SPLITS)})2015_")
_CORNERS = ("x1", "y1", "x2", "y2")
"""A box's coordinates in order: the JSON layout's list positions, the ``.mat`` layout's field names."""


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
            annotation data (the message names the file, the image and what was wrong; the rules
            are in the module docstring).

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
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an annotation file")
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _load_mat(path, split)
    if suffix == ".json":
        return _load_json(path, split)
    raise ValueError(f"{path}: unsupported annotation file (expected anno_bbox.mat or instances_*2015.json)")


class _Invalid(Exception):
    """A problem in an annotation file; turned into a ValueError naming the file."""


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix the message of an :class:`_Invalid` raised in the block with ``where``."""
    try:
        yield
    except _Invalid as error:
        raise _Invalid(f"{where}: {error}") from None


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (an annotation value may be huge)."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = repr(value)
    except ValueError:  # an integer too long for repr
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_INTEGER_TYPES = (int, np.integer)
_FLOAT_TYPES = (float, np.floating)
_REAL_TYPES = _INTEGER_TYPES + _FLOAT_TYPES


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _number(value: Any, what: str) -> float:
    """``value`` as a float: an int or a float (never a bool or a string) within ``±MAX_COORD``."""
    if _is_bool(value) or not isinstance(value, _REAL_TYPES):
        raise _Invalid(f"{what} is not a number: {_show(value)}")
    if not -MAX_COORD <= value <= MAX_COORD:  # NaN fails too; a huge int is compared exactly, not overflowed
        raise _Invalid(f"{what} {_show(value)} is not a finite number within ±{MAX_COORD:g}")
    return float(value)


def _integer(value: Any, what: str, low: int, high: int, *, integral_floats: bool = False) -> int:
    """``value`` as an int in ``low..high``: an integer, or with ``integral_floats`` a float with an integral value."""
    integral = isinstance(value, _INTEGER_TYPES) or (
        integral_floats and isinstance(value, _FLOAT_TYPES) and float(value).is_integer()
    )
    if _is_bool(value) or not integral:
        raise _Invalid(f"{what} must be an integer, got {_show(value)}")
    if not low <= value <= high:
        raise _Invalid(f"{what} {_show(value)} is out of range {low}..{high}")
    return int(value)


def _box(values: Any, what: str) -> Box:
    """``[x1, y1, x2, y2]`` as floats, ``x1 <= x2`` and ``y1 <= y2``."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise _Invalid(f"{what} must be a list [x1, y1, x2, y2], got {_show(values)}")
    box = tuple(_number(v, f"{what} {name}") for v, name in zip(values, _CORNERS, strict=True))
    for axis, low, high in (("x", box[0], box[2]), ("y", box[1], box[3])):
        if high < low:
            raise _Invalid(f"{what} {_show(values)} has {axis}2 < {axis}1")
    return box  # type: ignore[return-value]


def _file_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"file name is not a string: {_show(value)}")
    if value in ("", ".", "..") or any(c in value for c in "/\\\0"):
        raise _Invalid(f"file name {_show(value)} is not a plain file name")
    return value


class _Images:
    """Numbers the images of a file and checks that each file name is listed once."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.seen: dict[str, int] = {}

    def where(self, index: int, name: Any) -> tuple[str, str]:
        """The image's checked file name and its ``image N ('name')`` label."""
        with _at(f"image {index}"):
            name = _file_name(name)
        label = f"image {index} ({name!r})"
        if name in self.seen:
            raise _Invalid(f"{label}: file name already listed as image {self.seen[name]}")
        self.seen[name] = index
        found = _SPLIT_IN_NAME.match(name)
        if found and found.group(1) != self.split:
            raise _Invalid(f"{label}: belongs to the {found.group(1)} split, not {self.split!r}")
        return name, label


def _image_size(width: Any, height: Any, *, integral_floats: bool = False) -> tuple[int, int]:
    return (
        _integer(width, "width", 1, int(MAX_COORD), integral_floats=integral_floats),
        _integer(height, "height", 1, int(MAX_COORD), integral_floats=integral_floats),
    )


# ---------------------------------------------------------------------------------------------
# instances_{train,test}2015.json


def _load_json(path: Path, split: str) -> list[ImageAnnotation]:
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read annotation JSON: {error}") from None
    if not text.strip():
        raise ValueError(f"{path}: annotation file is empty")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, an integer too long, nesting too deep
        raise ValueError(f"{path}: cannot read annotation JSON: {error}") from None
    try:
        return _parse_json(doc, split)
    except _Invalid as error:
        raise ValueError(f"{path}: {error}") from None


_PAIR_LISTS = ("boxes_h", "boxes_o", "hoi")
_CHECKED_LISTS = (("verb", 0, VERBS), ("object", 1, OBJECTS))
"""Optional per-pair lists of the JSON layout: key, position in ``HOI_CLASSES[h]``, names."""


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
    if not names:
        raise _Invalid("lists no images")
    images = _Images(split)
    records = []
    for index, (name, size, entry) in enumerate(zip(names, sizes, annotations, strict=True)):
        name, label = images.where(index, name)
        with _at(label):
            records.append(_json_image(name, size, entry))
    return records


def _json_image(name: str, size: Any, entry: Any) -> ImageAnnotation:
    if not (isinstance(size, list) and len(size) == 2):
        raise _Invalid(f"size must be [width, height], got {_show(size)}")
    width, height = _image_size(*size)
    if not isinstance(entry, dict) or any(key not in entry for key in _PAIR_LISTS):
        raise _Invalid("annotation needs 'boxes_h', 'boxes_o' and 'hoi'")
    keys = [*_PAIR_LISTS, *(key for key, _, _ in _CHECKED_LISTS if key in entry)]
    for key in keys:
        if not isinstance(entry[key], list):
            raise _Invalid(f"{key!r} must be a list, got {_show(entry[key])}")
    lengths = [len(entry[key]) for key in keys]
    if len(set(lengths)) > 1:
        raise _Invalid(f"{', '.join(map(repr, keys))} differ in length ({', '.join(map(str, lengths))})")
    return ImageAnnotation(name, width, height, tuple(_json_pair(entry, k) for k in range(lengths[0])))


def _json_pair(entry: dict, k: int) -> GroundTruthPair:
    hoi = _integer(entry["hoi"][k], f"hoi[{k}]", 0, NUM_HOI - 1)
    for key, position, names in _CHECKED_LISTS:
        if key in entry:
            value = _integer(entry[key][k], f"{key}[{k}]", 0, len(names) - 1)
            expected = HOI_CLASSES[hoi][position]
            if value != expected:
                raise _Invalid(
                    f"{key}[{k}] {value} ({names[value]!r}) disagrees with hoi[{k}] {hoi}, "
                    f"whose {key} is {expected} ({names[expected]!r})"
                )
    return GroundTruthPair(_box(entry["boxes_h"][k], f"boxes_h[{k}]"), _box(entry["boxes_o"][k], f"boxes_o[{k}]"), hoi)


# ---------------------------------------------------------------------------------------------
# anno_bbox.mat


def _load_mat(path: Path, split: str) -> list[ImageAnnotation]:
    import scipy.io

    key = f"bbox_{split}"
    try:
        # struct_as_record=False: structs become objects with attribute access; squeeze_me=True:
        # 1x1 arrays collapse to scalars and 1xN to N (normalised back by _items / _mat_connections).
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[key])
    except Exception as error:  # scipy raises a zoo of types (ValueError, TypeError, MatReadError, ...)
        raise ValueError(f"{path}: cannot read MATLAB file: {type(error).__name__}: {error}") from None
    if key not in content:
        raise ValueError(f"{path}: no variable {key!r} (is this HICO-DET's anno_bbox.mat?)")
    try:
        entries = _items(content[key])
        if not entries:
            raise _Invalid("lists no images")
        images = _Images(split)
        records = []
        for index, entry in enumerate(entries):
            with _at(f"image {index}"):
                raw_name = _field(entry, "filename")
            name, label = images.where(index, raw_name)
            with _at(label):
                records.append(_mat_image(name, entry))
        return records
    except _Invalid as error:
        raise ValueError(f"{path}: {key}: {error}") from None


def _items(value: Any) -> list[Any]:
    """A struct array as a list, whatever ``squeeze_me`` made of it (one struct, an array, or [])."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _field(struct: Any, name: str) -> Any:
    from scipy.io.matlab import mat_struct

    if not isinstance(struct, mat_struct):
        raise _Invalid(f"expected a struct with field {name!r}, got {_show(struct)}")
    try:
        return getattr(struct, name)
    except AttributeError:
        raise _Invalid(f"missing field {name!r}") from None


def _scalar(struct: Any, name: str) -> Any:
    """Field ``name`` of ``struct``, a single value as a Python object (float, int, bool or str)."""
    array = np.asarray(_field(struct, name))
    if array.size != 1:
        raise _Invalid(f"field {name!r} should be a single value, got shape {array.shape}")
    return array.item()


def _mat_image(name: str, entry: Any) -> ImageAnnotation:
    size = _field(entry, "size")
    width, height = _image_size(_scalar(size, "width"), _scalar(size, "height"), integral_floats=True)
    pairs = []
    for number, hoi_entry in enumerate(_items(_field(entry, "hoi")), start=1):
        with _at(f"hoi({number})"):
            pairs += _mat_hoi(hoi_entry)
    return ImageAnnotation(name, width, height, tuple(pairs))


def _mat_hoi(entry: Any) -> list[GroundTruthPair]:
    """The pairs of one ``hoi`` entry: none when ``invis`` is set."""
    invis = _scalar(entry, "invis")
    if invis not in (0, 1):  # 0, 1, 0.0, 1.0, False or True
        raise _Invalid(f"invis must be 0 or 1, got {_show(invis)}")
    if invis:
        return []
    hoi = _integer(_scalar(entry, "id"), "id", 1, NUM_HOI, integral_floats=True) - 1
    humans = _mat_boxes(_field(entry, "bboxhuman"), "bboxhuman")
    objects = _mat_boxes(_field(entry, "bboxobject"), "bboxobject")
    pairs = []
    for row, (human, obj) in enumerate(_mat_connections(_field(entry, "connection")), start=1):
        what = f"connection({row},:)"
        human_index = _integer(human, f"{what} human box", 1, len(humans), integral_floats=True)
        object_index = _integer(obj, f"{what} object box", 1, len(objects), integral_floats=True)
        pairs.append(GroundTruthPair(humans[human_index - 1], objects[object_index - 1], hoi))
    return pairs


def _mat_boxes(value: Any, name: str) -> list[Box]:
    boxes = []
    for number, struct in enumerate(_items(value), start=1):
        what = f"{name}({number})"
        with _at(what):
            values = [_scalar(struct, field) for field in _CORNERS]
        boxes.append(_box(values, what))
    return boxes


def _mat_connections(value: Any) -> list[tuple[Any, Any]]:
    """Rows ``(human box, object box)`` of a ``connection`` table (``squeeze_me`` made one row a vector)."""
    rows = np.asarray(value)
    if rows.size == 0:
        return []
    if rows.dtype.kind not in "iuf":
        raise _Invalid(f"connection must be numbers, got {_show(value)}")
    if rows.shape == (2,):
        rows = rows.reshape(1, 2)
    if rows.ndim != 2 or rows.shape[1] != 2:
        raise _Invalid(f"connection must have 2 columns, got shape {rows.shape}")
    return [(human.item(), obj.item()) for human, obj in rows]


# ---------------------------------------------------------------------------------------------
# anno.mat (image-level labels)


def known_objects_from_anno_mat(path: str | Path, file_names: Sequence[str], split: str = "test") -> np.ndarray:
    """``(len(file_names), 80)`` bool from ``anno.mat``'s image-level labels, as ``eval_one.m`` reads them.

    Image ``i`` contains object ``o`` when any HOI class of ``o`` is labelled 1 (positive) for it in
    ``anno_<split>`` (600 × images), images matched by name through ``list_<split>``.

    Raises:
        ValueError: the file lacks those variables or misses an annotated image.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path), variable_names=[f"anno_{split}", f"list_{split}"])
        labels = np.asarray(mat[f"anno_{split}"], dtype=np.float64)
        names = [str(np.asarray(n).reshape(-1)[0]) for n in np.asarray(mat[f"list_{split}"]).reshape(-1)]
    except (KeyError, IndexError, ValueError, TypeError, OSError, NotImplementedError, MatReadError) as error:
        raise ValueError(f"{path}: not a HICO anno.mat with anno_{split} and list_{split} ({error})") from None
    if labels.shape != (NUM_HOI, len(names)):
        raise ValueError(f"{path}: anno_{split} has shape {labels.shape}, expected ({NUM_HOI}, {len(names)})")
    column = {name: k for k, name in enumerate(names)}
    missing = [name for name in file_names if name not in column]
    if missing:
        raise ValueError(f"{path}: {len(missing)} annotated image(s) not in list_{split}, e.g. {missing[0]}")
    positive = labels[:, [column[name] for name in file_names]] == 1  # (C, I)
    known = np.zeros((len(file_names), len(OBJECTS)), dtype=bool)
    for hoi, (_, obj) in enumerate(HOI_CLASSES):
        known[:, obj] |= positive[hoi]
    return known
