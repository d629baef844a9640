"""Prompt templates: HOI-R1's three-part user text, and the registry that names them.

A prompt is the task instruction (with the coordinate frame stated exactly and, optionally, the 80
object classes with the verbs valid for each), optionally the four-step thinking guidance, then a
format example in the answer schema of :mod:`verl_hoi.answer` (``"verb class"`` is a list, as in
the ground truth). Built-in templates:

==========================  ========  ==========
name                        thinking  class list
==========================  ========  ==========
``hoi_r1`` (the default)    yes       yes
``hoi_r1_plain``            no        yes
``hoi_r1_brief``            yes       no
``hoi_r1_plain_brief``      no        no
==========================  ========  ==========

Another project adds its own with :func:`register_prompt`, either an instance with other flags or
a subclass that overrides :meth:`PromptTemplate.render` (or one of its parts)::

    @dataclass(frozen=True)
    class MyPrompt(PromptTemplate):
        def render(self, frame, extent):
            return "Find every person-object interaction. " + self.coordinates(frame, extent)

    register_prompt(MyPrompt("my_prompt"))

In a zero-shot setting (:mod:`verl_hoi.zero_shot`) the class list names every class by default; the
``seen`` vocabulary (:data:`VOCABULARIES`, :func:`hidden_classes`) leaves the setting's unseen combinations
out of it.

A prompt written by someone else (say, the one a released checkpoint was trained with) is a text file
read by :func:`load_prompt_file`: its text is the user text after the image, with ``{width}`` and
``{height}`` replaced by the frame's extent (the image's size in pixels for the ``original`` frame,
1000 for ``norm1000``) and ``{coordinates}`` by the sentence that states the frame; any other brace is
kept as written, so JSON examples need no escaping.

Some chat templates open ``<think>`` themselves; :func:`prefilled_think` decides, for the reward
manager and prediction alike, whether a response starts inside the think block.

>>> text = get_prompt("hoi_r1").render("resized", (644, 420))
>>> text.splitlines()[0]
'You are an HOI detection model. Find every interaction between a person and an object in the image.'
>>> build_messages("hoi_r1_plain_brief", "norm1000", (1000, 1000))[0]["content"][:40]
'<image>You are an HOI detection model. F'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from verl_hoi.vocab import NO_INTERACTION, OBJECTS, VERBS, hoi_id, valid_verbs
from verl_hoi.zero_shot import unseen_classes

__all__ = [
    "DEFAULT_PROMPT",
    "IMAGE_PLACEHOLDER",
    "PLAIN_PROMPT",
    "PROMPT_FILE_PREFIX",
    "PromptTemplate",
    "available_prompts",
    "build_messages",
    "VOCABULARIES",
    "TextPrompt",
    "class_list",
    "hidden_classes",
    "get_prompt",
    "load_prompt_file",
    "prefilled_think",
    "register_prompt",
]

IMAGE_PLACEHOLDER = "<image>"
"""Where the row's image goes in the user text; verl replaces it with the image."""

INSTRUCTION = (
    "You are an HOI detection model. Find every interaction between a person and an object in the image.\n"
    "For each (person, object) pair, give the person's bounding box, the object's bounding box, the object class "
    "and all the verb classes that describe what the person does with the object."
)

PIXEL_COORDINATES = (
    "Boxes are [x1, y1, x2, y2] in absolute pixel coordinates of the image, which is {width}×{height} pixels: "
    "x goes from 0 (left edge) to {width} (right edge) and y from 0 (top edge) to {height} (bottom edge)."
)
NORM1000_COORDINATES = (
    "Boxes are [x1, y1, x2, y2] in coordinates relative to the image scaled to 0-1000: "
    "x goes from 0 (left edge) to 1000 (right edge) and y from 0 (top edge) to 1000 (bottom edge)."
)
COORDINATES = {"resized": PIXEL_COORDINATES, "original": PIXEL_COORDINATES, "norm1000": NORM1000_COORDINATES}
"""Wording of each frame; ``{width}`` and ``{height}`` are the frame's extent."""

CLASSES_HEADER = (
    "Valid object classes: {objects}.\n"
    "Valid verb classes for each object (use a verb only with an object it is listed for):"
)
NAMES_HINT = 'Use HICO-DET object and verb class names, written with spaces (e.g. "sports ball", "hop on").'

THINKING = (
    "Think step by step before answering:\n"
    "1) How many people are in the image?\n"
    "2) What is each person doing?\n"
    "3) Which valid objects does each person interact with?\n"
    "4) Which valid verb combinations hold for each of these objects?"
)

ITEM_EXAMPLE = (
    '{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2], "object class": "<object>", '
    '"verb class": ["<verb>", "<verb>"]}'
)
FORMAT_THINKING = (
    "Write your reasoning inside <think> </think>, then the answer inside <answer> </answer>: a JSON list with one "
    "item per (person, object) pair and all of its verbs, or [] if there is none. Format:\n"
    "<think>...</think><answer>[" + ITEM_EXAMPLE + ", ...]</answer>"
)
FORMAT_PLAIN = (
    "Write the answer inside <answer> </answer>: a JSON list with one item per (person, object) pair and all of "
    "its verbs, or [] if there is none. Format:\n"
    "<answer>[" + ITEM_EXAMPLE + ", ...]</answer>"
)


