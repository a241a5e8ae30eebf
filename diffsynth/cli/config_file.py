"""`--config run.toml` and `--print_config` for `diffsynth train FAMILY`.

A config file holds flags as keys (`lora_rank = 32` or `lora-rank = 32`), at the top level or in
tables (`[training]`, flattened as musubi-tuner and sd-scripts do); a flag given on the command
line wins over the file. Lists are accepted for the comma-separated flags (`lora_target_modules
= ["to_q", "to_k"]`) and for `optimizer_args` (`["d_coef=2", "betas=0.9,0.99"]`).
`--print_config` writes the effective options as such a file (options left unset are omitted).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from diffsynth.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


def read_config_file(path: str) -> dict[str, Any]:
    """The file's options, flattened one table level deep, keys in underscore spelling."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--config: file not found: {path}")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--config: {path} is not valid TOML ({exc})") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for name, item in items:
            if isinstance(item, dict):
                raise UserError(f"--config: {path}: table [{key}.{name}] nests too deep; put options at the top or in one table")
            name = name.replace("-", "_")
            if name in flat:
                raise UserError(f"--config: {path}: option {name} is given twice")
            flat[name] = item
    return flat


def _coerce(name: str, value: Any, kind: type, path: str) -> Any:
    if isinstance(value, list) and kind is str:
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise UserError(f"--config: {path}: {name} = {value!r}: expected a list of text items")
        return (" " if name == "optimizer_args" else ",").join(str(v) for v in value)
    ok = (
        isinstance(value, bool) if kind is bool
        else isinstance(value, int) and not isinstance(value, bool) if kind is int
        else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
        else isinstance(value, str) if kind is str
        else True
    )
    if not ok:
        raise UserError(f"--config: {path}: {name} = {value!r}: expected {_TYPE_NAMES.get(kind, kind.__name__)}")
    return float(value) if kind is float else value


def apply_config_file(ctx, kwargs: dict[str, Any], kinds: dict[str, type], family: str) -> dict[str, Any]:
    """The command's arguments with the config file's values filling every option the command
    line did not give."""
    path = kwargs.get("config")
    if not path:
        return kwargs
    options = read_config_file(path)
    unknown = sorted(set(options) - set(kinds) - {"config", "print_config"})
    if unknown:
        raise UserError(f"--config: {path}: {', '.join(unknown)} {'is not an option' if len(unknown) == 1 else 'are not options'} "
                        f"of diffsynth train {family}")
    for name in ("config", "print_config"):
        if name in options:
            raise UserError(f"--config: {path}: {name} cannot be set in a config file")
    merged = dict(kwargs)
    for name, value in options.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            continue
        merged[name] = _coerce(name, value, kinds[name], path)
    return merged


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def effective_toml(kwargs: dict[str, Any], names: list[str]) -> str:
    """The options as a TOML file `--config` reads back to the same values."""
    lines = ["# diffsynth train: effective options (config file + command line); unset options are omitted"]
    lines += [f"{name} = {_toml_value(kwargs[name])}" for name in names if kwargs.get(name) is not None]
    return "\n".join(lines) + "\n"
