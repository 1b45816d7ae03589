"""The one real sweep of the test session, shared by the sweep, multi-node,
analysis, plot and report tests: the smoke grid (2 models x 2 imbalance x 2
augmentation, ASHA, 3 epochs, then stage 2) on a small stratified subset of the
real records, sent with `ray job submit` to a local 3-node cluster (see
``run_on_cluster``): stopped once a trial finished and resumed, and a worker node
SIGKILLed under a running trial.

Running it once keeps the suite inside its time budget; a second sweep would
cost minutes on 2 cores. ``$ECG_RAY_TEST_SWEEP`` points at an existing
finished experiment instead (handy while developing; the resume test skips).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(PROJECT_ROOT / "search_spaces" / "smoke.yaml")
#: Shrink the smoke grid's data for tests: the grid itself stays 2 x 2 x 2; stage 2 shrinks to
#: model x 2 seeds x 2 epochs (the suite's time budget), each trial DDP over 2 workers x 1 CPU
#: (gloo), one on each worker node, all with the ``sampler`` strategy (per-rank Poisson resampling:
#: the one whose ranks draw different batch sizes), so the trial killed with its node is a sampler
#: DDP trial resumed from its checkpoint. Stage 1 draws 6 crops of 20 s per record; stage 2 draws
#: 12, so that its second epoch (about 3 s of training with 6) lasts long enough for the node-kill
#: test to catch a trial between its two epochs, not after its last one was reported (a fresh-clone
#: run once killed the node 3 s late: the trial then only re-reported its finished epoch 2).
SMALL_RECORDS = 80
SMALL = ["--set", f"data.max_records={SMALL_RECORDS}", "--set", "param_space.crops_per_record=6"]
STAGE2 = ["--set", "stage2={factors: [model], seeds: [0, 1], budget: 2,"
                   " fixed: {imbalance: sampler, crops_per_record: 12},"
                   " resources: {num_workers: 2, cpus_per_trial: 2}}"]


@dataclass
class SmokeSweep:
    experiment: Path  # stage 1 (ASHA); stage 2 is beside it, in smoke_stage2_b2
    resumed: bool = False
    finished_at_kill: dict = field(default_factory=dict)  # trial id -> (result.json text, checkpoints)
    stdout: str = ""
    node_kill: dict = field(default_factory=dict)  # the stage-2 trial whose node was killed
    worker_nodes: dict = field(default_factory=dict)  # worker node name -> node id, at the end


def kill_ray_session(path: str) -> None:
    """Kill every process started for the Ray session folder ``path``: those naming it
    on their command line (raylets, GCS, monitors) and all their children (workers
    rename themselves ``ray::...`` and would outlive their raylet)."""
    doomed = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(path in part for part in proc.info["cmdline"] or []):
                doomed += [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for proc in doomed:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


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


def epoch_rows(experiment: Path) -> dict[str, list[dict]]:
    """trial id → its reported epochs (result.json rows, each with its node id), read
    while the sweep runs. A trial Tune reran in a new folder after a resume has two:
    the one with more rows is kept (as ``experiment._scan_trial_dirs`` does)."""
    out = {}
    for d in experiment.glob("run_trial_*"):
        text = (d / "result.json").read_text() if (d / "result.json").is_file() else ""
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written
                break
        key = "_".join(d.name.split("_")[2:4])  # run_trial_<experiment>_<number>_...
        if len(rows) >= len(out.get(key, [])):
            out[key] = rows
    return out


def run_on_cluster(prepared: Path, storage: Path) -> SmokeSweep:
    """The smoke sweep (both stages) sent with `ray job submit` to a local cluster of a
    head and two 1-CPU worker nodes. In stage 1 the job is stopped once a trial has
    finished (driver killed) and submitted again with ``--resume``; in stage 2 (no
    pruning, so a trial caught mid-way surely goes on) the node running a trial that
    has a checkpoint is SIGKILLed and a fresh node joins: the trial is retried from
    its checkpoint on another node."""
    from local_cluster import LocalCluster

    experiment, stage2 = storage / "smoke", storage / "smoke_stage2_b2"
    root = Path(tempfile.mkdtemp(prefix="ecgc", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ECG_RAY_TMPDIR")}
    cluster = LocalCluster(root, env)
    command = [sys.executable, "-m", "ecg_ray.cli", "sweep", SMOKE, "--data", str(prepared),
               "--storage", str(storage), *SMALL, *STAGE2]
    job = None
    try:
        cluster.start(2, settle=False)  # settled below, while the job starts
        # One disk for 3 nodes; and the cluster's address for every process of the job: Ray
        # Train's placement-group cleaner looks its cluster up without one and, on a machine
        # running more than one Ray, fails ("Found multiple active Ray instances") and leaks
        # each finished trial's resources until the sweep hangs.
        env_vars = {"ECG_RAY_SHARED_STORAGE": str(storage), "PYTHONUNBUFFERED": "1",
                    "RAY_ADDRESS": f"127.0.0.1:{cluster.gcs_port}"}
        job = cluster.submit(command, env_vars)
        cluster.settle_nodes(["n0", "n1"])
        finished = _wait(lambda: _finished_some(experiment), 900, "no stage-1 trial finished in time")
        cluster.stop_job(job)
        before = {t: trial_files(experiment, t) for t in finished}
        job = cluster.submit(command + ["--resume"], env_vars)
        ids = {cluster.node_id(name): name for name in cluster.nodes}  # looked up once: each scans every process
        killed = _wait(lambda: _kill_mid_trial(cluster, ids, stage2), 1200, "no stage-2 trial caught mid-way")
        cluster.add_node("n2")  # the lost machine's replacement
        status, logs = cluster.wait_job(job, 1200)
        assert status == "SUCCEEDED", f"job {job}: {status}\n{logs[-6000:]}"
        nodes = {name: cluster.node_id(name) for name in cluster.nodes}
        return SmokeSweep(experiment, True, before, logs, node_kill=killed, worker_nodes=nodes)
    finally:
        if job:
            cluster.stop_job(job)
        kill_ray_session(str(root))  # this cluster only: `ray stop` would end every Ray on the machine
        shutil.rmtree(root, ignore_errors=True)


def _wait(check, timeout: float, message: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(message)


def _finished_some(experiment: Path) -> set[str]:
    """The finished trials, once at least one but not all have finished."""
    states = trial_states(experiment)
    finished = {t for t, s in states.items() if s == "TERMINATED"}
    return finished if finished and len(finished) < len(states) else set()


def _kill_mid_trial(cluster, ids: dict[str, str], stage2: Path) -> dict | None:
    """Kill the node of a stage-2 trial that has reported its first epoch and not its
    last: ``{trial, node_id, node, epochs_done, processes}`` (the titles of the node's
    processes just before), or None while there is none. ``ids``: node id → node name."""
    for trial_id, rows in epoch_rows(stage2).items():
        if len(rows) == 1 and rows[0].get("node_id") in ids:
            name = ids[rows[0]["node_id"]]
            processes = cluster.process_titles(name)
            cluster.kill_node(name)
            return {"trial": trial_id, "node_id": rows[0]["node_id"], "node": name,
                    "epochs_done": rows[0]["epochs_done"], "processes": processes}
    return None
