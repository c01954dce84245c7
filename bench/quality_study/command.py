"""The quality study: which preset makes the best faces, and does each paper's trick help?

The command (bench/quality.py) trains a matrix of named rows (a preset plus `--set`-style overrides) on the same
faces, for the same budget of images, with the same seeds; scores every run with ONE protocol
during training (SWD, MS-SSIM next to the real-pair MS-SSIM, the face-detection rate, FID/KID
only where Inception weights exist); and writes `docs/quality.md` (the table with the papers'
claims next to our measured direction), `docs/quality.json` (every number behind it),
`docs/quality/<metric>.png` curves against images shown and `docs/quality/grid_<row>.png`.

    python bench/quality.py [--budget-kimg 128] [--seeds 1,2] [--rows dcgan,tan,...]
    python bench/quality.py --rerun-row dcgan --seed 1  (reproduce one row, compare with docs/quality.json)

Where the numbers come from: every run directory holds `metrics.jsonl`, one JSON object per
evaluation (`step`, `images_shown`, `resolution`, `headline` {request: number}, `scalars`
{"<result key>/<part>": number}, `protocols`), the layout of the trainer's metrics during
training (trainer/periodic_eval.py): the study only configures the trainer's `eval.*` block
with its protocol, for every row (a progressive stage is scored as exported, upsampled to the
final resolution, so a progressive curve is one protocol from 4x4 on). The table reads the last
record of each run (at the end of the budget); nothing else.

Resumable: a finished run leaves `study_done.json` (with a fingerprint of its config and
protocol) and is skipped; a killed run resumes from its last checkpoint (records newer than it are
dropped, then recomputed); a finished run whose fingerprint differs from the request is refused
with the differing fields (use another --work-dir). Progress: one line per segment with the
overall ETA, measured on this session's runs (training and evaluation).

The parts (bench/quality_study/): matrix.py, protocol.py, records.py, aggregate.py, plots.py,
report.py, data.py and this command are TensorFlow-free; training and evaluation live in
runner.py, imported only when something has to run. The study is not part of the installed
package: it runs from a checkout (it writes docs/ and reads the shared faces beside it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
from typing import Any, Dict, Optional, Sequence

from .common import DONE_FILE, GRID_FILE, GRID_RAW_FILE, RECORDS_FILE, StudyError
from .matrix import available_rows, load_matrix, parse_seeds, resolve_config, select_rows
from .protocol import Protocol, default_metrics, trainer_eval_overrides
from .records import read_records, record_values, run_dir_for
from .aggregate import _read_json, fmt, loss_gap, pooled_spreads, summarize
from .report import compare_rerun, write_report
from .data import cache_dir_default, ensure_faces, machine_info


# -- the command -------------------------------------------------------------------------------
EXAMPLES = """examples:
  python bench/quality.py                                    # the whole matrix, 128 kimg, seeds 1,2
  python bench/quality.py --rows dcgan,hdcgan_cpu,facegan --budget-kimg 64 --seeds 1
  python bench/quality.py --report-only                      # rewrite docs/quality.md from finished runs
  python bench/quality.py --rerun-row dcgan --seed 1         # reproduce one row, compare with docs/quality.json
  python bench/quality.py --list-rows"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-kimg", type=float, default=128.0, help="thousands of images shown per row and seed")
    p.add_argument("--seeds", default="1,2", help="training seeds (run.seed), comma-separated")
    p.add_argument("--rows", default=None, help="comma-separated row names (default: all; --list-rows)")
    p.add_argument("--list-rows", action="store_true", help="print the matrix and exit")
    p.add_argument("--matrix", default=None, help='JSON {"rows": [{"name", "preset", "overrides", "claim"}], '
                   '"common": {...}} instead of the built-in matrix')
    p.add_argument("--data", default=None, help="Examples directory (default: the shared CelebA faces, "
                   "ingested once into --cache-dir)")
    p.add_argument("--cache-dir", default=None, help="ingest cache and runs, outside the repo "
                   "(default: $FACEGAN_STUDY_DIR or ~/.cache/facegan/study)")
    p.add_argument("--work-dir", default=None, help="run directories (default: CACHE_DIR/runs)")
    p.add_argument("--out", default="docs", help="where quality.md, quality.json and quality/ go")
    p.add_argument("--resolution", type=int, default=32, help="network.resolution of every row")
    p.add_argument("--batch-size", type=int, default=64, help="optim.batch_size of every row")
    p.add_argument("--eval-every-kimg", type=float, default=16.0, help="evaluate every N kimg")
    p.add_argument("--eval-images", type=int, default=2048, help="samples per metric (pairs for MS-SSIM)")
    p.add_argument("--metrics", default="auto", help="metric requests (default: swd,ms_ssim,face_detection, "
                   "+fid,kid when Inception weights exist)")
    p.add_argument("--extractor", default="inception", help="FID/KID feature extractor (metrics/features.py)")
    p.add_argument("--report-only", action="store_true", help="write the report from finished runs; train nothing")
    p.add_argument("--rerun-row", default=None, help="retrain one row for --seed into a fresh directory "
                   "and compare with OUT/quality.json within its reported spread")
    p.add_argument("--seed", type=int, default=None, help="the seed for --rerun-row")
    p.add_argument("--merge-committed", default=None, metavar="QUALITY_JSON",
                   help="with --report-only: take each (row, seed) not finished in --work-dir from this "
                   "earlier quality.json as written (same budget and protocol required); finished runs "
                   "replace its seeds, verdicts are recomputed over the merged rows")
    p.add_argument("--drop-committed", default="", metavar="ROWS",
                   help="with --merge-committed: rows whose committed entries are NOT taken (their code or "
                   "config changed since); they show only runs finished in --work-dir")


