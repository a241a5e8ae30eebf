"""`diffsynth plan FAMILY [train's flags] [--vram SIZE] [--json]`: the GPU memory one training
step of the real-size model needs, simulated on the CPU (see diffsynth/plan)."""

from __future__ import annotations

import inspect
import json
import typing
from typing import Annotated, Any, Callable

import typer

from diffsynth.cli.train_cmd import _family_parameters, family_app, option_parameter
from diffsynth.config import TrainConfig, cli_fields
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec

PANEL = "Plan"


def _plan_parameters() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("vram", kw, default=None, annotation=Annotated[typing.Optional[str], typer.Option(
            "--vram", help="Card memory (24GB, 80, 81559MiB) or auto: pick the fastest options that fit.", rich_help_panel=PANEL)]),
        inspect.Parameter("device", kw, default="cuda", annotation=Annotated[str, typer.Option(
            "--device", help="Plan for a run on cuda (--dtype auto = bf16) or cpu (fp32; host memory).", rich_help_panel=PANEL)]),
        inspect.Parameter("as_json", kw, default=False, annotation=Annotated[bool, typer.Option(
            "--json", help="Print one JSON object (peak_gib, breakdown, alternatives, choice).", rich_help_panel=PANEL)]),
        inspect.Parameter("compare", kw, default=True, annotation=Annotated[bool, typer.Option(
            "--compare/--no-compare", help="Also predict the standard alternatives (checkpointing, FP8).", rich_help_panel=PANEL)]),
    ]  # fmt: skip


def make_plan_command(registry: FamilyRegistry, family: FamilySpec) -> Callable[..., None]:
    hints = typing.get_type_hints(TrainConfig)
    core_fields = cli_fields()
    params = [option_parameter(f.name, hints[f.name], f.default, f.metadata["help"], f.metadata["panel"]) for f in core_fields]
    params += _family_parameters(family) + _plan_parameters()
    family_option_names = [o.name for o in family.options]

    def command(**kwargs: Any) -> None:
        from diffsynth.plan.choices import parse_vram
        from diffsynth.plan.run import plan

        config = TrainConfig(**{f.name: kwargs[f.name] for f in core_fields})
        config.family = family.name
        config.family_options = {n: kwargs[n] for n in family_option_names}
        vram = parse_vram(kwargs["vram"]) if kwargs["vram"] is not None else None
        result = plan(registry, config, vram=vram, compare=kwargs["compare"], device=kwargs["device"])
        if kwargs["as_json"]:
            typer.echo(json.dumps(result))
            return
        typer.echo(text_from_result(result))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def text_from_result(result: dict[str, Any]) -> str:
    s = result["settings"]
    what = f"LoRA r{s['lora']['rank']} on {s['lora']['component']}" if s["lora"] else f"full {', '.join(s['trainable_models'])}"
    phases = result["phases"]
    variant = f" ({result['variant']})" if result["variant"] else ""
    lines = [
        f"{result['family']}{variant}: {what}, {s['size']}, {s['dtype']} on {s.get('device', 'cuda')}, "
        f"checkpointing {s['gradient_checkpointing']}, fp8 {','.join(s['fp8_models']) or 'none'}",
        f"predicted peak device memory: {result['peak_gib']:.1f} GiB ("
        f"{'as torch.cuda.max_memory_allocated' if s.get('device', 'cuda') == 'cuda' else 'host memory of the tensors'}; "
        f"encoders phase {phases.get('encoders', 0):.1f} GiB, denoiser step {phases.get('denoiser', 0):.1f} GiB)",
        "at the peak:",
    ]
    lines += [f"  {k:<24} {v:8.2f} GiB" for k, v in result["breakdown"].items()]
    if result.get("alternatives"):
        lines += ["", "| options | predicted peak GiB | flags |", "|---|---|---|"]
        lines += [f"| {r['options']} | {r['peak_gib']:.1f} | {r['flags'] or '-'} |" for r in result["alternatives"]]
    if result.get("choice"):
        c = result["choice"]
        lines += ["", f"--vram {c['vram_gib']} GiB: {c['options']} fits (predicted peak {c['peak_gib']:.1f} GiB): {c['flags'] or 'no extra flags'}"]
    return "\n".join(lines)


def build_plan_app(registry: FamilyRegistry) -> typer.Typer:
    return family_app(
        registry, "Predict a training step's GPU memory (simulated on the CPU, no weights needed).",
        lambda family: f"Predict the GPU memory of training {family.name} with these flags (the same as train's).",
        make_plan_command,
    )  # fmt: skip
