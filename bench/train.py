"""Benchmark: the training library vs a plain keras-io style `train_step`, and float32 vs bf16.

Prints one JSON object. All measurements at 64x64, global batch 64, on real faces (FFHQ 256px from
$FACEGAN_FACES_DIR or ../shared/data/faces, downscaled into a temporary Examples artifact that is
deleted afterwards; never copied into the repository):

- `machine`: CPU model and its avx512_bf16 / amx_bf16 / amx_tile flags (bf16 is native only with
  them; elsewhere TensorFlow emulates it, slower than float32), and what `run.mixed_precision:
  auto` resolves to here (facegan/machine.py).
- `rates`: the machine's float32 and bfloat16 GFLOP/s measured in this run: a 1024^3 matmul and a
  conv2d (4x4, 128->256 channels, stride 2) -- the ceiling each training figure is compared to.
- `library`: per architecture, images/s of `trainer.train_lib` (its real loop: MirroredStrategy,
  metrics fetched every step, EMA generator, NaN check), real TFRecord input, in float32 and in
  mixed_bfloat16, their ratio (goal on AMX: >= 3.5), the step's FLOP count (analytic, from the
  traced step's graph: every Conv2D / Conv2DBackpropInput / Conv2DBackpropFilter / MatMul at its
  static shapes, so the gradient penalty's double backprop is counted too) and the achieved
  GFLOP/s as a fraction of the measured conv and matmul rates of the same dtype.
- `plain_dcgan`: images/s of a keras-io `dcgan_overriding_train_step`-style model (`fit`, one D
  step on concat(fake, real), one G step, BCE) around the SAME DCGAN networks
  (trainer.networks.build_networks), on the same real input pipeline, float32.
- ratios: library/plain (goal >= 0.95), library mixed_bfloat16 / plain float32 (goal >= 1.3),
  library real input / library synthetic input (goal >= 0.95).

Each measurement: `--warmup` steps (tracing, allocation) then `--steps` timed steps; float32 and
bf16 of one architecture run back to back (the load of this shared machine drifts).
XLA (`run.xla`) is not used: on CPU it compiles convolutions to Eigen loops instead of oneDNN
kernels (measured 0.6-0.8 images/s vs 22-25 without, DCGAN 64px batch 64, EPYC with avx512_bf16).

`--stylegan` measures instead stylegan2_small at 64x64 (its preset: batch 32, lazy
R1/path length, ADA) with and without ADA (tricks.augment.mode none), alternating, against the
plain DCGAN baseline measured in the same run; warmup >= 5 so the three lazy phases (R1 + path
length, none, path length) are traced before timing, and the timed steps rounded up to a multiple
of 16 = lcm(r1_interval 16, pl_interval 4), so the window holds R1 (1 in 16) and path-length
(1 in 4) steps in training's proportion (the JSON's `timed_window` counts them).

- `pix2pix` (`--archs ...,pix2pix`): the same figures for pix2pix at 64x64 (preset
  widths, batch 64) on paired Examples of the same faces (input `lowres:factor=4`), beside the
  DCGAN rows; `machine.auto_precision` says which of its two precisions `auto` picks here.

    python bench/train.py [--steps 6] [--warmup 2] [--images 512] [--archs dcgan,hdcgan,facegan,progan,pix2pix]
                          [--precision-only]
    python bench/train.py --stylegan [--steps 16] [--warmup 5]
"""
import argparse
import json
import math
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
    # take minutes per step on 2 cores, so widths are capped at 64 (noted in the JSON; at 128 one
    # step is 2.4 TFLOP, 4x this).
    "progan": ("progan", {"network.start_resolution": 64, "network.filters": 64, "network.max_filters": 64,
                          "network.batch_sizes": {}}),
    # pix2pix at its preset widths (U-Net 64..512, PatchGAN) at the common batch of 64 (the
    # paper's batch 1 would time the per-step overhead, not the networks), on 4x super-resolution
    # pairs derived from the same faces (`lowres:factor=4`, facegan/ingest/paired.py).
    "pix2pix": ("pix2pix", {}),
}
PAIRED_SPEC = "lowres:factor=4"    # the pix2pix row's paired transform
PRECISIONS = ("float32", "mixed_bfloat16")
CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def op_flops(op) -> int:
    """FLOPs (2 per multiply-add) of one conv / matmul graph op from its static shapes, else 0.
    A conv's backprops cost what its forward costs: 2 * |out| * kh * kw * C_in, with |out| the
    forward output (the out_backprop input of both gradient ops)."""
    if op.type in CONV_OPS:
        out = op.outputs[0].shape if op.type == "Conv2D" else op.inputs[2].shape
        # Conv2DBackpropFilter's filter_sizes input is a shape tensor: its output has the shape
        filt = op.outputs[0].shape if op.type == "Conv2DBackpropFilter" else op.inputs[1].shape
        return 2 * out.num_elements() * filt[0] * filt[1] * filt[2]
    if op.type == "MatMul":
        a, b = op.inputs[0].shape, op.inputs[1].shape
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * m * k * n
    return 0


