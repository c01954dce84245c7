"""Benchmark: the training library vs a plain keras-io style `train_step`, same network, same command.

Prints one JSON object. All measurements at 64x64, global batch 64, on real faces (FFHQ 256px from
$FACEGAN_FACES_DIR or ../shared/data/faces, downscaled into a temporary Examples artifact that is
deleted afterwards; never copied into the repository):

- `library`: images/s of `trainer.train_lib` (its real loop: MirroredStrategy, metrics fetched
  every step, EMA generator, NaN check) for each architecture, real TFRecord input, float32.
- `plain_dcgan`: images/s of a keras-io `dcgan_overriding_train_step`-style model (`fit`, one D
  step on concat(fake, real), one G step, BCE) around the SAME DCGAN networks
  (trainer.networks.build_networks), on the same real input pipeline.
- ratios: library/plain (goal >= 0.95), library mixed_bfloat16 / plain float32 (goal >= 1.3),
  library real input / library synthetic input (goal >= 0.95).

Each measurement: `--warmup` steps (tracing, allocation) then `--steps` timed steps.

`--stylegan` measures instead (issue 10) stylegan2_small at 64x64 (its preset: batch 32, lazy
R1/path length, ADA) with and without ADA (tricks.augment.mode none), alternating, against the
plain DCGAN baseline measured in the same run; warmup >= 5 so the three lazy phases (R1 + path
length, none, path length) are traced before timing.

    python bench/train.py [--steps 12] [--warmup 3] [--images 512] [--archs dcgan,hdcgan,facegan,progan]
    python bench/train.py --stylegan [--steps 8] [--warmup 5]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RES, BATCH = 64, 64
# Per-architecture settings for the 64x64 measurement (each preset's own widths unless noted).
ARCH_PRESETS = {
    "dcgan": ("dcgan", {}),
    "hdcgan": ("hdcgan", {}),
    "facegan": ("facegan", {}),
    # progan measured at its full 64x64 network (no growing); preset widths (512 filters) would
    # take minutes per step on 2 cores, so widths are capped at 128 (noted in the JSON).
    "progan": ("progan", {"network.start_resolution": 64, "network.filters": 128, "network.max_filters": 128,
                          "network.batch_sizes": {}}),
}


def faces_dir():
    root = os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))
    d = os.path.join(root, "ffhq256", "images")
    if not os.path.isdir(d):
        sys.exit(f"bench/train.py: {d} not found; set FACEGAN_FACES_DIR")
    return d


def make_examples(uri, n):
    import numpy as np
    from PIL import Image
    from facegan import examples_io
    d = faces_dir()
    exs = []
    for name in sorted(os.listdir(d))[:n]:
        with Image.open(os.path.join(d, name)) as im:
            exs.append(examples_io.make_example(np.asarray(im.convert("RGB").resize((RES, RES), Image.BOX)),
                                                source=name))
    examples_io.write_examples(os.path.join(examples_io.split_dir(uri, "train"), "data-00000-of-00001.gz"), exs)
    return uri


def bench_library(cfg, data, run_dir, warmup, steps, synthetic=False):
    """images/s of the library's own loop over `steps` timed steps after `warmup`."""
    from facegan.trainer import train_lib
    marks = {}

    def on_step(trainer, step, metrics):
        if step == warmup:
            marks["t0"], marks["i0"] = time.perf_counter(), trainer.images_shown
        if step == warmup + steps:
            marks["t1"], marks["i1"] = time.perf_counter(), trainer.images_shown

    cfg = cfg.override({"run.checkpoint_every": 10 ** 6, "run.image_every": 10 ** 6, "run.log_every": 10 ** 6})
    trainer = train_lib.Trainer(cfg, data, run_dir, steps=warmup + steps, synthetic=synthetic,
                                progress=False, on_step=on_step)
    trainer.run()
    return (marks["i1"] - marks["i0"]) / (marks["t1"] - marks["t0"])


def bench_plain(cfg, data, warmup, steps):
    """keras-io dcgan_overriding_train_step around the same networks, with `fit`."""
    import tensorflow as tf
    from facegan.trainer import data as data_lib
    from facegan.trainer.networks import build_networks

    tf.keras.mixed_precision.set_global_policy("float32")
    tf.keras.utils.set_random_seed(0)
    nets = build_networks(cfg)
    z_dim = cfg.network.z_dim

    class GAN(tf.keras.Model):
        def __init__(self, discriminator, generator):
            super().__init__()
            self.discriminator, self.generator = discriminator, generator

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

        def train_step(self, real_images):
            batch_size = tf.shape(real_images)[0]
            z = tf.random.normal((batch_size, z_dim))
            generated = self.generator(z, training=True)
            combined = tf.concat([generated, real_images], axis=0)
            labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
            labels += 0.05 * tf.random.uniform(tf.shape(labels))
            with tf.GradientTape() as tape:
                d_loss = self.loss_fn(labels, self.discriminator(combined, training=True)["logits"])
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
            z = tf.random.normal((batch_size, z_dim))
            with tf.GradientTape() as tape:
                logits = self.discriminator(self.generator(z, training=True), training=True)["logits"]
                g_loss = self.loss_fn(tf.zeros((batch_size, 1)), logits)
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
            return {"d_loss": d_loss, "g_loss": g_loss}

    gan = GAN(nets.discriminator, nets.generator)
    gan.compile(tf.keras.optimizers.Adam(2e-4, beta_1=0.5), tf.keras.optimizers.Adam(2e-4, beta_1=0.5),
                tf.keras.losses.BinaryCrossentropy(from_logits=True))
    files = data_lib.resolve_files(data)
    ds = data_lib.train_dataset(files, RES, BATCH, seed=0, shuffle_buffer=2048)
    times = []

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    gan.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    return steps * BATCH / (times[warmup + steps - 1] - times[warmup - 1])


