"""``python -m verl_hoi.report`` on the shipped sample: a self-contained page with the mAP table, the error
breakdown, the charts, the class table, the gallery and validation dumps against the step; the page opened in
a real headless browser (Debian's ``chromium``), its scripts run, and a screenshot. Bad command lines:
test_report_cli_bad_input.py."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_hoi.answer import render_response
from verl_hoi.convert import ConvertOptions, iter_rows, row_schema, select_images, write_parquet
from verl_hoi.hicodet import load_annotations
from verl_hoi.report import main
from verl_hoi.vocab import RARE_HOI

BROWSERS = ("chromium", "chromium-browser")


class Page(HTMLParser):
    """The parts of a report the tests read: image sources, table cells by table id, gallery captions."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.captions: list[str] = []
        self.attributes: dict[str, dict[str, str | None]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "id" in found:
            self.attributes[found["id"]] = found
        if tag == "img":
            self.sources.append(found["src"])
        if tag in ("link", "script") and ("href" in found or "src" in found):
            self.links.append(found.get("href") or found["src"])
        if tag == "table":
            self._table = found.get("id")
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag in ("td", "th") and self._table:
            self._cell = []
        if tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if tag == "figcaption" and self._caption is not None:
            self.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._caption):
            if part is not None:
                part.append(data)


@pytest.fixture(scope="module")
def sample_parquet(tmp_path_factory, sample_annotations, sample_images) -> Path:
    records = load_annotations(sample_annotations)
    path = tmp_path_factory.mktemp("data") / "test.parquet"
    rows = iter_rows(records, select_images(records, "test"), sample_images, ConvertOptions(split="test"))
    write_parquet(rows, path, row_schema("embed"))
    return path


