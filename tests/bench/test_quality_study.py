"""The quality study (bench/quality.py, bench/quality_study/): aggregation, verdicts, plots, rerun
comparison (unit), and the whole command on synthetic examples with a tiny budget (e2e)."""
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from facegan.jsonable import write_json_atomic
from bench.quality_study import aggregate as AG, command as CMD, common as CM, matrix as MX
from tests.testlib.study import study_args as _args
from bench.quality_study import plots as PL, protocol as PT, records as RC, report as RP


# -- unit: pure functions ----------------------------------------------------------------------
def test_mean_spread_covers_every_seed():
    assert AG.mean_spread([2.0]) == (2.0, 0.0)
    m, sp = AG.mean_spread([10.0, 14.0, 11.0])
    assert m == pytest.approx(35 / 3) and sp == 2.0       # (14 - 10) / 2
    m, sp = AG.mean_spread([10.0, 14.0])                   # two seeds: mean ± spread spans both
    assert (m - sp, m + sp) == (10.0, 14.0)


def _row(vals, n):
    return {"n": n, "metrics": {k: {"mean": m, "spread": s, "n": n} for k, (m, s) in vals.items()}}


def test_judge_directions_and_spread():
    claim = MX.Claim("lens helps", "base", "swd")
    base = _row({"swd": (60.0, 1.0)}, 2)
    assert AG.judge(claim, _row({"swd": (50.0, 1.0)}, 2), base, 128)[1] == "in direction, at 128 kimg"
    assert AG.judge(claim, _row({"swd": (70.0, 1.0)}, 2), base, 128)[1] == "not reproduced, at 128 kimg"
    # a gap of 1.5 within the spreads 1 + 1: inconclusive
    assert AG.judge(claim, _row({"swd": (58.5, 1.0)}, 2), base, 128)[1] == "inconclusive, at 128 kimg"
    # face detection: higher is better (registry direction)
    fd = MX.Claim("x", "base", "face_detection")
    assert AG.judge(fd, _row({"face_detection": (0.5, 0.0)}, 1), _row({"face_detection": (0.4, 0.0)}, 1),
                   64)[1].startswith("in direction, at 64 kimg (one seed")
    assert AG.judge(fd, _row({}, 1), _row({"face_detection": (0.4, 0.0)}, 1), 64)[0] == "not measured"


def test_compare_rerun_uses_reported_spread():
    crow = {"row": "r", "per_seed": {"1": {"values": {"swd": 50.0, "ms_ssim": 0.3}}},
            "metrics": {"swd": {"mean": 52.0, "spread": 2.0, "n": 2}, "ms_ssim": {"mean": 0.3, "spread": 0.01, "n": 2}}}
    out = {c["metric"]: c for c in RP.compare_rerun(crow, 1, {"swd": 51.9, "ms_ssim": 0.32})}
    assert out["swd"]["within"] and not out["ms_ssim"]["within"]
    assert out["ms_ssim"]["tolerance"] == 0.01
    with pytest.raises(CM.StudyError, match="seed 2"):
        RP.compare_rerun(crow, 2, {})


def test_progressive_schedule_reaches_the_final_resolution_within_budget():
    sched = MX.progressive_schedule({"resolution": 32, "start_resolution": 4}, 128_000)
    phases = 2 * 3 + 1                     # stable 4; (fade + stable) at 8, 16, 32
    assert sched["network.fade_images"] == sched["network.stable_images"] == 128_000 // phases
    assert phases * sched["network.fade_images"] <= 128_000


def test_default_matrix_resolves_and_names_its_baselines():
    rows, common = MX.load_matrix(None)
    names = {r.name for r in rows}
    assert all(r.claim.baseline in names for r in rows if r.claim)
    ok, skipped = MX.available_rows(rows)
    for r in ok:
        cfg = MX.resolve_config(r, common, 1, 128_000)
        assert (cfg.network.resolution, cfg.optim.batch_size, cfg.run.seed) == (32, 64, 1)
    assert set(skipped) <= {"stylegan2_small", "stylegan2_small_ada", "conditional"}


