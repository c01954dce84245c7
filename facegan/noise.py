"""Third-party terminal noise: quiet by default, everything with `facegan --verbose`.

A plain `facegan ingest` used to print 8-50 lines that are not ours before its own output:
google-api-core's "non-supported Python version" FutureWarnings (one per Google client imported,
again in every Beam worker), TensorFlow's C++ start-up lines (cuDNN/cuFFT/cuBLAS factory "E"
lines, the TensorRT warning, oneDNN notes), absl's `ArtifactQuery.property_predicate is not
supported` from TFX, setuptools' pkg_resources deprecation, kfp's ContainerOp FutureWarning and
the Beam workers' `semi_persistent_directory` / `Discarding unparseable args` warnings, relayed by
the job service. `quiet()` is called by `facegan.cli` before any subcommand module (and so
TensorFlow, TFX or Beam) is imported:

- environment variables, set only where the user has not set them and inherited by the Beam
  worker subprocesses: TF_CPP_MIN_LOG_LEVEL=3 (TensorFlow's C++ logging; its errors still reach
  Python as exceptions), PYTHONWARNINGS for the known third-party warning messages (appended to
  the user's own);
- warnings filters: the known messages, and FutureWarning / DeprecationWarning raised from any
  module outside `facegan` (they are addressed to library authors, not to users);
- logging: the third-party loggers (absl, tensorflow, apache_beam, tfx, kfp, ...) show ERROR and
  above only (a level for their children, a filter that survives absl resetting its own level),
  so a worker's real error is still printed.

Our own warnings (`warnings.warn` from facegan modules, the `facegan.*` loggers) and every error
stay visible. `NOISE_PATTERNS` lists what a user must not see by default; the tests and CI count
lines matching them (`noise_lines`).
"""
import contextlib
import logging
import os
import re
import sys
import warnings
from typing import Iterable, List

# (message prefix, category) of third-party warnings that say nothing to a facegan user.
KNOWN_WARNINGS = (
    ("You are using a non-supported Python version", FutureWarning),
    ("pkg_resources is deprecated", UserWarning),
    ("pkg_resources is deprecated", DeprecationWarning),
    ("Deprecated call to `pkg_resources.declare_namespace", DeprecationWarning),
    ("Please create reusable components instead of constructing ContainerOp", FutureWarning),
)

# Loggers of the libraries we drive; quiet mode lets only their errors through.
THIRD_PARTY_LOGGERS = ("absl", "tensorflow", "apache_beam", "tfx", "ml_metadata", "kfp",
                       "google", "googleapiclient", "urllib3", "h5py", "matplotlib", "PIL",
                       "grpc", "jax", "numexpr")

# Environment for this process and its subprocesses (setdefault: a user's own value wins).
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",          # TF C++: hide INFO, WARNING and the start-up "E" lines
    "GRPC_VERBOSITY": "ERROR",            # gRPC core's own logging
    "GLOG_minloglevel": "2",
}

# What the default terminal must not show (one regex per known third-party line).
NOISE_PATTERNS = (
    r"non-supported Python version",
    r"warnings\.warn\(",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"TF-TRT Warning",
    r"Could not find cuda drivers",
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized",
    r"property_predicate is not supported",
    r"pkg_resources",
    r"semi_persistent_directory",
    r"Discarding unparseable args",
    r"(site|dist)-packages/\S+\.py:\d+: \w*Warning",
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] ",
    r"^(WARNING|INFO):(absl|apache_beam|tensorflow|tfx)",
    r"All log messages before absl::InitializeLog",
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE_PATTERNS), re.M)


class _ErrorsOnly(logging.Filter):
    """Drops records below ERROR logged on a third-party logger itself. Kept beside setLevel
    because libraries reset their logger's level (absl does when its flags are parsed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_ERRORS_ONLY = _ErrorsOnly()


def noise_lines(text: str) -> List[str]:
    """The lines of `text` that are known third-party noise."""
    return [line for line in text.splitlines() if _NOISE.search(line)]


QUIET_MARKER = "FACEGAN_QUIET"   # "1" once quiet() ran (inherited by child processes)


@contextlib.contextmanager
def native_stderr_silenced():
    """In quiet mode, point file descriptor 2 at /dev/null for the duration: for native code whose
    logging no environment variable reaches (XLA's first compile prints absl's "All log messages
    before absl::InitializeLog() is called are written to STDERR" regardless of
    TF_CPP_MIN_LOG_LEVEL). A Python exception raised inside still propagates and is shown after
    the descriptor is restored. A no-op unless quiet() ran (--verbose shows everything)."""
    if os.environ.get(QUIET_MARKER) != "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _python_warnings_env() -> str:
    """PYTHONWARNINGS entries for the known messages (inherited by worker subprocesses)."""
    return ",".join(f"ignore:{msg}:{cat.__name__}" for msg, cat in KNOWN_WARNINGS)


def quiet(env=None, loggers: Iterable[str] = THIRD_PARTY_LOGGERS) -> None:
    """Silence the known third-party noise for this process and the processes it starts."""
    env = os.environ if env is None else env
    env[QUIET_MARKER] = "1"
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    extra = _python_warnings_env()
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), extra) if w)
    for msg, cat in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(msg), category=cat)
    # Library-internal deprecations (raised from a module outside facegan) are for their authors.
    for cat in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=cat, module=r"(?!facegan(\.|$))")
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)            # children (apache_beam.runners...) inherit it
        if _ERRORS_ONLY not in logger.filters:
            logger.addFilter(_ERRORS_ONLY)


def verbose(env=None) -> None:
    """Show everything: all warnings once per location, third-party INFO logs."""
    env = os.environ if env is None else env
    env[QUIET_MARKER] = "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    warnings.simplefilter("default")
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).removeFilter(_ERRORS_ONLY)
    logging.basicConfig(level=logging.INFO)


def configure(is_verbose: bool) -> None:
    """The one switch `facegan.cli` flips before dispatch."""
    (verbose if is_verbose else quiet)()


def configure_script(argv: list) -> None:
    """For `python bench/X.py`-style scripts: quiet unless `--verbose` is in `argv`, which is then
    removed in place so the script's own argument parser never sees it."""
    configure("--verbose" in argv)
    argv[:] = [a for a in argv if a != "--verbose"]


def main(argv=None) -> int:
    """`python -m facegan.noise LOG...`: print the known third-party noise lines found in the
    logs (e.g. the output of `make demo`, as .ci/run does) and exit 1 if there are any."""
    import sys
    paths = list(sys.argv[1:] if argv is None else argv)
    found = []
    for path in paths or ["-"]:
        with (sys.stdin if path == "-" else open(path, errors="replace")) as f:
            found += noise_lines(f.read())
    for line in found:
        print(f"noise: {line}")
    print(f"{len(found)} third-party noise line(s) in {', '.join(paths) or 'stdin'}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
