"""`facegan demo` (`make demo`): the whole local pipeline on a small face set, then serve and sample.

1. Data: `--data DIR` (your images), else the embedded default: the 100 face crops bundled with
   scikit-image (`skimage.data.lfw_subset()`, Labeled Faces in the Wild, 25x25 grayscale; the
   remaining 100 entries of that array are non-faces and are not used). They are written as PNG
   files into `<out>/data` at run time; nothing is copied into this repository.
2. The local TFX pipeline (pipeline/local_runner.py): ingest (Beam) -> train the `smoke` preset at
   32x32 for a few hundred steps -> evaluate and bless (SWD vs noise, not degenerate) -> push to
   `<out>/serving/facegan/<version>/`.
3. The local TF Serving-compatible gRPC server on the pushed model (127.0.0.1, a free port), a grid
   sampled through the gRPC client, server shut down.
4. Where everything is, and the commands to open TensorBoard and sample again.
"""
import os
import sys
import time
from typing import Any, Dict

DEMO_PRESET = "smoke"                # tiny and fast (the pipeline's own default is a real run)
DEMO_RESOLUTION = 32
DEMO_STEPS = 300
DEMO_NUM_EVAL_IMAGES = 256
LFW_FACES = 100                      # lfw_subset(): the first 100 are faces, the rest are not
# The embedded crops are 25x25: let ingestion accept them (its default minimum side is 32) and
# upsample them to 32 with its own filter; hold out 20% (~20 faces) as the metrics' reference.
EMBEDDED_INGEST_OPTIONS: Dict[str, Any] = {"mirror": True, "eval_fraction": 0.2, "min_side": 16}
# Thresholds a briefly trained smoke model passes honestly and an untrained or constant generator
# fails (measured on the embedded data: 300 steps -> SWD ~150 vs noise ~200, MS-SSIM ~0.30 vs real
# pairs ~0.32; the same run with a barely-moved EMA generator -> SWD ~226, MS-SSIM ~0.72; a
# constant generator has between-sample std 0 and MS-SSIM 1):
# samples must differ and not be flat; SWD below 0.9 x what uniform noise scores against the same
# real images; samples no more alike than real faces are, plus a margin for the small eval split.
DEMO_THRESHOLDS: Dict[str, Any] = {
    "degenerate": {"min_between_std": 2.0, "min_within_std": 2.0},
    "swd": {"max_noise_fraction": 0.9},
    "ms_ssim": {"max_above_real": 0.15},
}
# The smoke preset's generator EMA (decay 0.999) would still be ~74% its random initialization
# after 300 steps (0.999^300); a short run exports a faster-moving average instead.
DEMO_OVERRIDES: Dict[str, Any] = {"tricks.ema_decay": 0.9}
# No Inception weights are assumed (none offline): metrics that need none (configs.check_metrics
# refuses FID/KID/IS without them); the tiny random extractor only draws the memorization sheet.
DEMO_METRICS = ("swd", "ms_ssim")
DEMO_EXTRACTOR = "random_tiny"
SAMPLE_SEED = 1
SAMPLE_NUM = 16

EXAMPLES = """examples:
  facegan demo                                  (= make demo; writes demo_out/)
  facegan demo --data ~/faces --out my_demo --steps 1000
  facegan --verbose demo                        (also show third-party warnings and logs)
"""


def write_lfw_faces(data_dir: str) -> int:
    """Write scikit-image's bundled LFW face crops as PNGs; returns how many were written.

    The crops are 25x25 grayscale floats in [0, 1]; they are stored as 8-bit RGB at their own
    size (ingestion resizes them).
    """
    import numpy as np
    from PIL import Image
    from skimage.data import lfw_subset

    faces = lfw_subset()[:LFW_FACES]
    os.makedirs(data_dir, exist_ok=True)
    for i, face in enumerate(faces):
        img = Image.fromarray(np.clip(np.round(face * 255.0), 0, 255).astype(np.uint8), "L")
        img = img.convert("RGB")
        img.save(os.path.join(data_dir, f"lfw_{i:03d}.png"))
    return len(faces)


