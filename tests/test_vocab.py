import pytest

from verl_hoi import vocab


def test_sizes_match_hico_det():
    assert (len(vocab.OBJECTS), len(vocab.VERBS), vocab.NUM_HOI, len(vocab.RARE_HOI)) == (80, 117, 600, 138)


def test_names_use_spaces():
    assert "hair drier" in vocab.OBJECTS and "dining table" in vocab.OBJECTS
    assert "hop on" in vocab.VERBS and vocab.VERBS[vocab.NO_INTERACTION] == "no interaction"
    assert not any("_" in name for name in vocab.OBJECTS + vocab.VERBS)


@pytest.mark.parametrize(
    ("verb", "obj", "expected"),
    [
        ("board", "airplane", 0),  # official HOI 1
        ("no_interaction", "airplane", 9),  # official HOI 10
        ("Ride", "bicycle", 18),  # official HOI 19 (objects are alphabetical in the official order)
        ("no interaction", "zebra", 599),  # official HOI 600
        ("ride", "dining table", None),  # not a HICO-DET class
        ("fly", "unicorn", None),  # unknown object
    ],
)
def test_hoi_lookup_both_ways(verb, obj, expected):
    h = vocab.hoi_id(vocab.verb_id(verb), vocab.object_id(obj))
    assert h == expected
    if expected is not None:
        assert vocab.hoi_name(h) == f"{vocab.normalize_name(verb)} {vocab.normalize_name(obj)}"


def test_every_object_has_no_interaction():
    for obj in range(len(vocab.OBJECTS)):
        assert vocab.NO_INTERACTION in vocab.valid_verbs(obj)
    assert sum(len(vocab.valid_verbs(o)) for o in range(80)) == 600


def test_rare_set():
    assert vocab.hoi_name(8) == "wash airplane" and 8 in vocab.RARE_HOI
    assert vocab.hoi_name(0) == "board airplane" and 0 not in vocab.RARE_HOI