def test_bad_flags_are_refused_in_one_line(tmp_path):
    with pytest.raises(CM.StudyError, match="unknown row"):
        MX.select_rows(MX.DEFAULT_ROWS, "dcgan,nope")
    with pytest.raises(CM.StudyError, match="--seeds"):
        MX.parse_seeds("1,x")
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"rows": [{"name": "a", "preset": "smoke", "overrides": {"optim.nope": 1}}]}))
    rows, common = MX.load_matrix(str(bad))
    with pytest.raises(CM.StudyError, match="row 'a'.*optim.nope"):
        MX.resolve_config(rows[0], common, 1, 1000)


def test_line_plot_draws_each_series(tmp_path):
    path = PL.line_plot({"a": [(0, 1.0), (8, 3.0), (16, 2.0)], "b": [(0, 2.0), (16, 0.5)]},
                       str(tmp_path / "p.png"), "t", "kimg", hline=("real", 1.5))
    px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in px}
    assert PL.PALETTE[0] in colours and PL.PALETTE[1] in colours
    # the lines cover more than the legend swatches (20x3 px each) and the markers
    assert (px == PL.PALETTE[0]).all(axis=1).sum() > 200


def test_report_only_reads_existing_trainer_run_directories(tmp_path):
    """--report-only trains nothing: it reads each finished run's metrics.jsonl (the trainer's
    record layout) and writes the table from its last record."""
    work, out = tmp_path / "runs", tmp_path / "docs"
    rd = work / "base" / "seed1"
    rd.mkdir(parents=True)
    protos = {"swd2k": {"request": "swd", "metric": "swd", "num_real": 947},
              "ms_ssim2k_pairs": {"request": "ms_ssim", "metric": "ms_ssim", "num_real": 947}}
    recs = [{"step": s, "images_shown": n, "resolution": 32, "scored_resolution": 32,
             "headline": {"swd": swd, "ms_ssim": ms}, "scalars": {"ms_ssim2k_pairs/real": 0.25},
             "protocols": protos, "cache": {"swd": "hit (memory)"}}
            for s, n, swd, ms in ((125, 8000, 245.0, 0.9), (250, 16000, 120.5, 0.4))]
    (rd / CM.RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_json_atomic(str(rd / CM.DONE_FILE), {"images_shown": 16000, "seconds": 60.0})
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": [{"name": "base", "preset": "smoke"}]}))
    args, argv = _args(matrix=matrix, work_dir=work, out=out, seeds="1", budget_kimg=16, eval_every_kimg=8,
                       metrics="swd,ms_ssim", report_only=True)
    assert CMD.main(args, argv, log=lambda s: None) == 0
    row = RP.parse_markdown_table((out / "quality.md").read_text())[0]
    assert (row["row"], row["kimg"], row["SWD ↓"], row["MS-SSIM"], row["MS-SSIM real pairs"]) == \
        ("base", "16", "120.5", "0.4", "0.25")
    committed = json.loads((out / "quality.json").read_text())
    assert committed["rows"][0]["per_seed"]["1"]["num_real"] == {"swd": 947, "ms_ssim": 947}
    assert [x for x, _ in committed["curves"]["base"]["1"]] == [8000, 16000]
    assert committed["rows"][0]["metrics"]["swd"]["late_swing"] == pytest.approx((245.0 - 120.5) / 2)


def test_conditional_row_trains_a_conditional_dcgan_against_its_unconditional_twin():
    """Issue 11: the conditional row is the dcgan preset made conditional (not skipped), compared on
    SWD with the `dcgan` row; conditional runs add attribute_control to their records."""
    rows, common = MX.load_matrix(None)
    row = next(r for r in rows if r.name == "conditional")
    ok, skipped = MX.available_rows([row])
    assert ok == [row] and not skipped
    cfg, twin = (MX.resolve_config(r, common, 1, 128_000) for r in (row, next(r for r in rows if r.name == "dcgan")))
    assert (cfg.network.architecture, cfg.condition.attributes) == ("cdcgan", "male,smiling")
    assert row.claim.baseline == "dcgan" and row.claim.metric == "swd"
    # same budget and training settings as the twin apart from conditioning
    assert (cfg.optim, cfg.run.steps, cfg.network.resolution) == (twin.optim, twin.run.steps, twin.network.resolution)
    assert ("attribute_control", "attribute control ↑") in RP.COLUMNS


def test_run_differences_ignores_config_fields_added_since_at_their_defaults():
    """A run made before a config field existed stays resumable while the request leaves that field at
    its default; moving it off the default, or changing an existing field, is a difference."""
    defaults = {"data": {"synthetic": "", "synthetic_ratio": 0.0}, "optim": {"lr": 2e-4}}
    stored = {"config": {"optim": {"lr": 2e-4}}, "protocol": {"metrics": ["swd", "ms_ssim"]}}
    current = {"config": {"optim": {"lr": 2e-4}, "data": {"synthetic": "", "synthetic_ratio": 0.0}},
               "protocol": {"metrics": ("swd", "ms_ssim")}}            # a tuple in memory, a list on disk
    assert PT.run_differences(stored, current, defaults) == []
    moved = {**current, "config": {**current["config"], "data": {"synthetic": "", "synthetic_ratio": 0.5}}}
    assert PT.run_differences(stored, moved, defaults) == ["config.data"]   # a section the old run lacks
    changed = {**current, "config": {**current["config"], "optim": {"lr": 1e-4}}}
    assert PT.run_differences(stored, changed, defaults) == ["config.optim.lr"]
    assert PT.run_differences(stored, {**current, "protocol": {"metrics": ["swd"]}}, defaults) == ["protocol.metrics"]
    # the same settings reached by a pinning override that leaves a note (issue 20's StyleGAN2 rows)
    noted = {**current, "config": {**current["config"], "notes": ["tricks.ema_decay replaces ..."]}}
    assert PT.run_differences({**stored, "config": {**stored["config"], "notes": []}}, noted, defaults) == []


def test_one_seed_rows_are_judged_against_the_pooled_seed_spread():
    """A one-seed comparison uses the largest seed spread of the rows that have two seeds, counted
    for both rows: a gap within 2x that spread is inconclusive."""
    summary = [dict(_row({"swd": (60.0, 3.0)}, 2), row="dcgan"), dict(_row({"swd": (40.0, 1.0)}, 2), row="b"),
               dict(_row({"swd": (55.0, 0.0)}, 1), row="c")]
    pooled = AG.pooled_spreads(summary)
    assert pooled == {"swd": 3.0}                          # max over the two-seed rows, not the one-seed row
    claim = MX.Claim("x", "dcgan", "swd")
    one = _row({"swd": (55.0, 0.0)}, 1)                     # gap 5 <= 2 * 3
    assert AG.judge(claim, one, summary[0], 128, pooled)[1] == "inconclusive, at 128 kimg (one seed; pooled seed spread 3)"
    far = _row({"swd": (50.0, 0.0)}, 1)                     # gap 10 > 6
    assert AG.judge(claim, far, summary[0], 128, pooled)[1] == "in direction, at 128 kimg (one seed; pooled seed spread 3)"
    # the rerun of a one-seed row is held to the same pooled spread
    committed = {"row": "c", "per_seed": {"1": {"values": {"swd": 55.0}}}, "metrics": {"swd": {"spread": 0.0, "n": 1}}}
    assert RP.compare_rerun(committed, 1, {"swd": 57.5}, pooled)[0]["within"]
    assert not RP.compare_rerun(committed, 1, {"swd": 58.5}, pooled)[0]["within"]
    assert RP.compare_rerun(committed, 1, {"swd": 55.5})[0]["tolerance"] == pytest.approx(0.55)   # no pool: 1%


def test_late_swing_is_half_the_last_change_and_makes_close_gaps_inconclusive():
    """A run whose metric still moves between its last two evaluations cannot decide a claim by a
    gap smaller than the two rows' swings, whatever the seed spread says."""
    curve = [(32, {"swd": 154.0}), (64, {"swd": 131.0}), (96, {"swd": 138.0}), (128, {"swd": 166.0})]
    assert AG.late_swing(curve, "swd") == 14.0                  # |166 - 138| / 2
    assert AG.late_swing(curve[:1], "swd") is None and AG.late_swing(curve, "ms_ssim") is None
    claim = MX.Claim("x", "base", "swd")
    base = _row({"swd": (166.0, 0.0)}, 1)
    base["metrics"]["swd"]["late_swing"] = 14.0
    row = _row({"swd": (152.0, 0.0)}, 1)
    row["metrics"]["swd"]["late_swing"] = 1.0
    pooled = {"swd": 1.0}                                      # the seed yardstick alone: 14 > 2, in direction
    measured, note = AG.judge(claim, row, base, 128, pooled)
    assert measured.endswith("within the late-run swing")
    assert note == "inconclusive, at 128 kimg (the two runs' last evaluations still move by ±1 and ±14)"
    row["metrics"]["swd"]["mean"] = 100.0                      # gap 66 > 15: decided by the seed rule again
    assert AG.judge(claim, row, base, 128, pooled)[1] == "in direction, at 128 kimg (one seed; pooled seed spread 1)"
    del base["metrics"]["swd"]["late_swing"]                   # no swing known: the seed rule alone
    row["metrics"]["swd"]["mean"] = 152.0
    assert AG.judge(claim, row, base, 128, pooled)[1].startswith("in direction")


def test_loss_gap_reads_the_runs_tensorboard_events(tmp_path):
    """FaceGANs' loss-gap column: mean |loss/g - loss/d| over the last quarter of the logged steps,
    read back with TensorBoard's reader from events written the way the trainer writes them."""
    tf = pytest.importorskip("tensorflow")
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    g = [3.0, 2.0, 1.5, 1.0, 0.9, 0.8, 2.5, 2.0]
    d = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.5, 1.0]
    with writer.as_default():
        for step, (a, b) in enumerate(zip(g, d)):
            tf.summary.scalar("loss/g", a, step=step)
            tf.summary.scalar("loss/d", b, step=step)
    writer.close()
    # last quarter of 8 steps = steps 6, 7: |2.5 - 0.5| = 2, |2.0 - 1.0| = 1 -> 1.5
    assert AG.loss_gap(str(tmp_path / "logs")) == pytest.approx(1.5)
    assert AG.loss_gap(str(tmp_path / "missing")) is None