def step_flops(cfg, run_dir) -> dict:
    """FLOPs of one training step of `cfg` (its whole train_step: D and G updates, EMA), by op type,
    from the graph traced at the benchmark's shapes. Same count in float32 and bf16."""
    import tensorflow as tf
    from facegan.trainer import train_lib
    trainer = train_lib.Trainer(cfg.override({"run.mixed_precision": "float32", "eval.every_images": 0}), None, run_dir, steps=0,
                                synthetic=True, progress=False, strategy=tf.distribute.get_strategy())
    n = trainer.gan.global_batch_size * cfg.tricks.d_steps
    channels = 6 if trainer.gan.input_kind == "pairs" else 3    # image-to-image: input + target
    spec = (tf.TensorSpec([n, RES, RES, channels], tf.float32), tf.TensorSpec([2], tf.int64))
    graph = tf.function(trainer.gan.train_step, autograph=False).get_concrete_function(spec).graph
    by_type = {}
    for op in graph.get_operations():
        f = op_flops(op)
        if f:
            by_type[op.type] = by_type.get(op.type, 0) + f
    return {"total": sum(by_type.values()), "by_op": by_type, "images": n}


def measure_rates(reps: int = 5) -> dict:
    """GFLOP/s of a 1024^3 matmul and of a conv2d (4x4, 128->256, stride 2, batch 16 at 32x32),
    float32 and bfloat16, best of `reps` after one warm-up call (oneDNN kernels, both cores)."""
    import tensorflow as tf
    out = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal([1024, 1024]), dtype)
        x = tf.cast(tf.random.normal([16, 32, 32, 128]), dtype)
        w = tf.cast(tf.random.normal([4, 4, 128, 256]), dtype)
        cases = {"matmul": (tf.function(lambda: tf.matmul(a, a), autograph=False), 2 * 1024 ** 3),
                 "conv": (tf.function(lambda: tf.nn.conv2d(x, w, 2, "SAME"), autograph=False),
                          2 * 16 * 16 * 16 * 256 * 4 * 4 * 128)}
        for name, (fn, flops) in cases.items():
            fn().numpy()
            best, t_end = float("inf"), time.perf_counter() + 0.5
            for i in range(10 * reps):     # at least `reps` calls and 0.5 s (load spikes)
                if i >= reps and time.perf_counter() > t_end:
                    break
                t0 = time.perf_counter()
                fn().numpy()
                best = min(best, time.perf_counter() - t0)
            out.setdefault(dtype.name, {})[f"{name}_gflops"] = flops / best / 1e9
    return out


def faces_dir():
    root = os.environ.get("FACEGAN_FACES_DIR", os.path.join(os.path.dirname(REPO), "shared", "data", "faces"))
    d = os.path.join(root, "ffhq256", "images")
    if not os.path.isdir(d):
        sys.exit(f"bench/train.py: {d} not found; set FACEGAN_FACES_DIR")
    return d


