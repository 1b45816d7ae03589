"""The one real sweep of the test session, shared by the sweep, analysis, plot and
report tests: the smoke grid (2 models x 2 imbalance x 2 augmentation, ASHA,
3 epochs) on a small stratified subset of the real records, run through the
real CLI, SIGKILLed once at least one trial finished, then resumed.

Running it once keeps the suite inside its time budget; a second sweep would
cost minutes on 2 cores. ``$ECG_RAY_TEST_SWEEP`` points at an existing
finished experiment instead (handy while developing; the resume test skips).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(PROJECT_ROOT / "search_spaces" / "smoke.yaml")
#: Shrink the smoke grid's data for tests: the grid itself stays 2 x 2 x 2; stage 2 shrinks to
#: model x 2 seeds x 2 epochs (the suite's time budget).
SMALL = ["--set", "data.max_records=80"]
STAGE2 = ["--set", "stage2={factors: [model], seeds: [0, 1], budget: 2}"]


@dataclass
class SmokeSweep:
    experiment: Path  # stage 1 (ASHA); stage 2 is beside it, in smoke_stage2_b2
    resumed: bool = False
    finished_at_kill: dict = field(default_factory=dict)  # trial id -> (result.json text, checkpoints)
    stdout: str = ""


def kill_ray_session(path: str) -> None:
    """Kill every process started for the Ray session folder ``path``."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(path in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def sweep_env(ray_tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ECG_RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1")
    return env


def sweep_cmd(prepared: Path, storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ecg_ray.cli", "sweep", SMOKE, "--data", str(prepared),
            "--storage", str(storage), *SMALL, *STAGE2, *extra]


def trial_states(experiment: Path) -> dict[str, str]:
    """trial id → status, from Tune's latest saved experiment state."""
    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    states = {}
    for entry in data.get("trial_data", []):
        state = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        states[state["trial_id"]] = state["status"]
    return states


def trial_files(experiment: Path, trial_id: str) -> tuple[str, list[str]]:
    """What a rerun would change: the trial's result.json and its Train checkpoints."""
    trial_dir = next(d for d in experiment.iterdir() if d.name.startswith(f"run_trial_{trial_id}"))
    return ((trial_dir / "result.json").read_text(),
            sorted(p.name for p in (experiment / f"train_{trial_id}").glob("checkpoint_*")))


def run_killed_and_resumed(prepared: Path, storage: Path) -> SmokeSweep:
    experiment = storage / "smoke"
    ray_tmp = tempfile.mkdtemp(prefix="ecgray", dir="/tmp")
    try:
        proc = subprocess.Popen(sweep_cmd(prepared, storage), env=sweep_env(ray_tmp), cwd=PROJECT_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        finished: set[str] = set()
        try:
            deadline = time.time() + 900
            while time.time() < deadline and proc.poll() is None:
                states = trial_states(experiment)
                finished = {t for t, s in states.items() if s == "TERMINATED"}
                if finished and len(finished) < len(states):
                    break
                time.sleep(1)
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert finished, "no trial finished in time"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kill_ray_session(ray_tmp)  # the killed driver's local Ray
        before = {t: trial_files(experiment, t) for t in finished}
        out = subprocess.run(sweep_cmd(prepared, storage, "--resume"), env=sweep_env(ray_tmp),
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return SmokeSweep(experiment, True, before, out.stdout)
    finally:
        kill_ray_session(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
