"""Search-space specs fail fast and by name; the shipped specs and cluster.yaml are valid."""

from __future__ import annotations

import pytest
import yaml

from conftest import PROJECT_ROOT
from ecg_ray.tuning.search_space import SpecError, load_spec, to_tune, validate_param_space

SPECS = PROJECT_ROOT / "search_spaces"


@pytest.mark.parametrize("name", ["smoke", "ablation", "tuning"])
def test_shipped_specs_load(name):
    spec = load_spec(SPECS / f"{name}.yaml")
    assert spec.name == name and spec.metric == "val_f1_cinc" and spec.mode == "max"
    space = to_tune(spec.param_space)
    assert set(space) == set(spec.param_space)


def test_ablation_is_the_full_factorial():
    spec = load_spec(SPECS / "ablation.yaml")
    from ecg_ray.models import model_names
    from ecg_ray.training.augment import AUGMENT_NAMES
    from ecg_ray.training.imbalance import IMBALANCE_NAMES

    grid = {k: v["grid_search"] for k, v in spec.param_space.items() if isinstance(v, dict)}
    assert sorted(grid["model"]) == sorted(model_names())
    assert sorted(grid["imbalance"]) == sorted(IMBALANCE_NAMES)
    assert set(grid["augment"]) == {"none", "all", *AUGMENT_NAMES}
    assert spec.scheduler["type"] == "asha"


@pytest.mark.parametrize("override, key", [
    ("param_space.model={grid_search: [cnn_only, wavenet]}", "param_space.model"),
    ("param_space.imbalance=smote", "param_space.imbalance"),
    ("param_space.augment={grid_search: [none, mixup]}", "param_space.augment"),
    ("param_space.lr=fast", "param_space.lr"),
    ("param_space.batch_size=12.5", "param_space.batch_size"),
    ("param_space.learning_rate=0.1", "param_space.learning_rate"),
    ("param_space.lr={loguniform: [0, 1]}", "param_space.lr.loguniform"),
    ("param_space.lr={sample: [1, 2]}", "param_space.lr"),
    ("param_space.model_params={hidden: 8}", "param_space.model_params"),
    ("scheduler.max_t=0", "scheduler.max_t"),
    ("scheduler.kind=asha", "scheduler.kind"),
    ("data.val_fold=one", "data.val_fold"),
    ("mode=up", "mode"),
])
def test_malformed_spec_names_the_key(override, key):
    with pytest.raises(SpecError) as e:
        load_spec(SPECS / "smoke.yaml", [override])
    assert key in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("param_space: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\n")
    with pytest.raises(SpecError, match="param_space"):
        load_spec(empty)


def test_samplers_become_tune_domains():
    from ray import tune

    space = {"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [32, 64]},
             "model": {"grid_search": ["cnn_only", "resnet"]}, "seed": 3}
    validate_param_space(space)
    out = to_tune(space)
    assert isinstance(out["lr"], tune.search.sample.Float)
    assert isinstance(out["batch_size"], tune.search.sample.Categorical)
    assert out["model"] == {"grid_search": ["cnn_only", "resnet"]} and out["seed"] == 3


def test_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((PROJECT_ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    head = config["head_start_ray_commands"][-1]
    assert "--dashboard-host=127.0.0.1" in head  # the dashboard is not exposed publicly
    assert any(n["node_config"]["InstanceType"].startswith("g5") for n in config["available_node_types"].values())


def test_runtime_env_is_valid():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((PROJECT_ROOT / "jobs" / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)
    assert ".venv/" in env["excludes"]


def test_stage2_section_becomes_a_fixed_budget_grid_around_stage1s_best():
    from ecg_ray.tuning.stages import stage2_from

    spec = load_spec(SPECS / "smoke.yaml", ["stage2={factors: [model, augment], seeds: [0, 1], budget: 2}"])
    assert spec.stage2 == {"factors": ["model", "augment"], "seeds": [0, 1], "budget": 2}
    stage2 = stage2_from(spec, {"imbalance": "focal", "model": "cnn_only"})
    space = stage2.param_space
    assert space["model"] == {"grid_search": ["cnn_only", "cnn_lstm"]}  # factors keep all their levels
    assert space["imbalance"] == "focal"  # not a factor: fixed at stage 1's best
    assert space["seed"] == {"grid_search": [0, 1]} and space["num_epochs"] == 2 and space["patience"] == 0
    assert stage2.scheduler["type"] == "fifo" and stage2.name == "smoke_stage2_b2"
    # without a factor list: every grid factor, seeds 0..2, stage 1's max_t
    full = stage2_from(load_spec(SPECS / "smoke.yaml", ["stage2={}"]))
    assert set(k for k, v in full.param_space.items() if isinstance(v, dict)) == {"model", "imbalance", "augment", "seed"}
    assert full.param_space["num_epochs"] == spec.scheduler["max_t"]
    assert full.resources == spec.resources  # stage 1's resources unless stage2.resources overrides them
    wide = stage2_from(load_spec(SPECS / "smoke.yaml", ["stage2={resources: {num_workers: 2}}"]))
    assert wide.resources == {**spec.resources, "num_workers": 2}
    with pytest.raises(SpecError, match="stage2"):
        load_spec(SPECS / "smoke.yaml", ["stage2={seeds: [0], epochs: 3}"])
    with pytest.raises(SpecError, match="resources.workers"):
        load_spec(SPECS / "smoke.yaml", ["stage2={resources: {workers: 2}}"])
    # stage2.fixed pins a non-factor for stage 2 instead of stage 1's best; it cannot pin a factor
    pinned = stage2_from(load_spec(SPECS / "smoke.yaml", ["stage2={factors: [model], fixed: {imbalance: sampler}}"]),
                         {"imbalance": "focal", "augment": "none"})
    assert pinned.param_space["imbalance"] == "sampler" and pinned.param_space["augment"] == "none"
    with pytest.raises(SpecError, match="both a factor"):
        stage2_from(load_spec(SPECS / "smoke.yaml", ["stage2={factors: [model], fixed: {model: cnn_only}}"]))
    with pytest.raises(SpecError, match="stage2.fixed must be a mapping"):
        load_spec(SPECS / "smoke.yaml", ["stage2={fixed: [sampler]}"])
