"""`facegan evaluate`: the GanEvaluator's library outside TFX.

    facegan evaluate --model DIR --data DIR [--metrics fid,kid,swd,ms_ssim,is]
                     [--extractor inception|random|WEIGHTS] [--num-images N] [--out DIR]
                     [--thresholds JSON] [--baseline DIR] [--min-improvement JSON] [--log-dir DIR]

--model: a generator SavedModel, a TFX Model artifact (uses Format-Serving/), or a serving base
directory of numbered versions (uses the newest). --data: an Examples artifact (its eval split is
the reference; its train split feeds the memorization sheet). Writes metrics.json,
decision.json, sample_grid.png and memorization.png into --out; exit status 0, or 1 when
--strict and the model would not be blessed, 2 for bad arguments.
"""
import json
import sys

from facegan.cli_args import json_arg
from facegan.components.gan_evaluator import evaluate_lib


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="generator SavedModel / Model artifact / serving base dir")
    parser.add_argument("--data", required=True, help="Examples artifact directory (Split-eval/...)")
    parser.add_argument("--metrics", default=",".join(evaluate_lib.DEFAULT_METRICS),
                        help="comma list: fid,kid,swd,ms_ssim,is (default swd,ms_ssim)")
    parser.add_argument("--extractor", default="inception",
                        help="feature extractor for fid/kid/is/memorization: inception (Keras ImageNet "
                             "weights), a weights file path, or random (labelled not comparable)")
    parser.add_argument("--inception-weights", default=None, metavar="H5",
                        help="InceptionV3 weights file (same as --extractor H5)")
    parser.add_argument("--num-images", type=int, default=10000, help="generated images per metric")
    parser.add_argument("--out", default="evaluation", help="output directory (default ./evaluation)")
    parser.add_argument("--thresholds", default=None, help="blessing rules (JSON or JSON file)")
    parser.add_argument("--baseline", default=None, help="baseline generator to beat")
    parser.add_argument("--min-improvement", default=None, help='e.g. {"fid": 1.0} or {"swd": "5%%"}')
    parser.add_argument("--log-dir", default=None, help="also write TensorBoard summaries here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", default=None, help="real-statistics cache directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the model is not blessed")


def main(args) -> int:
    try:
        result = evaluate_lib.evaluate_model(
            args.model, args.data, args.out, metrics=args.metrics, num_images=args.num_images,
            extractor=args.inception_weights or args.extractor,
            thresholds=json_arg(args.thresholds, "--thresholds"),
            min_improvement=json_arg(args.min_improvement, "--min-improvement"),
            baseline_dir=args.baseline, log_dir=args.log_dir, seed=args.seed,
            batch_size=args.batch_size, cache_dir=args.cache_dir)
    except (ValueError, FileNotFoundError) as e:
        print(f"facegan evaluate: {e}", file=sys.stderr)
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
