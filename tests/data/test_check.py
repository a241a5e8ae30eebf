"""`diffsynth dataset check` on the clean example data and on a copy with every kind of defect."""

import json
import shutil

from tests.conftest import EXAMPLE_DATA, run_main


def test_clean_example_data_passes():
    out = run_main("dataset", "check", "--dataset_base_path", str(EXAMPLE_DATA), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["rows"] == 8 and report["problems"] == [] and report["duplicates"] == []
    assert report["sizes"] == {"64x64": 8} and report["resized"] == 0 and report["cropped"] == 0


def test_broken_copy_reports_each_defect(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(EXAMPLE_DATA, data, ignore=shutil.ignore_patterns("edit", "video", "metadata.json*"))
    images = data / "images"
    (images / "empty.png").write_bytes(b"")
    (images / "notes.png").write_text("not a picture")
    whole = (images / "red_circle.png").read_bytes()
    (images / "cut.png").write_bytes(whole[: len(whole) // 2])
    from PIL import Image

    Image.new("RGB", (96, 64), "green").save(images / "wide.png")
    lines = (data / "metadata.csv").read_text().splitlines()
    lines += ["images/empty.png,e", "images/notes.png,n", "images/cut.png,c", "images/gone.png,g",
              "images/wide.png,w", lines[1]]
    (data / "metadata.csv").write_text("\n".join(lines) + "\n")

    out = run_main("dataset", "check", "--dataset_base_path", str(data), "--max_pixels", "4096", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    problems = {p["row"]: p["message"] for p in report["problems"]}
    assert sorted(problems) == [9, 10, 11, 12]  # rows count from 1, as in the messages
    assert "image file is empty" in problems[9]
    assert "not an image PIL can read" in problems[10]
    assert "corrupt or truncated" in problems[11]
    assert "image file not found" in problems[12]
    assert report["duplicates"] == [{"row": 14, "same_as": 1}]
    assert report["sizes"]["96x64"] == 1
    assert report["resized"] == 1 and report["cropped"] == 1  # 96x64 -> cover 64x64 -> crop 32 columns

    text = run_main("dataset", "check", "--dataset_base_path", str(data))
    assert "problem: row 9, column 'image'" in text.stdout and "duplicate: row 14 repeats row 1" in text.stdout