VOCABULARIES: tuple[str, ...] = ("full", "seen")
"""What a class list names in a zero-shot setting (``verl_hoi.zero_shot``): ``full`` (the default) all 600
combinations, unseen ones included (open-vocabulary use: the model is told names it never trained on);
``seen`` leaves the setting's unseen combinations out (an object whose every combination is unseen goes
from the object list too)."""


def hidden_classes(vocabulary: str | None, setting: str | None) -> frozenset[int]:
    """The HOI classes a class list leaves out for ``vocabulary`` (:data:`VOCABULARIES`; ``None`` is ``full``) in the
    zero-shot ``setting`` (``None``: no setting): the setting's unseen classes with ``seen``, none otherwise.

    >>> len(hidden_classes("seen", "uv")), len(hidden_classes("full", "uv")), len(hidden_classes(None, None))
    (84, 0, 0)

    Raises:
        ValueError: an unknown vocabulary or setting, or ``seen`` without a setting.
    """
    if vocabulary not in (None, *VOCABULARIES):
        raise ValueError(f"unknown prompt vocabulary {vocabulary!r}; valid vocabularies: {', '.join(VOCABULARIES)}")
    if vocabulary != "seen":
        return frozenset()
    if setting is None:
        raise ValueError("prompt vocabulary 'seen' needs a zero-shot setting")
    return unseen_classes(setting)


def _verbs(obj: int, hidden: frozenset[int]) -> list[str]:
    """The object's valid verbs (``no interaction`` last) whose combination is not ``hidden``."""
    verbs = [v for v in valid_verbs(obj) if v != NO_INTERACTION] + [NO_INTERACTION]
    return [VERBS[v] for v in verbs if hoi_id(v, obj) not in hidden]


@cache
def class_list(hidden: frozenset[int] = frozenset()) -> str:
    """The objects, then one line per object with its valid verbs (``no interaction`` last), without the
    HOI classes in ``hidden`` (0-based; an object with none left is not listed).

    >>> bicycle = class_list().splitlines()[3]
    >>> bicycle[:32], "ride" in bicycle, "ride" in class_list(frozenset({hoi_id(76, 1)})).splitlines()[3]
    ('bicycle: carry, hold, hop on, in', True, False)
    """
    lines = {obj: _verbs(obj, hidden) for obj in range(len(OBJECTS))}
    listed = [obj for obj, verbs in lines.items() if verbs]
    header = CLASSES_HEADER.format(objects=", ".join(OBJECTS[obj] for obj in listed))
    return "\n".join([header, *(f"{OBJECTS[obj]}: {', '.join(lines[obj])}" for obj in listed)])


@dataclass(frozen=True)
class PromptTemplate:
    """A user prompt for HOI detection.

    Attributes:
        name: registry name, written to ``extra_info["prompt"]``.
        thinking: include the thinking guidance and ``<think>`` in the format example.
        class_list: include the 80 objects and the verbs valid with each.
    """

    name: str
    thinking: bool = True
    class_list: bool = True

    def render(self, frame: str, extent: tuple[int, int], hidden: frozenset[int] = frozenset()) -> str:
        """The user text (without ``<image>``) for boxes in ``frame``, whose extent is ``(w, h)``.

        ``extent`` is :func:`verl_hoi.frames.frame_extent` of the row; ``hidden`` HOI classes are left out of
        the class list (:func:`class_list`).

        Raises:
            ValueError: a frame without wording, or a non-positive extent.
        """
        parts = [INSTRUCTION + "\n" + self.coordinates(frame, extent)]
        parts.append(class_list(hidden) if self.class_list else NAMES_HINT)
        if self.thinking:
            parts.append(THINKING)
        parts.append(FORMAT_THINKING if self.thinking else FORMAT_PLAIN)
        return "\n\n".join(parts)

    def coordinates(self, frame: str, extent: tuple[int, int]) -> str:
        """The sentence that states the coordinate frame of the boxes.

        >>> PromptTemplate("x").coordinates("original", (640, 427))[:90]
        'Boxes are [x1, y1, x2, y2] in absolute pixel coordinates of the image, which is 640×427 pi'
        """
        width, height = extent
        if not (width > 0 and height > 0):
            raise ValueError(f"extent must be a positive (w, h), got {extent!r}")
        try:
            wording = COORDINATES[frame]
        except KeyError:
            raise ValueError(
                f"no prompt wording for frame {frame!r}; worded frames: {', '.join(COORDINATES)} "
                "(override PromptTemplate.coordinates for another frame)"
            ) from None
        return wording.format(width=width, height=height)


