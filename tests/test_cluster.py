"""cluster.yaml against Ray 2.60's own cluster schema, and the security and
storage rules it must keep: token auth set up before Ray starts (token mode 600,
shipped to every worker), the dashboard bound to 127.0.0.1, no SSH rule that
duplicates Ray's, an IAM instance profile on every node type, EFS writable by
the SSH user, and Python >= 3.11 in pyproject. Reads files only: no AWS, no Ray.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "~/.ray/auth_token"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _index(commands: list[str], needle: str) -> int:
    hits = [i for i, c in enumerate(commands) if needle in c]
    assert hits, f"no command contains {needle!r}: {commands}"
    return hits[0]


def test_cluster_yaml_matches_rays_schema(cluster):
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_head_generates_a_private_token_before_starting_ray(cluster):
    cmds = cluster["head_start_ray_commands"]
    generate = _index(cmds, "ray get-auth-token --generate")
    start = _index(cmds, "ray start --head")
    assert generate < start
    assert "umask 077" in cmds[generate] and "> /dev/null" in cmds[generate]  # never 0644, never logged
    assert f"chmod 600 {TOKEN}" in cmds[generate]
    assert "RAY_AUTH_MODE=token" in cmds[start]  # refuses to start rather than run without auth


def test_every_worker_gets_the_token_before_joining(cluster):
    mounts = cluster["file_mounts"]
    ship = next(remote for remote in mounts if remote.endswith(".ray-cluster-auth"))
    assert (ROOT / mounts[ship]).is_dir()  # `ray up` needs the (empty) local folder
    head = cluster["head_start_ray_commands"]
    fill = _index(head, f"{ship}/auth_token")
    assert "install -m 600" in head[fill] and fill < _index(head, "ray start --head")
    cmds = cluster["worker_start_ray_commands"]
    copy_in = _index(cmds, f"{ship}/auth_token")
    start = _index(cmds, "ray start --address")
    assert copy_in < start
    assert f"chmod 600 {TOKEN}" in cmds[copy_in]
    assert "RAY_AUTH_MODE=token" in cmds[start]


def test_token_never_committed_or_shipped_with_jobs():
    assert "auth_token" in (ROOT / "jobs" / "cluster_auth" / ".gitignore").read_text().split()
    excludes = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    assert "jobs/cluster_auth/" in excludes


def test_dashboard_stays_on_localhost(cluster):
    start = cluster["head_start_ray_commands"][_index(cluster["head_start_ray_commands"], "ray start --head")]
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1(\s|$)", start)
    rules = cluster["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not [r for r in rules if r.get("FromPort", 0) <= 8265 <= r.get("ToPort", -1)]


def test_no_ssh_rule_duplicating_rays(cluster):
    """Ray adds tcp 22 from 0.0.0.0/0 itself (aws/config.py); AWS rejects a second copy."""
    rules = cluster["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not [r for r in rules if r.get("FromPort", 0) <= 22 <= r.get("ToPort", -1)]


def test_every_node_type_has_an_iam_instance_profile(cluster):
    for name, node in cluster["available_node_types"].items():
        profile = node["node_config"].get("IamInstanceProfile") or {}
        assert profile.get("Arn", "").startswith("arn:aws:iam::") or profile.get("Name"), name


def test_efs_is_handed_to_the_ssh_user(cluster):
    setup = cluster["setup_commands"]
    mount = _index(setup, "mount -t nfs4")
    chown = _index(setup, "chown")
    assert mount < chown and "/mnt/efs" in setup[chown]


def test_nodes_default_to_shared_storage(cluster):
    setup = " ".join(cluster["setup_commands"])
    assert "ECG_RAY_STORAGE=/mnt/efs/" in setup and "ECG_RAY_SHARED_STORAGE=/mnt/efs" in setup
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())["env_vars"]
    assert env["ECG_RAY_STORAGE"].startswith(env["ECG_RAY_SHARED_STORAGE"])


def test_pyproject_requires_python_311():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_local_cluster_recipe_starts_the_token_first():
    readme = (ROOT / "jobs" / "README.md").read_text()
    recipe = next(block for block in readme.split("```")[1::2] if "--num-cpus 0" in block)
    generate = recipe.index("ray get-auth-token --generate")
    assert generate < recipe.index("chmod 600 ~/.ray/auth_token") < recipe.index("ray start --head")
    assert "umask 077" in recipe and "export RAY_AUTH_MODE=token" in recipe
    assert "--dashboard-host 127.0.0.1" in recipe
    assert recipe.count("--num-cpus 1") == 2 and recipe.count("ray start --address 127.0.0.1") == 2
    for flag in ("--node-manager-port", "--object-manager-port", "--min-worker-port", "--max-worker-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                 "--metrics-export-port"):
        ports = re.findall(flag + r"[= ](\d+)", recipe)
        assert len(ports) >= 2 and len(set(ports)) == len(ports), flag  # each worker node its own
