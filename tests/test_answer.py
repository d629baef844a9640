"""Tests for verl_hoi.answer: rendering, tolerant parsing, validation, truncation, caps, hostile input."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_hoi.answer import (
    MAX_COORD,
    MAX_ERRORS,
    MAX_ITEMS,
    MAX_TEXT_CHARS,
    HOIPair,
    ParsedAnswer,
    group_triplets,
    merge_pairs,
    parse_answer,
    render_answer,
    render_response,
)
from verl_hoi.hicodet import load_annotations
from verl_hoi.vocab import HOI_CLASSES, OBJECTS, VERBS, valid_verbs

# Ids written out by hand (vocab order): objects in COCO order, verbs alphabetical.
PERSON, BICYCLE, CUP, KITE = 0, 1, 41, 33
DRINK_WITH, FLY, HOLD, NO_INTERACTION, RIDE, SIP, SIT_ON = 20, 30, 36, 57, 76, 85, 87

CUP_ITEM = '{"human": [1, 2, 30, 40], "object": [5, 6, 70, 80], "object class": "cup", "verb class": ["hold"]}'
CUP_PAIR = HOIPair((1, 2, 30, 40), (5, 6, 70, 80), CUP, (HOLD,))
BIKE_ITEM = (
    '{"human": [10, 20, 110, 220], "object": [5, 60, 150, 260], "object class": "bicycle", "verb class": ["ride"]}'
)
BIKE_PAIR = HOIPair((10, 20, 110, 220), (5, 60, 150, 260), BICYCLE, (RIDE,))


def item(human: str = "[1, 2, 30, 40]", obj: str = "[5, 6, 70, 80]", name: str = '"cup"', verbs: str = '["hold"]'):
    """One answer item with its fields spelled as given (JSON text)."""
    return f'{{"human": {human}, "object": {obj}, "object class": {name}, "verb class": {verbs}}}'


# --------------------------------------------------------------------------------------------- render


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # nothing to say: an empty list
        ([], "[]"),
        # one pair, int boxes
        ([CUP_PAIR], f"[{CUP_ITEM}]"),
        # integral floats are written as ints, other floats as they are
        (
            [HOIPair((1.0, 2.0, 30.5, 40.0), (5.0, 6.0, 70.0, 80.25), KITE, (FLY,))],
            '[{"human": [1, 2, 30.5, 40], "object": [5, 6, 70, 80.25], "object class": "kite", "verb class": ["fly"]}]',
        ),
        # same boxes and object: one item, verbs merged and sorted, duplicates collapsed
        (
            [
                HOIPair((10, 20, 110, 220), (5, 60, 150, 260), BICYCLE, (RIDE,)),
                HOIPair((10.0, 20.0, 110.0, 220.0), (5.0, 60.0, 150.0, 260.0), BICYCLE, (SIT_ON, HOLD)),
                HOIPair((10, 20, 110, 220), (5, 60, 150, 260), BICYCLE, (RIDE,)),
            ],
            item("[10, 20, 110, 220]", "[5, 60, 150, 260]", '"bicycle"', '["hold", "ride", "sit on"]').join("[]"),
        ),
        # same boxes, other object: two items, in order of first appearance
        (
            [CUP_PAIR, HOIPair((1, 2, 30, 40), (5, 6, 70, 80), KITE, (HOLD,)), CUP_PAIR],
            f"[{CUP_ITEM}, {item(name=chr(34) + 'kite' + chr(34))}]",
        ),
        # other human box: two items
        ([BIKE_PAIR, CUP_PAIR], f"[{BIKE_ITEM}, {CUP_ITEM}]"),
        # names with spaces as the model writes them
        (
            [HOIPair((1, 2, 3, 4), (1, 2, 3, 4), PERSON, (NO_INTERACTION,))],
            item("[1, 2, 3, 4]", "[1, 2, 3, 4]", '"person"', '["no interaction"]').join("[]"),
        ),
    ],
)
def test_render_answer(pairs: list[HOIPair], expected: str) -> None:
    assert render_answer(pairs) == expected
    assert json.loads(render_answer(pairs)) == json.loads(expected)


@pytest.mark.parametrize(
    ("answer", "thinking", "expected"),
    [
        ("[]", None, "<answer>[]</answer>"),  # no thinking: the answer block alone
        ("[]", "two people", "<think>two people</think><answer>[]</answer>"),  # thinking first
        ("[]", "", "<think></think><answer>[]</answer>"),  # empty thinking still writes the block
    ],
)
def test_render_response(answer: str, thinking: str | None, expected: str) -> None:
    assert render_response(answer, thinking) == expected


def test_render_answer_takes_numpy_scalars() -> None:
    human = tuple(np.array([1, 2, 30, 40], dtype=np.int64))
    obj = tuple(np.array([5, 6, 70, 80.5], dtype=np.float32))
    pair = HOIPair(human, obj, np.int64(CUP), (np.int64(HOLD),))
    assert render_answer([pair]) == f"[{item(obj='[5, 6, 70, 80.5]')}]"


def test_group_triplets_merges_triplets_of_one_pair() -> None:
    human = [(0.0, 0.0, 5.0, 5.0), (0.0, 0.0, 5.0, 5.0), (1.0, 1.0, 6.0, 6.0)]
    obj = [(2.0, 2.0, 9.0, 9.0)] * 3
    groups = group_triplets(zip(human, obj, strict=True), ["a", "b", "c"])
    assert [names for _, names in groups] == [["a", "b"], ["c"]]  # first-seen order
    assert [key for key, _ in groups] == [(human[0], obj[0]), (human[2], obj[0])]


def test_merge_pairs_keys_on_the_object_too() -> None:
    # the same boxes with another object stay apart; verbs of one pair are merged and sorted; first-seen order
    a, b, c = (HOIPair((0, 0, 5, 5), (2, 2, 9, 9), CUP, (v,)) for v in (SIP, HOLD, SIP))
    other = HOIPair((0, 0, 5, 5), (2, 2, 9, 9), PERSON, (NO_INTERACTION,))
    assert merge_pairs([a, other, b, c]) == [HOIPair(a.human, a.object, CUP, (HOLD, SIP)), other]


def test_round_trip_on_the_shipped_sample(sample_annotations) -> None:
    images = load_annotations(sample_annotations, split="test")
    assert sum(len(image.pairs) for image in images) > 10
    for image in images:
        pairs = [HOIPair(p.human, p.object, HOI_CLASSES[p.hoi][1], (HOI_CLASSES[p.hoi][0],)) for p in image.pairs]
        grouped: dict[tuple, set[int]] = {}
        for pair in pairs:
            grouped.setdefault((pair.human, pair.object, pair.object_id), set()).update(pair.verb_ids)
        expected = tuple(HOIPair(h, o, obj, tuple(sorted(verbs))) for (h, o, obj), verbs in grouped.items())
        parsed = parse_answer(render_response(render_answer(pairs), "reasoning"))
        assert parsed.pairs == expected
        assert (parsed.tags_ok, parsed.json_ok, parsed.truncated, parsed.errors) == (True, True, False, ())
        assert (parsed.num_items, parsed.num_invalid) == (len(expected), 0)


# ---------------------------------------------------------------------------------------- tolerance


@pytest.mark.parametrize(
    ("text", "pairs", "json_ok"),
    [
        # the strict form
        (f"<think>x</think><answer>[{CUP_ITEM}]</answer>", (CUP_PAIR,), True),
        # no tags at all: the whole text is the answer
        (f"[{CUP_ITEM}, {BIKE_ITEM}]", (CUP_PAIR, BIKE_PAIR), True),
        # no answer tags after a think block: what follows </think>
        (f"<think>x [1]</think>\n[{CUP_ITEM}]", (CUP_PAIR,), True),
        # a code fence inside the answer block
        (f"<answer>```json\n[{CUP_ITEM}]\n```</answer>", (CUP_PAIR,), False),
        # prose around the list
        (f"<answer>Here it is: [{CUP_ITEM}] Done.</answer>", (CUP_PAIR,), False),
        # brackets in the prose after the list
        (f"<answer>[{CUP_ITEM}]\nas in [1] and {{2}}</answer>", (CUP_PAIR,), False),
        # a second list after the answer
        (f"<answer>[{CUP_ITEM}]\n[{BIKE_ITEM}]</answer>", (CUP_PAIR,), False),
        # single quotes everywhere
        (f"<answer>[{CUP_ITEM.replace(chr(34), chr(39))}]</answer>", (CUP_PAIR,), False),
        # trailing commas in the item, the box and the list
        (
            '[{"human": [1, 2, 30, 40,], "object": [5, 6, 70, 80], "object class": "cup", "verb class": ["hold",],},]',
            (CUP_PAIR,),
            False,
        ),
        # verbs as a comma-separated string, in any order, with a duplicate
        (
            f"[{item(verbs='{0}hold, drink with,hold{0}'.format(chr(34)))}]",
            (HOIPair((1, 2, 30, 40), (5, 6, 70, 80), CUP, (DRINK_WITH, HOLD)),),
            True,
        ),
        # names with underscores, odd case and spaces
        (
            f"[{item(name='{0} CUP {0}'.format(chr(34)), verbs='[{0}Drink_With{0}]'.format(chr(34)))}]",
            (HOIPair((1, 2, 30, 40), (5, 6, 70, 80), CUP, (DRINK_WITH,)),),
            True,
        ),
        # one object instead of a list
        (f"<answer>{CUP_ITEM}</answer>", (CUP_PAIR,), False),
        # a bare sequence of objects
        (f"<answer>{CUP_ITEM},\n{BIKE_ITEM}</answer>", (CUP_PAIR, BIKE_PAIR), False),
        # float coordinates and a negative one are kept as written
        (
            f"[{item(human='[-1.5, 2, 30.25, 40]')}]",
            (HOIPair((-1.5, 2, 30.25, 40), (5, 6, 70, 80), CUP, (HOLD,)),),
            True,
        ),
        # mixed quotes and a missing comma (the token parser)
        (
            """[{'human': [1, 2, 30, 40] "object": [5, 6, 70, 80], 'object class': "cup", 'verb class': 'hold'}]""",
            (CUP_PAIR,),
            False,
        ),
        # Python literals and an escaped name
        (
            """[{'human': [1, 2, 30, 40], 'object': [5, 6, 70, 80], 'object class': 'c\\u0075p', 'verb class': ['hold'],
          'extra': None, 'ok': True}]""",
            (CUP_PAIR,),
            False,
        ),
        # unknown keys are ignored
        (f'[{{"score": 0.9, {CUP_ITEM[1:]}]', (CUP_PAIR,), True),
        # an empty list is a valid answer with nothing in it
        ("<think>x</think><answer>[]</answer>", (), True),
        # duplicate items are both kept (the reward decides what duplicates cost)
        (f"[{CUP_ITEM}, {CUP_ITEM}]", (CUP_PAIR, CUP_PAIR), True),
    ],
)
def test_tolerance(text: str, pairs: tuple[HOIPair, ...], json_ok: bool) -> None:
    parsed = parse_answer(text)
    assert parsed.pairs == pairs
    assert parsed.json_ok is json_ok
    assert (parsed.truncated, parsed.num_items, parsed.num_invalid, parsed.errors) == (False, len(pairs), 0, ())


# --------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("[1]", "item 0: not an object"),  # a number, not an item
        ('[["cup"]]', "item 0: not an object"),  # a list, not an item
        (
            '[{"object": [5, 6, 70, 80], "object class": "cup", "verb class": ["hold"]}]',
            "item 0: bad or missing 'human' box",
        ),
        (item(human="[1, 2, 30]"), "item 0: bad or missing 'human' box"),  # three numbers
        (item(human="[1, 2, 30, 40, 50]"), "item 0: bad or missing 'human' box"),  # five numbers
        (item(human='[1, "2", 30, 40]'), "item 0: bad or missing 'human' box"),  # a number as a string
        (item(human="[1, true, 30, 40]"), "item 0: bad or missing 'human' box"),  # a boolean
        (item(human="[1, null, 30, 40]"), "item 0: bad or missing 'human' box"),  # null
        (item(human='"1, 2, 30, 40"'), "item 0: bad or missing 'human' box"),  # a string box
        (item(human="[30, 2, 1, 40]"), "item 0: bad or missing 'human' box"),  # x1 > x2
        (item(obj="[5, 80, 70, 6]"), "item 0: bad or missing 'object' box"),  # y1 > y2
        (item(obj="[5, 6, 5, 80]"), "item 0: bad or missing 'object' box"),  # x1 == x2: no width
        (item(human="[NaN, 2, 30, 40]"), "item 0: bad or missing 'human' box"),  # NaN
        (item(human="[1, 2, Infinity, 40]"), "item 0: bad or missing 'human' box"),  # Infinity
        (item(human="[-Infinity, 2, 30, 40]"), "item 0: bad or missing 'human' box"),  # -Infinity
        (item(human="[1, 2, 1e999, 40]"), "item 0: bad or missing 'human' box"),  # overflows to infinity
        (item(obj=f"[5, 6, 70, {MAX_COORD * 2:.0f}]"), "item 0: bad or missing 'object' box"),  # past MAX_COORD
        (item(name='"unicorn"'), "item 0: unknown object 'unicorn'"),  # not a HICO-DET object
        (item(name="41"), "item 0: bad or missing 'object class'"),  # an id, not a name
        (item(verbs="36"), "item 0: bad or missing 'verb class'"),  # an id, not a name
        (item(verbs="[]"), "item 0: no valid verb"),  # no verb at all
        (item(verbs='""'), "item 0: no valid verb"),  # an empty verb string
    ],
)
def test_invalid_items(answer: str, error: str) -> None:
    parsed = parse_answer(f"<answer>[{answer.strip('[]')}]</answer>" if answer[0] == "{" else answer)
    assert (parsed.pairs, parsed.num_items, parsed.num_invalid, parsed.errors) == ((), 1, 1, (error,))


@pytest.mark.parametrize(
    ("verbs", "verb_ids", "errors"),
    [
        # all valid, one duplicate
        ('["hold", "sip", "hold"]', (HOLD, SIP), ()),
        # an unknown verb is dropped and reported
        ('["hold", "juggle"]', (HOLD,), ("item 0: unknown verb 'juggle'",)),
        # a verb that is not valid with the object is dropped and reported
        ('["fly", "hold"]', (HOLD,), ("item 0: 'fly' is not a verb of 'cup'",)),
        # a verb that is not a string is dropped and reported
        ('[36, "hold"]', (HOLD,), ("item 0: a verb is not a string (int)",)),
        # blank verbs are skipped silently
        ('"hold, , "', (HOLD,), ()),
        # only invalid verbs: the item itself is dropped
        (
            '"ride, fly"',
            (),
            ("item 0: 'ride' is not a verb of 'cup'", "item 0: 'fly' is not a verb of 'cup'", "item 0: no valid verb"),
        ),
    ],
)
def test_verb_validation(verbs: str, verb_ids: tuple[int, ...], errors: tuple[str, ...]) -> None:
    parsed = parse_answer(f"[{item(verbs=verbs)}]")
    assert tuple(pair.verb_ids for pair in parsed.pairs) == ((verb_ids,) if verb_ids else ())
    assert parsed.errors == errors


def test_invalid_items_do_not_hide_valid_ones() -> None:
    parsed = parse_answer(f"[{CUP_ITEM}, {item(name='{0}unicorn{0}'.format(chr(34)))}, 7, {BIKE_ITEM}]")
    assert parsed.pairs == (CUP_PAIR, BIKE_PAIR)
    assert (parsed.num_items, parsed.num_invalid) == (4, 2)
    assert parsed.errors == ("item 1: unknown object 'unicorn'", "item 2: not an object")


# ---------------------------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("text", "prefilled", "has_think", "has_answer_tags", "tags_ok"),
    [
        ("<think>a</think><answer>[]</answer>", False, True, True, True),  # the strict form
        (" <think>a</think>\n<answer>[]</answer>\n", False, True, True, True),  # white space around blocks
        ("a</think><answer>[]</answer>", False, False, True, False),  # no <think>, not prefilled
        ("a</think><answer>[]</answer>", True, True, True, True),  # the template opened the block
        ("<think>a</think><answer>[]</answer>", True, True, True, False),  # a second <think> when prefilled
        ("<answer>[]</answer>", False, False, True, False),  # no think block
        ("<answer>[]</answer>", True, False, True, False),  # prefilled but never closed
        ("<think>a</think>so<answer>[]</answer>", False, True, True, False),  # text between the blocks
        ("<think>a</think><answer>[]</answer>ok", False, True, True, False),  # text after </answer>
        ("x<think>a</think><answer>[]</answer>", False, True, True, False),  # text before <think>
        ("<think>a</think><answer>[]", False, True, False, False),  # no </answer>
        ("<think>a</think>[]</answer>", False, True, False, False),  # no <answer>
        ("<think>a<answer>[]</answer></think>", False, False, True, False),  # answer inside the think block
        ("<answer>[]</answer><think>a</think>", False, False, True, False),  # blocks in the wrong order
        ("<think>a</think><think>b</think><answer>[]</answer>", False, True, True, False),  # two think blocks
        ("<think>a</think><answer>[]</answer><answer>[]</answer>", False, True, True, False),  # two answers
        ("<think>say <answer></think><answer>[]</answer>", False, True, True, False),  # a tag in the thinking
        ("", False, False, False, False),  # nothing
    ],
)
def test_tags(text: str, prefilled: bool, has_think: bool, has_answer_tags: bool, tags_ok: bool) -> None:
    parsed = parse_answer(text, prefilled_think=prefilled)
    assert (parsed.has_think, parsed.has_answer_tags, parsed.tags_ok) == (has_think, has_answer_tags, tags_ok)


def test_answer_after_the_think_block_is_read() -> None:
    # the thinking quotes an answer block; the one after </think> counts
    parsed = parse_answer(f"<think>like <answer>[{BIKE_ITEM}]</answer></think><answer>[{CUP_ITEM}]</answer>")
    assert parsed.pairs == (CUP_PAIR,)


# ----------------------------------------------------------------------------------------- truncation

THREE = f"[{CUP_ITEM}, {BIKE_ITEM}, {CUP_ITEM}]"


@pytest.mark.parametrize(
    ("text", "kept", "truncated"),
    [
        (THREE, 3, False),  # complete
        (THREE[:-1], 3, True),  # only the closing bracket is missing
        (THREE[: THREE.index(BIKE_ITEM) + len(BIKE_ITEM)], 2, True),  # cut right after item 2
        (THREE[: THREE.index(BIKE_ITEM) + len(BIKE_ITEM) + 1], 2, True),  # cut after the comma that follows
        (THREE[: THREE.rindex('"human"') + 14], 2, True),  # cut inside item 3's human box
        (THREE[: THREE.rindex('"cup"') + 3], 2, True),  # cut inside a string of item 3
        (THREE[: THREE.rindex("}") - 1], 2, True),  # cut just before item 3 closes
        (THREE[:40], 0, True),  # cut inside item 1
        ("[", 0, True),  # cut right after the bracket
        (THREE[:-1].replace('"', "'"), 3, True),  # single quotes, cut off
        (THREE.replace("[1, 2, 30, 40]", "[1, 2, NaN, 40]", 1)[:-40], 2, True),  # token-parser path
        ("[" + CUP_ITEM + ", {'human': [1, 2, 30, 40], 'object class': tr", 1, True),  # cut inside a literal
    ],
)
def test_truncation_keeps_the_complete_leading_items(text: str, kept: int, truncated: bool) -> None:
    parsed = parse_answer(f"<think>x</think><answer>{text}")
    assert (parsed.num_items, parsed.truncated, parsed.has_answer_tags, parsed.json_ok) == (
        kept,
        truncated,
        False,
        not truncated,
    )


# A coordinate that json writes in exponent form (2 ** -14), as in the property test's counterexample.
TINY = HOIPair((6.103515625e-05, 0, 1, 1), (0, 0, 1, 1), CUP, (HOLD,))


@pytest.mark.parametrize(
    "cut",
    [
        render_answer([TINY]).split("e-05")[0] + "e",  # the counterexample: cut inside the exponent
        render_answer([TINY]).split("e-05")[0] + "e-",  # after the exponent's sign
        render_answer([TINY]).split("e-05")[0] + "e-0",  # inside the exponent's digits
        f"[{CUP_ITEM[:-1]}, " + '"x": 1e+',  # a plus sign
        '[{"human": [1E-',  # a capital E
        '[{"human": [1e   ',  # white space after the cut
        '[{"human": [-',  # a sign before any digit
        '[{"human": [+',  # a plus sign before any digit
        '[{"human": [-.',  # a sign and a point
        '[{"human": [.',  # a point before any digit
        '[{"human": [1.',  # a point after the digits
    ],
)
def test_cut_inside_a_number_is_truncation(cut: str) -> None:
    for text in (cut, cut.replace('"', "'")):  # the repair path with double and with single quotes
        parsed = parse_answer("<answer>" + text)
        assert (parsed.num_items, parsed.truncated, parsed.errors) == (0, True, ()), text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[{"human": [1e5e', "answer is not JSON near character 15"),  # a second exponent is no cut number
        ('[{"human": [1 e', "answer is not JSON near character 13"),  # an exponent apart from its number
        ('[{"human": [1e+ 5]', "answer is not JSON near character 13"),  # the text goes on after the sign
    ],
)
def test_broken_number_is_not_truncation(text: str, error: str) -> None:
    parsed = parse_answer(text)
    assert (parsed.num_items, parsed.truncated, parsed.errors) == (0, False, (error,))


# ------------------------------------------------------------------------------------------ comments

CUP_SIP = HOIPair((1, 2, 30, 40), (5, 6, 70, 80), CUP, (HOLD, SIP))
VERBS_WITH_COMMENTS = '[\n  "hold", // grip\n  "sip" # and drink\n]'


@pytest.mark.parametrize(
    ("text", "pairs", "truncated"),
    [
        # a // comment line after the only item
        (f"<answer>[\n  {CUP_ITEM}\n  // person 1\n]</answer>", (CUP_PAIR,), False),
        # a # comment line before it
        (f"<answer>[\n  # one person\n  {CUP_ITEM}\n]</answer>", (CUP_PAIR,), False),
        # comments after an item's comma and after the last item
        (f"[\n  {CUP_ITEM}, // person 1\n  {BIKE_ITEM} // person 2\n]", (CUP_PAIR, BIKE_PAIR), False),
        # comments inside a list of verbs written across lines
        (f"[{item(verbs=VERBS_WITH_COMMENTS)}]", (CUP_SIP,), False),
        # a // and a # inside a string are left alone; the comment after the item is removed
        (f'[{{"note": "see http://a.b/#c", {CUP_ITEM[1:]} // one\n]', (CUP_PAIR,), False),
        # a comment holding an apostrophe, brackets and a quote: no string starts in it
        (f"[{CUP_ITEM}, // person's [cup] {{ \"\n{BIKE_ITEM}]", (CUP_PAIR, BIKE_PAIR), False),
        # single quotes, a # in a string, a missing comma and a comment where it would be (the token parser)
        (
            """[{'note': 'it\\'s #1', 'human': [1, 2, 30, 40], 'object': [5, 6, 70, 80], 'object class': 'cup' # the cup
            'verb class': 'hold'}]""",
            (CUP_PAIR,),
            False,
        ),
        # a comment after the list
        (f"<answer>[{CUP_ITEM}] // done</answer>", (CUP_PAIR,), False),
        # a list holding only a comment: an empty answer
        ("<answer>[\n// nobody here\n]</answer>", (), False),
        # cut off on the line after a comment: the complete leading items
        (f'<answer>[{CUP_ITEM}, // person 2\n{{"human": [1,', (CUP_PAIR,), True),
        # cut off inside a comment
        (f"<answer>[{CUP_ITEM}, // person 2 holds a", (CUP_PAIR,), True),
        # cut off inside a string: the // after its open quote is part of it, not a comment
        (f'<answer>[{CUP_ITEM}, {{"object class": "a // b", "verb class": "x', (CUP_PAIR,), True),
    ],
)
def test_line_comments_are_read_past(text: str, pairs: tuple[HOIPair, ...], truncated: bool) -> None:
    parsed = parse_answer(text)
    assert parsed.pairs == pairs
    assert (parsed.json_ok, parsed.truncated, parsed.num_items, parsed.num_invalid, parsed.errors) == (
        False,
        truncated,
        len(pairs),
        0,
        (),
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # a # inside a name is part of the name
        ("[" + item(name='"#1"') + ", # one\n]", "item 0: unknown object '#1'"),
        # only a comment, no list: nothing was answered
        ("<answer>// nobody here</answer>", "no JSON list in the answer"),
        # positions in messages count the comment (blanked, not removed): 9 characters before the item
        ("[ // note\n{'human' 1}]", "answer is not JSON near character 20"),
    ],
)
def test_comments_keep_what_is_wrong(text: str, error: str) -> None:
    parsed = parse_answer(text)
    assert (parsed.pairs, parsed.json_ok, parsed.errors) == ((), False, (error,))


# ---------------------------------------------------------------------------------------------- caps


def test_item_cap() -> None:
    parsed = parse_answer("[" + ", ".join([CUP_ITEM] * (MAX_ITEMS + 5)) + "]")
    assert (len(parsed.pairs), parsed.num_items, parsed.num_invalid, parsed.overflow) == (MAX_ITEMS, MAX_ITEMS, 0, True)
    assert parsed.errors == (f"more than {MAX_ITEMS} items; the rest are ignored",)


@pytest.mark.parametrize(
    ("count", "max_items", "read", "overflow"),
    [
        (3, 2, 2, True),  # one item over the cap
        (3, 3, 3, False),  # exactly at the cap
        (150, 200, 150, False),  # a cap above the default reads past MAX_ITEMS
    ],
)
def test_item_cap_is_a_parameter(count: int, max_items: int, read: int, overflow: bool) -> None:
    for quote in ('"', "'"):  # the strict path and the repair path
        parsed = parse_answer("[" + ", ".join([CUP_ITEM.replace('"', quote)] * count) + "]", max_items=max_items)
        assert (parsed.num_items, len(parsed.pairs), parsed.overflow) == (read, read, overflow)


def test_item_cap_on_the_repair_path() -> None:
    parsed = parse_answer("[" + ", ".join([CUP_ITEM.replace('"', "'")] * (MAX_ITEMS + 5)) + ", {'hu")
    assert (len(parsed.pairs), parsed.num_items) == (MAX_ITEMS, MAX_ITEMS)
    assert parsed.errors == (f"more than {MAX_ITEMS} items; the rest are ignored",)


def test_item_cap_message_survives_the_error_cap() -> None:
    # over the text cap, repaired, over the item cap, every item invalid: the first item messages make way
    # (reading stops at the item cap, before the unclosed string: not reported as truncated)
    text = "[" + ", ".join(["'x'"] * (MAX_ITEMS + 50)) + ", 'y" + " " * MAX_TEXT_CHARS
    parsed = parse_answer(text)
    assert (parsed.num_items, parsed.num_invalid, parsed.truncated) == (MAX_ITEMS, MAX_ITEMS, False)
    assert parsed.errors[:2] == (
        f"response longer than {MAX_TEXT_CHARS} characters; the rest is ignored",
        f"more than {MAX_ITEMS} items; the rest are ignored",
    )
    assert parsed.errors[2:] == tuple(f"item {i}: not an object" for i in range(MAX_ERRORS - 2))


def test_text_cap() -> None:
    parsed = parse_answer(f"[{CUP_ITEM}]" + " " * MAX_TEXT_CHARS + "tail")
    assert parsed.pairs == (CUP_PAIR,)
    assert parsed.errors == (f"response longer than {MAX_TEXT_CHARS} characters; the rest is ignored",)


def test_error_cap() -> None:
    parsed = parse_answer("[" + ", ".join(["1"] * 30) + "]")
    assert (parsed.num_items, parsed.num_invalid) == (30, 30)
    assert parsed.errors == tuple(f"item {i}: not an object" for i in range(MAX_ERRORS))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "response is a NoneType, not text"),  # not text at all
        (b"[]", "response is a bytes, not text"),  # bytes are not decoded
        ("", "no JSON list in the answer"),  # empty
        ("<think>hmm</think><answer>none</answer>", "no JSON list in the answer"),  # words only
        ("[{'human' 1}]", "answer is not JSON near character 11"),  # not repairable
    ],
)
def test_no_answer(text: object, error: str) -> None:
    parsed = parse_answer(text)  # type: ignore[arg-type]
    assert (parsed.pairs, parsed.num_items, parsed.json_ok, parsed.errors) == ((), 0, False, (error,))


# ------------------------------------------------------------------------------------ hostile input

_RNG = random.Random(0)
HOSTILE = {
    "1 MB of random characters": "".join(_RNG.choice("[]{},:'\"\\0123456789.eE-abc \n") for _ in range(1_000_000)),
    "1 MB of random printable text": "".join(chr(_RNG.randrange(32, 127)) for _ in range(1_000_000)),
    "200,000 nested lists": "[" * 200_000,
    "200,000 nested lists, closed": "[" * 100_000 + "]" * 100_000,
    "200,000 nested objects": "{" * 200_000,
    "100,000 nested keys": '{"a":' * 100_000,
    "nesting inside an item": "<answer>[" + item(human="[" * 100_000) + "]</answer>",
    "an unterminated string": "['" + "a" * 999_000,
    "a megabyte of white space": "[" + " " * 1_000_000,
    "a megabyte of commas": "[" + "," * 1_000_000,
    "a megabyte of backslashes": '["' + "\\" * 1_000_000,
    "a huge integer": "[" + "9" * 1_000_000 + "]",
    "half a million numbers": "[" + "1," * 500_000,
    "many tags": "<think></think><answer>" * 50_000,
    "NaN, Infinity and 1e999 everywhere": "[" + ", ".join([item("[NaN, Infinity, 1e999, -Infinity]")] * 2000),
    "wrong types everywhere": '[{"human": {}, "object": "x", "object class": [], "verb class": {}}, null, true, "s"]',
    "a lone surrogate": f"[{CUP_ITEM}, \ud800]",
    "1,000 nested lists as a verb (strict JSON)": f"[{item(verbs='[' + '[' * 1000 + ']' * 1000 + ']')}]",
    "1,000 nested lists as a box (strict JSON)": f"[{item(human='[' * 1000 + ']' * 1000)}]",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_completes(name: str) -> None:
    parsed = parse_answer(HOSTILE[name])
    assert isinstance(parsed, ParsedAnswer)
    assert parsed.num_items <= MAX_ITEMS and len(parsed.errors) <= MAX_ERRORS


# ---------------------------------------------------------------------------------------- properties


def check_invariants(parsed: ParsedAnswer) -> None:
    assert isinstance(parsed, ParsedAnswer)
    assert parsed.num_invalid == parsed.num_items - len(parsed.pairs) >= 0
    assert parsed.num_items <= MAX_ITEMS and len(parsed.errors) <= MAX_ERRORS
    assert not parsed.tags_ok or (parsed.has_think and parsed.has_answer_tags)
    for pair in parsed.pairs:
        for x1, y1, x2, y2 in (pair.human, pair.object):
            assert -MAX_COORD <= x1 < x2 <= MAX_COORD and -MAX_COORD <= y1 < y2 <= MAX_COORD
        assert pair.verb_ids == tuple(sorted(set(pair.verb_ids))) and pair.verb_ids
        assert set(pair.verb_ids) <= set(valid_verbs(pair.object_id))


@given(st.text(), st.booleans())
def test_arbitrary_text_never_raises(text: str, prefilled: bool) -> None:
    check_invariants(parse_answer(text, prefilled_think=prefilled))


NAMES = st.sampled_from([*OBJECTS[:5], *VERBS[:5], "Hold", "cup", "sports_ball", "unicorn", "", "a, b"])
SCALARS = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | NAMES
KEYS = st.sampled_from(["human", "object", "object class", "verb class", "other"])
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=30
)


@given(JSONISH, st.sampled_from(["json", "single quotes", "trailing comma"]), st.floats(0, 1), st.booleans())
def test_arbitrary_json_never_raises(value: object, spelling: str, cut: float, tags: bool) -> None:
    text = json.dumps(value)
    if spelling == "single quotes":
        text = text.replace('"', "'")
    elif spelling == "trailing comma":
        text = text.replace("]", ",]").replace("}", ",}")
    text = text[: round(len(text) * cut)] if cut < 0.5 else text
    check_invariants(parse_answer(render_response(text, "t") if tags else text))


COORD = st.integers(-50, 5000) | st.floats(-50, 5000, allow_nan=False, allow_infinity=False)
BOX = st.tuples(COORD, COORD, st.integers(1, 500), st.integers(1, 500)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])
)
PAIR = st.tuples(BOX, BOX, st.integers(0, len(OBJECTS) - 1), st.integers(1, 2**32 - 1))


def valid_pairs(draws: list) -> list[HOIPair]:
    """Pairs with distinct (human, object, object) keys; the bits of a mask pick the verbs."""
    pairs: dict[tuple, HOIPair] = {}
    for human, obj, object_index, mask in draws:
        options = valid_verbs(object_index)
        verbs = tuple(v for i, v in enumerate(options) if mask >> i & 1) or options[:1]
        pairs.setdefault((human, obj, object_index), HOIPair(human, obj, object_index, verbs))
    return list(pairs.values())


PAIRS = st.lists(PAIR, max_size=20).map(valid_pairs)


@given(PAIRS, st.booleans())
def test_render_then_parse_is_the_identity(pairs: list[HOIPair], thinking: bool) -> None:
    parsed = parse_answer(render_response(render_answer(pairs), "why" if thinking else None))
    assert parsed.pairs == tuple(pairs)
    assert (parsed.json_ok, parsed.truncated, parsed.num_invalid, parsed.errors) == (True, False, 0, ())
    assert (parsed.has_think, parsed.tags_ok, parsed.has_answer_tags) == (thinking, thinking, True)


@settings(max_examples=50, deadline=None)
@given(PAIRS, st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=30))
def test_prefilled_think_round_trip(pairs: list[HOIPair], thinking: str) -> None:
    # the chat template wrote "<think>": the response starts inside the think block
    response = render_response(render_answer(pairs), thinking).removeprefix("<think>")
    parsed = parse_answer(response, prefilled_think=True)
    assert (parsed.pairs, parsed.has_think, parsed.tags_ok, parsed.json_ok) == (tuple(pairs), True, True, True)
    assert not parse_answer(response).has_think


@given(PAIRS, st.floats(0, 1), st.booleans())
def test_cut_off_answer_keeps_exactly_the_complete_items(pairs: list[HOIPair], where: float, quotes: bool) -> None:
    answer = render_answer(pairs)
    if quotes:
        answer = answer.replace('"', "'")
    cut = max(1, min(len(answer) - 1, round(len(answer) * where)))
    parsed = parse_answer("<answer>" + answer[:cut])
    assert parsed.pairs == tuple(pairs[: answer[:cut].count("}")])
    assert parsed.truncated


COMMENT = st.tuples(st.sampled_from(["//", "#"]), st.text(st.characters(blacklist_characters="\n<>"), max_size=20))


@given(PAIRS, st.lists(COMMENT, min_size=1, max_size=5), st.booleans())
def test_comment_lines_between_items_change_no_pair(pairs: list[HOIPair], comments: list, quotes: bool) -> None:
    # the rendered answer with a comment line before every item (after "[" or a comma) and before "]"
    items = [render_answer([pair])[1:-1] for pair in pairs]
    if quotes:
        items = [text.replace('"', "'") for text in items]
    lines = itertools.cycle(f"\n{marker}{body}\n" for marker, body in comments)
    answer = "[" + ",".join(f"{next(lines)}{text}" for text in items) + f"{next(lines)}]"
    parsed = parse_answer(render_response(answer, "t"))
    assert parsed.pairs == tuple(pairs)
    assert (parsed.json_ok, parsed.truncated, parsed.num_invalid, parsed.errors) == (False, False, 0, ())