def bench_stylegan(data, tmp, warmup, steps, rounds=1):
    """stylegan2_small at 64x64 with / without ADA, and the plain DCGAN baseline, same process."""
    from facegan.trainer.config import get_preset
    sg = get_preset("stylegan2_small", {"network.resolution": RES})
    variants = {"ada": sg, "no_ada": sg.override({"tricks.augment.mode": "none"})}
    res = {k: [] for k in variants}
    plain = [bench_plain(get_preset("dcgan", {"network.resolution": RES, "optim.batch_size": BATCH}),
                         data, 3, 12)]
    for r in range(rounds):   # alternate: load on this shared machine drifts
        for name, cfg in variants.items():
            res[name].append(bench_library(cfg, data, os.path.join(tmp, f"sg_{name}_{r}"), max(warmup, 5), steps))
            print(f"stylegan2_small {name}: {res[name][-1]:.2f} images/s", file=sys.stderr)
    plain.append(bench_plain(get_preset("dcgan", {"network.resolution": RES, "optim.batch_size": BATCH}),
                             data, 3, 12))
    mean = {k: sum(v) / len(v) for k, v in res.items()}
    p = sum(plain) / len(plain)
    return {"stylegan2_small": {"resolution": RES, "batch": sg.optim.batch_size, "images_per_s": mean,
                                "runs": res, "warmup": max(warmup, 5), "steps": steps},
            "plain_dcgan_images_per_s": p, "plain_dcgan_runs": plain,
            "ratio_stylegan2_small_vs_plain_dcgan": mean["ada"] / p,
            "ratio_ada_vs_no_ada": mean["ada"] / mean["no_ada"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--archs", default="dcgan,hdcgan,facegan,progan")
    ap.add_argument("--stylegan", action="store_true", help="measure stylegan2_small with/without ADA instead")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401
    from facegan.trainer.config import get_preset

    tmp = tempfile.mkdtemp(prefix="facegan_bench_train_")
    try:
        data = make_examples(os.path.join(tmp, "examples"), args.images)
        if args.stylegan:
            from machine import cpu_info   # bench/machine.py (bench/ is on sys.path as the script dir)
            print(json.dumps({"machine": cpu_info(), **bench_stylegan(data, tmp, args.warmup, args.steps)},
                             indent=2))
            return
        base = {"network.resolution": RES, "optim.batch_size": BATCH}
        out = {"resolution": RES, "batch": BATCH, "steps": args.steps, "warmup": args.warmup,
               "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0], "library": {}}

        dcgan = get_preset("dcgan", base)
        out["plain_dcgan_images_per_s"] = bench_plain(dcgan, data, args.warmup, args.steps)
        for arch in args.archs.split(","):
            preset, extra = ARCH_PRESETS[arch]
            cfg = get_preset(preset, dict(base, **extra))
            ips = bench_library(cfg, data, os.path.join(tmp, f"run_{arch}"), args.warmup, args.steps)
            out["library"][arch] = {"images_per_s": ips, "overrides": dict(base, **extra)}
            print(f"{arch}: {ips:.1f} images/s", file=sys.stderr)
        lib = out["library"]["dcgan"]["images_per_s"] if "dcgan" in out["library"] else \
            bench_library(dcgan, data, os.path.join(tmp, "run_dcgan"), args.warmup, args.steps)
        out["dcgan_synthetic_images_per_s"] = bench_library(
            dcgan, None, os.path.join(tmp, "run_syn"), args.warmup, args.steps, synthetic=True)
        bf16 = dcgan.override({"run.mixed_precision": "mixed_bfloat16"})
        out["dcgan_mixed_bfloat16_images_per_s"] = bench_library(
            bf16, data, os.path.join(tmp, "run_bf16"), args.warmup, args.steps)
        # the plain reference once more at the end: load on this shared machine drifts
        plain2 = bench_plain(dcgan, data, args.warmup, args.steps)
        plain = (out["plain_dcgan_images_per_s"] + plain2) / 2
        out["plain_dcgan_images_per_s_runs"] = [out.pop("plain_dcgan_images_per_s"), plain2]
        out["plain_dcgan_images_per_s"] = plain
        out["ratio_library_vs_plain_float32"] = lib / plain
        out["ratio_bfloat16_vs_plain_float32"] = out["dcgan_mixed_bfloat16_images_per_s"] / plain
        out["ratio_real_vs_synthetic_input"] = lib / out["dcgan_synthetic_images_per_s"]
        out["goals"] = {"library_vs_plain": ">= 0.95", "bfloat16_vs_plain": ">= 1.3",
                        "real_vs_synthetic": ">= 0.95"}
        out["load_avg_end"] = os.getloadavg()[0]
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