def test_grid_of_a_conditional_run_uses_the_evaluators_attribute_requests(tmp_path):
    """The study's sample grid of a conditional row (the study once crashed there: the grid sampled
    without attributes) is the evaluated stream: the same latents and attribute requests."""
    pytest.importorskip("tensorflow")
    from tests.testlib.examples import write_synthetic_examples
    from facegan.generator.ops import sample_latents
    from facegan.metrics.attributes import requested_attributes
    from bench.quality_study.runner import grid_images
    from facegan.trainer import train_lib
    from facegan.trainer.config import get_preset
    data = write_synthetic_examples(str(tmp_path / "ex"), n_train=16, n_eval=8, attributes=("male", "smiling"))
    cfg = get_preset("smoke_conditional", {"condition.attributes": "male,smiling", "eval.every_images": 0})
    trainer = train_lib.Trainer(cfg, data, str(tmp_path / "run"), steps=0, progress=False)
    imgs = grid_images(trainer, seed=3, num=6)
    assert imgs.shape == (6, 32, 32, 3) and imgs.dtype == np.uint8
    z = sample_latents(3, 0, 6, cfg.network.z_dim)
    y = requested_attributes(3, 0, 6, 2)
    np.testing.assert_array_equal(imgs, np.asarray(trainer.gan.sample(z, ema=True, attributes=y)))


