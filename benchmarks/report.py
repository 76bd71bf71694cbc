"""Every benchmark's results JSON, with the machine it ran on: speed and load numbers mean little
without it, and results from different machines must not be compared unawares."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from audiomodels.files import write_json


def write_report(path: Path, results: dict[str, Any], **machine_extra: Any) -> None:
    """Write ``results`` as JSON at ``path`` under a ``machine`` block (plus ``machine_extra``) and say where."""
    write_json(path, {"machine": {**machine_info(), **machine_extra}, **results})
    print(f"wrote {path}")


def machine_info() -> dict[str, Any]:
    """CPU count and model, operating system, Python and torch versions."""
    return {
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it (``platform.processor()`` often says only "x86_64")."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()
