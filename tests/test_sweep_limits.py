"""The sweep's guards against what Ray 2.60 would otherwise let through: trials
without a concurrency bound (a trial driver asks for no CPU), DDP ranks sharing
one GPU, and node-local storage on a multi-node cluster.

The pure decision functions are tested directly; one small Tune run of a
trivial function trainable (no TorchTrainer, no data) checks that the bound
really caps how many trials run at once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from ecg_ray.training.config import TrainConfig
from ecg_ray.training.trainer import check_gpus_per_worker, scaling_config
from ecg_ray.tuning.search_space import SweepSpec
from ecg_ray.tuning.sweep import (TRIAL_DRIVER_RESOURCES, StorageError, check_storage, concurrency_bound,
                                  make_tuner, trial_limit, trial_param_space)

ROOT = Path(__file__).resolve().parents[1]


def _spec(**resources) -> SweepSpec:
    return SweepSpec(name="t", param_space={"seed": {"grid_search": list(range(12))}},
                     scheduler={"type": "fifo"},
                     resources={"cpus_per_trial": 1, "gpus_per_trial": 0, "num_workers": 1,
                                "max_concurrent_trials": None, **resources})


# --- concurrency -------------------------------------------------------------

@pytest.mark.parametrize("total, cpus, gpus, expected", [
    ({"CPU": 2.0}, 1, 0, 2),
    ({"CPU": 32.0, "GPU": 4.0}, 2, 0.25, 16),       # cluster.yaml at full size
    ({"CPU": 32.0, "GPU": 4.0}, 2, 0.5, 8),          # GPUs are the limit
    ({"CPU": 8.0, "GPU": 4.0}, 2, 0.25, 4),          # CPUs are the limit
    ({"CPU": 3.0, "GPU": 1.0}, 1, 0.1, 3),           # no float round-down: 1 / 0.1 = 9.999...
    ({"CPU": 0.0}, 2, 0.25, 1),                      # autoscaling head alone: still one trial
    ({}, 1, 0, 1),
])
def test_concurrency_bound(total, cpus, gpus, expected):
    assert concurrency_bound(total, cpus, gpus) == expected


def test_trial_limit_prefers_cli_then_spec_then_cluster():
    total = {"CPU": 4.0}
    assert trial_limit(_spec(), 0, None, total) == 4
    assert trial_limit(_spec(max_concurrent_trials=3), 0, None, total) == 3
    assert trial_limit(_spec(max_concurrent_trials=3), 0, 1, total) == 1
    with pytest.raises(ValueError, match="max_concurrent_trials must be an integer >= 1"):
        trial_limit(_spec(max_concurrent_trials=-2), 0, None, total)


@pytest.mark.parametrize("name", ["ablation", "tuning", "smoke", "bench_asha"])
def test_shipped_specs_bound_concurrency(name):
    # (test_search_space loads and validates these specs; the raw YAML is enough here)
    limit = yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())["resources"]["max_concurrent_trials"]
    assert isinstance(limit, int) and limit >= 1


def test_tune_runs_at_most_the_bound_at_once(tmp_path, ray_tmp):
    """12 zero-CPU trial drivers on a 4-CPU Ray: without the bound all 12 would start."""
    import ray
    from ray import tune

    log = tmp_path / "intervals"
    log.mkdir()

    def trivial(config):
        start = time.time()
        time.sleep(2)  # long enough that, unbounded, 8 of 12 overlapped here
        (log / f"{config['seed']}.json").write_text(json.dumps([start, time.time()]))
        tune.report({"val_f1_cinc": config["seed"] / 12, "epochs_done": 1})

    spec = _spec()
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=ray_tmp, log_to_driver=False)
    try:
        limit = trial_limit(spec, 0, None, ray.cluster_resources())
        assert limit == 4
        space = {"seed": tune.grid_search(list(range(12)))}
        tuner = make_tuner(tune.with_resources(trivial, TRIAL_DRIVER_RESOURCES), spec, str(tmp_path / "runs"),
                           space, limit, verbose=0, reuse_actors=True)  # 4 worker processes, not 12
        grid = tuner.fit()
    finally:
        ray.shutdown()
        # A local ray.init() sets RAY_AUTH_MODE=token for its process: keep it out of later tests.
        os.environ.pop("RAY_AUTH_MODE", None) if auth_mode is None else os.environ.update(RAY_AUTH_MODE=auth_mode)
    assert len(grid) == 12 and not grid.errors
    intervals = [json.loads(p.read_text()) for p in log.iterdir()]
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= limit


# --- GPUs and DDP ------------------------------------------------------------

def test_ddp_ranks_may_not_share_a_gpu():
    with pytest.raises(ValueError, match="Duplicate GPU detected"):
        trial_param_space(_spec(gpus_per_trial=1, num_workers=2), 1)
    with pytest.raises(ValueError, match="num_workers"):
        trial_param_space(_spec(num_workers=4), 0.5)
    with pytest.raises(ValueError, match="Duplicate GPU detected"):
        scaling_config(TrainConfig(num_workers=2, use_gpu=True, gpus_per_worker=0.5))


def test_cli_refuses_shared_gpu_ddp_before_starting_ray(tmp_path, capsys):
    import ray

    from ecg_ray.cli import main

    code = main(["sweep", str(ROOT / "search_spaces" / "smoke.yaml"), "--data", str(tmp_path),
                 "--storage", str(tmp_path), "--gpus-per-trial", "1", "--set", "resources.num_workers=2"])
    assert code == 2 and "Duplicate GPU detected" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_gpu_shares_that_work():
    assert trial_param_space(_spec(), 0.25)["gpus_per_worker"] == 0.25       # 4 trials per GPU
    assert trial_param_space(_spec(num_workers=2), 2)["gpus_per_worker"] == 1  # DDP, a GPU per rank
    assert check_gpus_per_worker(2, 4) == 2
    assert scaling_config(TrainConfig(num_workers=2, use_gpu=True, gpus_per_worker=1)).num_workers == 2
    with pytest.raises(ValueError, match="whole numbers"):
        check_gpus_per_worker(1.5, 1)


# --- storage -----------------------------------------------------------------

def test_local_storage_is_fine_on_one_node(tmp_path):
    check_storage("ray_results", 1)
    check_storage(str(tmp_path), 1)


def test_uri_or_shared_storage_is_fine_on_many_nodes(tmp_path):
    check_storage("s3://bucket/ecg-ray", 3)
    check_storage("gs://bucket/ecg-ray", 3)
    check_storage(str(tmp_path / "shared" / "ray_results"), 3, [str(tmp_path / "shared")])
    check_storage(str(tmp_path / "b" / "runs"), 2, [str(tmp_path / "a"), str(tmp_path / "b")])


@pytest.mark.parametrize("storage", ["ray_results", "./runs", "/tmp/ray_results", "~/ray_results",
                                     "file:///tmp/ray_results"])
def test_node_local_storage_fails_on_many_nodes(storage, tmp_path):
    with pytest.raises(StorageError, match="3 nodes.*URI.*ECG_RAY_SHARED_STORAGE"):
        check_storage(storage, 3, [str(tmp_path / "shared")])


def test_sibling_of_a_shared_root_is_not_shared(tmp_path):
    with pytest.raises(StorageError):
        check_storage(str(tmp_path / "efs-other"), 2, [str(tmp_path / "efs")])


def test_only_placement_groups_that_an_ended_job_still_holds_are_removed(monkeypatch):
    """A stopped job's group left CREATED is removed; a running job's, a detached one, one already
    removed or pending, and one of a job still running are kept; no state API means no change."""
    import importlib
    from types import SimpleNamespace as NS

    from ray.util import state

    from ecg_ray.training import trainer

    jobs = [NS(job_id="02000000", status="JobStatus.STOPPED"), NS(job_id="03000000", status="RUNNING"),
            NS(job_id="04000000", status="SUCCEEDED")]
    leaked, detached = "47b851726ecc42a0b2f1ac7571af02000000", "aa" * 14 + "04000000"
    groups = [NS(placement_group_id=leaked, creator_job_id="02000000", state="CREATED", is_detached=False),
              NS(placement_group_id="bb" * 14 + "02000000", creator_job_id="02000000", state="REMOVED",
                 is_detached=False),
              NS(placement_group_id="cc" * 14 + "03000000", creator_job_id="03000000", state="CREATED",
                 is_detached=False),
              NS(placement_group_id="dd" * 14 + "03000000", creator_job_id="03000000", state="PENDING",
                 is_detached=False),
              NS(placement_group_id=detached, creator_job_id="04000000", state="CREATED", is_detached=True)]
    removed, lines = [], []
    pg_module = importlib.import_module("ray.util.placement_group")  # ray.util.placement_group is also a function
    monkeypatch.setattr(state, "list_jobs", lambda **kw: jobs)
    monkeypatch.setattr(state, "list_placement_groups", lambda **kw: groups)
    monkeypatch.setattr(pg_module, "remove_placement_group", lambda pg: removed.append(pg.id.hex()))
    assert trainer.remove_leaked_placement_groups(lines.append) == 1
    assert removed == [leaked] and "ended job 02000000" in lines[0]

    def no_dashboard(**kw):
        raise ConnectionError("dashboard not running")

    monkeypatch.setattr(state, "list_jobs", no_dashboard)
    assert trainer.remove_leaked_placement_groups(lines.append) == 0 and "not checked" in lines[-1]