def test_raw_grid_only_when_the_last_evaluation_says_the_ema_was_warming_up(tmp_path):
    """A run that ends with its EMA warming up (scored on `raw_headline` too) also leaves the raw
    G's grid; otherwise only the EMA's (issue 20: a per-step EMA showed 11% of its init)."""
    from bench.quality_study.runner import save_grids
    # a fake trainer: the EMA generator draws 200s, the raw one 50s (the grid code only samples)
    gan = types.SimpleNamespace(sample=lambda z, ema, attributes=None: np.full((len(z), 4, 4, 3), 200 if ema else 50, np.uint8))
    trainer = types.SimpleNamespace(gan=gan, cfg=types.SimpleNamespace(condition=types.SimpleNamespace(attributes=""),
                                                                       network=types.SimpleNamespace(z_dim=2)))
    save_grids(trainer, 0, str(tmp_path), {"ema": {"weights": "ema", "warming_up": False}})
    assert os.listdir(tmp_path) == [CM.GRID_FILE]
    save_grids(trainer, 0, str(tmp_path), {"ema": {"weights": "ema", "warming_up": True}})
    ema, raw = (np.asarray(Image.open(tmp_path / f)) for f in (CM.GRID_FILE, CM.GRID_RAW_FILE))
    assert ema.min() == 200 and raw.min() == 50 and ema.shape == raw.shape   # (the padding is white)


