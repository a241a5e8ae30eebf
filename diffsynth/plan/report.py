"""A `Prediction` as one JSON-able object (GiB, rounded to 0.01)."""

from __future__ import annotations

from typing import Any

from diffsynth.plan import GIB
from diffsynth.plan.simulate import Prediction


def gib(value: int) -> float:
    return round(value / GIB, 2)


def as_dict(prediction: Prediction) -> dict[str, Any]:
    return {
        "family": prediction.family,
        "variant": prediction.variant,
        "peak_gib": gib(prediction.peak),
        "peak_bytes": prediction.peak,
        "breakdown": {k: gib(v) for k, v in prediction.breakdown.items()},
        "weights": {k: gib(v) for k, v in prediction.weights.items()},
        "phases": {k: gib(v) for k, v in prediction.phases.items()},
        "settings": prediction.settings,
        "seconds": round(prediction.seconds, 1),
    }

