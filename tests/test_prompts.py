import importlib.util
from dataclasses import dataclass

import pytest
from conftest import REPO

from verl_hoi import prompts, vocab
from verl_hoi.answer import HOIPair, render_answer
from verl_hoi.convert import ConvertOptions
from verl_hoi.frames import frame_extent, model_size
from verl_hoi.prompts import (
    DEFAULT_PROMPT,
    PLAIN_PROMPT,
    PromptTemplate,
    available_prompts,
    build_messages,
    get_prompt,
    load_prompt_file,
    prefilled_think,
    register_prompt,
)
from verl_hoi.reward import compute_score

BUILT_INS = ["hoi_r1", "hoi_r1_plain", "hoi_r1_brief", "hoi_r1_plain_brief"]
STEPS = [
    "1) How many people are in the image?",
    "2) What is each person doing?",
    "3) Which valid objects does each person interact with?",
    "4) Which valid verb combinations hold for each of these objects?",
]
ITEM = (
    '{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2], "object class": "<object>", '
    '"verb class": ["<verb>", "<verb>"]}'
)


def render(name: str, frame: str = "resized", extent: tuple[int, int] = (644, 420)) -> str:
    return get_prompt(name).render(frame, extent)


def test_built_ins():
    assert (DEFAULT_PROMPT, PLAIN_PROMPT) == ("hoi_r1", "hoi_r1_plain")
    assert available_prompts()[:4] == BUILT_INS
    flags = {name: (get_prompt(name).thinking, get_prompt(name).class_list) for name in BUILT_INS}
    assert flags == {
        "hoi_r1": (True, True),
        "hoi_r1_plain": (False, True),
        "hoi_r1_brief": (True, False),
        "hoi_r1_plain_brief": (False, False),
    }


def test_opening_lines():
    lines = render("hoi_r1").splitlines()
    assert lines[:3] == [
        "You are an HOI detection model. Find every interaction between a person and an object in the image.",
        "For each (person, object) pair, give the person's bounding box, the object's bounding box, the object class "
        "and all the verb classes that describe what the person does with the object.",
        "Boxes are [x1, y1, x2, y2] in absolute pixel coordinates of the image, which is 644×420 pixels: "
        "x goes from 0 (left edge) to 644 (right edge) and y from 0 (top edge) to 420 (bottom edge).",
    ]


@pytest.mark.parametrize(
    "line",
    [
        # valid verbs of bicycle, alphabetical, no interaction moved last
        "bicycle: carry, hold, hop on, inspect, jump, park, push, repair, ride, sit on, straddle, walk, wash, "
        "no interaction",
        "person: carry, greet, hold, hug, kiss, lick, stab, tag, teach, no interaction",  # first object
        "hair drier: hold, operate, repair, no interaction",  # object name with a space
        "toothbrush: brush with, hold, wash, no interaction",  # last object, verb with a space
    ],
)
def test_verb_lines(line):
    assert line in render("hoi_r1").splitlines()
    assert line not in render("hoi_r1_brief").splitlines()


def test_class_list_covers_the_600_classes():
    lines = render("hoi_r1_plain").splitlines()
    start = lines.index("Valid verb classes for each object (use a verb only with an object it is listed for):")
    verb_lines = lines[start + 1 : start + 1 + len(vocab.OBJECTS)]
    assert lines[start - 1] == f"Valid object classes: {', '.join(vocab.OBJECTS)}."
    pairs = set()
    for obj, line in enumerate(verb_lines):
        name, verbs = line.split(": ")
        assert name == vocab.OBJECTS[obj]
        verbs = verbs.split(", ")
        assert verbs[-1] == "no interaction" and verbs.count("no interaction") == 1
        pairs |= {(vocab.verb_id(v), obj) for v in verbs}
    assert pairs == set(vocab.HOI_CLASSES)


