"""End to end on the real records: `ray job submit` of a sweep to a local cluster
on 127.0.0.1, and the CLI's ASHA sweep of the smoke grid killed half-way and
resumed with Tuner.restore (one sweep proves both the grid x ASHA and resume).

Each test runs the real `ecg-ray` CLI in a subprocess with its own Ray session
folder, so whatever it leaves behind can be found and killed afterwards.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from smoke_sweep import SMALL, SMOKE, kill_ray_session, sweep_env, trial_files

pytestmark = pytest.mark.e2e

RAY = str(Path(sys.executable).with_name("ray"))


def _results(experiment: Path):
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return analysis, {t.trial_id: t for t in analysis.trials}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli(args: list[str], env: dict, log_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run the `ray` CLI with its output in files, not pipes: `ray start` leaves
    daemons behind that would hold a pipe open and hang the caller."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / f"ray-{args[0]}-{time.monotonic_ns()}.log"
    with open(out_path, "w") as out:
        proc = subprocess.run([RAY, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(), "")


def _epochs(experiment: Path) -> dict[str, list[dict]]:
    """trial id → its reported epochs (result.json rows), read while the sweep runs."""
    out = {}
    for d in experiment.glob("run_trial_*"):
        rows = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()] \
            if (d / "result.json").is_file() else []
        out[d.name.split("_")[2]] = rows
    return out


def test_ray_job_submit_to_local_cluster(prepared_small, tmp_path, ray_tmp):
    port, dash = _free_port(), _free_port()
    env = sweep_env(ray_tmp)
    env.pop("ECG_RAY_TMPDIR")  # the job connects to the cluster instead of starting Ray
    # Token authentication stays on: the cluster and the job CLI share the token Ray
    # keeps in ~/.ray/auth_token; the CLI sends it only in "token" mode.
    env["RAY_AUTH_MODE"] = "token"
    logs_dir = tmp_path / "cli"
    start = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
             "--temp-dir", ray_tmp, "--include-dashboard", "true", "--disable-usage-stats"]
    started = _ray_cli(start, env, logs_dir, timeout=180)
    assert started.returncode == 0, started.stdout[-3000:]
    address = f"http://127.0.0.1:{dash}"
    runtime_env = json.dumps({"excludes": [".venv/", ".git/", "results/", "ray_results/", "work/"],
                              "env_vars": {"ECG_RAY_DEBUG": "1"}})  # a failure shows its traceback
    job_id = None
    try:
        submit = ["job", "submit", "--address", address, "--working-dir", str(PROJECT_ROOT),
                  "--runtime-env-json", runtime_env, "--no-wait", "--",
                  sys.executable, "-m", "ecg_ray.cli", "sweep", SMOKE, "--data", str(prepared_small),
                  "--storage", str(tmp_path), "--stage1-only", *SMALL, "--set", "param_space.augment=none",
                  "--set", "param_space.imbalance=weighted", "--set", "param_space.model=cnn_only",
                  "--set", "scheduler.max_t=2"]
        for _ in range(30):  # the head's job agent comes up after `ray start` returns; Ray says "try again later"
            out = _ray_cli(submit, env, logs_dir, timeout=180)
            if out.returncode == 0 or "No available agent to submit job" not in out.stdout:
                break
            time.sleep(5)
        assert out.returncode == 0, out.stdout[-3000:]
        job_id = next(line.split("'")[1] for line in out.stdout.splitlines() if "submitted successfully" in line)
        deadline, status = time.time() + 900, ""
        while time.time() < deadline:
            status = _ray_cli(["job", "status", "--address", address, job_id], env, logs_dir, timeout=60).stdout
            if any(f"' {s}" in status.lower() for s in ("succeeded", "failed", "stopped")):
                break
            time.sleep(5)
        logs = _ray_cli(["job", "logs", "--address", address, job_id], env, logs_dir, timeout=60).stdout
        assert f"job '{job_id.lower()}' succeeded" in status.lower(), status[-2000:] + logs[-6000:]
        assert "best trial:" in logs
        _, trials = _results(tmp_path / "smoke")
        assert len(trials) == 1  # one trial is enough here: the smoke sweep covers many
        assert all(t.status == "TERMINATED" and t.last_result.get("val_f1_cinc") is not None
                   for t in trials.values())
        assert all(isinstance(r["node_id"], str) for rows in _epochs(tmp_path / "smoke").values() for r in rows)
    finally:
        if job_id:
            _ray_cli(["job", "stop", "--address", address, job_id], env, logs_dir, timeout=60)
        kill_ray_session(ray_tmp)  # this cluster only: `ray stop` would end every Ray on the machine


def test_killed_asha_sweep_resumes_without_rerunning_finished_trials(smoke_sweep):
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no sweep was killed in this session")
    experiment = smoke_sweep.experiment
    assert smoke_sweep.finished_at_kill, "no trial had finished when the sweep was killed"
    for trial_id, files in smoke_sweep.finished_at_kill.items():  # finished trials were not run again
        assert trial_files(experiment, trial_id) == files, f"trial {trial_id} was rerun"
    out = smoke_sweep.stdout
    assert "best trial:" in out
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
    assert f"{sum(epochs)} trial-epochs (exhaustive: 24)" in out


def test_stage2_runs_every_arm_to_the_budget_and_prints_the_answer(smoke_sweep):
    """Stage 2 after the (killed, resumed) ASHA search: model x 2 seeds, imbalance and
    augmentation fixed at stage 1's best, every trial exactly 2 epochs, no pruning."""
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no stage 2 was run in this session")
    stage1, trials1 = _results(smoke_sweep.experiment)
    best = stage1.get_best_config(metric="val_f1_cinc", mode="max", scope="last")
    _, trials = _results(smoke_sweep.experiment.parent / "smoke_stage2_b2")
    assert len(trials) == 4 and {(t.config["model"], t.config["seed"]) for t in trials.values()} == {
        (m, s) for m in ("cnn_only", "cnn_lstm") for s in (0, 1)}
    assert all(t.config["imbalance"] == best["imbalance"] for t in trials.values())
    assert all(t.status == "TERMINATED" and t.last_result["epochs_done"] == 2 for t in trials.values())
    out = smoke_sweep.stdout
    assert "stage 2: every arm 2 epochs, seeds [0, 1]" in out
    assert "Fixed-budget answer (2 epochs)" in out
