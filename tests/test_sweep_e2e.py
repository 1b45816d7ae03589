"""End to end on the real records, all from the session's one shared sweep
(``smoke_sweep.run_on_cluster``): the two-stage smoke sweep sent with `ray job
submit` to a local cluster of a head and two 1-CPU worker nodes on 127.0.0.1; its
driver stopped once a trial finished and the job submitted again with --resume
(Tuner.restore); in stage 2 a worker node SIGKILLed under a running trial.
"""

from __future__ import annotations

import json

import pytest

from smoke_sweep import SMALL_RECORDS, epoch_rows, trial_files

pytestmark = pytest.mark.e2e


def _results(experiment):
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return analysis, {t.trial_id: t for t in analysis.trials}


def test_trials_run_on_both_worker_nodes(smoke_sweep):
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no cluster was run in this session")
    nodes = {r["node_id"] for rows in epoch_rows(smoke_sweep.experiment).values() for r in rows}
    assert len(nodes) >= 2, f"every stage-1 epoch ran on one node: {nodes}"
    assert nodes <= set(smoke_sweep.worker_nodes.values()) | {smoke_sweep.node_kill["node_id"]}


def test_a_lost_node_s_trial_resumes_from_its_checkpoint_on_another_node(smoke_sweep):
    """The stage-2 trial whose node was SIGKILLed after its first epoch went on from
    that epoch's checkpoint on another node; no epoch was lost or run twice, and the
    experiment's trial table and report say it was retried."""
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no node was killed in this session")
    from ecg_ray.tuning.analysis import load_experiment

    killed = smoke_sweep.node_kill
    stage2 = smoke_sweep.experiment.parent / "smoke_stage2_b2"
    rows = epoch_rows(stage2)[killed["trial"]]
    assert [r["epochs_done"] for r in rows] == [1, 2], rows
    assert rows[0]["node_id"] == killed["node_id"] != rows[1]["node_id"]
    trials, _ = load_experiment(stage2)
    row = trials.set_index("trial_id").loc[killed["trial"]]
    assert row["status"] == "TERMINATED" and bool(row["retried"]) and row["nodes"] == 2
    # trial drivers (and so Train's controllers) live on the head: a lost worker node takes only
    # Train workers (a controller lost with its node leaks its workers' placement group: a hang)
    assert any("RayTrainWorker" in title for title in killed["processes"]), killed["processes"]
    assert not [t for t in killed["processes"] if "ImplicitFunc" in t or "TrainController" in t]


def test_stage2_trials_are_ddp_on_two_workers_and_report_what_one_process_scores(smoke_sweep):
    """Stage 2 (``stage2.resources: {num_workers: 2, cpus_per_trial: 2}``) ran every trial as
    DDP over 2 workers x 1 CPU (gloo, a rank on each worker node) with the ``sampler`` strategy. The trial killed with its
    node and resumed is scored again here, in one process, from its last checkpoint: the
    validation metrics its two ranks gathered are that scoring's (the record-level NLL,
    continuous in every probability)."""
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no stage 2 was run in this session")
    from ecg_ray.data.dataset import PreparedDataset
    from ecg_ray.training.calibration import checkpoint_window_logits
    from ecg_ray.training.checkpoint import load_checkpoint
    from ecg_ray.training.metrics import score_records

    stage2 = smoke_sweep.experiment.parent / "smoke_stage2_b2"
    _, trials = _results(stage2)
    assert all(t.last_result["workers"] == 2 for t in trials.values())
    assert {t.config["imbalance"] for t in trials.values()} == {"sampler"}  # stage2.fixed, not stage 1's best
    trial = smoke_sweep.node_kill["trial"]
    payload = max((load_checkpoint(d) for d in (stage2 / f"train_{trial}").glob("checkpoint_*") if d.is_dir()),
                  key=lambda p: p["epoch"])
    assert payload["epoch"] == 1 and payload["config"]["num_workers"] == 2
    prepared = json.loads((stage2 / "ecg_ray_sweep.json").read_text())["prepared"]
    _, val_ids = PreparedDataset(prepared).select(None, SMALL_RECORDS)
    y, logits, codes = checkpoint_window_logits(payload, prepared, val_ids)
    single = score_records(y, logits, codes, payload["config"]["aggregate"])
    assert len(y) == len(val_ids) and payload["metrics"]["val_loss"] == pytest.approx(single["val_loss"], abs=1e-6)


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
    """Stage 2 after the (killed, resumed) ASHA search: model x 2 seeds, augmentation fixed
    at stage 1's best and imbalance by ``stage2.fixed``, every trial exactly 2 epochs, no pruning."""
    if not smoke_sweep.resumed:
        pytest.skip("$ECG_RAY_TEST_SWEEP given: no stage 2 was run in this session")
    stage1, trials1 = _results(smoke_sweep.experiment)
    best = stage1.get_best_config(metric="val_f1_cinc", mode="max", scope="last")
    _, trials = _results(smoke_sweep.experiment.parent / "smoke_stage2_b2")
    assert len(trials) == 4 and {(t.config["model"], t.config["seed"]) for t in trials.values()} == {
        (m, s) for m in ("cnn_only", "cnn_lstm") for s in (0, 1)}
    assert all(t.config["augment"] == best["augment"] for t in trials.values())
    assert all(t.status == "TERMINATED" and t.last_result["epochs_done"] == 2 for t in trials.values())
    out = smoke_sweep.stdout
    assert "stage 2: every arm 2 epochs, seeds [0, 1]" in out
    assert "Fixed-budget answer (2 epochs)" in out
