"""`facegan evaluate`: the evaluation library (facegan.metrics.evaluation, what the GanEvaluator
component runs) from the command line.

    facegan evaluate --model DIR --data DIR [--metrics fid,kid,swd,ms_ssim,is,fid:downscale=64]
                     [--extractor inception|random|WEIGHTS.h5|GRAPH.pb] [--num-images N] [--out DIR]
                     [--thresholds JSON] [--baseline DIR] [--min-improvement JSON] [--log-dir DIR]

--model: a generator SavedModel, a TFX Model artifact (uses Format-Serving/), or a serving base
directory of numbered versions (uses the newest). --data: an Examples artifact (its eval split is
the reference; its train split feeds the memorization sheet). Writes metrics.json,
decision.json, sample_grid.png and memorization.png into --out; exit status 0, or 1 when
--strict and the model would not be blessed, 2 for bad arguments (the message names the flag).
The help lists the registered metrics and extractors (from their registries) with examples.
"""
import argparse
import json
import re
import sys

from facegan.cli_args import json_arg
from facegan.metrics import evaluation as evaluation_lib

EXAMPLES = """examples:
  # SWD and MS-SSIM (no weights needed) of a trained generator against its Examples' eval split
  facegan evaluate --model runs/r1/export --data data/faces --num-images 2048

  # published-comparable FID with the 2015 FID Inception graph, plus HDCGAN's 64x64 protocol
  facegan evaluate --model runs/r1/export --data data/faces --metrics fid,fid:downscale=64 \\
      --extractor ~/inception-2015-12-05/classify_image_graph_def.pb

  # bless only if SWD stays under 0.8 x uniform noise's and beats the baseline by 5%
  facegan evaluate --model runs/r2/export --data data/faces --baseline runs/r1/export \\
      --thresholds '{"swd": {"max_noise_fraction": 0.8}}' --min-improvement '{"swd": "5%"}' --strict
"""

# Library parameter names -> the flags a user typed (error messages name the flag).
_FLAGS = {"min_improvement": "--min-improvement", "num_images": "--num-images",
          "thresholds": "--thresholds", "metrics": "--metrics"}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default that is set (not None/False) and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser) -> None:
    from facegan.metrics.features import EXTRACTORS
    from facegan.metrics.registry import help_text
    parser.formatter_class = _HelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--model", required=True,
                        help="generator SavedModel, TFX Model artifact (uses Format-Serving/) or "
                             "serving base dir of numbered versions (uses the newest)")
    parser.add_argument("--data", required=True,
                        help="Examples artifact directory: its eval split is the reference, its "
                             "train split feeds the memorization sheet")
    parser.add_argument("--metrics", default=",".join(evaluation_lib.DEFAULT_METRICS),
                        help="comma list of metrics; NAME:downscale=64 downscales samples and reals "
                             "to 64x64 before the extractor (HDCGAN). Registered: " + help_text()
                             .replace("%", "%%"))
    parser.add_argument("--extractor", default="inception",
                        help="feature extractor for fid/kid/is/memorization: "
                             + ", ".join(f"{n} ({s.description})" for n, s in EXTRACTORS.items()
                                         if n != "inception2015")
                             + "; or a path: InceptionV3 .h5 weights, or the 2015 FID Inception "
                               "graph classify_image_graph_def.pb (published-comparable FID)")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="InceptionV3 .h5 weights or FID graph .pb (same as --extractor PATH)")
    parser.add_argument("--num-images", type=int, default=10000,
                        help="generated images per metric (MS-SSIM: pairs)")
    parser.add_argument("--out", default="evaluation", help="output directory")
    parser.add_argument("--thresholds", default=None,
                        help='blessing rules, JSON or a JSON file, e.g. {"fid": {"max": 50}}')
    parser.add_argument("--baseline", default=None, help="baseline generator to beat")
    parser.add_argument("--min-improvement", default=None,
                        help='improvement over --baseline, e.g. {"fid": 1.0} or {"swd": "5%%"}')
    parser.add_argument("--log-dir", default=None, help="also write TensorBoard summaries here")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--batch-size", type=int, default=64, help="images per generator call")
    parser.add_argument("--cache-dir", default=None, help="real-statistics cache directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the model is not blessed")


def user_message(e: Exception) -> str:
    """An error message with library parameter names replaced by the user's flags."""
    msg = str(e)
    for name, flag in _FLAGS.items():
        msg = re.sub(rf"(?<![\w.-]){name}\.(?=\w)", f"{flag}: ", msg)   # thresholds.fid.max
        msg = re.sub(rf"(?<![\w.-]){name}(?![\w(])", flag, msg)
    return msg


def main(args) -> int:
    try:
        result = evaluation_lib.evaluate_model(
            args.model, args.data, args.out, metrics=args.metrics, num_images=args.num_images,
            extractor=args.inception_weights or args.extractor,
            thresholds=json_arg(args.thresholds, "--thresholds"),
            min_improvement=json_arg(args.min_improvement, "--min-improvement"),
            baseline_dir=args.baseline, log_dir=args.log_dir, seed=args.seed,
            batch_size=args.batch_size, cache_dir=args.cache_dir)
    except (ValueError, FileNotFoundError) as e:
        print(f"facegan evaluate: {user_message(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from facegan.metrics import WeightsUnavailableError
        if not isinstance(e, WeightsUnavailableError):
            raise
        print(f"facegan evaluate: {e}\n(or run the metrics that need no weights: --metrics swd,ms_ssim; "
              f"--extractor random gives fid/kid/is labelled _random, not comparable)", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.scalars.items()}, indent=2, sort_keys=True))
    print("wrote " + ", ".join(f"{k}: {v}" for k, v in sorted(result.files.items())))
    return 1 if args.strict and not result.decision.blessed else 0
