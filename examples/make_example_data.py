"""Write the tiny synthetic datasets in examples/data/ (deterministic; rerun to regenerate).

    python examples/make_example_data.py [OUTPUT_DIR]

- `examples/data/`: 8 images, 64x64 coloured shapes on white; columns `image,prompt`.
- `examples/data/edit/`: 4 edit pairs; `edit_image` is the shape in one colour, `image` (the
  target) the same shape in another; columns `image,edit_image,prompt` ("make it blue").
Each folder has metadata.csv, metadata.json and metadata.jsonl describing the same rows.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 64
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 60), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, colour: str, size: int = SIZE) -> Image.Image:
    """A `colour` `shape` centred on a white `size`x`size` RGB image."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    lo, hi = size // 5, size - size // 5
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=fill)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=fill)
    else:
        draw.polygon([(size // 2, lo), (hi, hi), (lo, hi)], fill=fill)
    return img


def write_metadata(folder: Path, rows: list[dict[str, str]]) -> None:
    """metadata.csv, metadata.json and metadata.jsonl with the same rows."""
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "metadata.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_shapes(folder: Path) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    pairs = [(c, s) for c in ("red", "blue") for s in SHAPES] + [("green", "circle"), ("yellow", "square")]
    rows = []
    for colour, shape in pairs:
        name = f"images/{colour}_{shape}.png"
        draw_shape(shape, colour).save(folder / name, optimize=True)
        rows.append({"image": name, "prompt": f"a {colour} {shape} on a white background"})
    write_metadata(folder, rows)


def make_edits(folder: Path) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    edits = [("red", "blue", "circle"), ("blue", "red", "square"), ("green", "yellow", "triangle"), ("yellow", "green", "circle")]
    rows = []
    for source, target, shape in edits:
        src, dst = f"images/{source}_{shape}.png", f"images/{target}_{shape}.png"
        draw_shape(shape, source).save(folder / src, optimize=True)
        draw_shape(shape, target).save(folder / dst, optimize=True)
        rows.append({"image": dst, "edit_image": src, "prompt": f"make it {target}"})
    write_metadata(folder, rows)


def main(out: Path) -> None:
    make_shapes(out)
    make_edits(out / "edit")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
