"""Facts about the machine a benchmark ran on (cores, RAM, CPU, GPU, versions, load), the ``$ECG_RAY_*`` knobs
it ran with, and whether Ray is importable. Never imports Ray itself."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import version


def ray_available() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # blocked or half-installed
        return False


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (other work on the machine skews timings)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def env_option(name: str, default, parse=str):
    """``$name`` read through ``parse``; ``default`` when it is unset or empty."""
    text = os.environ.get(name, "").strip()
    return parse(text) if text else default


def env_settings(prefix: str) -> dict[str, str]:
    """The environment variables named ``prefix…`` (the knobs that shrink a section), for its record."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefix)}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_facts() -> dict:
    import numpy
    import torch

    try:
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        ram_gib = None
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{torch.cuda.device_count()} × {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return {"cores": os.cpu_count(), "ram_gib": ram_gib, "cpu": _cpu_model(), "platform": platform.platform(),
            "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
            "ray": version("ray") if ray_available() else None, "gpu": gpu}


def describe(facts: dict) -> str:
    """One line: ``2 cores (CPU model), 23.4 GiB RAM, no GPU; Python …, torch …, Ray …``."""
    gpu = facts.get("gpu") or "no GPU"
    return (f"{facts.get('cores')} cores ({facts.get('cpu')}), {facts.get('ram_gib')} GiB RAM, {gpu}; "
            f"Python {facts.get('python')}, torch {facts.get('torch')}, "
            f"Ray {facts.get('ray') or 'not installed'}; {facts.get('platform')}")