def test_report_command_names_no_folder_of_the_machine_that_ran_it():
    from bench.quality_study.command import portable_command, rerun_command
    cmd = ("python bench/quality.py --budget-kimg 128 --cache-dir /work/study_cache --work-dir=/home/u/runs "
           "--data ../ffhq32 --out docs --rows dcgan --seeds 1")
    got = portable_command(cmd)
    assert got == ("python bench/quality.py --budget-kimg 128 --cache-dir CACHE_DIR --work-dir=WORK_DIR "
                   "--data EXAMPLES --out docs --rows dcgan --seeds 1")      # relative --out stays
    assert "/work" not in rerun_command(got, "dcgan", 1) and "--rerun-row dcgan" in rerun_command(got, "dcgan", 1)


def test_a_row_that_is_not_faces_cannot_be_in_direction_on_swd_alone():
    """The ProGAN rows' grids were noise (face rate 0.07 against the reals' 0.92) yet a better SWD
    than another noise row made "in direction": the verdict is gated on the face rate too."""
    claim = MX.Claim("residual blocks help", "base", "swd")
    faces = lambda rate: {"face_detection": (rate, 0.0), "face_detection_real": (0.92, 0.0)}  # noqa: E731
    base = dict(_row({"swd": (160.0, 1.0), **faces(0.07)}, 2), row="base")
    noise = dict(_row({"swd": (120.0, 1.0), **faces(0.10)}, 2), row="r")
    measured, note = AG.judge(claim, noise, base, 128)
    assert measured.endswith("better") and note.startswith("inconclusive") and "not faces (r 0.1, base 0.07" in note
    good = dict(_row({"swd": (30.0, 1.0), **faces(0.85)}, 2), row="r")
    assert "not faces (base 0.07" in AG.judge(claim, good, base, 128)[1]     # a noise baseline gates too
    good_base = dict(_row({"swd": (40.0, 1.0), **faces(0.80)}, 2), row="base")
    assert AG.judge(claim, good, good_base, 128)[1] == "in direction, at 128 kimg"
    # worse on SWD stays "not reproduced"; the reals' rate comes from the summary when a row lacks it
    assert AG.judge(claim, dict(_row({"swd": (50.0, 1.0), **faces(0.1)}, 2), row="r"), good_base, 128)[1] \
        == "not reproduced, at 128 kimg"
    bare = dict(_row({"swd": (30.0, 1.0), "face_detection": (0.4, 0.0)}, 2), row="r")
    assert AG.judge(claim, bare, good_base, 128, real_faces=0.92)[1].startswith("inconclusive")   # 0.4/0.92 < 0.5
    assert AG.judge(claim, bare, good_base, 128, real_faces=0.7)[1] == "in direction, at 128 kimg"  # 0.57


