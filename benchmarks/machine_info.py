"""The machine a benchmark ran on, recorded in every results JSON: speed and load numbers mean
little without it, and results from different machines must not be compared unawares."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """CPU count and model, operating system, Python and torch versions."""
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
