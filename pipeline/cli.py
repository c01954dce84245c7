"""`facegan pipeline`: run the TFX pipeline locally, or compile it for Kubeflow.

    facegan pipeline run --data DIR --out DIR [--preset smoke] [--steps N] [--resolution R]
                         [--set network.filters=32 ...] [--metrics swd,ms_ssim]
                         [--thresholds JSON] [--min-improvement JSON] [--extractor random]
                         [--beam-runner direct|dataflow|flink|spark ...] [--log-dir DIR] [--no-cache]
    facegan pipeline compile --engine kubeflow|vertex --out DIR [--image IMAGE] [--gpus N] ...
    facegan pipeline outputs --out DIR      (the newest artifacts recorded in ML Metadata)
"""
import json
import os
import sys

from facegan.cli_args import json_arg, parse_set
from facegan.pipeline import configs


def _common(p, data_required: bool):
    p.add_argument("--data", required=data_required, help="face images: directory or archive")
    p.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    p.add_argument("--model-name", default=configs.MODEL_NAME, help="serving name")
    p.add_argument("--preset", default=configs.PRESET)
    p.add_argument("--steps", type=int, default=configs.TRAIN_STEPS, help="training steps")
    p.add_argument("--resolution", type=int, default=None, help="default: the preset's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer config override, e.g. --set optim.batch_size=32 (repeatable)")
    p.add_argument("--metrics", default=",".join(configs.METRICS))
    p.add_argument("--num-eval-images", type=int, default=configs.NUM_EVAL_IMAGES)
    p.add_argument("--thresholds", default=None, help="blessing rules as JSON or a JSON file")
    p.add_argument("--min-improvement", default=None, help='e.g. {"swd": 1.0} or {"fid": "5%%"}')
    p.add_argument("--extractor", default=configs.EXTRACTOR,
                   help="inception (needs weights) | random (not comparable) | path to weights")
    p.add_argument("--beam-runner", default="direct", help="direct | dataflow | flink | spark")
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam arg (repeatable)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite MLMD)")
    _common(run, True)
    run.add_argument("--out", required=True, help="pipeline root, metadata and serving dir go here")
    run.add_argument("--log-dir", default=None, help="TensorBoard dir (default <out>/tensorboard/<run>)")
    run.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    comp = sub.add_parser("compile", help="compile for Kubeflow Pipelines (v1) or KFP v2 / Vertex")
    _common(comp, False)
    comp.add_argument("--engine", choices=("kubeflow", "vertex"), default="kubeflow")
    comp.add_argument("--out", default=".", help="output directory")
    comp.add_argument("--image", default=configs.PIPELINE_IMAGE, help="pipeline container image")
    comp.add_argument("--gpus", type=int, default=configs.TRAINER_GPUS, help="GPUs for the Trainer")
    comp.add_argument("--pipeline-root", default=None, help="e.g. gs://bucket/facegan/root")
    comp.add_argument("--serving-dir", default=None, help="e.g. gs://bucket/facegan/serving")
    outs = sub.add_parser("outputs", help="newest artifacts of a local pipeline (from ML Metadata)")
    outs.add_argument("--out", required=True)
    outs.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)


def _pipeline_kwargs(a) -> dict:
    beam = configs.beam_args("direct") if a.beam_runner == "direct" else configs.beam_args(
        a.beam_runner, project=os.environ.get("FACEGAN_GCP_PROJECT"),
        region=os.environ.get("FACEGAN_GCP_REGION"), temp_location=os.environ.get("FACEGAN_BEAM_TEMP"),
        flink_master=os.environ.get("FACEGAN_FLINK_MASTER"),
        spark_master=os.environ.get("FACEGAN_SPARK_MASTER"),
        job_endpoint=os.environ.get("FACEGAN_SPARK_JOB_ENDPOINT"))
    return dict(preset=a.preset, train_steps=a.steps, resolution=a.resolution,
                overrides=parse_set(a.set), metrics=[m for m in a.metrics.split(",") if m],
                num_eval_images=a.num_eval_images, thresholds=json_arg(a.thresholds, "--thresholds"),
                min_improvement=json_arg(a.min_improvement, "--min-improvement"),
                extractor=a.extractor, beam_pipeline_args=beam + list(a.beam_arg))


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
            from facegan.pipeline.local_runner import run_local
            r = run_local(data_root=args.data, out=args.out, pipeline_name=args.pipeline_name,
                          model_name=args.model_name, log_dir=args.log_dir,
                          enable_cache=not args.no_cache, **kwargs)
            push = r.outputs.get("PushedModel", {}).get("properties", {})
            bless = r.outputs.get("ModelBlessing", {}).get("properties", {})
            print(f"run {r.run_id}: blessed={bless.get('blessed')} pushed={push.get('pushed')} "
                  f"{push.get('pushed_destination', '')}")
            print(f"tensorboard --logdir {r.log_dir}")
            return 0 if push.get("pushed") else 1
        from facegan.pipeline import kubeflow_runner as k
        extra = {}
        for key in ("pipeline_root", "serving_dir"):
            if getattr(args, key):
                extra[key] = getattr(args, key)
        if args.data:
            extra["data_root"] = args.data
        fn = k.compile_v2 if args.engine == "vertex" else k.compile_v1
        path = fn(args.out, image=args.image, gpus=args.gpus, pipeline_name=args.pipeline_name,
                  model_name=args.model_name, **kwargs, **extra)
        print(path)
        return 0
    except ValueError as e:
        print(f"facegan pipeline: {e}", file=sys.stderr)
        return 2
