"""`loss.png`: the run's loss, smoothed loss and val_loss against steps, drawn from
`loss_log.jsonl` with Pillow (no plotting library needed)."""

from __future__ import annotations

import json
from pathlib import Path

from diffsynth.training.outputs import atomic_write

SIZE = (800, 450)
MARGIN = 60
COLOURS = {"loss": (180, 200, 235), "smoothed_loss": (30, 80, 180), "val_loss": (220, 90, 30)}


def read_loss_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def draw_loss_plot(rows: list[dict]):
    """A PIL image of every series present in `rows` (each a loss_log row) against `step`."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    series = {name: [(r["step"], r[name]) for r in rows if isinstance(r.get(name), (int, float))] for name in COLOURS}
    points = [p for values in series.values() for p in values if p[1] == p[1]]  # NaN != NaN
    if not points:
        draw.text((MARGIN, MARGIN), "no finite loss logged", fill="black")
        return image
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(max(values), min(values) + 1e-12)
    width, height = SIZE[0] - 2 * MARGIN, SIZE[1] - 2 * MARGIN

    def xy(step: float, value: float) -> tuple[float, float]:
        return MARGIN + (step - x0) / (x1 - x0) * width, MARGIN + (1 - (value - y0) / (y1 - y0)) * height

    draw.rectangle([MARGIN, MARGIN, MARGIN + width, MARGIN + height], outline=(120, 120, 120))
    for name, values_of in series.items():
        line = [xy(s, v) for s, v in values_of if v == v]
        if len(line) > 1:
            draw.line(line, fill=COLOURS[name], width=2)
        for x, y in line if name == "val_loss" else []:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[name])
    draw.text((MARGIN, MARGIN + height + 8), f"step {x0}", fill="black")
    draw.text((MARGIN + width - 60, MARGIN + height + 8), f"step {x1}", fill="black")
    draw.text((4, MARGIN - 6), f"{y1:.4g}", fill="black")
    draw.text((4, MARGIN + height - 6), f"{y0:.4g}", fill="black")
    legend = [name for name, values_of in series.items() if values_of]
    for i, name in enumerate(legend):
        draw.text((MARGIN + 10 + 150 * i, 20), name, fill=COLOURS[name])
    return image


def write_loss_plot(folder: Path) -> Path | None:
    """`folder/loss.png` from `folder/loss_log.jsonl` (None when there is no log)."""
    log = folder / "loss_log.jsonl"
    if not log.is_file():
        return None
    image = draw_loss_plot(read_loss_log(log))
    target = folder / "loss.png"
    atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
    return target