def make_examples(uri, n, paired=""):
    """`n` faces at RES in a temporary Examples artifact; `paired` (a paired.py spec) adds each
    face's derived input (`input_image`, `pair/*`) as ingestion's `--paired` does."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from facegan import examples_io
    from facegan.ingest import paired as P
    d = faces_dir()
    exs = []
    for name in sorted(os.listdir(d))[:n]:
        with Image.open(os.path.join(d, name)) as im:
            img = np.asarray(im.convert("RGB").resize((RES, RES), Image.BOX))
        feats = examples_io.schema_features(img, source=name)
        feats.update(P.features(P.apply(img, paired) if paired else None))
        exs.append(tf.train.Example.FromString(examples_io.encode_example(feats)))
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

    # Metrics during training are not part of the step being timed (trainer/periodic_eval.py).
    cfg = cfg.override({"run.checkpoint_every": 10 ** 6, "run.image_every": 10 ** 6, "run.log_every": 10 ** 6,
                        "eval.every_images": 0})
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


def lazy_window(loss, warmup: int, steps: int) -> dict:
    """The lazy regularization steps inside the timed window [warmup, warmup + steps): R1 runs on
    step % r1_interval == 0 and path length on step % pl_interval == 0 (the loss's Dreg / Greg phase intervals), so a
    window of a multiple of lcm(r1_interval, pl_interval) steps holds them in training's proportion."""
    window = range(warmup, warmup + steps)
    return {"steps": steps, "r1_steps": sum(i % loss.r1_interval == 0 for i in window),
            "pl_steps": sum(i % loss.pl_interval == 0 for i in window),
            "r1_interval": loss.r1_interval, "pl_interval": loss.pl_interval,
            "training_proportion": steps % math.lcm(loss.r1_interval, loss.pl_interval) == 0}


def bench_stylegan(data, tmp, warmup, steps, rounds=1):
    """stylegan2_small at 64x64 with / without ADA, and the plain DCGAN baseline, same process.
    `steps` is rounded up to a multiple of lcm(r1_interval, pl_interval) (16 with the preset's
    lazy intervals 16 and 4), so the timed window holds R1 and path-length steps in the proportion
    training runs them (1 and 4 in 16) and ADA's cost is measured on training's real step mix."""
    from facegan.trainer.config import get_preset
    sg = get_preset("stylegan2_small", {"network.resolution": RES})
    period = math.lcm(sg.loss.r1_interval, sg.loss.pl_interval)
    if steps % period:
        steps += period - steps % period
        print(f"bench/train.py --stylegan: --steps rounded up to {steps} (a multiple of lcm(r1_interval "
              f"{sg.loss.r1_interval}, pl_interval {sg.loss.pl_interval}) = {period})", file=sys.stderr)
    warmup = max(warmup, 5)   # traces the three lazy phases (R1 + path length, none, path length)
    variants = {"ada": sg, "no_ada": sg.override({"tricks.augment.mode": "none"})}
    res = {k: [] for k in variants}
    plain = [bench_plain(get_preset("dcgan", {"network.resolution": RES, "optim.batch_size": BATCH}),
                         data, 3, 12)]
    for r in range(rounds):   # alternate: load on this shared machine drifts
        for name, cfg in variants.items():
            res[name].append(bench_library(cfg, data, os.path.join(tmp, f"sg_{name}_{r}"), warmup, steps))
            print(f"stylegan2_small {name}: {res[name][-1]:.2f} images/s", file=sys.stderr)
    plain.append(bench_plain(get_preset("dcgan", {"network.resolution": RES, "optim.batch_size": BATCH}),
                             data, 3, 12))
    mean = {k: sum(v) / len(v) for k, v in res.items()}
    p = sum(plain) / len(plain)
    return {"stylegan2_small": {"resolution": RES, "batch": sg.optim.batch_size, "images_per_s": mean,
                                "runs": res, "warmup": warmup, "steps": steps,
                                "timed_window": lazy_window(sg.loss, warmup, steps)},
            "plain_dcgan_images_per_s": p, "plain_dcgan_runs": plain,
            "ratio_stylegan2_small_vs_plain_dcgan": mean["ada"] / p,
            "ratio_ada_vs_no_ada": mean["ada"] / mean["no_ada"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--archs", default="dcgan,hdcgan,facegan,progan,pix2pix")
    ap.add_argument("--stylegan", action="store_true", help="measure stylegan2_small with/without ADA instead")
    ap.add_argument("--precision-only", action="store_true",
                    help="only the per-architecture float32 vs bf16 figures (no plain keras reference)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401
    from facegan import machine
    from facegan.trainer import train_lib
    from facegan.trainer.config import get_preset

    tmp = tempfile.mkdtemp(prefix="facegan_bench_train_")
    try:
        data = make_examples(os.path.join(tmp, "examples"), args.images)
        arch_names = args.archs.split(",")
        pairs = make_examples(os.path.join(tmp, "pairs"), args.images, PAIRED_SPEC) \
            if "pix2pix" in arch_names else None
        if args.stylegan:
            print(json.dumps({"machine": machine.cpu_info(), **bench_stylegan(data, tmp, args.warmup, args.steps)},
                             indent=2))
            return
        base = {"network.resolution": RES, "optim.batch_size": BATCH}
        auto = train_lib.resolve_precision("auto")
        out = {"resolution": RES, "batch": BATCH, "steps": args.steps, "warmup": args.warmup,
               "machine": dict(machine.cpu_info(), bf16_units=machine.bf16_units(machine.cpu_flags()),
                               auto_precision=auto[0], auto_reason=auto[1]),
               "xla": False, "library": {}}
        archs = {a: get_preset(ARCH_PRESETS[a][0], dict(base, **ARCH_PRESETS[a][1])) for a in arch_names}
        # FLOP counts first: tracing in a fresh process avoids a Keras/autograph clash seen when
        # progan's PixelNorm is built after other runs in the same process
        flops = {a: step_flops(cfg, os.path.join(tmp, f"flops_{a}")) for a, cfg in archs.items()}
        rates = measure_rates()
        print(f"rates: {json.dumps(rates)}", file=sys.stderr)

        dcgan = get_preset("dcgan", dict(base, **{"run.mixed_precision": "float32"}))
        if not args.precision_only:
            out["plain_dcgan_images_per_s"] = bench_plain(dcgan, data, args.warmup, args.steps)
        for arch, cfg in archs.items():
            f = flops[arch]
            row = {"overrides": dict(base, **ARCH_PRESETS[arch][1]), "step_gflop": f["total"] / 1e9,
                   "step_gflop_by_op": {k: v / 1e9 for k, v in f["by_op"].items()}}
            for prec in PRECISIONS:
                ips = bench_library(cfg.override({"run.mixed_precision": prec}), pairs if arch == "pix2pix" else data,
                                    os.path.join(tmp, f"run_{arch}_{prec}"), args.warmup, args.steps)
                row[prec] = {"images_per_s": ips, "gflops": ips / f["images"] * f["total"] / 1e9}
                print(f"{arch} {prec}: {ips:.1f} images/s", file=sys.stderr)
            row["ratio_bfloat16_vs_float32"] = row["mixed_bfloat16"]["images_per_s"] / row["float32"]["images_per_s"]
            if arch == "pix2pix":
                row["paired"] = PAIRED_SPEC
            out["library"][arch] = row
        # the rates again at the end (load drifts); each figure is compared to the better of the two
        rates_end = measure_rates()
        out["rates"] = {d: {k: max(rates[d][k], rates_end[d][k]) for k in rates[d]} for d in rates}
        out["rates_runs"] = [rates, rates_end]
        for row in out["library"].values():
            for prec, d in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
                r = out["rates"][d]
                row[prec]["fraction_of_conv_rate"] = row[prec]["gflops"] / r["conv_gflops"]
                row[prec]["fraction_of_matmul_rate"] = row[prec]["gflops"] / r["matmul_gflops"]
        out["rates"]["bf16_vs_float32"] = {k: out["rates"]["bfloat16"][k] / out["rates"]["float32"][k]
                                           for k in out["rates"]["float32"]}
        if args.precision_only:
            out["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
            print(json.dumps(out, indent=2))
            return
        lib = out["library"]["dcgan"]["float32"]["images_per_s"] if "dcgan" in out["library"] else \
            bench_library(dcgan, data, os.path.join(tmp, "run_dcgan"), args.warmup, args.steps)
        out["dcgan_synthetic_images_per_s"] = bench_library(
            dcgan, None, os.path.join(tmp, "run_syn"), args.warmup, args.steps, synthetic=True)
        bf16_ips = out["library"]["dcgan"]["mixed_bfloat16"]["images_per_s"] if "dcgan" in out["library"] else \
            bench_library(dcgan.override({"run.mixed_precision": "mixed_bfloat16"}), data,
                          os.path.join(tmp, "run_bf16"), args.warmup, args.steps)
        # the plain reference once more at the end: load on this shared machine drifts
        plain2 = bench_plain(dcgan, data, args.warmup, args.steps)
        plain = (out["plain_dcgan_images_per_s"] + plain2) / 2
        out["plain_dcgan_images_per_s_runs"] = [out.pop("plain_dcgan_images_per_s"), plain2]
        out["plain_dcgan_images_per_s"] = plain
        out["ratio_library_vs_plain_float32"] = lib / plain
        out["ratio_bfloat16_vs_plain_float32"] = bf16_ips / plain
        out["ratio_real_vs_synthetic_input"] = lib / out["dcgan_synthetic_images_per_s"]
        if "pix2pix" in out["library"]:
            p2p = out["library"]["pix2pix"]
            p2p["ratio_vs_library_dcgan"] = {prec: p2p[prec]["images_per_s"] / out["library"]["dcgan"][prec]["images_per_s"]
                                             for prec in PRECISIONS if "dcgan" in out["library"]}
            p2p["ratio_float32_vs_plain_dcgan_float32"] = p2p["float32"]["images_per_s"] / plain
        out["goals"] = {"library_vs_plain": ">= 0.95", "bfloat16_vs_plain": ">= 1.3",
                        "real_vs_synthetic": ">= 0.95",
                        "bfloat16_vs_float32_per_arch": ">= 3.5 on AMX (bf16 is native only with "
                                                        "amx_bf16/avx512_bf16; see machine)"}
        out["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # our progress and the JSON only; TensorFlow/absl/deprecation noise with --verbose (facegan/noise.py)
    from facegan import noise
    noise.configure_script(sys.argv)
    main()
