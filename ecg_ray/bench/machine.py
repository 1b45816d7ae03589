"""Facts about the machine a benchmark ran on (cores, RAM, CPU, GPU, versions,
load) and whether Ray is importable. Never imports Ray itself."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from datetime import datetime, timezone


def ray_available() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # blocked or half-installed
        return False


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (other work on the machine skews timings)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_facts() -> dict:
    import numpy
    import torch

    ram = _ram_bytes()
    facts = {
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "ray": None,
        "gpu": None,
    }
    if ray_available():
        from importlib.metadata import version

        facts["ray"] = version("ray")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts["gpu"] = f"{torch.cuda.device_count()} × {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return facts


def describe(facts: dict) -> str:
    """One line: ``2 cores (CPU model), 23.4 GiB RAM, no GPU; Python …, torch …, Ray …``."""
    gpu = facts.get("gpu") or "no GPU"
    return (f"{facts.get('cores')} cores ({facts.get('cpu')}), {facts.get('ram_gib')} GiB RAM, {gpu}; "
            f"Python {facts.get('python')}, torch {facts.get('torch')}, "
            f"Ray {facts.get('ray') or 'not installed'}; {facts.get('platform')}")