def _write_run(rd, swd_curve, faces=0.9, commit="abc1234"):
    rd.mkdir(parents=True)
    protos = {"swd2k": {"request": "swd", "metric": "swd", "num_real": 947},
              "face_detection2k": {"request": "face_detection", "metric": "face_detection", "num_real": 947}}
    recs = [{"step": i, "images_shown": n, "resolution": 32, "headline": {"swd": v, "face_detection": faces},
             "scalars": {"face_detection2k/real/detected_fraction": 0.92}, "protocols": protos}
            for i, (n, v) in enumerate(swd_curve)]
    (rd / CM.RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_json_atomic(str(rd / CM.DONE_FILE), {"images_shown": swd_curve[-1][0], "seconds": 60.0, "commit": commit})


def test_report_merges_a_committed_quality_json_with_new_runs(tmp_path):
    """--report-only --merge-committed: (row, seed) pairs finished in the work dir come from their
    runs, every other pair is copied from the committed quality.json as written, each tagged with
    its source; verdicts are recomputed over the merged rows; budget and protocol must match."""
    work, out, old_out = tmp_path / "runs", tmp_path / "docs", tmp_path / "old"
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": [{"name": "base", "preset": "smoke"},
                                           {"name": "trick", "preset": "smoke", "claim": {"text": "t", "baseline": "base"}}]}))
    # the committed study: base seeds 1, 2 and trick seed 1 only
    _write_run(work / "old" / "base" / "seed1", [(8000, 90.0), (16000, 60.0)])
    _write_run(work / "old" / "base" / "seed2", [(8000, 88.0), (16000, 62.0)])
    _write_run(work / "old" / "trick" / "seed1", [(8000, 80.0), (16000, 70.0)], faces=0.1)
    common = dict(matrix=matrix, seeds="1,2", budget_kimg=16, eval_every_kimg=8, metrics="swd,face_detection",
                  report_only=True)
    assert CMD.main(*_args(work_dir=work / "old", out=old_out, **common), log=lambda s: None) == 0
    committed = json.loads((old_out / "quality.json").read_text())
    assert committed["rows"][1]["n"] == 1
    # new code: trick seeds 1 and 2 rerun (faces now), base not rerun
    _write_run(work / "new" / "trick" / "seed1", [(8000, 44.0), (16000, 40.0)], commit="def5678")
    _write_run(work / "new" / "trick" / "seed2", [(8000, 45.0), (16000, 42.0)], commit="def5678")
    assert CMD.main(*_args(work_dir=work / "new", out=out, merge_committed=old_out / "quality.json", **common),
                  log=lambda s: None) == 0
    merged = {r["row"]: r for r in json.loads((out / "quality.json").read_text())["rows"]}
    old = {r["row"]: r for r in committed["rows"]}
    assert merged["base"]["per_seed"]["1"]["values"] == old["base"]["per_seed"]["1"]["values"]
    assert merged["base"]["per_seed"]["2"]["source"].startswith("committed quality.json")
    assert merged["base"]["metrics"]["swd"]["mean"] == pytest.approx(61.0)
    assert merged["trick"]["n"] == 2 and merged["trick"]["metrics"]["swd"]["mean"] == pytest.approx(41.0)
    assert merged["trick"]["per_seed"]["2"]["source"] == "run at commit def5678"
    assert merged["trick"]["verdict"] == "in direction, at 16 kimg"      # recomputed: 41 ± 1 vs 61 ± 1
    md = (out / "quality.md").read_text()
    assert "- trick seed 1: run at commit def5678" in md and "- base seed 1: committed quality.json" in md
    # --drop-committed: a row whose committed runs predate a fix shows only new runs
    assert CMD.main(*_args(work_dir=work / "new", out=out, merge_committed=old_out / "quality.json",
                         drop_committed="base", **common), log=lambda s: None) == 0
    dropped = {r["row"]: r for r in json.loads((out / "quality.json").read_text())["rows"]}
    assert dropped["base"]["n"] == 0 and "verdict" not in dropped["trick"]
    assert "committed runs predate a fix" in (out / "quality.md").read_text()
    # a committed file of another budget or protocol is refused in one line
    args, argv = _args(work_dir=work / "new", out=out, merge_committed=old_out / "quality.json",
                       **dict(common, budget_kimg=32))
    with pytest.raises(CM.StudyError, match="pass --budget-kimg 16"):
        CMD._main(args, argv, lambda s: None)
    assert CMD.rerun_command("python bench/quality.py --report-only --merge-committed docs/q.json --rows a",
                           "dcgan", 1) == "python bench/quality.py --rerun-row dcgan --seed 1"


