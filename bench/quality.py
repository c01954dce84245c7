"""The quality study: train a matrix of presets for one budget, score them with one protocol during
training, write docs/quality.md. A thin entry point over bench/quality_study/ (see command.py's
docstring for the protocol, outputs and resume).

    python bench/quality.py [--budget-kimg 128] [--seeds 1,2] [--rows dcgan,tan_ns,...] [--list-rows]
    python bench/quality.py --rerun-row dcgan --seed 1     # reproduce one committed row
"""
import sys

from facegan import noise

if __name__ == "__main__":
    noise.configure_script(sys.argv)
    from quality_study.command import cli_main     # bench/ is this script's folder, first on sys.path
    sys.exit(cli_main(sys.argv[1:]))