def sample_through_server(serving_base: str, model_name: str, out_png: str,
                          num: int = SAMPLE_NUM, seed: int = SAMPLE_SEED) -> Dict[str, Any]:
    """Start the local gRPC server on `serving_base`, sample a grid via the client, stop it."""
    from facegan.images import save_grid
    from facegan.serving.client import GrpcClient
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server

    server = Server([ModelSpec(name=model_name, base_path=serving_base)], port=0, host="127.0.0.1",
                    poll_wait_s=0)
    server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        with GrpcClient(target) as client:
            status = client.status(model_name)
            images = client.sample(model_name, num, seed)
            version = getattr(client, "last_version", None)
        save_grid(images, out_png)
    finally:
        server.stop(grace=2.0)
    return {"target": target, "status": status, "version": version, "shape": list(images.shape),
            "grid": out_png}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    parser.add_argument("--data", default=None,
                        help="your face images (directory or archive); default: the embedded LFW crops")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"training steps (default {DEMO_STEPS})")
    parser.add_argument("--preset", default=DEMO_PRESET, help=f"training preset (default {DEMO_PRESET})")
    parser.add_argument("--resolution", type=int, default=DEMO_RESOLUTION, help="image size")
    parser.add_argument("--num-eval-images", type=int, default=DEMO_NUM_EVAL_IMAGES,
                        help="generated images per metric")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="trainer config override (repeatable), e.g. --set optim.batch_size=32")


def main(args) -> int:
    from facegan.pipeline.local_runner import decision_rules, run_local

    t0 = time.monotonic()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ingest = None  # the pipeline's defaults, for the user's own images
    if args.data:
        data = os.path.abspath(args.data)
        if not os.path.exists(data):
            print(f"facegan demo: --data {data} does not exist", file=sys.stderr)
            return 2
        print(f"== data: your images at {data}")
    else:
        data = os.path.join(out, "data")
        n = write_lfw_faces(data)
        ingest = EMBEDDED_INGEST_OPTIONS
        print(f"== data: {n} LFW face crops from scikit-image written to {data}")

    print(f"== pipeline: ingest -> train ({args.preset}, {args.resolution}px, {args.steps} steps) "
          f"-> evaluate -> push   (this takes a few minutes)", flush=True)
    from facegan.cli_args import parse_set
    overrides = dict(DEMO_OVERRIDES, **parse_set(args.set))
    result = run_local(data_root=data, out=out, preset=args.preset, train_steps=args.steps,
                       overrides=overrides,
                       resolution=args.resolution, thresholds=DEMO_THRESHOLDS,
                       num_eval_images=args.num_eval_images, metrics=DEMO_METRICS,
                       extractor=DEMO_EXTRACTOR, ingest_options=ingest)
    o = result.outputs
    evaluation = o.get("ModelEvaluation", {}).get("uri")
    metrics_path = os.path.join(evaluation, "metrics.json") if evaluation else None
    pushed = o.get("PushedModel", {}).get("properties", {})
    serving_base = os.path.join(result.layout.serving_dir, result.model_name)

    print("\n== evaluation")
    for r in decision_rules(o):
        print(f"   [{'pass' if r['passed'] else 'FAIL'}] {r['reason']}")
    if not pushed.get("pushed"):
        print(f"\nfacegan demo: the model was NOT blessed, so the Pusher did not push it "
              f"(see {metrics_path}). Train longer (--steps) or check your data.", file=sys.stderr)
        return 1

    from facegan.serving.client import format_status
    grid = os.path.join(out, "samples_grpc.png")
    print(f"\n== serving {serving_base} over gRPC and sampling {SAMPLE_NUM} images (seed {SAMPLE_SEED})")
    s = sample_through_server(serving_base, result.model_name, grid)
    print(f"   model {result.model_name}: {format_status(s['status'])}; wrote {s['grid']} ({s['shape'][0]} images "
          f"{s['shape'][1]}x{s['shape'][2]})")

    minutes = (time.monotonic() - t0) / 60
    print(f"""
== done in {minutes:.1f} min
   samples (via gRPC):  {grid}
   evaluation grid:     {os.path.join(evaluation, 'sample_grid.png')}
   metrics:             {metrics_path}
   blessing decision:   {os.path.join(evaluation, 'decision.json')}
   pushed model:        {pushed.get('pushed_destination', serving_base)}
   ML Metadata:         {result.layout.metadata_path}

   TensorBoard:   tensorboard --logdir {result.log_dir}
   Serve:         facegan serve --model_base_path {serving_base} --model_name {result.model_name} --port 8500
   Sample again:  facegan sample --server localhost:8500 --model {result.model_name} --num 16 --seed 2 --out grid.png
""")
    return 0