def write_dump(path: Path, parquet: Path, step: int, answered: bool) -> Path:
    """A verl validation dump of every row at ``step``: the ground truth as the answer, or an empty answer."""
    lines = []
    for row in pq.read_table(parquet).to_pylist():
        answer = row["reward_model"]["ground_truth"]
        prompt = row["prompt"][0]["content"].replace("<image>", "")
        output = render_response(answer if answered else "[]", "thinking")
        reward = 1.0 if answered else 0.25
        line = {"input": f"user\n{prompt}\nassistant\n", "output": output, "gts": answer, "score": reward}
        lines.append(
            line | {"step": step, "format": 1.0, "iou": reward - 0.25 * answered, "index": row["extra_info"]["index"]}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory, sample_annotations, sample_images, sample_parquet) -> Path:
    """The sample's example predictions (its ground truth, one verb wrong, 7 images without a line) with the
    images and two dumps (step 3: ground-truth answers; step 0: empty answers)."""
    folder = tmp_path_factory.mktemp("report")
    dumps = [write_dump(folder / f"{step}.jsonl", sample_parquet, step, step > 0) for step in (3, 0)]
    out = folder / "report.html"
    args = [
        "--annotations",
        str(sample_annotations),
        "--predictions",
        str(sample_annotations.parent / "visualize_example.jsonl"),
        "--images",
        str(sample_images),
        "--data",
        str(sample_parquet),
        "--dumps",
        *map(str, dumps),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def page(report) -> Page:
    return Page(report.read_text(encoding="utf-8"))


def test_the_page_needs_no_network(report, page):
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert page.links == []  # no external stylesheet or script
    for source in page.sources:
        kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", source).groups()
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == kind.upper() and image.size[0] > 100


def test_map_and_error_tables(page):
    assert page.tables["map-table"][:3] == [
        ["setting", "", "full", "rare", "non-rare"],
        ["Default", "mAP", "19.70", "0.00", "21.49"],
        ["Default", "mean recall", "19.44", "0.00", "21.21"],
    ]
    rows = {row[0]: row[2:] for row in page.tables["error-table"][1:]}
    assert list(rows) == [
        "duplicate",
        "wrong verb",
        "wrong object",
        "human box",
        "object box",
        "both boxes",
        "class and box",
        "background",
        "missed",
        "all of them",
    ]
    assert rows["wrong verb"] == ["1", "+8.33", "+0.00", "+9.09"]
    assert rows["missed"] == ["16", "+80.30", "+100.00", "+78.51"]
    assert rows["all of them"] == ["", "+80.30", "+100.00", "+78.51"]
    assert rows["duplicate"] == ["0", "+0.00", "+0.00", "+0.00"]


def test_class_data_and_charts(report, page):
    html = report.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="class-data">(.*?)</script>', html, re.S)[1])
    assert len(data) == 600
    read_book = data[250]  # missed, under the wrong-verb detection "carry book"
    assert read_book == {
        "id": 250,
        "verb": "read",
        "object": "book",
        "subset": "non-rare",
        "npos": 1,
        "ap": 0.0,
        "ap_known_object": 0.0,
        "recall": 0.0,
        "false_positives": 0,
        "missed": 1,
    }
    assert data[247]["false_positives"] == 1 and data[247]["npos"] == 0 and data[247]["ap"] is None
    assert page.tables["classes"] == [
        ["hoi", "verb", "object", "subset", "pairs", "AP", "AP known-object", "recall", "false positives", "missed"]
    ]  # the script fills the body
    charts = [s for s in page.sources if s.startswith("data:image/png")]
    assert len(charts) == 4  # errors, AP by object, AP by verb, the dumps


def test_gallery_lists_the_images_with_the_most_errors(page):
    names = [caption.split()[0] for caption in page.captions]
    # Errors per image: 6, 3, 2, 2, 2, 1, 1 missed pairs (the one with the wrong verb: 1 + 1); ties in file order.
    assert names == [f"HICO_test2015_{n:08d}.jpg" for n in (4, 2, 1, 8, 116, 3, 19)]
    caption = page.captions[4]
    assert "1 false positive(s), 1 missed pair(s)" in caption
    assert "sit on bench 0.95: true positive" in caption
    assert "carry book 0.41: wrong verb (pair read book: human IoU" in caption
    assert "missed: read book (a wrong-verb detection matched its boxes)" in caption


def test_dumps_against_the_step(page):
    rows = page.tables["dump-table"]
    assert rows[0] == ["step", "mAP full", "mAP rare", "mAP non-rare", "score", "format", "iou", "dump"]
    assert rows[1] == ["0", "0.00", "0.00", "0.00", "0.2500", "1.0000", "0.2500", "0.jsonl"]
    assert rows[2] == ["3", "100.00", "100.00", "100.00", "1.0000", "1.0000", "0.7500", "3.jsonl"]


def test_the_command_line_prints_the_tables(tmp_path, capsys, sample_annotations):
    out = tmp_path / "r.html"
    preds = sample_annotations.parent / "visualize_example.jsonl"
    assert main(["--annotations", str(sample_annotations), "--predictions", str(preds), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "setting                     full      rare  non-rare"
    assert "wrong verb                   1      +8.33      +0.00      +9.09" in printed
    assert printed[-1].startswith(f"report: {out} (")
    assert 'id="gallery"' not in out.read_text(encoding="utf-8")  # no --images, no gallery


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get): the page is not opened")
    return found


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser(),
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def rendered_rows(dom: str) -> list[list[str]]:
    body = Page(dom).tables["classes"]
    return body[1:]


def test_the_browser_runs_the_scripts_and_sorts_the_class_table(tmp_path, report):
    done = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    table = Page(done.stdout).attributes["classes"]
    assert (table["data-sort"], table["data-order"]) == ("ap", "desc")
    rows = rendered_rows(done.stdout)
    # The 12 classes with ground truth, best AP first, ties by class id.
    assert [(row[0], row[5]) for row in rows] == [
        ("248", "100.00"),
        ("249", "100.00"),
        ("245", "36.36"),
        *((hoi, "0.00") for hoi in ("38", "62", "131", "139", "143", "153", "154", "159", "250")),
    ]
    assert rows[3] == ["38", "ride", "boat", "non-rare", "1", "0.00", "0.00", "0.00", "0", "1"]
    assert Page(done.stdout).attributes["class-count"] is not None
    assert "12 of 600 classes" in done.stdout


def test_the_browser_applies_sort_and_filters_from_the_address(tmp_path, report):
    # The horse classes by verb, A to Z; then the rare classes of every class (ground truth or not) by id.
    done = chromium(tmp_path, "--dump-dom", report.as_uri() + "#sort=verb&order=asc&object=horse")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [(row[0], row[1]) for row in rendered_rows(done.stdout)] == [
        ("131", "hold"),
        ("139", "ride"),
        ("143", "walk"),
    ]
    done = chromium(tmp_path, "--dump-dom", report.as_uri() + "#sort=id&order=asc&subset=rare&all=1")
    rows = rendered_rows(done.stdout)
    assert [int(row[0]) for row in rows] == sorted(RARE_HOI) and {row[3] for row in rows} == {"rare"}


def test_the_browser_takes_a_screenshot(tmp_path, report):
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,900", f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 900)
        colours = image.convert("L").getextrema()
        assert colours[1] - colours[0] > 100  # text on a white page, not a blank one
