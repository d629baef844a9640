"""HICO-DET annotations to verl ``RLHFDataset`` rows, and a streaming, atomic parquet writer for them.

One row per image (``build_row``)::

    {
        "data_source": "hico_det",
        "prompt": [{"role": "user", "content": "<image>..."}],   # verl_hoi.prompts.build_messages
        "images": [{"bytes": b"...", "min_pixels": 3136, "max_pixels": 1003520}],  # or {"image": "/abs/path.jpg", ...}
        "ability": "hoi",
        "reward_model": {"style": "rule", "ground_truth": '[{"human": [..], "object": [..], ...}]'},
        "extra_info": {"file_name": "HICO_test2015_00000001.jpg", "model_size": [644, 420], ...},  # RowMeta
    }

The ground truth is the answer JSON (``verl_hoi.answer.render_answer``) of the image's pairs grouped by
(human box, object box, object) with all their verbs, boxes mapped into ``frame`` per axis and rounded
to integers. ``min_pixels`` / ``max_pixels`` travel in the image entry because verl hands the entry's
keys to ``qwen_vl_utils.fetch_image``, which then resizes the image to exactly ``model_size``.
``index`` is the image's 0-based position in the annotation file, so rows of a split whose empty
images were skipped still point at their annotation.

``extra_info`` is :meth:`verl_hoi.rows.RowMeta.to_dict`, and its parquet type is derived from
:class:`~verl_hoi.rows.RowMeta`.

Every image is decoded once while converting (:func:`read_image`), as the training loader will decode
it, so a file that is not an image, is truncated or corrupt beyond what PIL can read, or claims
more than :data:`verl_hoi.images.MAX_IMAGE_PIXELS` pixels is found here
(:class:`verl_hoi.images.BadImageError`) and never embedded; its size must be the annotated one, since
the ground-truth boxes are scaled by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from verl_hoi.answer import HOIPair, merge_pairs, render_answer
from verl_hoi.cli import atomic_path
from verl_hoi.families import DEFAULT_FAMILY, get_family
from verl_hoi.frames import check_frame, frame_extent, model_size
from verl_hoi.frames import to_frame as _to_frame
from verl_hoi.hicodet import SPLITS, ImageAnnotation
from verl_hoi.images import BadImageError, decoded_size, read_image_file
from verl_hoi.prompts import DEFAULT_PROMPT, VOCABULARIES, build_messages, get_prompt, hidden_classes
from verl_hoi.rows import RowMeta, check_row_budget
from verl_hoi.vocab import HOI_CLASSES
from verl_hoi.zero_shot import check_setting

__all__ = [
    "ABILITY",
    "DATA_SOURCE",
    "IMAGE_MODES",
    "ROWS_PER_GROUP",
    "ConvertOptions",
    "build_row",
    "ground_truth_pairs",
    "image_entry",
    "iter_rows",
    "missing_images",
    "read_image",
    "row_schema",
    "select_images",
    "write_parquet",
]

DATA_SOURCE = "hico_det"
ABILITY = "hoi"
IMAGE_MODES: tuple[str, ...] = ("embed", "path")
"""``embed`` (the default): JPEG bytes inside the parquet; ``path``: absolute image paths."""
ROWS_PER_GROUP = {"embed": 64, "path": 1024}
"""Parquet row group sizes: embedded images keep groups small (memory grows with the group)."""


@dataclass(frozen=True)
class ConvertOptions:
    """How rows are built; validated on creation. What is left ``None`` is the family's.

    Attributes:
        split: ``"train"`` or ``"test"``, written to ``extra_info["split"]``.
        family: the model family the rows are for (``verl_hoi.families``).
        frame: coordinate frame of the ground truth and the prompt (``verl_hoi.frames.available_frames``).
        min_pixels, max_pixels: the pixel budget of the processor; they fix ``model_size``
            (``verl_hoi.rows.check_row_budget``).
        patch_size, merge_size: the processor's image geometry (a real processor's configuration may
            differ from its family's).
        prompt: name of a registered prompt template (``verl_hoi.prompts``).
        image_mode: ``"embed"`` or ``"path"`` (see :data:`IMAGE_MODES`).
        zero_shot: the zero-shot setting the rows belong to (``verl_hoi.zero_shot``), recorded in each row; the
            caller removes the unseen classes from training annotations (``zero_shot.training_annotations``).
        prompt_vocabulary: ``full`` (every class in the prompt's class list) or ``seen`` (the setting's unseen
            combinations left out), ``verl_hoi.prompts.VOCABULARIES``.
    """

    split: str = "test"
    family: str = DEFAULT_FAMILY
    frame: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    patch_size: int | None = None
    merge_size: int | None = None
    prompt: str = DEFAULT_PROMPT
    image_mode: str = IMAGE_MODES[0]
    zero_shot: str | None = None
    prompt_vocabulary: str = VOCABULARIES[0]

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; valid splits: {', '.join(SPLITS)}")
        family = get_family(self.family)
        for name in ("frame", "min_pixels", "max_pixels", "patch_size", "merge_size"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(family, name))
        check_frame(self.frame)
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(f"unknown image mode {self.image_mode!r}; valid modes: {', '.join(IMAGE_MODES)}")
        if self.patch_size <= 0 or self.merge_size <= 0:
            raise ValueError(f"patch_size and merge_size must be positive, got {self.patch_size}, {self.merge_size}")
        check_row_budget(self.min_pixels, self.max_pixels, self.block)
        get_prompt(self.prompt)  # raises ValueError listing the registered names
        if self.zero_shot is not None:
            check_setting(self.zero_shot)
        hidden_classes(self.prompt_vocabulary, self.zero_shot)  # raises ValueError for a bad combination

    @property
    def block(self) -> int:
        """Side in pixels of one image token."""
        return self.patch_size * self.merge_size


def ground_truth_pairs(annotation: ImageAnnotation, frame: str, size: tuple[int, int]) -> list[HOIPair]:
    """The image's pairs grouped by (human box, object box, object), boxes in ``frame`` rounded to integers.

    A box that rounds to zero width or height is widened to one unit, so every ground truth parses.

    Every ground-truth HOI class is a valid (verb, object) combination by construction, so all of an
    image's verbs survive; items keep the order of their first pair.

    Args:
        annotation: one image's ground truth (raw 1-based ``[x1, y1, x2, y2]`` boxes).
        frame: target frame name.
        size: ``model_size`` (w, h) of the image (``verl_hoi.frames.model_size``).

    >>> from verl_hoi.hicodet import GroundTruthPair
    >>> a = ImageAnnotation("x.jpg", 640, 427, (GroundTruthPair((320, 306, 359, 349), (148, 345, 376, 414), 245),
    ...                                         GroundTruthPair((320, 306, 359, 349), (148, 345, 376, 414), 244)))
    >>> ground_truth_pairs(a, "resized", (644, 420))
    [HOIPair(human=(322, 301, 361, 343), object=(149, 339, 378, 407), object_id=13, verb_ids=(49, 87))]
    """
    if not annotation.pairs:
        return []
    image_size = (annotation.width, annotation.height)
    raw = np.array([[p.human, p.object] for p in annotation.pairs], dtype=np.float64)  # (N, 2, 4)
    boxes = np.rint(_to_frame(raw, frame, image_size, size)).astype(np.int64)
    # A box a pixel or two wide may round to zero width when the image shrinks: keep every box valid.
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1)
    triplets = []
    for (human, obj), pair in zip(boxes.tolist(), annotation.pairs, strict=True):
        verb, object_index = HOI_CLASSES[pair.hoi]
        triplets.append(HOIPair(tuple(human), tuple(obj), object_index, (verb,)))
    return merge_pairs(triplets)


@lru_cache(maxsize=4096)
def _messages(prompt: str, frame: str, extent: tuple[int, int], hidden: frozenset[int]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in build_messages(prompt, frame, extent, hidden))


def image_entry(image: bytes | str, options: ConvertOptions) -> dict[str, Any]:
    """The ``images`` list item: ``{"bytes": ...}`` or ``{"image": path}``, plus the pixel budget.

    >>> image_entry("/data/a.jpg", ConvertOptions(image_mode="path"))
    {'image': '/data/a.jpg', 'min_pixels': 3136, 'max_pixels': 1003520}
    """
    key = "bytes" if isinstance(image, bytes) else "image"
    return {key: image, "min_pixels": options.min_pixels, "max_pixels": options.max_pixels}


def build_row(annotation: ImageAnnotation, index: int, image: bytes | str, options: ConvertOptions) -> dict[str, Any]:
    """One verl ``RLHFDataset`` row (keys and types as in the module docstring).

    Args:
        annotation: the image's ground truth.
        index: the image's position in the annotation file (``extra_info["index"]``).
        image: JPEG bytes (embed mode) or the image path to store (path mode).
        options: frame, pixel budget, prompt and split.
    """
    image_size = (annotation.width, annotation.height)
    size = model_size(image_size, options.min_pixels, options.max_pixels, options.block)
    extent = frame_extent(options.frame, image_size, size)
    answer = render_answer(ground_truth_pairs(annotation, options.frame, size))
    return {
        "data_source": DATA_SOURCE,
        "prompt": [
            {"role": role, "content": content}
            for role, content in _messages(
                options.prompt, options.frame, extent, hidden_classes(options.prompt_vocabulary, options.zero_shot)
            )
        ],
        "images": [image_entry(image, options)],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": RowMeta(
            file_name=annotation.file_name,
            image_size=image_size,
            model_size=size,
            frame=options.frame,
            min_pixels=options.min_pixels,
            max_pixels=options.max_pixels,
            family=options.family,
            patch_size=options.patch_size,
            merge_size=options.merge_size,
            split=options.split,
            index=index,
            prompt=options.prompt,
            zero_shot=options.zero_shot,
            prompt_vocabulary=options.prompt_vocabulary if options.zero_shot is not None else None,
        ).to_dict(),
    }


def row_schema(image_mode: str) -> Any:
    """The pyarrow schema of :func:`build_row`'s rows for ``image_mode`` (one image key per file)."""
    import pyarrow as pa

    image_field = pa.field("bytes", pa.binary()) if image_mode == "embed" else pa.field("image", pa.string())
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(pa.struct([image_field, ("min_pixels", pa.int64()), ("max_pixels", pa.int64())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            ("extra_info", RowMeta.arrow_type()),
        ]
    )


def select_images(annotations: Sequence[ImageAnnotation], split: str) -> list[int]:
    """Indices of the images a split converts: every image for ``test`` (evaluation must see all of
    them), only images with at least one visible pair for ``train``.

    >>> from verl_hoi.hicodet import GroundTruthPair
    >>> empty = ImageAnnotation("a.jpg", 4, 4, ())
    >>> full = ImageAnnotation("b.jpg", 4, 4, (GroundTruthPair((1, 1, 2, 2), (2, 2, 3, 3), 0),))
    >>> select_images([empty, full], "test"), select_images([empty, full], "train")
    ([0, 1], [1])
    """
    if split == "test":
        return list(range(len(annotations)))
    return [i for i, a in enumerate(annotations) if a.pairs]


def iter_rows(
    annotations: Sequence[ImageAnnotation],
    indices: Iterable[int],
    images_dir: str | Path,
    options: ConvertOptions,
    skipped: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``annotations[i]`` for ``i`` in ``indices``, images read from ``images_dir`` (lazily, one at a time).

    Args:
        skipped: when given, an image that raises :class:`verl_hoi.images.BadImageError` is left out and the error's
            message appended to this list; when ``None`` the error is raised.

    Raises:
        verl_hoi.images.BadImageError: an image cannot be used (see :func:`read_image`); missing images count too
            (check first with :func:`missing_images`).
        ValueError: an image's size differs from the annotation, or the annotated size cannot be
            resized within the pixel budget (the message names the image file).
    """
    images_dir = Path(images_dir)
    for index in indices:
        annotation = annotations[index]
        path = images_dir / annotation.file_name
        try:
            image, size = read_image(path, options.image_mode)
        except BadImageError as error:
            if skipped is None:
                raise
            skipped.append(str(error))
            continue
        annotated = (annotation.width, annotation.height)
        if size != annotated:
            raise ValueError(
                f"{path}: image is {size[0]}x{size[1]} but the annotation (image {index}) says "
                f"{annotated[0]}x{annotated[1]}"
            )
        try:
            row = build_row(annotation, index, image, options)
        except ValueError as error:  # a size that qwen-vl-utils cannot resize (elongated beyond 200:1)
            raise ValueError(f"{path}: {error}") from None
        yield row


def missing_images(annotations: Sequence[ImageAnnotation], images_dir: str | Path) -> list[str]:
    """File names of ``annotations`` that are not files in ``images_dir``, in annotation order."""
    images_dir = Path(images_dir)
    return [a.file_name for a in annotations if not (images_dir / a.file_name).is_file()]


def read_image(path: Path, image_mode: str) -> tuple[bytes | str, tuple[int, int]]:
    """The ``image`` argument of :func:`build_row` (file bytes or the absolute path) and the image's ``(w, h)``.

    The image is decoded in full, as the training loader will decode it; the bytes returned are
    those decoded.

    Raises:
        verl_hoi.images.BadImageError: the file cannot be read, is not an image PIL can read, has more
            than :data:`verl_hoi.images.MAX_IMAGE_PIXELS` pixels, or fails to decode (truncated or corrupt).
    """
    data = read_image_file(path)
    size = decoded_size(data, str(path))
    return (data if image_mode == "embed" else str(path.resolve())), size


def write_parquet(rows: Iterable[dict[str, Any]], path: str | Path, schema: Any, *, rows_per_group: int = 256) -> int:
    """Stream ``rows`` into ``path`` in row groups, atomically; returns the number of rows written.

    Rows go to a temporary file in the same folder that replaces ``path`` only once complete, so
    an error or Ctrl-C leaves the previous file (or none) and no partial one. No rows is an error
    too: an empty file never replaces a previous one.

    Args:
        rows: dicts matching ``schema``.
        path: output file; its folder must exist.
        schema: a ``pyarrow.Schema`` (see :func:`row_schema`).
        rows_per_group: rows buffered per parquet row group (bounds memory in embed mode).

    Raises:
        ValueError: ``rows`` is empty (nothing is written).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batches(rows, rows_per_group):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        if not count:
            raise ValueError(f"{path}: no rows to write")
    return count


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
