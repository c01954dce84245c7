"""Progress display for long work: items/s and ETA on one line (stderr), throttled."""
import sys
import time


class Progress:
    def __init__(self, total=None, unit="images", label="", every_s=2.0, stream=None):
        self.total, self.unit, self.label, self.every_s = total, unit, label, every_s
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.done = 0
        self._last = 0.0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self):
        r = self.rate()
        if not self.total or r <= 0:
            return None
        return max(0.0, (self.total - self.done) / r)

    def line(self) -> str:
        parts = [self.label] if self.label else []
        parts.append(f"{self.done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}")
        parts.append(f"{self.rate():.1f} {self.unit}/s")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)

    def update(self, n=1, force=False):
        self.done += n
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def close(self):
        self.update(0, force=True)


def rate_eta(done: int, total, started, now):
    """(items/s, seconds left or None) for `done` of `total` items, with the clock started at
    `started` (when the first item started, not when someone first looked: a clock started late
    overstates the rate and understates the ETA). Pure: times are plain numbers, any clock."""
    if started is None or done <= 0 or now <= started:
        return 0.0, None
    rate = done / (now - started)
    if not total:
        return rate, None
    return rate, max(0.0, (total - done) / rate)


def format_eta(seconds) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
