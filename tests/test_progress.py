"""Progress output: a bar on a terminal, plain lines with the ETA in a log (mhvae_perception.progress)."""
from __future__ import annotations

import io
import re

from mhvae_perception import progress


class FakeStderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_lines_in_a_log_one_per_tenth_with_the_eta(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr", FakeStderr(tty=False))
    bar = progress.progress_bar(200, "collect X", "obs")
    assert isinstance(bar, progress.LineProgress)
    for _ in range(40):
        bar.update(5)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("collect X: 10% (20/200 obs)") and "100%" in lines[-1]
    assert all(re.search(r"\d+\.\d min, ETA \d+\.\d min$", line) for line in lines)
    assert lines[-1].endswith("ETA 0.0 min")


def test_a_bar_on_a_terminal_unless_switched_off(monkeypatch):
    monkeypatch.setattr("sys.stderr", FakeStderr(tty=True))
    bar = progress.progress_bar(10, "x", "point")
    assert not isinstance(bar, progress.LineProgress)
    bar.close()
    assert isinstance(progress.progress_bar(10, "x", "point", bar=False), progress.LineProgress)
