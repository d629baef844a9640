import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_hoi.hicodet import GroundTruthPair, ImageAnnotation, known_objects_from_anno_mat, load_annotations
from verl_hoi.vocab import HOI_CLASSES, NUM_HOI

# ---------------------------------------------------------------------------------------------
# A writer for the official anno_bbox.mat layout, from instances_*2015.json data.

_BOX_FIELDS = ("x1", "x2", "y1", "y2")  # the order anno_bbox.mat stores them in


def _struct_array(records: list[dict], fields: tuple[str, ...]) -> np.ndarray:
    """A 1xN MATLAB struct array (savemat writes structured object arrays as structs)."""
    array = np.empty((1, len(records)), dtype=[(name, object) for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            array[0, i][name] = record[name]
    return array


def _boxes(boxes: list[list[float]]) -> np.ndarray:
    return _struct_array(
        [{"x1": x1, "y1": y1, "x2": x2, "y2": y2} for x1, y1, x2, y2 in boxes],
        _BOX_FIELDS,
    )


def _hoi_entries(entry: dict) -> list[dict]:
    """Consecutive pairs of one HOI class become one ``hoi`` entry with de-duplicated boxes."""
    entries: list[dict] = []
    for h, o, hoi in zip(entry["boxes_h"], entry["boxes_o"], entry["hoi"], strict=True):
        if not entries or entries[-1]["id"] != hoi + 1:
            entries.append({"id": hoi + 1, "humans": [], "objects": [], "rows": []})
        current = entries[-1]
        for boxes, box in ((current["humans"], h), (current["objects"], o)):
            if box not in boxes:
                boxes.append(box)
        current["rows"].append([current["humans"].index(h) + 1, current["objects"].index(o) + 1])
    return [
        {
            "id": float(e["id"]),
            "bboxhuman": _boxes(e["humans"]),
            "bboxobject": _boxes(e["objects"]),
            "connection": np.array(e["rows"], dtype=np.float64),
            "invis": 0.0,
        }
        for e in entries
    ]


_INVISIBLE = {"id": 10.0, "bboxhuman": np.zeros((0, 0)), "bboxobject": np.zeros((0, 0)), "connection": np.zeros((0, 0))}
_HOI_FIELDS = ("id", "bboxhuman", "bboxobject", "connection", "invis")


def write_anno_bbox_mat(path: Path, instances: dict, split: str, invisible: frozenset[int] = frozenset()) -> None:
    """Write ``instances`` as ``bbox_<split>``; images in ``invisible`` get an extra invis=1 entry first."""
    images = []
    columns = zip(instances["filenames"], instances["size"], instances["annotation"], strict=True)
    for index, (name, (w, h), entry) in enumerate(columns):
        hois = _hoi_entries(entry)
        if index in invisible:
            hois.insert(0, {**_INVISIBLE, "invis": 1.0})
        size = _struct_array([{"width": float(w), "height": float(h), "depth": 3.0}], ("width", "height", "depth"))
        images.append({"filename": name, "size": size, "hoi": _struct_array(hois, _HOI_FIELDS)})
    bbox = _struct_array(images, ("filename", "size", "hoi"))
    scipy.io.savemat(path, {f"bbox_{split}": bbox, "list_action": np.zeros((0, 0))})


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def instances(sample_annotations: Path) -> dict:
    return json.loads(sample_annotations.read_text())


def test_sample_json_records(sample_annotations):
    records = load_annotations(sample_annotations)
    assert [r.file_name for r in records] == [f"HICO_test2015_{i:08d}.jpg" for i in (1, 2, 3, 4, 8, 19, 116, 154)]
    assert [len(r.pairs) for r in records] == [2, 3, 1, 6, 2, 1, 4, 0]
    # image 116 is the only portrait one
    assert (records[6].width, records[6].height) == (465, 640)
    # first pair of the sample, as in the file: hoi 245 = "sit on bench"
    assert records[0].pairs[0] == GroundTruthPair((320.0, 306.0, 359.0, 349.0), (148.0, 345.0, 376.0, 414.0), 245)
    # the two identical-looking pairs of image 8 stay separate (never merged)
    assert records[4].pairs[0].human == records[4].pairs[1].human


def test_mat_and_json_give_identical_records(tmp_path, sample_annotations, instances):
    mat = tmp_path / "anno_bbox.mat"
    write_anno_bbox_mat(mat, instances, "test", invisible=frozenset({2, 7}))
    assert load_annotations(mat, "test") == load_annotations(sample_annotations, "test")


def test_mat_box_fields_are_read_by_name(tmp_path, instances):
    # image 19 alone: a single image, a single hoi entry, a single connection row and single
    # boxes, all collapsed to scalars by loadmat(squeeze_me=True)
    one = {key: [instances[key][5]] for key in ("filenames", "size", "annotation")}
    mat = tmp_path / "one.mat"
    write_anno_bbox_mat(mat, one, "test")
    assert load_annotations(mat) == [
        ImageAnnotation(
            "HICO_test2015_00000019.jpg",
            640,
            425,
            (GroundTruthPair((50.0, 257.0, 131.0, 420.0), (177.0, 18.0, 605.0, 361.0), 62),),
        )
    ]


def test_mat_connections_index_shared_boxes(tmp_path, instances):
    # image 1: two humans sit on one bench -> one hoi entry, 2 human boxes, 1 object box,
    # connection [[1, 1], [2, 1]]
    one = {key: [instances[key][0]] for key in ("filenames", "size", "annotation")}
    mat = tmp_path / "one.mat"
    write_anno_bbox_mat(mat, one, "test")
    hoi = scipy.io.loadmat(mat, squeeze_me=True, struct_as_record=False)["bbox_test"].hoi
    assert (len(hoi.bboxhuman), np.asarray(hoi.connection).tolist()) == (2, [[1.0, 1.0], [2.0, 1.0]])
    (record,) = load_annotations(mat)
    assert [p.human for p in record.pairs] == [(320.0, 306.0, 359.0, 349.0), (270.0, 303.0, 311.0, 350.0)]
    assert {p.object for p in record.pairs} == {(148.0, 345.0, 376.0, 414.0)}


def test_invisible_only_image_has_no_pairs(tmp_path, instances):
    empty = {key: [instances[key][7]] for key in ("filenames", "size", "annotation")}
    mat = tmp_path / "invis.mat"
    write_anno_bbox_mat(mat, empty, "test", invisible=frozenset({0}))
    assert load_annotations(mat) == [ImageAnnotation("HICO_test2015_00000154.jpg", 640, 480, ())]


def test_train_split_of_mat(tmp_path, instances):
    renamed = {**instances, "filenames": [n.replace("test", "train") for n in instances["filenames"]]}
    mat = tmp_path / "anno_bbox.mat"
    write_anno_bbox_mat(mat, renamed, "train")
    records = load_annotations(mat, "train")
    assert records[0].file_name == "HICO_train2015_00000001.jpg" and len(records) == 8
    with pytest.raises(ValueError, match="no variable 'bbox_test'"):
        load_annotations(mat, "test")


def _set(doc: Any, path: tuple, value: Any) -> None:
    """``doc[path[0]][path[1]]... = value``."""
    *parents, last = path
    for key in parents:
        doc = doc[key]
    doc[last] = value


IMAGE_0 = "image 0 ('HICO_test2015_00000001.jpg')"
BIG = 10**400  # a JSON integer beyond any float


# Each row edits the sample (image 0: 640x427, two "sit on bench" pairs, hoi 245 = verb 87 on
# object 13) and gives the exact message after "<path>: ".
@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # the layout
        (("filenames",), {}, "'filenames', 'size' and 'annotation' must be lists"),
        (("size",), [[640, 427]], "'filenames', 'size' and 'annotation' differ in length (8, 1, 8)"),
        # file names
        (("filenames", 0), 7, "image 0: file name is not a string: 7"),
        (("filenames", 0), "", "image 0: file name '' is not a plain file name"),
        (
            ("filenames", 0),
            "../HICO_test2015_00000001.jpg",
            "image 0: file name '../HICO_test2015_00000001.jpg' is not a plain file name",
        ),  # fmt: skip
        (
            ("filenames", 3),
            "HICO_test2015_00000002.jpg",
            "image 3 ('HICO_test2015_00000002.jpg'): file name already listed as image 1",
        ),  # fmt: skip
        (
            ("filenames", 0),
            "HICO_train2015_00000001.jpg",
            "image 0 ('HICO_train2015_00000001.jpg'): belongs to the train split, not 'test'",
        ),  # fmt: skip
        # image sizes
        (("size", 0), [640], f"{IMAGE_0}: size must be [width, height], got [640]"),
        (("size", 0), [640, 427, 3], f"{IMAGE_0}: size must be [width, height], got [640, 427, 3]"),
        (("size", 0), "640x427", f"{IMAGE_0}: size must be [width, height], got '640x427'"),
        (("size", 0, 0), "640", f"{IMAGE_0}: width must be an integer, got '640'"),
        (("size", 0, 0), 640.0, f"{IMAGE_0}: width must be an integer, got 640.0"),
        (("size", 0, 1), True, f"{IMAGE_0}: height must be an integer, got True"),
        (("size", 0, 1), None, f"{IMAGE_0}: height must be an integer, got None"),
        (("size", 0, 0), 0, f"{IMAGE_0}: width 0 is out of range 1..1000000"),
        (("size", 0, 0), -640, f"{IMAGE_0}: width -640 is out of range 1..1000000"),
        (("size", 0, 1), 10**7, f"{IMAGE_0}: height 10000000 is out of range 1..1000000"),
        # an image's lists
        (("annotation", 0), [], f"{IMAGE_0}: annotation needs 'boxes_h', 'boxes_o' and 'hoi'"),
        (("annotation", 0, "hoi"), 245, f"{IMAGE_0}: 'hoi' must be a list, got 245"),
        (("annotation", 0, "verb"), "sit on", f"{IMAGE_0}: 'verb' must be a list, got 'sit on'"),
        (
            ("annotation", 0, "boxes_h"),
            [[320, 306, 359, 349]],
            f"{IMAGE_0}: 'boxes_h', 'boxes_o', 'hoi', 'verb', 'object' differ in length (1, 2, 2, 2, 2)",
        ),  # fmt: skip
        # boxes
        (
            ("annotation", 0, "boxes_h", 1),
            "270,303,311,350",
            f"{IMAGE_0}: boxes_h[1] must be a list [x1, y1, x2, y2], got '270,303,311,350'",
        ),  # fmt: skip
        (
            ("annotation", 0, "boxes_o", 0),
            [148, 345, 376],
            f"{IMAGE_0}: boxes_o[0] must be a list [x1, y1, x2, y2], got [148, 345, 376]",
        ),  # fmt: skip
        (
            ("annotation", 0, "boxes_o", 0),
            {"x1": 148},
            f"{IMAGE_0}: boxes_o[0] must be a list [x1, y1, x2, y2], got {{'x1': 148}}",
        ),  # fmt: skip
        (("annotation", 0, "boxes_h", 0, 0), "320", f"{IMAGE_0}: boxes_h[0] x1 is not a number: '320'"),
        (("annotation", 0, "boxes_h", 0, 1), None, f"{IMAGE_0}: boxes_h[0] y1 is not a number: None"),
        (("annotation", 0, "boxes_h", 0, 2), True, f"{IMAGE_0}: boxes_h[0] x2 is not a number: True"),
        (("annotation", 0, "boxes_h", 0, 2), 300, f"{IMAGE_0}: boxes_h[0] [320.0, 306.0, 300, 349.0] has x2 < x1"),
        (
            ("annotation", 0, "boxes_o", 1, 3),
            300.5,
            f"{IMAGE_0}: boxes_o[1] [148.0, 345.0, 376.0, 300.5] has y2 < y1",
        ),  # fmt: skip
        # numbers beyond the ±1e6 bound, written NaN, Infinity, -1e+300 and 1 followed by 400 zeros
        (
            ("annotation", 0, "boxes_h", 0, 0),
            float("nan"),
            f"{IMAGE_0}: boxes_h[0] x1 nan is not a finite number within ±1e+06",
        ),  # fmt: skip
        (
            ("annotation", 0, "boxes_o", 0, 3),
            float("inf"),
            f"{IMAGE_0}: boxes_o[0] y2 inf is not a finite number within ±1e+06",
        ),  # fmt: skip
        (
            ("annotation", 0, "boxes_o", 0, 0),
            -1e300,
            f"{IMAGE_0}: boxes_o[0] x1 -1e+300 is not a finite number within ±1e+06",
        ),  # fmt: skip
        (
            ("annotation", 0, "boxes_h", 0, 2),
            BIG,
            f"{IMAGE_0}: boxes_h[0] x2 1{'0' * 56}... is not a finite number within ±1e+06",
        ),  # fmt: skip
        # classes
        (("annotation", 0, "hoi", 0), 600, f"{IMAGE_0}: hoi[0] 600 is out of range 0..599"),
        (("annotation", 0, "hoi", 1), -1, f"{IMAGE_0}: hoi[1] -1 is out of range 0..599"),
        (("annotation", 0, "hoi", 0), True, f"{IMAGE_0}: hoi[0] must be an integer, got True"),
        (("annotation", 0, "hoi", 0), "245", f"{IMAGE_0}: hoi[0] must be an integer, got '245'"),
        (("annotation", 0, "hoi", 0), 245.0, f"{IMAGE_0}: hoi[0] must be an integer, got 245.0"),
        (("annotation", 0, "hoi", 0), BIG, f"{IMAGE_0}: hoi[0] 1{'0' * 56}... is out of range 0..599"),
        (
            ("annotation", 0, "object", 0),
            14,
            f"{IMAGE_0}: object[0] 14 ('bird') disagrees with hoi[0] 245, whose object is 13 ('bench')",
        ),  # fmt: skip
        (
            ("annotation", 0, "verb", 1),
            86,
            f"{IMAGE_0}: verb[1] 86 ('sit at') disagrees with hoi[1] 245, whose verb is 87 ('sit on')",
        ),  # fmt: skip
        (("annotation", 0, "verb", 0), 117, f"{IMAGE_0}: verb[0] 117 is out of range 0..116"),
        (("annotation", 0, "object", 0), False, f"{IMAGE_0}: object[0] must be an integer, got False"),
        # a later image is named by its own index
        (
            ("annotation", 6, "boxes_o", 3, 0),
            "x",
            "image 6 ('HICO_test2015_00000116.jpg'): boxes_o[3] x1 is not a number: 'x'",
        ),  # fmt: skip
    ],
)
def test_json_values_are_checked(tmp_path, instances, path, value, message):
    _set(instances, path, value)
    file = tmp_path / "instances_test2015.json"
    file.write_text(json.dumps(instances))
    with pytest.raises(ValueError) as info:
        load_annotations(file)
    assert str(info.value) == f"{file}: {message}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "annotation file is empty"),
        (b" \n", "annotation file is empty"),
        (
            b"{not json",
            "cannot read annotation JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),  # fmt: skip
        (
            b"\xff{}",
            "cannot read annotation JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),  # fmt: skip
        (b"[]", "expected a JSON object with keys 'filenames', 'size', 'annotation'"),
        (b'{"filenames": []}', "missing key(s) 'size', 'annotation' (not the instances_*2015.json layout)"),
        (b'{"filenames": [], "size": [], "annotation": []}', "lists no images"),
    ],
)
def test_json_files_that_are_not_annotations(tmp_path, content, message):
    file = tmp_path / "a.json"
    file.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_annotations(file)
    assert str(info.value) == f"{file}: {message}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000, "cannot read annotation JSON: maximum recursion depth exceeded"),  # nested too deeply
        ("[" + "9" * 5000 + "]", "cannot read annotation JSON: Exceeds the limit (4300 digits)"),  # too long an int
    ],
)
def test_json_beyond_the_parser_limits(tmp_path, content, message):
    file = tmp_path / "a.json"
    file.write_text(content)
    with pytest.raises(ValueError) as info:
        load_annotations(file)
    assert str(info.value).startswith(f"{file}: {message}")


