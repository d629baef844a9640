import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_hoi.hicodet import GroundTruthPair, ImageAnnotation, load_annotations

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


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.json", "{not json", "cannot read annotation JSON"),  # syntax error
        ("a.json", "[]", "expected a JSON object"),  # wrong top-level type
        ("a.json", '{"filenames": []}', "missing key"),  # not the instances layout
        ("a.json", '{"filenames": ["x.jpg"], "size": [], "annotation": []}', "differ in length"),
        (  # HOI class beyond 599
            "a.json",
            '{"filenames": ["x.jpg"], "size": [[4, 4]], "annotation": [{"boxes_h": [[1,1,2,2]],'
            ' "boxes_o": [[1,1,2,2]], "hoi": [600]}]}',
            "out of range",
        ),
        (  # a three-number box
            "a.json",
            '{"filenames": ["x.jpg"], "size": [[4, 4]], "annotation": [{"boxes_h": [[1,1,2]],'
            ' "boxes_o": [[1,1,2,2]], "hoi": [0]}]}',
            "expected a finite",
        ),
        (  # a train image in a file read as the test split
            "a.json",
            '{"filenames": ["HICO_train2015_00000001.jpg"], "size": [[4, 4]], "annotation": [{"boxes_h": [],'
            ' "boxes_o": [], "hoi": []}]}',
            "belongs to the train split",
        ),
        ("a.mat", "not a mat file", "cannot read MATLAB file"),  # garbage .mat
        ("a.txt", "", "unsupported annotation file"),  # unknown suffix
    ],
)
def test_unreadable_files_raise_value_error_with_path(tmp_path, name, content, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_split(tmp_path, sample_annotations):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_annotations(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="valid splits: train, test"):
        load_annotations(sample_annotations, "val")


def test_mat_connection_out_of_range(tmp_path, instances):
    one = {key: [instances[key][5]] for key in ("filenames", "size", "annotation")}
    mat = tmp_path / "bad.mat"
    write_anno_bbox_mat(mat, one, "test")
    content = scipy.io.loadmat(mat)
    content["bbox_test"][0, 0]["hoi"][0, 0]["connection"][...] = [[1, 2]]
    scipy.io.savemat(mat, {"bbox_test": content["bbox_test"]})
    with pytest.raises(ValueError, match=r"connection \[1, 2\] out of range"):
        load_annotations(mat)


_coord = st.integers(1, 640).map(float)
_box_strategy = st.tuples(_coord, _coord, _coord, _coord)
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