_PLACEHOLDER = re.compile(r"\{(width|height|coordinates)\}")
PROMPT_FILE_PREFIX = "file:"
"""Registry names of prompt files: ``file:<file name>``."""


@dataclass(frozen=True)
class TextPrompt(PromptTemplate):
    """A user prompt given as text with the placeholders ``{width}``, ``{height}`` and ``{coordinates}``.

    >>> TextPrompt("x", text='Boxes in a {width}x{height} image, as {"human": [x1, y1, x2, y2]}').render(
    ...     "original", (640, 427))
    'Boxes in a 640x427 image, as {"human": [x1, y1, x2, y2]}'
    """

    text: str = ""

    def render(self, frame: str, extent: tuple[int, int], hidden: frozenset[int] = frozenset()) -> str:
        """The text with its placeholders filled in for boxes in ``frame`` of extent ``(w, h)`` (it has no class
        list for ``hidden`` to change).

        Raises:
            ValueError: ``{coordinates}`` for a frame without wording, or a non-positive extent.
        """
        width, height = extent
        if not (width > 0 and height > 0):
            raise ValueError(f"extent must be a positive (w, h), got {extent!r}")
        values = {"width": str(width), "height": str(height)}
        if "{coordinates}" in self.text:
            values["coordinates"] = self.coordinates(frame, extent)
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], self.text)


_REGISTRY: dict[str, PromptTemplate] = {}


def register_prompt(template: PromptTemplate) -> PromptTemplate:
    """Register ``template`` under ``template.name`` and return it.

    Raises:
        ValueError: the name is taken.
    """
    if template.name in _REGISTRY:
        raise ValueError(f"prompt {template.name!r} is already registered")
    _REGISTRY[template.name] = template
    return template


def get_prompt(name: str) -> PromptTemplate:
    """The template registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown prompt {name!r}; available prompts: {', '.join(_REGISTRY)}") from None


def available_prompts() -> list[str]:
    """Registered template names, in registration order (built-ins first).

    >>> available_prompts()[:4]
    ['hoi_r1', 'hoi_r1_plain', 'hoi_r1_brief', 'hoi_r1_plain_brief']
    """
    return list(_REGISTRY)


def load_prompt_file(path: str | Path) -> str:
    """Register the prompt of a UTF-8 text file (see the module docstring) and return its name, ``file:<name>``.

    It asks for thinking when its text mentions ``<think>``. Loading the same file again returns the same name.

    Raises:
        ValueError: the file cannot be read, is not UTF-8 text, is empty, holds ``<image>`` (the image
            always comes first), or another text is registered under its name.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if not text:
        raise ValueError(f"{path}: the prompt file is empty")
    if IMAGE_PLACEHOLDER in text:
        raise ValueError(f"{path}: remove {IMAGE_PLACEHOLDER}: the image always comes before the text")
    template = TextPrompt(f"{PROMPT_FILE_PREFIX}{path.name}", thinking="<think>" in text, class_list=False, text=text)
    if _REGISTRY.get(template.name) not in (None, template):
        raise ValueError(f"{path}: another prompt file named {path.name} is already loaded")
    _REGISTRY.setdefault(template.name, template)
    return template.name


def build_messages(
    name: str, frame: str, extent: tuple[int, int], hidden: frozenset[int] = frozenset()
) -> list[dict[str, str]]:
    """Chat messages of one row in verl's ``RLHFDataset`` style: ``[{"role": "user", "content": "<image>" + text}]``,
    the ``hidden`` HOI classes left out of the class list.

    Raises:
        ValueError: unknown prompt or frame, or a non-positive extent.
    """
    template = get_prompt(name)
    # A subclass may override render(frame, extent) alone: it is asked so when nothing is hidden.
    text = template.render(frame, extent, hidden) if hidden else template.render(frame, extent)
    return [{"role": "user", "content": IMAGE_PLACEHOLDER + text}]


def prefilled_think(row_value: bool | None, rendered_prompt: str) -> bool:
    """Whether the response starts inside the think block, so that it is parsed without its ``<think>``.

    The row says so with ``extra_info["prefilled_think"]``, which wins when it is not None (returned as it
    is: the reward checks its type); otherwise the chat template decides: ``rendered_prompt`` (the prompt
    as the model was given it, generation prompt included) ends with ``<think>``, white space aside.

    >>> prefilled_think(None, "<|im_start|>assistant\\n<think>\\n"), prefilled_think(False, "...<think>")
    (True, False)
    """
    if row_value is not None:
        return row_value
    return rendered_prompt.rstrip().endswith("<think>")


DEFAULT_PROMPT = register_prompt(PromptTemplate("hoi_r1")).name
PLAIN_PROMPT = register_prompt(PromptTemplate("hoi_r1_plain", thinking=False)).name
"""The template without thinking guidance (``--no-thinking`` of the converter)."""
register_prompt(PromptTemplate("hoi_r1_brief", class_list=False))
register_prompt(PromptTemplate("hoi_r1_plain_brief", thinking=False, class_list=False))