def test_json_object_and_verb_lists_are_optional(sample_annotations, tmp_path, instances):
    for entry in instances["annotation"]:
        del entry["object"], entry["verb"]
    file = tmp_path / "a.json"
    file.write_text(json.dumps(instances))
    assert load_annotations(file) == load_annotations(sample_annotations)


def _edit_mat(mat: Path, image: int, path: tuple, value: Any) -> None:
    """Set a field of image ``image`` of ``bbox_test``: ``path`` names struct fields and 0-based struct indices."""
    content = scipy.io.loadmat(mat)
    node = content["bbox_test"][0, image]
    *parents, last = path
    for key in parents:
        node = node[key] if isinstance(key, str) else node[0, key]
    node[last] = value
    scipy.io.savemat(mat, {"bbox_test": content["bbox_test"]})


IMAGE_5 = "bbox_test: image 5 ('HICO_test2015_00000019.jpg')"


# Each row edits image 5 of the sample as anno_bbox.mat (640x425, one hoi entry: id 63, human box
# [50, 257, 131, 420], object box [177, 18, 605, 361], connection [1, 1]); exact message after "<path>: ".
@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("filename",), 5.0, "bbox_test: image 5: file name is not a string: 5.0"),
        (("filename",), "a/b.jpg", "bbox_test: image 5: file name 'a/b.jpg' is not a plain file name"),
        (
            ("filename",),
            "HICO_test2015_00000001.jpg",
            "bbox_test: image 5 ('HICO_test2015_00000001.jpg'): file name already listed as image 0",
        ),  # fmt: skip
        (("size", 0, "width"), 0.0, f"{IMAGE_5}: width 0.0 is out of range 1..1000000"),
        (("size", 0, "width"), 640.5, f"{IMAGE_5}: width must be an integer, got 640.5"),
        (("size", 0, "height"), np.nan, f"{IMAGE_5}: height must be an integer, got nan"),
        (("size", 0, "height"), "425", f"{IMAGE_5}: height must be an integer, got '425'"),
        (("hoi",), 3.0, f"{IMAGE_5}: hoi(1): expected a struct with field 'invis', got 3.0"),
        (("hoi", 0, "invis"), 2.0, f"{IMAGE_5}: hoi(1): invis must be 0 or 1, got 2.0"),
        (("hoi", 0, "id"), 601.0, f"{IMAGE_5}: hoi(1): id 601.0 is out of range 1..600"),
        (("hoi", 0, "id"), 62.5, f"{IMAGE_5}: hoi(1): id must be an integer, got 62.5"),
        (("hoi", 0, "id"), "63", f"{IMAGE_5}: hoi(1): id must be an integer, got '63'"),
        (
            ("hoi", 0, "connection"),
            np.array([[1.0, 2.0]]),
            f"{IMAGE_5}: hoi(1): connection(1,:) object box 2.0 is out of range 1..1",
        ),  # fmt: skip
        (
            ("hoi", 0, "connection"),
            np.array([[1.5, 1.0]]),
            f"{IMAGE_5}: hoi(1): connection(1,:) human box must be an integer, got 1.5",
        ),  # fmt: skip
        (
            ("hoi", 0, "connection"),
            np.array([[1.0, 1.0, 1.0]]),
            f"{IMAGE_5}: hoi(1): connection must have 2 columns, got shape (3,)",
        ),  # fmt: skip
        (("hoi", 0, "connection"), "ab", f"{IMAGE_5}: hoi(1): connection must be numbers, got 'ab'"),
        (
            ("hoi", 0, "bboxhuman", 0, "x2"),
            10.0,
            f"{IMAGE_5}: hoi(1): bboxhuman(1) [50.0, 257.0, 10.0, 420.0] has x2 < x1",
        ),  # fmt: skip
        (
            ("hoi", 0, "bboxobject", 0, "y1"),
            np.inf,
            f"{IMAGE_5}: hoi(1): bboxobject(1) y1 inf is not a finite number within ±1e+06",
        ),  # fmt: skip
        (("hoi", 0, "bboxhuman", 0, "x1"), "a", f"{IMAGE_5}: hoi(1): bboxhuman(1) x1 is not a number: 'a'"),
        (
            ("hoi", 0, "bboxhuman", 0, "x1"),
            np.array([[1.0, 2.0]]),
            f"{IMAGE_5}: hoi(1): bboxhuman(1): field 'x1' should be a single value, got shape (2,)",
        ),  # fmt: skip
    ],
)
def test_mat_values_are_checked(tmp_path, instances, path, value, message):
    mat = tmp_path / "anno_bbox.mat"
    write_anno_bbox_mat(mat, instances, "test")
    _edit_mat(mat, 5, path, value)
    with pytest.raises(ValueError) as info:
        load_annotations(mat)
    assert str(info.value) == f"{mat}: {message}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a mat file", "cannot read MATLAB file: MatReadError: Mat file appears to be truncated"),
        (b"", "cannot read MATLAB file: MatReadError: Mat file appears to be truncated"),
        ({"bbox_train": np.zeros((0, 0))}, "no variable 'bbox_test' (is this HICO-DET's anno_bbox.mat?)"),
        ({"bbox_test": np.zeros((0, 0))}, "bbox_test: lists no images"),
        ({"bbox_test": np.array([1.0, 2.0])}, "bbox_test: image 0: expected a struct with field 'filename', got 1.0"),
    ],
)
def test_mat_files_that_are_not_annotations(tmp_path, content, message):
    mat = tmp_path / "a.mat"
    if isinstance(content, bytes):
        mat.write_bytes(content)
    else:
        scipy.io.savemat(mat, content)
    with pytest.raises(ValueError) as info:
        load_annotations(mat)
    assert str(info.value) == f"{mat}: {message}"


