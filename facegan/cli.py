"""The `facegan` command: a thin dispatcher over the libraries.

Each subcommand lives next to the code it drives and exposes `add_arguments(parser)` and
`main(args) -> int`. Modules are imported only when their subcommand runs, so `facegan ingest`
never pays for a TFX import and `facegan --help` is instant.
"""
import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS = {
    "ingest": ("facegan.components.image_example_gen.cli", "ingest face images into TFRecords (Beam)"),
    "train": ("facegan.trainer.cli", "train a GAN from an Examples directory"),
    "evaluate": ("facegan.components.gan_evaluator.cli", "compute FID/KID/SWD/MS-SSIM/IS for a generator"),
    "sample": ("facegan.serving.client", "sample images from a served generator (gRPC or REST)"),
    "translate": ("facegan.serving.translate_cli", "translate a photo with a served image-to-image model"),
    "serve": ("facegan.serving.server", "serve generator SavedModels over TF Serving's gRPC API"),
    "pipeline": ("facegan.pipeline.cli", "run the full TFX pipeline locally"),
    "demo": ("facegan.pipeline.demo", "run the whole pipeline on embedded data, then sample from it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub_parser = argparse.ArgumentParser(prog=f"facegan {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
