"""Model families: how a family's processor cuts images, which coordinate frame it grounds in, its defaults.

A converted row is sized for one family: its image is resized to multiples of the family's *block*
(``patch_size`` x ``merge_size`` pixels, one image token per block) within a pixel budget, and its boxes
are written in a frame. Built-in families:

==============  ===============  =====  =====  ========  =======================  =========================
name            model_type       patch  block  frame     pixel budget (tokens)    published base
==============  ===============  =====  =====  ========  =======================  =========================
``qwen2_5_vl``  ``qwen2_5_vl``   14     28     resized   3,136 .. 1,003,520 (4..1280)  Qwen/Qwen2.5-VL-3B-Instruct
``qwen3_vl``    ``qwen3_vl``     16     32     norm1000  65,536 .. 1,310,720 (64..1280) Qwen/Qwen3-VL-4B-Instruct
``qwen3_5``     ``qwen3_5``      16     32     norm1000  65,536 .. 1,310,720 (64..1280) Qwen/Qwen3.5-4B
==============  ===============  =====  =====  ========  =======================  =========================

Qwen2.5-VL grounds in pixels of the image it sees, Qwen3-VL and Qwen3.5 in 0..1000 relative coordinates.
The Qwen2.5-VL budget is its processor's default. Qwen3-VL's and Qwen3.5's processors allow up to 16,384
image tokens (16,777,216 pixels) by default; the families cap images at 1,280 tokens, as Qwen2.5-VL does,
and keep the processors' own minimum (65,536 pixels), so their processors leave every converted image as
it is without any setting. The patch and merge sizes of a real processor are read from its configuration
(:func:`verl_hoi.rows.processor_geometry`) wherever one is at hand; the family's are the defaults.

Another project adds a family with :func:`register_family`.

>>> get_family("qwen3_vl").block, get_family("qwen3_vl").frame
(32, 'norm1000')
>>> family_for_model_type("qwen3_5").name
'qwen3_5'
"""

from __future__ import annotations

from dataclasses import dataclass

from verl_hoi.frames import check_frame, check_pixel_budget

__all__ = [
    "DEFAULT_FAMILY",
    "ModelFamily",
    "available_families",
    "family_for_model_type",
    "get_family",
    "register_family",
]


@dataclass(frozen=True)
class ModelFamily:
    """A model family's image geometry and defaults.

    Attributes:
        name: registry name, written to ``extra_info["family"]`` and used by ``--family`` and recipes.
        model_types: ``model_type`` values of the family's ``config.json``.
        patch_size: vision patch side in pixels.
        merge_size: patches merged per side into one image token.
        frame: the coordinate frame the family grounds in natively (the default frame of its rows).
        min_pixels, max_pixels: the default pixel budget of its rows.
        base_model: the Hugging Face id of the base model the recipes start from.
    """

    name: str
    model_types: tuple[str, ...]
    patch_size: int
    merge_size: int
    frame: str
    min_pixels: int
    max_pixels: int
    base_model: str

    def __post_init__(self) -> None:
        if self.patch_size <= 0 or self.merge_size <= 0:
            raise ValueError(f"family {self.name!r}: patch_size and merge_size must be positive")
        check_frame(self.frame)
        check_pixel_budget(self.min_pixels, self.max_pixels)

    @property
    def block(self) -> int:
        """Side in pixels of one image token: resized images are multiples of it."""
        return self.patch_size * self.merge_size


_REGISTRY: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register ``family`` under ``family.name`` and return it.

    Raises:
        ValueError: the name, or one of its model types, is taken.
    """
    if family.name in _REGISTRY:
        raise ValueError(f"model family {family.name!r} is already registered")
    for model_type in family.model_types:
        owner = family_for_model_type(model_type)
        if owner is not None:
            raise ValueError(f"model type {model_type!r} already belongs to family {owner.name!r}")
    _REGISTRY[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(_REGISTRY)}") from None


def available_families() -> tuple[str, ...]:
    """Registered family names, built-ins first (the first is the default).

    >>> available_families()[:3]
    ('qwen2_5_vl', 'qwen3_vl', 'qwen3_5')
    """
    return tuple(_REGISTRY)


def family_for_model_type(model_type: str) -> ModelFamily | None:
    """The family whose checkpoints have ``config.json`` ``model_type``, or ``None``."""
    return next((f for f in _REGISTRY.values() if model_type in f.model_types), None)


DEFAULT_FAMILY = register_family(
    ModelFamily(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        patch_size=14,
        merge_size=2,
        frame="resized",
        min_pixels=56 * 56,
        max_pixels=28 * 28 * 1280,
        base_model="Qwen/Qwen2.5-VL-3B-Instruct",
    )
).name
"""The family of rows that do not name one (every row written before families existed)."""

_QWEN3_BLOCK = 32
_QWEN3_GEOMETRY = {
    "patch_size": 16,
    "merge_size": 2,
    "frame": "norm1000",
    "min_pixels": _QWEN3_BLOCK * _QWEN3_BLOCK * 64,
    "max_pixels": _QWEN3_BLOCK * _QWEN3_BLOCK * 1280,
}
"""Qwen3-VL and Qwen3.5 share their vision geometry, grounding frame and budget."""
register_family(ModelFamily(name="qwen3_vl", model_types=("qwen3_vl",), base_model="Qwen/Qwen3-VL-4B-Instruct",
                            **_QWEN3_GEOMETRY))  # fmt: skip
register_family(ModelFamily(name="qwen3_5", model_types=("qwen3_5",), base_model="Qwen/Qwen3.5-4B", **_QWEN3_GEOMETRY))
