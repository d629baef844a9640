"""Predicted (and ground-truth) human-object pairs drawn with their verb-object labels on an image.

:func:`draw` tags each pair (triplets that share both boxes, :func:`verl_hoi.answer.group_triplets`):
the human box in blue, the object box in orange, a line between their centres and a numbered tag; a
legend lists each pair's labels with scores (``1 hold bicycle 1.00, ride bicycle 0.93``). Ground-truth
pairs are green, tagged ``G1``, ``G2``, ... The command line is ``python -m verl_hoi.visualize``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from verl_hoi.answer import group_triplets
from verl_hoi.hicodet import ImageAnnotation
from verl_hoi.scored_triplets import ImageDetections
from verl_hoi.vocab import hoi_name

__all__ = ["DEFAULT_TOP", "PAIR_COLOURS", "draw"]

PAIR_COLOURS = {"human": (40, 110, 255), "object": (255, 140, 0), "ground_truth": (0, 190, 70)}
"""RGB colours of predicted human and object boxes and of ground-truth pairs."""
DEFAULT_TOP = 10
"""Best-scored triplets drawn per image."""


def _by_boxes(
    human: ArrayLike, obj: ArrayLike, labels: Sequence[str]
) -> list[tuple[list[float], list[float], list[str]]]:
    """``[(human box, object box, labels)]`` of the pairs the triplets make, in first-seen order."""
    boxes = zip(np.asarray(human, float).tolist(), np.asarray(obj, float).tolist(), strict=True)
    groups = group_triplets(((tuple(h), tuple(o)) for h, o in boxes), labels)
    return [(list(h), list(o), names) for (h, o), names in groups]


def draw(image, dets: ImageDetections, ground_truth: ImageAnnotation | None = None, top: int = DEFAULT_TOP):
    """A copy of the PIL ``image`` with the ``top`` best detections (and the ground truth) drawn on it.

    Each pair is tagged (``1``, ``2``, ... for predictions, ``G1``, ... for ground truth) at its object
    box; a legend in the top-left corner lists every tag with its labels.
    """
    from PIL import ImageDraw, ImageFont

    canvas = image.convert("RGB")
    pen = ImageDraw.Draw(canvas, "RGBA")
    font = ImageFont.load_default(size=max(11, round(max(canvas.size) / 45)))
    width = max(2, round(max(canvas.size) / 300))
    legend: list[tuple[str, tuple]] = []
    if ground_truth is not None and ground_truth.pairs:
        pairs = ground_truth.pairs
        grouped = _by_boxes([p.human for p in pairs], [p.object for p in pairs], [hoi_name(p.hoi) for p in pairs])
        colour = PAIR_COLOURS["ground_truth"]
        for k, (human, obj, names) in enumerate(grouped, start=1):
            _pair(pen, font, human, obj, f"G{k}", (colour, colour), width)
            legend.append((f"G{k} " + ", ".join(names), colour))
    order = np.argsort(-dets.score, kind="stable")[:top]
    labels = [f"{hoi_name(int(dets.hoi[k]))} {dets.score[k]:.2f}" for k in order]
    colours = (PAIR_COLOURS["human"], PAIR_COLOURS["object"])
    for k, (human, obj, names) in enumerate(_by_boxes(dets.human[order], dets.object[order], labels), start=1):
        _pair(pen, font, human, obj, str(k), colours, width)
        legend.append((f"{k} " + ", ".join(names), colours[1]))
    y = 2
    for text, colour in legend:
        left, top_, right, bottom = pen.textbbox((4, y), text, font=font)
        pen.rectangle((0, y, right + 4, bottom + 2), fill=(0, 0, 0, 160))
        pen.text((4, y), text, fill=colour, font=font)
        y = bottom + 3
    return canvas


def _pair(pen, font, human: list[float], obj: list[float], tag: str, colours: tuple, width: int) -> None:
    for box, colour in zip((human, obj), colours, strict=True):
        pen.rectangle(box, outline=colour, width=width)
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (human, obj)]
    pen.line(centres, fill=colours[1], width=max(1, width // 2))
    left, top, right, bottom = pen.textbbox((obj[0] + width, obj[1] + width), tag, font=font)
    pen.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colours[1])
    pen.text((obj[0] + width, obj[1] + width), tag, fill=(255, 255, 255), font=font)