def test_a_merged_row_shows_its_first_seeds_grid(tmp_path):
    """Seed 1 committed, seed 2 finished here: the Samples grid stays the committed seed 1's (the
    report says "each row's first seed"); a row with seed 1 finished here shows that run's grid."""
    work, out = tmp_path / "runs", tmp_path / "docs"
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": [{"name": "a", "preset": "smoke"}, {"name": "b", "preset": "smoke"}]}))
    common = dict(matrix=matrix, budget_kimg=16, eval_every_kimg=8, metrics="swd,face_detection", report_only=True)
    for row in ("a", "b"):
        _write_run(work / "old" / row / "seed1", [(8000, 90.0), (16000, 60.0)])
        Image.new("RGB", (4, 4), (10, 0, 0)).save(work / "old" / row / "seed1" / CM.GRID_FILE)
    # row a's run ended with its EMA warming up: its raw G's grid is shown beside the EMA's
    Image.new("RGB", (4, 4), (11, 0, 0)).save(work / "old" / "a" / "seed1" / CM.GRID_RAW_FILE)
    assert CMD.main(*_args(work_dir=work / "old", out=out, seeds="1", **common), log=lambda s: None) == 0
    md = (out / "quality.md").read_text()
    assert "![a_raw](quality/grid_a_raw.png)" in md and "**a, raw G (not the exported EMA: the EMA was still warming up" in md
    assert "grid_b_raw" not in md
    _write_run(work / "new" / "a" / "seed2", [(8000, 80.0), (16000, 50.0)])
    Image.new("RGB", (4, 4), (0, 20, 0)).save(work / "new" / "a" / "seed2" / CM.GRID_FILE)
    _write_run(work / "new" / "b" / "seed1", [(8000, 80.0), (16000, 50.0)])
    Image.new("RGB", (4, 4), (0, 0, 30)).save(work / "new" / "b" / "seed1" / CM.GRID_FILE)
    committed = tmp_path / "committed.json"
    committed.write_text((out / "quality.json").read_text())
    assert CMD.main(*_args(work_dir=work / "new", out=out, seeds="1,2", merge_committed=committed, **common),
                    log=lambda s: None) == 0
    merged = {r["row"]: r for r in json.loads((out / "quality.json").read_text())["rows"]}
    assert merged["a"]["n"] == 2
    assert np.asarray(Image.open(out / "quality" / "grid_a.png"))[0, 0].tolist() == [10, 0, 0]
    assert np.asarray(Image.open(out / "quality" / "grid_b.png"))[0, 0].tolist() == [0, 0, 30]
    # the committed raw grid stays with its committed grid
    assert np.asarray(Image.open(out / "quality" / "grid_a_raw.png"))[0, 0].tolist() == [11, 0, 0]
    assert "![a_raw](quality/grid_a_raw.png)" in (out / "quality.md").read_text()


