"""`facegan pipeline`: run the TFX pipeline locally, or compile it for Kubeflow.

The one command-line entry point of the pipeline (`facegan demo` is the same local run with the
demo's data and settings): `run` drives pipeline/local_runner.py, `compile` drives
pipeline/kubeflow_runner.py (which is also the file the TFX CLI runs), `outputs` reads ML Metadata.
"""
import json
import os
import sys

from facegan.cli_args import HelpFormatter, json_arg, parse_set
from facegan.pipeline import configs

EXAMPLES = """examples:
  facegan pipeline run --data ~/faces --out out/ --steps 2000
  facegan pipeline run --data ~/faces --out out/ --preset hdcgan --set optim.batch_size=32
  facegan pipeline compile --engine kubeflow --out build/ --image gcr.io/PROJECT/facegan-pipeline:0.1.0 \\
      --data gs://BUCKET/faces --pipeline-root gs://BUCKET/facegan/root --serving-dir gs://BUCKET/facegan/serving
  facegan pipeline outputs --out out/
"""


def _common(p, data_required: bool):
    # `compile` leaves a flag it is not given as None, so the FACEGAN_* variable (or the default)
    # applies (kubeflow_runner.settings_from_env); `run` has no environment settings.
    env = not data_required
    p.add_argument("--data", required=data_required,
                   help="face images: directory or archive" + (
                       "" if data_required else " (default: $FACEGAN_DATA_ROOT, else a placeholder)"))
    p.add_argument("--pipeline-name", default=configs.PIPELINE_NAME, help="TFX pipeline name")
    p.add_argument("--model-name", default=configs.MODEL_NAME,
                   help="serving name: <serving dir>/<model name>/<version>/")
    p.add_argument("--preset", default=None if env else configs.PRESET,
                   help="training preset" + (f" (default: $FACEGAN_PRESET, else {configs.PRESET})" if env else ""))
    p.add_argument("--steps", type=int, default=None if env else configs.TRAIN_STEPS,
                   help="training steps" + (f" (default: $FACEGAN_TRAIN_STEPS, else {configs.TRAIN_STEPS})"
                                            if env else ""))
    p.add_argument("--resolution", type=int, default=None,
                   help="image size of ingestion and training (default: " +
                        ("$FACEGAN_RESOLUTION, else " if env else "") + "the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer config override, e.g. --set optim.batch_size=32 (repeatable)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics (default: " + ("$FACEGAN_METRICS, else " if env else "") +
                        f"{','.join(configs.METRICS)}; plus fid with an Inception --extractor); "
                        "fid, kid and is need an Inception --extractor with weights")
    p.add_argument("--num-eval-images", type=int, default=configs.NUM_EVAL_IMAGES,
                   help="generated images per metric")
    p.add_argument("--thresholds", default=None,
                   help="blessing rules as JSON or a JSON file (default: pipeline/configs.py THRESHOLDS)")
    p.add_argument("--min-improvement", default=None,
                   help='over the last blessed model, e.g. {"swd": 1.0} or {"fid": "5%%"} (default: none)')
    p.add_argument("--extractor", default=None if env else configs.EXTRACTOR,
                   help="inception (Keras ImageNet weights) | a path to InceptionV3 .h5 weights or the 2015 "
                        "FID graph .pb | random_tiny (no weights: no fid/kid/is; the memorization sheet only)" +
                        (f" (default: $FACEGAN_EXTRACTOR, else {configs.EXTRACTOR})" if env else ""))
    p.add_argument("--beam-runner", default=None,
                   help="direct | dataflow | flink | spark (default: $FACEGAN_BEAM_RUNNER, else direct; "
                        "cluster settings from the FACEGAN_* variables of pipeline/configs.py)")
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam arg (repeatable)")
    p.add_argument("--log-dir", default=None, help="TensorBoard dir of the Trainer and the evaluator "
                   "(default: <out>/tensorboard/<run id> for run, <pipeline root>/tensorboard for compile)")


