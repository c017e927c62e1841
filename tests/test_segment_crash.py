"""The segment crash protocol under SIGKILL (a short run; `make stress`
runs hundreds of trials): every acknowledged record is read back with its
exact vector, nothing is half written, `crewcore memory check` passes.
Writers and readers on both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TRIALS = Path(__file__).with_name("segment_crash_trials.py")


@pytest.mark.parametrize("engine,reader", [("native", "native"), ("python", "native"), ("native", "python")])
def test_sigkill_trials(engine: str, reader: str) -> None:
    r = subprocess.run([sys.executable, str(TRIALS), "--trials", "4", "--engine", engine, "--reader", reader],
                       capture_output=True, text=True, timeout=600)
    summary = json.loads(r.stdout.splitlines()[-1])
    assert r.returncode == 0 and summary["failed"] == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert summary["acknowledged_records"] > 0, summary
