"""Shared by the quality study's unit and end-to-end tests: the study command's parsed arguments."""
from bench.quality_study import command as CMD


def study_args(**kw):
    """(argparse namespace, argv) of `python bench/quality.py` with these flags."""
    p = CMD.argparse.ArgumentParser()
    CMD.add_arguments(p)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return p.parse_args(argv), argv
