"""The `facegan` command: a thin dispatcher over the libraries.

Each subcommand lives next to the code it drives and exposes `add_arguments(parser)` and
`main(args) -> int` (and may set a module-level `EXAMPLES` string, shown under its --help).
Modules are imported only when their subcommand runs, so `facegan ingest` never pays for a TFX
import and `facegan --help` is instant. Third-party noise is silenced here, before any subcommand
module (and so TensorFlow, TFX or Beam) loads, unless `--verbose` is given (facegan/noise.py).
"""
import argparse
import difflib
import importlib
import sys

from facegan import __version__, noise
from facegan.cli_args import HelpFormatter

# name -> (module, one-line help)
SUBCOMMANDS = {
    "ingest": ("facegan.ingest.cli", "ingest face images into TFRecords (Beam)"),
    "train": ("facegan.trainer.cli", "train a GAN from an Examples directory"),
    "export": ("facegan.trainer.export_cli", "export a run's checkpoint (last, best or step N) as a served model version"),
    "evaluate": ("facegan.evaluate_cli", "compute FID/KID/SWD/MS-SSIM/IS for a generator"),
    "sample": ("facegan.serving.client", "sample images from a served generator (gRPC or REST)"),
    "translate": ("facegan.serving.translate_cli", "translate a photo with a served image-to-image model"),
    "serve": ("facegan.serving.serve_cli", "serve generator SavedModels over TF Serving's gRPC API"),
    "directions": ("facegan.directions", "fit attribute directions (InterFaceGAN) and serve them as an edit signature"),
    "project": ("facegan.project", "find the latent that reproduces a face photo (W, W+ or z)"),
    "ui": ("facegan.serving.ui", "a page in the browser over a served model (TF Serving's REST API)"),
    "pipeline": ("facegan.pipeline.cli", "run the TFX pipeline locally, or compile it for Kubeflow"),
    "demo": ("facegan.pipeline.demo", "run the whole pipeline on embedded data, then sample from it"),
}
VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show third-party warnings and logs (TensorFlow, TFX, Beam), quiet by default"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facegan", description=__doc__.splitlines()[0], formatter_class=HelpFormatter,
        epilog="example: facegan demo --out demo_out     (COMMAND --help for each command)")
    parser.add_argument("--version", action="version", version=f"facegan {__version__}")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def unknown_command_message(name: str) -> str:
    """"unknown command 'injest' (did you mean 'ingest'?)" (no suggestion when nothing is close)."""
    close = difflib.get_close_matches(name, SUBCOMMANDS, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; choose one of {', '.join(SUBCOMMANDS)}"
    return f"unknown command '{name}'{hint}"


def _split_verbose(argv):
    """(verbose?, argv without the global flag); the flag may come before or after the command
    (arguments after a bare `--` are left alone)."""
    head, sep, tail = (argv[:argv.index("--")], ["--"], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [], [])
    verbose = VERBOSE_FLAG in head
    return verbose, [a for a in head if a != VERBOSE_FLAG] + sep + tail


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    is_verbose, argv = _split_verbose(argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help", "--version"):
        try:
            parser.parse_args(argv or ["--help"])   # prints the help or the version
        except SystemExit as e:
            return int(e.code or 0)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"facegan: {unknown_command_message(name)}", file=sys.stderr)
        print("run 'facegan --help' for the list of commands", file=sys.stderr)
        return 2
    noise.configure(is_verbose)
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub_parser = argparse.ArgumentParser(
        prog=f"facegan {name}", description=SUBCOMMANDS[name][1], formatter_class=HelpFormatter,
        epilog=getattr(module, "EXAMPLES", None))
    module.add_arguments(sub_parser)
    if VERBOSE_FLAG not in sub_parser._option_string_actions:   # a command may define its own
        sub_parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    args = sub_parser.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
