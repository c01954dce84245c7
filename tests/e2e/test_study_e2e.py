"""The quality study's whole command on synthetic Examples: table, plots, resume and rerun."""
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


@pytest.mark.e2e
def test_study_tiny_run_table_plots_resume_and_rerun(tmp_path):
    from tests.testlib.examples import write_synthetic_examples
    data = write_synthetic_examples(str(tmp_path / "examples"), n_train=48, n_eval=24, resolution=32)
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": [
        {"name": "base", "preset": "smoke"},
        {"name": "smooth", "preset": "smoke", "overrides": {"tricks.label_smoothing": 0.1},
         "claim": {"text": "smoothing helps", "baseline": "base"}},
        {"name": "prog", "preset": "smoke_progan"}]}))
    out, work = tmp_path / "docs", tmp_path / "runs"
    common = dict(matrix=matrix, data=data, work_dir=work, out=out, seeds="1", batch_size=16,
                  budget_kimg=0.064, eval_every_kimg=0.032, eval_images=8,
                  metrics="swd,ms_ssim,face_detection")
    lines = []
    args, argv = _args(**common)
    assert CMD.main(args, argv, log=lines.append) == 0

    table = {r["row"]: r for r in RP.parse_markdown_table((out / "quality.md").read_text())}
    assert set(table) == {"base", "smooth", "prog"}
    for name in ("base", "smooth", "prog"):
        recs = RC.read_records(str(work / name / "seed1" / CM.RECORDS_FILE))
        assert [r["images_shown"] for r in recs] == [32, 64]       # two evaluations, at 32 and 64 images
        # every row, progressive too, is scored by the trainer with the study's protocol at 32x32
        assert all(r["scored_resolution"] == 32 and r["protocols"]["swd8"]["n"] == 8 for r in recs)
        cfg = json.loads((work / name / "seed1" / "config.json").read_text())
        assert cfg["eval"]["every_images"] == 32 and cfg["eval"]["metrics"] == "swd,ms_ssim,face_detection"
        final = RC.record_values(recs[-1])
        assert set(final) == {"swd", "ms_ssim", "ms_ssim_real", "face_detection", "face_detection_real"}
        for key, header in (("swd", "SWD ↓"), ("ms_ssim", "MS-SSIM"), ("ms_ssim_real", "MS-SSIM real pairs"),
                            ("face_detection", "faces ↑")):
            assert float(table[name][header]) == pytest.approx(final[key], rel=5e-4, abs=1e-9), (name, key)
        assert table[name]["kimg"] == "0.064"
        assert (out / "quality" / f"grid_{name}.png").exists()
    assert "at 0.064 kimg" in table["smooth"]["note"]
    # the progressive row's first evaluation is at a lower stage, shown upsampled to 32x32
    prog = RC.read_records(str(work / "prog" / "seed1" / CM.RECORDS_FILE))
    assert prog[0]["resolution"] < 32 and prog[-1]["resolution"] == 32
    for metric in ("swd", "ms_ssim", "face_detection"):
        img = np.asarray(Image.open(out / "quality" / f"{metric}.png").convert("RGB"))
        assert img.shape[0] > 100 and len(np.unique(img.reshape(-1, 3), axis=0)) > 4
        assert (img.reshape(-1, 3) == PL.PALETTE[0]).all(axis=1).sum() > 50   # the first row's line
    committed = json.loads((out / "quality.json").read_text())
    assert committed["meta"]["budget_kimg"] == 0.064 and committed["meta"]["machine"]["cpu_model"]

    # resume: both rows finished -> skipped, nothing retrained or re-evaluated
    before = {p: p.read_bytes() for p in work.glob("*/seed1/" + CM.RECORDS_FILE)}
    lines.clear()
    args, argv = _args(**common)
    assert CMD.main(args, argv, log=lines.append) == 0
    assert sum("skipped" in ln for ln in lines) == 3, lines
    assert {p: p.read_bytes() for p in work.glob("*/seed1/" + CM.RECORDS_FILE)} == before

    # killed after its last evaluation (no done marker yet): the resumed run's wall time adds the
    # seconds study_run.json recorded at that evaluation, instead of counting only the new session
    run_json = work / "base" / "seed1" / "study_run.json"
    assert json.loads(run_json.read_text())["seconds"] > 0
    (work / "base" / "seed1" / CM.DONE_FILE).unlink()
    write_json_atomic(str(run_json), dict(json.loads(run_json.read_text()), seconds=5000.0))
    args, argv = _args(**common)
    assert CMD.main(args, argv, log=lines.append) == 0
    assert 5000.0 <= json.loads((work / "base" / "seed1" / CM.DONE_FILE).read_text())["seconds"] < 5000.0 + 600

    # a changed protocol on finished runs is refused, naming the field
    args, argv = _args(**dict(common, eval_images=6))
    assert CMD.main(args, argv, log=lines.append) == 2

    # rerun one row with the same seed: reproduces the committed numbers
    args, argv = _args(**{k: v for k, v in common.items() if k != "seeds"}, rerun_row="base", seed=1)
    assert CMD.main(args, argv, log=lines.append) == 0