def add_arguments(parser) -> None:
    if parser.epilog is None:
        parser.epilog = EXAMPLES
    parser.formatter_class = HelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION")

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES,
                              formatter_class=HelpFormatter)

    run = add("run", "run the pipeline locally (LocalDagRunner, SQLite MLMD, Beam DirectRunner)")
    _common(run, True)
    run.add_argument("--out", required=True, help="pipeline root, metadata and serving dir go here")
    run.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    comp = add("compile", "compile for Kubeflow Pipelines (v1) or KFP v2 / Vertex")
    _common(comp, False)
    comp.add_argument("--engine", choices=("kubeflow", "vertex"), default="kubeflow",
                      help="kubeflow: KFP 1.8 Argo YAML; vertex: KFP v2 PipelineJob JSON")
    comp.add_argument("--out", default="build", help="output directory")
    comp.add_argument("--image", default=configs.PIPELINE_IMAGE,
                      help="pipeline container image ($FACEGAN_PIPELINE_IMAGE)")
    comp.add_argument("--gpus", type=int, default=configs.TRAINER_GPUS, help="GPUs for the Trainer")
    comp.add_argument("--pipeline-root", default=None,
                      help="e.g. gs://bucket/facegan/root (default: $FACEGAN_PIPELINE_ROOT, else a placeholder)")
    comp.add_argument("--serving-dir", default=None,
                      help="e.g. gs://bucket/facegan/serving (default: $FACEGAN_SERVING_DIR, else a placeholder)")
    outs = add("outputs", "newest artifacts of a local pipeline (from ML Metadata)")
    outs.add_argument("--out", required=True, help="the --out of `facegan pipeline run`")
    outs.add_argument("--pipeline-name", default=configs.PIPELINE_NAME, help="TFX pipeline name")


def _pipeline_kwargs(a) -> dict:
    """create_pipeline arguments from the flags. For `run` they are checked here (a real preset,
    steps >= 1, no Inception metric without Inception weights); for `compile` a flag left out is
    None and kubeflow_runner.cluster_settings fills it from the environment, then checks the same."""
    beam = configs.beam_args_from_env(a.beam_runner)
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()] if a.metrics else None
    overrides = parse_set(a.set)
    if a.action == "run":
        configs.check_training(a.preset, a.steps, a.resolution, overrides)
        metrics = configs.check_metrics(metrics or configs.default_metrics(a.extractor), a.extractor)
    return dict(preset=a.preset, train_steps=a.steps, resolution=a.resolution,
                overrides=overrides, metrics=metrics,
                num_eval_images=a.num_eval_images, thresholds=json_arg(a.thresholds, "--thresholds"),
                min_improvement=json_arg(a.min_improvement, "--min-improvement"),
                extractor=a.extractor, beam_pipeline_args=beam + list(a.beam_arg),
                log_dir=a.log_dir)


def main(args) -> int:
    if not getattr(args, "action", None):
        print("facegan pipeline: choose an action: run, compile or outputs (see --help)", file=sys.stderr)
        return 2
    try:
        if args.action == "outputs":
            from facegan.pipeline.local_runner import LocalLayout, pipeline_outputs
            layout = LocalLayout(os.path.abspath(args.out))
            print(json.dumps(pipeline_outputs(layout.metadata_path, args.pipeline_name), indent=2))
            return 0
        kwargs = _pipeline_kwargs(args)
        if args.action == "run":
            from facegan.pipeline.local_runner import decision_rules, run_local
            r = run_local(data_root=args.data, out=args.out, pipeline_name=args.pipeline_name,
                          model_name=args.model_name, enable_cache=not args.no_cache, **kwargs)
            push = r.outputs.get("PushedModel", {}).get("properties", {})
            bless = r.outputs.get("ModelBlessing", {}).get("properties", {})
            print(f"run {r.run_id}: blessed={bless.get('blessed')} pushed={push.get('pushed')} "
                  f"{push.get('pushed_destination', '')}")
            for rule in decision_rules(r.outputs):
                if not rule.get("passed"):
                    print(f"  not blessed: {rule.get('reason')}", file=sys.stderr)
            print(f"tensorboard --logdir {r.log_dir}")
            return 0 if push.get("pushed") else 1
        from facegan.pipeline.kubeflow_runner import compile_pipeline
        # A flag left out (None) keeps the FACEGAN_* environment value or the default.
        path = compile_pipeline(args.engine, args.out, image=args.image, gpus=args.gpus,
                                pipeline_name=args.pipeline_name, model_name=args.model_name,
                                data_root=args.data, pipeline_root=args.pipeline_root,
                                serving_dir=args.serving_dir, **kwargs)
        print(path)
        return 0
    except ValueError as e:
        print(f"facegan pipeline: {e}", file=sys.stderr)
        return 2
