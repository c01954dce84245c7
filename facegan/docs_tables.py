"""README tables generated from the code, so they cannot drift (tests/docs/test_readme.py compares).

    python -m facegan.docs_tables presets      # the README's presets table (markdown)

`presets_table()` reads every non-smoke preset from trainer/config.py (resolution, batch, default
steps, architecture and loss) and the training speeds measured on this project's 2-core CPU from
the JSON files in docs/ that record them with their command (`MEASURED`); a preset without a
measurement says so. No TensorFlow import.
"""
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# preset -> (docs JSON, key path to images/s, what the figure is). Each JSON names its command.
MEASURED: Dict[str, Tuple[str, Tuple[str, ...], str]] = {
    "dcgan": ("docs/your_faces.json", ("runs", "faces64", "train", "images_per_s"), "64px, [1]"),
    "stylegan2_small": ("docs/bench_train_stylegan.json", ("stylegan2_small", "images_per_s", "ada"),
                        "64px float32, [2]"),
}
FOOTNOTES = (
    "[1] `facegan train` of the \"Your faces\" timings above: its own running images/s at the end of the run "
    "(docs/your_faces.json: command, load, CPU); [2] `python bench/train.py --stylegan --steps 16 "
    "--warmup 5 --images 256` (docs/bench_train_stylegan.json).")


def measured_rate(preset: str, repo: str = REPO) -> Optional[str]:
    """'12.3 (64px, [1])' from the preset's measurement file, or None."""
    if preset not in MEASURED:
        return None
    path, keys, what = MEASURED[preset]
    try:
        with open(os.path.join(repo, path)) as f:
            value = json.load(f)
        for k in keys:
            value = value[k]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return f"{float(value):.1f} ({what})"


def presets_table(repo: str = REPO) -> str:
    """The markdown table of the paper presets (every preset except the `smoke*` CI ones)."""
    from facegan.trainer.config import get_preset, preset_names
    rows: List[str] = [
        "| preset | architecture / loss | resolution | batch | default steps | images/s measured |",
        "|---|---|---|---|---|---|",
    ]
    for name in preset_names():
        if name.startswith("smoke"):
            continue
        c = get_preset(name)
        rate = measured_rate(name, repo) or "not measured"
        rows.append(f"| `{name}` | {c.network.architecture} / {c.loss.family} | {c.network.resolution} "
                    f"| {c.optim.batch_size} | {c.run.steps:,} | {rate} |")
    return "\n".join(rows) + "\n\n" + FOOTNOTES


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv != ["presets"]:
        print("usage: python -m facegan.docs_tables presets", file=sys.stderr)
        return 2
    print(presets_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
