"""Progress for long work: a tqdm bar on a terminal, plain lines with the ETA elsewhere (a log file, a pipe), where
a bar's frames would glue to the other lines."""
from __future__ import annotations

import sys
import time


class LineProgress:
    """Progress as plain lines, one per tenth of the work with the elapsed time and the ETA; ``update``/``close``
    like a tqdm bar."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = max(1, int(total)), desc, unit
        self.n, self.shown, self.t0 = 0, 0, time.time()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        tenth = min(10, 10 * self.n // self.total)
        if tenth > self.shown:
            self.shown = tenth
            elapsed = time.time() - self.t0
            eta = elapsed / self.n * (self.total - self.n)
            print(f"{self.desc}: {100 * self.n // self.total}% ({self.n}/{self.total} {self.unit}), "
                  f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min", flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str, bar: bool = True):
    """A tqdm bar on stderr when ``bar`` and stderr is a terminal, else :class:`LineProgress`."""
    if bar and sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    return LineProgress(total, desc, unit)
