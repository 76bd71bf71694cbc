"""benchmarks/report.py: every results JSON says which machine produced it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_scripts import benchmark_module


def test_write_report_puts_the_machine_first_and_keeps_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nested" / "results.json"
    with benchmark_module("report.py") as report:
        report.write_report(out, {"rtf": 0.0164, "rows": [1, 2]}, load_average_at_start=0.5)
        processor = report.cpu_model()

    written = json.loads(out.read_text())
    assert list(written) == ["machine", "rtf", "rows"]
    assert written["rtf"] == 0.0164 and written["rows"] == [1, 2]
    machine = written["machine"]
    assert machine["processor"] == processor and processor
    assert machine["cpus"] >= 1 and machine["torch"] and machine["python"].count(".") == 2
    assert machine["load_average_at_start"] == 0.5
    assert capsys.readouterr().out.strip() == f"wrote {out}"
