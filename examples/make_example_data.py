"""Write the tiny synthetic datasets in examples/data/ (deterministic; rerun to regenerate).

    python examples/make_example_data.py [OUTPUT_DIR]

- `examples/data/`: 8 images, 64x64 coloured shapes on white; columns `image,prompt`.
- `examples/data/edit/`: 4 edit pairs; `edit_image` is the shape in one colour, `image` (the
  target) the same shape in another; columns `image,edit_image,prompt` ("make it blue").
- `examples/data/video/`: 4 short clips of a moving shape, one per container (mp4/h264, webm/vp9,
  gif, avi/mpeg4), with 9, 11, 6 and 8 frames (the frame-count rule keeps 9, 9, 5, 5); columns
  `video,prompt`. `video/i2v/` adds `input_image` (each clip's first frame).
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


# (file, codec, frames, colour, shape): one clip per container
CLIPS = (
    ("red_circle.mp4", "libx264", 9, "red", "circle"),
    ("blue_square.webm", "libvpx-vp9", 11, "blue", "square"),
    ("green_triangle.gif", "gif", 6, "green", "triangle"),
    ("yellow_circle.avi", "mpeg4", 8, "yellow", "circle"),
)
VIDEO_SIZE = 32


def moving_frames(shape: str, colour: str, count: int) -> list[Image.Image]:
    """The shape sliding right by 2 px per frame on white."""
    base = draw_shape(shape, colour, VIDEO_SIZE)
    frames = []
    for i in range(count):
        frame = Image.new("RGB", base.size, "white")
        frame.paste(base, (2 * i - count, 0))
        frames.append(frame)
    return frames


def write_clip(path: Path, frames: list[Image.Image], codec: str) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = {"gif": "rgb8", "libx264": "yuv420p", "libvpx-vp9": "yuv420p", "mpeg4": "yuv420p"}[codec]
        if codec == "libx264":
            stream.options = {"crf": "30", "preset": "veryslow"}  # byte-identical reruns, small files
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(folder: Path) -> None:
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "i2v" / "images").mkdir(parents=True, exist_ok=True)
    rows, i2v_rows = [], []
    for name, codec, count, colour, shape in CLIPS:
        frames = moving_frames(shape, colour, count)
        write_clip(folder / "videos" / name, frames, codec)
        prompt = f"a {colour} {shape} sliding right on a white background"
        rows.append({"video": f"videos/{name}", "prompt": prompt})
        first = f"images/{Path(name).stem}_first.png"
        frames[0].save(folder / "i2v" / first, optimize=True)
        i2v_rows.append({"video": f"../videos/{name}", "input_image": first, "prompt": prompt})
    write_metadata(folder, rows)
    write_metadata(folder / "i2v", i2v_rows)


def main(out: Path) -> None:
    make_shapes(out)
    make_edits(out / "edit")
    make_videos(out / "video")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