@pytest.mark.parametrize(
    ("frame", "extent", "expected"),
    [
        # the model's resized image
        ("resized", (644, 420), "which is 644×420 pixels: x goes from 0 (left edge) to 644 (right edge) and y from "
         "0 (top edge) to 420 (bottom edge)."),
        # the original image
        ("original", (640, 427), "which is 640×427 pixels: x goes from 0 (left edge) to 640 (right edge) and y from "
         "0 (top edge) to 427 (bottom edge)."),
        # relative: no pixel size
        ("norm1000", (1000, 1000), "Boxes are [x1, y1, x2, y2] in coordinates relative to the image scaled to "
         "0-1000: x goes from 0 (left edge) to 1000 (right edge) and y from 0 (top edge) to 1000 (bottom edge)."),
    ],
)  # fmt: skip
def test_frame_wording(frame, extent, expected):
    for name in BUILT_INS:
        text = render(name, frame, extent)
        assert expected in text
        assert ("pixel" in text) is (frame != "norm1000")


def test_extent_from_frames_module():
    size = model_size((640, 427), 4 * 28 * 28, 64 * 28 * 28, 28)
    text = render("hoi_r1", "resized", frame_extent("resized", (640, 427), size))
    assert "which is 252×168 pixels" in text


@pytest.mark.parametrize(
    ("name", "thinking"),
    [
        ("hoi_r1", True),  # thinking with the class list
        ("hoi_r1_brief", True),  # thinking without it
        ("hoi_r1_plain", False),  # no thinking
        ("hoi_r1_plain_brief", False),  # neither
    ],
)
def test_thinking_guidance_and_format(name, thinking):
    lines = render(name).splitlines()
    assert all((step in lines) is thinking for step in STEPS)
    assert ("Think step by step before answering:" in lines) is thinking
    assert any(line.startswith(("1)", "2)", "3)", "4)")) for line in lines) is thinking
    expected_last = ("<think>...</think>" if thinking else "") + "<answer>[" + ITEM + ", ...]</answer>"
    assert lines[-1] == expected_last
    assert ("<think>" in "\n".join(lines)) is thinking


def test_brief_variant_names_the_convention():
    text = render("hoi_r1_brief")
    assert 'Use HICO-DET object and verb class names, written with spaces (e.g. "sports ball", "hop on").' in text
    assert "Valid object classes" not in text and "bicycle:" not in text


def test_format_example_matches_the_ground_truth_answer():
    """The example's item is the training target with the placeholders filled in."""
    bicycle = vocab.object_id("bicycle")
    pair = HOIPair((1, 2, 3, 4), (5, 6, 7, 8), bicycle, (vocab.verb_id("hold"), vocab.verb_id("ride")))
    filled = (
        ITEM.replace("[x1, y1, x2, y2]", "[1, 2, 3, 4]", 1)
        .replace("[x1, y1, x2, y2]", "[5, 6, 7, 8]", 1)
        .replace('"<object>"', '"bicycle"')
        .replace('["<verb>", "<verb>"]', '["hold", "ride"]')
    )
    assert render_answer([pair]) == f"[{filled}]"


@pytest.mark.parametrize(
    ("frame", "extent", "message"),
    [
        ("pixels", (10, 10), "no prompt wording for frame 'pixels'; worded frames: resized, original, norm1000"),
        ("resized", (0, 420), "extent must be a positive"),  # zero width
        ("original", (640, -1), "extent must be a positive"),  # negative height
    ],
)
def test_render_errors(frame, extent, message):
    with pytest.raises(ValueError, match=message):
        render("hoi_r1", frame, extent)


def test_unknown_prompt_lists_names():
    with pytest.raises(ValueError, match="unknown prompt 'r1'; available prompts: hoi_r1, hoi_r1_plain, "):
        get_prompt("r1")
    with pytest.raises(ValueError, match="unknown prompt"):
        build_messages("r1", "resized", (644, 420))


def test_build_messages():
    messages = build_messages("hoi_r1", "resized", (644, 420))
    assert len(messages) == 1 and set(messages[0]) == {"role", "content"}
    assert messages[0]["role"] == "user"
    assert messages[0]["content"] == "<image>" + render("hoi_r1")
    assert messages[0]["content"].count("<image>") == 1