def test_progan_rows_honour_the_presets_batch_sizes_and_ema_rows_use_the_ramped_horizon():
    rows = {r.name: r for r in MX.DEFAULT_ROWS}
    common = dict(MX.COMMON)
    for name in ("progan", "progan_residual", "progan_repel_stats"):
        cfg = MX.resolve_config(rows[name], common, 1, 128_000)
        assert cfg.network.batch_sizes == {"4": 64, "8": 64, "16": 64, "32": 32}, name
        assert (cfg.tricks.ema_kimg, cfg.tricks.ema_rampup, cfg.network.output_activation) == (10.0, 0.05, "linear")
    ema = MX.resolve_config(rows["dcgan_ema"], common, 1, 128_000).tricks
    assert (ema.ema_kimg, ema.ema_rampup, ema.ema_decay) == (10.0, 0.05, 0.0)
    # the StyleGAN2 rows pin the per-step decay they were trained with (the preset moved to kimg)
    for name in ("stylegan2_small_ada", "stylegan2_small"):
        sg2 = MX.resolve_config(rows[name], common, 2, 128_000).tricks
        assert (sg2.ema_decay, sg2.ema_kimg, sg2.ema_rampup) == (0.99778, 0.0, 0.0), name


def test_report_keeps_a_hand_written_preface_and_writes_no_machine_paths(tmp_path):
    assert CMD.portable_command("python bench/quality.py --cache-dir /x/c --work-dir=/x/w --rows a --data /d") == \
        "python bench/quality.py --cache-dir CACHE_DIR --work-dir=WORK_DIR --rows a --data EXAMPLES"
    assert CMD.portable_command("python bench/quality.py --report-only --merge-committed /x/docs/quality.json") == \
        "python bench/quality.py --report-only --merge-committed QUALITY_JSON"
    work, out = tmp_path / "runs", tmp_path / "docs"
    _write_run(work / "base" / "seed1", [(8000, 90.0), (16000, 60.0)])
    out.mkdir()
    (out / "quality.md").write_text("# Quality study\n\n**Status: hand-written.**\n\n" + RP.GENERATED_MARK + "\nold table\n")
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": [{"name": "base", "preset": "smoke"}]}))
    args, argv = _args(matrix=matrix, work_dir=work, out=out, seeds="1", budget_kimg=16, eval_every_kimg=8,
                       metrics="swd,face_detection", report_only=True)
    assert CMD.main(args, argv, log=lambda s: None) == 0
    md = (out / "quality.md").read_text()
    assert md.startswith("# Quality study\n\n**Status: hand-written.**\n\n" + RP.GENERATED_MARK)
    assert "old table" not in md and md.count("# Quality study") == 1 and str(work) not in md
    # a preface with its own title keeps it whole (it was once cut to "# Quality study\n\n at 64x64")
    (out / "quality.md").write_text(md.replace("# Quality study\n", "# Quality study at 64x64: which preset\n", 1))
    assert CMD.main(args, argv, log=lambda s: None) == 0
    md = (out / "quality.md").read_text()
    assert md.startswith("# Quality study at 64x64: which preset\n\n**Status: hand-written.**\n\n" + RP.GENERATED_MARK)
    assert md.count("# Quality study") == 1


def test_a_committed_entry_merged_again_names_its_first_origin_once():
    """Merging a merged quality.json keeps where an entry first came from (the committed file and
    its run), not one "committed quality.json (date):" per merge in between."""
    from bench.quality_study.aggregate import committed_source
    first = {"meta": {"date": "2026-11-30 16:30 UTC"}}
    second = {"meta": {"date": "2026-12-07 08:57 UTC"}}
    once = committed_source(first, "run at commit 79cc1a0")
    assert once == "committed quality.json (2026-11-30 16:30 UTC): run at commit 79cc1a0"
    assert committed_source(second, once) == once
    assert committed_source(second, None) == "committed quality.json (2026-12-07 08:57 UTC)"
    chained = "committed quality.json (2026-12-07 08:57 UTC): committed quality.json (2026-11-30 16:30 UTC)"
    assert committed_source(second, chained) == "committed quality.json (2026-11-30 16:30 UTC)"
