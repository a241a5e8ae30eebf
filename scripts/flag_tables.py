"""Print the `diffsynth train` flag tables of docs/cli.md from TrainConfig (paste them there).

    python scripts/flag_tables.py
"""

from diffsynth.config import cli_fields


def flag_tables() -> str:
    lines, panel = [], None
    for f in cli_fields():
        if f.metadata["panel"] != panel:
            panel = f.metadata["panel"]
            lines += ["", f"### {panel}", "", "| flag | default | meaning |", "|---|---|---|"]
        default = "" if f.default is None else f"`{f.default}`"
        lines.append(f"| `--{f.name}` | {default} | {f.metadata['help'].replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(flag_tables(), end="")
