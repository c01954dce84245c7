"""The quality study (issue 14 §4): train a matrix of presets for one budget, score them with one
protocol during training, write docs/quality.md. A thin entry point over facegan/study.py (also
`facegan study`); see its docstring for the protocol, outputs and resume.

    python bench/quality.py [--budget-kimg 128] [--seeds 1,2] [--rows dcgan,tan_ns,...] [--list-rows]
    python bench/quality.py --rerun-row dcgan --seed 1     # reproduce one committed row
"""
import sys

from facegan import noise

if __name__ == "__main__":
    noise.configure_script(sys.argv)
    from facegan.study import cli_main
    sys.exit(cli_main(sys.argv[1:]))
