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

Some chat templates open ``<think>`` themselves; :func:`prefilled_think` decides, for the reward
manager and prediction alike, whether a response starts inside the think block.

>>> text = get_prompt("hoi_r1").render("resized", (644, 420))
>>> text.splitlines()[0]
'You are an HOI detection model. Find every interaction between a person and an object in the image.'
>>> build_messages("hoi_r1_plain_brief", "norm1000", (1000, 1000))[0]["content"][:40]
'<image>You are an HOI detection model. F'
"""

from __future__ import annotations

from dataclasses import dataclass

from verl_hoi.vocab import NO_INTERACTION, OBJECTS, VERBS, valid_verbs

__all__ = [
    "DEFAULT_PROMPT",
    "IMAGE_PLACEHOLDER",
    "PLAIN_PROMPT",
    "PromptTemplate",
    "available_prompts",
    "build_messages",
    "get_prompt",
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


def _verb_line(obj: int) -> str:
    verbs = [VERBS[v] for v in valid_verbs(obj) if v != NO_INTERACTION]
    return f"{OBJECTS[obj]}: {', '.join([*verbs, VERBS[NO_INTERACTION]])}"


CLASS_LIST = "\n".join(
    [CLASSES_HEADER.format(objects=", ".join(OBJECTS)), *(_verb_line(obj) for obj in range(len(OBJECTS)))]
)
"""The 80 objects, then one line per object with its valid verbs (``no interaction`` last)."""


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

    def render(self, frame: str, extent: tuple[int, int]) -> str:
        """The user text (without ``<image>``) for boxes in ``frame``, whose extent is ``(w, h)``.

        ``extent`` is :func:`verl_hoi.frames.frame_extent` of the row.

        Raises:
            ValueError: a frame without wording, or a non-positive extent.
        """
        parts = [INSTRUCTION + "\n" + self.coordinates(frame, extent)]
        parts.append(CLASS_LIST if self.class_list else NAMES_HINT)
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


def build_messages(name: str, frame: str, extent: tuple[int, int]) -> list[dict[str, str]]:
    """Chat messages of one row in verl's ``RLHFDataset`` style: ``[{"role": "user", "content": "<image>" + text}]``.

    Raises:
        ValueError: unknown prompt or frame, or a non-positive extent.
    """
    return [{"role": "user", "content": IMAGE_PLACEHOLDER + get_prompt(name).render(frame, extent)}]


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