def test_missing_file_bad_split_and_suffix(tmp_path, sample_annotations):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_annotations(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="valid splits: train, test"):
        load_annotations(sample_annotations, "val")
    (tmp_path / "a.txt").write_text("{}")
    with pytest.raises(ValueError) as info:
        load_annotations(tmp_path / "a.txt")
    assert str(info.value) == (
        f"{tmp_path / 'a.txt'}: unsupported annotation file (expected anno_bbox.mat or instances_*2015.json)"
    )


def test_one_pixel_boxes_are_valid(tmp_path, instances):
    # inclusive pixel indices: x1 == x2 is a box one pixel wide
    _set(instances, ("annotation", 0, "boxes_h", 0), [320, 306, 320, 306])
    file = tmp_path / "a.json"
    file.write_text(json.dumps(instances))
    assert load_annotations(file)[0].pairs[0].human == (320.0, 306.0, 320.0, 306.0)


_coord = st.integers(1, 640).map(float)
_box_strategy = st.tuples(_coord, _coord, _coord, _coord).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)
_image_strategy = st.lists(st.tuples(_box_strategy, _box_strategy, st.integers(0, 599)), max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.lists(_image_strategy, min_size=1, max_size=4), invisible=st.sets(st.integers(0, 3)))
def test_mat_and_json_agree_on_random_annotations(tmp_path, images, invisible):
    instances = {
        "filenames": [f"HICO_test2015_{i:08d}.jpg" for i in range(len(images))],
        "size": [[640, 480]] * len(images),
        "annotation": [
            {
                "boxes_h": [list(h) for h, _, _ in pairs],
                "boxes_o": [list(o) for _, o, _ in pairs],
                "hoi": [c for _, _, c in pairs],
            }  # fmt: skip
            for pairs in images
        ],
    }
    (tmp_path / "a.json").write_text(json.dumps(instances))
    write_anno_bbox_mat(tmp_path / "a.mat", instances, "test", invisible=frozenset(invisible))
    from_json = load_annotations(tmp_path / "a.json")
    assert load_annotations(tmp_path / "a.mat") == from_json
    assert [[(p.human, p.object, p.hoi) for p in r.pairs] for r in from_json] == images