def rerun_command(command: str, row: str, seed: int) -> str:
    """The study's command with --rows/--seeds replaced by `--rerun-row ROW --seed S`."""
    words, out, skip = command.split(" "), [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w in ("--rows", "--seeds", "--rerun-row", "--seed", "--merge-committed", "--drop-committed"):
            skip = True
            continue
        if w != "--report-only" and not w.startswith(("--rows=", "--seeds=", "--merge-committed=", "--drop-committed=")):
            out.append(w)
    return " ".join(out + ["--rerun-row", row, "--seed", str(seed)])


# Path flags of the study whose values name one machine's folders when absolute (or above the
# repository): the report prints a placeholder instead, so docs/ cites no machine's paths.
PATH_PLACEHOLDERS = {"--cache-dir": "CACHE_DIR", "--work-dir": "WORK_DIR", "--data": "EXAMPLES",
                     "--out": "OUT_DIR", "--matrix": "MATRIX_JSON", "--merge-committed": "QUALITY_JSON"}


def portable_command(command: str) -> str:
    """`command` with each absolute (or `..`) value of a path flag replaced by its placeholder."""
    words, out = command.split(" "), []
    for i, w in enumerate(words):
        flag, eq, value = w.partition("=")
        if eq and flag in PATH_PLACEHOLDERS and value.startswith(("/", "..", "~")):
            w = f"{flag}={PATH_PLACEHOLDERS[flag]}"
        elif i and words[i - 1] in PATH_PLACEHOLDERS and w.startswith(("/", "..", "~")):
            w = PATH_PLACEHOLDERS[words[i - 1]]
        out.append(w)
    return " ".join(out)


def _command_line(argv: Optional[Sequence[str]]) -> str:
    if argv is None:
        argv = [a for a in sys.argv[1:] if a != "--verbose"]
    prog = "python bench/quality.py"
    return portable_command(" ".join([prog] + [a if a and " " not in a else json.dumps(a) for a in argv]))


def main(args, argv: Optional[Sequence[str]] = None, log=None) -> int:
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        return _main(args, argv, log)
    except StudyError as e:
        print(f"study: {e}", file=sys.stderr)
        return 2


def _main(args, argv, log) -> int:
    rows_all, common = load_matrix(args.matrix)
    common = {**common, "network.resolution": args.resolution, "optim.batch_size": args.batch_size}
    if args.list_rows:
        for r in rows_all:
            print(f"{r.name:<22} {r.preset:<16} {json.dumps(r.overrides)}"
                  + (f"   claim vs {r.claim.baseline}: {r.claim.text}" if r.claim else ""))
        return 0
    if args.budget_kimg <= 0 or args.eval_every_kimg <= 0 or args.eval_images < 2:
        raise StudyError("--budget-kimg and --eval-every-kimg must be > 0 and --eval-images >= 2")
    budget = int(round(args.budget_kimg * 1000))
    every = int(round(args.eval_every_kimg * 1000))
    cache_dir = args.cache_dir or cache_dir_default()
    work_dir = args.work_dir or os.path.join(cache_dir, "runs")
    if args.rerun_row is not None:
        if args.seed is None:
            raise StudyError("--rerun-row needs --seed")
        rows, seeds = select_rows(rows_all, args.rerun_row), [args.seed]
    else:
        rows, seeds = select_rows(rows_all, args.rows), parse_seeds(args.seeds)
    runnable, skipped = available_rows(rows)
    for name, why in skipped.items():
        log(f"study: skipping row {name}: {why}")
    metrics = default_metrics() if args.metrics == "auto" else \
        [m.strip() for m in args.metrics.split(",") if m.strip()]
    from facegan.metrics.registry import validate_metric_names
    try:
        metrics = [r.label for r in validate_metric_names(metrics)]
    except ValueError as e:
        raise StudyError(f"--metrics: {e}") from None
    protocol = Protocol(tuple(metrics), int(args.eval_images), every, extractor=args.extractor)
    # every config is resolved (and so validated) before anything trains
    configs = {(r.name, s): resolve_config(r, common, s, budget, trainer_eval_overrides(protocol))
               for r in runnable for s in seeds}
    if args.rerun_row is not None:
        return _rerun(args, runnable, seeds[0], configs, protocol, budget, work_dir, log)

    data = None
    if not args.report_only:
        data = args.data or ensure_faces(cache_dir, args.resolution, log)
        from . import runner as study_runner
        jobs = [(r, s) for r in runnable for s in seeds]
        eta = study_runner.StudyClock(jobs, budget, work_dir, log)
        for r, s in jobs:
            study_runner.run_one(r, s, configs[(r.name, s)], protocol, data, budget,
                                 run_dir_for(work_dir, r.name, s), eta, log)
    committed = None
    if args.merge_committed:
        if not args.report_only:
            raise StudyError("--merge-committed only with --report-only (train first, then merge)")
        committed = load_committed(args.merge_committed, budget, protocol)
        drop = {n.strip() for n in args.drop_committed.split(",") if n.strip()}
        unknown = sorted(drop - {r.name for r in rows_all})
        if unknown:
            raise StudyError(f"--drop-committed: unknown row(s) {unknown}")
        committed = dict(committed, rows=[r for r in committed["rows"] if r.get("row") not in drop])
        for name in sorted(drop):
            skipped.setdefault(name, "committed runs predate a fix to this row; rerun not finished yet")
    summary = summarize(rows, work_dir, seeds, committed)
    grids = {}
    committed_seeds = {c.get("row"): {int(s) for s in c.get("per_seed", {})} for c in (committed or {}).get("rows", [])}
    for r in summary:
        old_grid = os.path.join(args.out, "quality", f"grid_{r['row']}.png")
        for s in seeds:     # the first seed that has a grid: a run's own, or the committed one's
            g = os.path.join(run_dir_for(work_dir, r["row"], s), GRID_FILE)
            if not (r["n"] and os.path.exists(g)):
                g = old_grid if r["n"] and s in committed_seeds.get(r["row"], ()) else ""
            if g and os.path.exists(g):   # a merged row keeps its committed (earlier seed's) grid
                grids[r["row"]] = g
                raw = os.path.join(os.path.dirname(g), GRID_RAW_FILE if g != old_grid else f"grid_{r['row']}_raw.png")
                if os.path.exists(raw):
                    grids[f"{r['row']}_raw"] = raw
                break
    seconds = sum((_read_json(os.path.join(run_dir_for(work_dir, r.name, s), DONE_FILE)) or {}).get("seconds", 0)
                  for r in rows for s in seeds)
    data_label = data or args.data or os.path.join(cache_dir, f"celeba{args.resolution}")
    command = _command_line(argv)
    if args.report_only and not committed:   # the command that trained the runs, when an earlier report names it
        command = ((_read_json(os.path.join(args.out, "quality.json")) or {}).get("meta", {})
                   .get("command") or command)
    command = portable_command(command)
    if data_label.startswith(("/", "..", "~")):
        data_label = PATH_PLACEHOLDERS["--data"]
    meta = {"command": command, "budget_kimg": budget / 1000, "seeds": seeds,
            "resolution": args.resolution, "batch_size": args.batch_size, "protocol": protocol.to_dict(),
            "backend": "trainer", "machine": machine_info(), "seconds_total": seconds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "data": ("the shared CelebA faces (10,000 `img_align_celeba` images; `facegan ingest --crop celeba`)"
                     if not args.data else f"`{data_label}`"),
            "rerun_hint": rerun_command(command, rows[0].name, seeds[0])}
    if committed:
        meta["merged_from"] = {"path": os.path.basename(args.merge_committed),
                               "date": committed["meta"].get("date"),
                               "command": portable_command(committed["meta"].get("command") or "")}
        # wall time: this work dir's runs only; the committed runs' stays in the committed file's meta
    files = write_report(summary, args.out, meta, grids, skipped)
    log(f"study: wrote {files['md']} ({sum(1 for r in summary if r['n'])} of {len(summary)} rows finished)")
    return 0


def load_committed(path: str, budget: int, protocol: Protocol) -> Dict[str, Any]:
    """A quality.json to merge with: refused unless its budget and protocol are this command's."""
    committed = _read_json(path)
    if committed is None or "rows" not in committed or "meta" not in committed:
        raise StudyError(f"--merge-committed {path}: not a quality.json written by this tool")
    if abs(committed["meta"]["budget_kimg"] * 1000 - budget) > 0.5:
        raise StudyError(f"--merge-committed {path}: its runs had {committed['meta']['budget_kimg']:g} kimg; "
                         f"pass --budget-kimg {committed['meta']['budget_kimg']:g}")
    if dict(committed["meta"]["protocol"], metrics=list(committed["meta"]["protocol"]["metrics"])) != \
            dict(protocol.to_dict(), metrics=list(protocol.metrics)):
        raise StudyError(f"--merge-committed {path}: its protocol {committed['meta']['protocol']} differs from "
                         "this command's; pass the same --metrics/--eval-images/--eval-every-kimg")
    return committed


def _rerun(args, rows, seed, configs, protocol, budget, work_dir, log) -> int:
    committed = _read_json(os.path.join(args.out, "quality.json"))
    if committed is None:
        raise StudyError(f"{os.path.join(args.out, 'quality.json')}: no committed study to compare with")
    row = rows[0] if rows else None
    if row is None:
        raise StudyError(f"row {args.rerun_row!r} cannot run in this checkout")
    crow = next((r for r in committed["rows"] if r["row"] == row.name), None)
    if crow is None:
        raise StudyError(f"row {row.name!r} is not in {args.out}/quality.json")
    if abs(committed["meta"]["budget_kimg"] * 1000 - budget) > 0.5:
        raise StudyError(f"the committed study ran {committed['meta']['budget_kimg']:g} kimg per row; "
                         f"pass --budget-kimg {committed['meta']['budget_kimg']:g}")
    if dict(committed["meta"]["protocol"], metrics=list(committed["meta"]["protocol"]["metrics"])) != \
            dict(protocol.to_dict(), metrics=list(protocol.metrics)):
        raise StudyError(f"the protocol differs from the committed one ({committed['meta']['protocol']}); "
                         "pass the same --metrics/--eval-images/--eval-every-kimg")
    data = args.data or ensure_faces(args.cache_dir or cache_dir_default(), args.resolution, log)
    from . import runner as study_runner
    rd = os.path.join(work_dir, "rerun", row.name, f"seed{seed}")
    shutil.rmtree(rd, ignore_errors=True)
    clock = study_runner.StudyClock([(row, seed)], budget, os.path.join(work_dir, "rerun"), log)
    study_runner.run_one(row, seed, configs[(row.name, seed)], protocol, data, budget, rd, clock, log)
    recs = read_records(os.path.join(rd, RECORDS_FILE))
    new = record_values(max(recs, key=lambda r: int(r["images_shown"])))
    gap = loss_gap(os.path.join(rd, "logs"))
    if gap is not None:
        new["loss_gap"] = gap
    result = compare_rerun(crow, seed, new, pooled_spreads(committed["rows"]))
    for c in result:
        log(f"  {c['metric']:<16} committed {fmt(c['committed'])}  rerun {fmt(c['rerun'])}  "
            f"tolerance ±{fmt(c['tolerance'])}  {'ok' if c['within'] else 'OUTSIDE'}")
    ok = all(c["within"] for c in result)
    print(json.dumps({"row": row.name, "seed": seed, "reproduced": ok, "comparison": result}, indent=2))
    return 0 if ok else 1


def cli_main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(p.parse_args(argv), argv)
