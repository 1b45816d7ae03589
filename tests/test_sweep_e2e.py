"""End to end on the real records: `ray job submit` of a sweep to a local cluster
on 127.0.0.1, and the CLI's ASHA sweep of the smoke grid killed half-way and
resumed with Tuner.restore (one sweep proves both the grid x ASHA and resume).

Each test runs the real `ecg-ray` CLI in a subprocess with its own Ray session
folder, so whatever it leaves behind can be found and killed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e

SMOKE = str(PROJECT_ROOT / "search_spaces" / "smoke.yaml")
#: Shrink the smoke grid's data for tests: the grid itself stays 2 x 2 x 2.
SMALL = ["--set", "data.max_records=80"]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_tmp():
    """A short Ray session folder (socket paths must stay < 108 chars); every
    process still using it is killed afterwards, even if the test failed."""
    path = tempfile.mkdtemp(prefix="ecgray", dir="/tmp")
    yield path
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(path in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    shutil.rmtree(path, ignore_errors=True)


def _env(ray_tmp: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ECG_RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1", **extra)
    return env


def _sweep_cmd(prepared: Path, storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ecg_ray.cli", "sweep", SMOKE, "--data", str(prepared),
            "--storage", str(storage), *SMALL, *extra]


def _results(experiment: Path):
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return analysis, {t.trial_id: t for t in analysis.trials}


def _trial_states(experiment: Path) -> dict[str, str]:
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_to_local_cluster(prepared_small, tmp_path, ray_tmp):
    port, dash = _free_port(), _free_port()
    env = _env(ray_tmp)
    env.pop("ECG_RAY_TMPDIR")  # the job connects to the cluster instead of starting Ray
    start = [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
             "--temp-dir", ray_tmp, "--include-dashboard", "true", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=180)
    address = f"http://127.0.0.1:{dash}"
    runtime_env = json.dumps({"excludes": [".venv/", ".git/", "results/", "ray_results/", "work/"]})
    try:
        submit = [RAY, "job", "submit", "--address", address, "--working-dir", str(PROJECT_ROOT),
                  "--runtime-env-json", runtime_env, "--no-wait", "--",
                  "python", "-m", "ecg_ray.cli", "sweep", SMOKE, "--data", str(prepared_small),
                  "--storage", str(tmp_path), *SMALL, "--set", "param_space.augment=none"]
        out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
        assert out.returncode == 0, out.stdout + out.stderr
        job_id = next(line.split("'")[1] for line in out.stdout.splitlines() if "submitted successfully" in line)
        deadline, status = time.time() + 900, ""
        while time.time() < deadline:
            status = subprocess.run([RAY, "job", "status", "--address", address, job_id], env=env,
                                    capture_output=True, text=True, timeout=60).stdout
            if any(s in status for s in ("SUCCEEDED", "FAILED", "STOPPED")):
                break
            time.sleep(5)
        logs = subprocess.run([RAY, "job", "logs", "--address", address, job_id], env=env,
                              capture_output=True, text=True, timeout=60).stdout
        assert "SUCCEEDED" in status, status + logs[-4000:]
        assert "best trial:" in logs
        _, trials = _results(tmp_path / "smoke")
        assert len(trials) == 4  # 2 models x 2 imbalance, augment fixed
        assert all(t.status == "TERMINATED" and t.last_result.get("val_f1_cinc") is not None
                   for t in trials.values())
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_killed_asha_sweep_resumes_without_rerunning_finished_trials(prepared_small, tmp_path, ray_tmp):
    experiment = tmp_path / "smoke"
    proc = subprocess.Popen(_sweep_cmd(prepared_small, tmp_path), env=_env(ray_tmp), cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished: set[str] = set()
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            states = _trial_states(experiment)
            finished = {t for t, s in states.items() if s == "TERMINATED"}
            if finished and len(finished) < len(states):
                break
            time.sleep(1)
        assert proc.poll() is None, "sweep ended before it could be killed"
        assert finished, "no trial finished in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for p in psutil.process_iter(["cmdline"]):  # the killed driver's local Ray
        try:
            if any(ray_tmp in part for part in p.info["cmdline"] or []):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass

    def trial_files(trial_id):
        trial_dir = next(d for d in experiment.iterdir() if d.name.startswith(f"run_trial_{trial_id}"))
        return ((trial_dir / "result.json").read_text(),
                sorted(p.name for p in (experiment / f"train_{trial_id}").glob("checkpoint_*")))

    before = {t: trial_files(t) for t in finished}
    out = subprocess.run(_sweep_cmd(prepared_small, tmp_path, "--resume"), env=_env(ray_tmp),
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for t in finished:  # finished trials were not run again
        assert trial_files(t) == before[t], f"trial {t} was rerun"
    assert "best trial:" in out.stdout
    _, trials = _results(experiment)
    assert len(trials) == 8  # the whole 2 x 2 x 2 grid
    assert len({(t.config["model"], t.config["imbalance"], t.config["augment"]) for t in trials.values()}) == 8
    assert all(t.status == "TERMINATED" for t in trials.values())
    for t in trials.values():  # the recording-level headline and its segment-level twin
        assert 0.0 <= t.last_result["val_f1_cinc"] <= 1.0
        assert "val_seg_f1_cinc" in t.last_result and "checkpoint_path" in t.last_result
    epochs = [int(t.last_result["epochs_done"]) for t in trials.values()]
    assert max(epochs) == 3
    assert min(epochs) < 3, f"ASHA stopped no trial: {epochs}"
    assert f"{sum(epochs)} trial-epochs (exhaustive: 24)" in out.stdout