# ---------------------------------------------------------------------------------------------
# anno.mat image-level labels (Known-Object setting)


def test_known_objects_from_anno_mat_reads_positive_labels_by_name(tmp_path):
    names = ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg", "HICO_test2015_00000003.jpg"]
    labels = np.zeros((NUM_HOI, len(names)))
    labels[0, 2] = 1  # positive: image 3 shows HOI 0's object
    labels[1, 0] = -1  # negative, and NaN (not labelled), say nothing
    labels[2, 1] = np.nan
    path = tmp_path / "anno.mat"
    scipy.io.savemat(path, {"anno_test": labels, "list_test": np.array(names, dtype=object).reshape(-1, 1)})
    known = known_objects_from_anno_mat(path, names[::-1])  # images matched by name, in the caller's order
    assert known.shape == (3, 80)
    assert np.argwhere(known).tolist() == [[0, HOI_CLASSES[0][1]]]
    with pytest.raises(ValueError, match=r"1 annotated image\(s\) not in list_test, e.g. HICO_test2015_00000009.jpg$"):
        known_objects_from_anno_mat(path, ["HICO_test2015_00000009.jpg"])
    with pytest.raises(ValueError, match="not a HICO anno.mat with anno_train and list_train"):
        known_objects_from_anno_mat(path, names, split="train")