@pytest.fixture
def scratch_registry(monkeypatch):
    """Lets a test register prompts without leaking them into other tests."""
    monkeypatch.setattr(prompts, "_REGISTRY", dict(prompts._REGISTRY))


@dataclass(frozen=True)
class Terse(PromptTemplate):
    def render(self, frame, extent):
        return "Find the interactions. " + self.coordinates(frame, extent)


def test_register_custom_prompts(scratch_registry):
    assert register_prompt(Terse("terse")).name == "terse"
    assert build_messages("terse", "norm1000", (1000, 1000))[0]["content"].startswith(
        "<image>Find the interactions. Boxes are [x1, y1, x2, y2] in coordinates relative"
    )
    register_prompt(PromptTemplate("no_think_original", thinking=False))  # an instance with other flags
    assert available_prompts() == [*BUILT_INS, "terse", "no_think_original"]
    with pytest.raises(ValueError, match="prompt 'hoi_r1' is already registered"):
        register_prompt(PromptTemplate("hoi_r1", thinking=False))
    assert get_prompt("hoi_r1").thinking  # the clash left the original in place


def test_scratch_registry_is_restored():
    assert "terse" not in available_prompts()


def test_a_prompt_registered_after_import_is_accepted_everywhere(scratch_registry):
    # The converter's options and command line and the reward ask the registry when they run.
    register_prompt(PromptTemplate("late_plain", thinking=False))
    assert ConvertOptions(prompt="late_plain").prompt == "late_plain"
    spec = importlib.util.spec_from_file_location("hicodet_to_parquet", REPO / "data_prep" / "hicodet_to_parquet.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert "late_plain" in cli.build_parser().format_help()
    assert (
        cli._prompt_name("late_plain", no_thinking=True, prompt_file=None) == "late_plain"
    )  # a template without thinking
    truth = render_answer([HOIPair((0, 0, 5, 9), (1, 1, 4, 4), 41, (36,))])
    answer_only = f"<answer>{truth}</answer>"
    assert compute_score("hico_det", answer_only, truth, {"prompt": "late_plain"})["format"] == 1.0
    assert compute_score("hico_det", answer_only, truth, {"prompt": "hoi_r1"})["format"] == 0.0


@pytest.mark.parametrize(
    ("row_value", "rendered", "expected"),
    [
        (None, "<|im_start|>assistant\n<think>\n", True),  # the chat template opened the block
        (None, "<|im_start|>assistant\n", False),
        (None, "Write <think> then </think>.<|im_start|>assistant\n", False),  # only the end of the prompt counts
        (False, "<|im_start|>assistant\n<think>\n", False),  # the row wins
        (True, "<|im_start|>assistant\n", True),
    ],
)
def test_prefilled_think(row_value, rendered, expected):
    assert prefilled_think(row_value, rendered) is expected


def test_prompt_file_fills_its_placeholders_and_keeps_other_braces(tmp_path, scratch_registry):
    path = tmp_path / "released.txt"
    path.write_text(
        'Image {width}x{height}. {coordinates}\nAnswer <think>..</think> [{"human": [x1, y1, x2, y2]}] {w}\n'
    )
    name = load_prompt_file(path)
    assert name == "file:released.txt" and load_prompt_file(path) == name  # loading again is no error
    template = get_prompt(name)
    assert template.thinking and not template.class_list
    assert build_messages(name, "norm1000", (1000, 1000))[0]["content"] == (
        "<image>Image 1000x1000. Boxes are [x1, y1, x2, y2] in coordinates relative to the image scaled to 0-1000: "
        "x goes from 0 (left edge) to 1000 (right edge) and y from 0 (top edge) to 1000 (bottom edge).\n"
        'Answer <think>..</think> [{"human": [x1, y1, x2, y2]}] {w}'
    )
    path.write_text("Another text.")
    with pytest.raises(ValueError, match="another prompt file named released.txt is already loaded"):
        load_prompt_file(path)
    plain = tmp_path / "plain.txt"
    plain.write_text("Answer in <answer></answer> only.")
    assert not get_prompt(load_prompt_file(plain)).thinking
