"""A multi-node Ray cluster on 127.0.0.1 for tests: a head that only schedules
(0 CPU) and 1-CPU worker nodes, each a separate `ray start` with its own ports and
its own temp folder (as separate machines would have: nodes sharing one session
folder share, and garbage-collect, each other's unpacked job working dirs).

Token authentication stays on: the nodes and the `ray job` CLI share the token Ray
keeps in ``~/.ray/auth_token`` (generated mode 600 when missing); the CLI sends it
only in "token" mode. Everything runs under one root folder, so
``smoke_sweep.kill_ray_session(root)`` ends the whole cluster and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from smoke_sweep import kill_ray_session

RAY = str(Path(sys.executable).with_name("ray"))
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(args: list[str], env: dict, log_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run the `ray` CLI with its output in files, not pipes: `ray start` leaves
    daemons behind that would hold a pipe open and hang the caller."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / f"ray-{args[0]}-{time.monotonic_ns()}.log"
    with open(out_path, "w") as out:
        proc = subprocess.run([RAY, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(), "")


def _token_env(env: dict) -> dict:
    token = Path.home() / ".ray" / "auth_token"
    if not token.is_file():
        token.parent.mkdir(mode=0o700, exist_ok=True)
        old = os.umask(0o077)
        try:
            subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.umask(old)
        token.chmod(0o600)
    return {**env, "RAY_AUTH_MODE": "token"}


def _agent_ports() -> list[str]:
    """Every port a node opens besides the worker range: the defaults (52365 ...)
    collide with any other Ray running on the machine."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


@dataclass
class LocalCluster:
    root: Path  # every node's temp folder is under it (short: socket paths must stay < 108 chars)
    env: dict
    gcs_port: int = 0
    dashboard_port: int = 0
    nodes: dict = field(default_factory=dict)  # node name -> its temp folder

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def logs(self) -> Path:
        return self.root / "cli"

    def start(self, n_workers: int = 2, settle: bool = True) -> "LocalCluster":
        """The head and ``n_workers`` worker nodes ``n0, n1, ...``. ``settle=False`` returns
        once they are started, before the 20-s check that they stayed up: call
        ``settle_nodes()`` later (a job can be submitted meanwhile)."""
        self.env = _token_env({k: v for k, v in self.env.items() if k != "RAY_ADDRESS"})
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        head = ["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port), "--num-cpus", "0",
                "--ray-client-server-port", str(free_port()), "--temp-dir", str(self.root / "head"),
                "--include-dashboard", "true", "--disable-usage-stats", *_agent_ports()]
        # The GCS declares a node dead after 3 failed health checks 2 s apart (Ray's default: 5 x 3 s),
        # so a lost node's trial is retried sooner; a check only fails on no answer within 10 s.
        fast = {"RAY_health_check_period_ms": "2000", "RAY_health_check_failure_threshold": "3"}
        out = ray_cli(head, {**self.env, **fast}, self.logs, timeout=180)
        assert out.returncode == 0, out.stdout[-3000:]
        names = [f"n{i}" for i in range(n_workers)]
        self._start_nodes(names)
        if settle:
            self.settle_nodes(names)
        return self

    def add_node(self, name: str) -> str:
        self._start_nodes([name])
        return self.settle_nodes([name])[0]

    def _start_nodes(self, names: list[str]) -> None:
        for name in names:
            start = ["start", "--address", f"127.0.0.1:{self.gcs_port}", "--node-ip-address", "127.0.0.1",
                     "--num-cpus", "1", "--temp-dir", str(self.root / name), "--disable-usage-stats",
                     *_agent_ports()]
            out = ray_cli(start, self.env, self.logs, timeout=180)
            assert out.returncode == 0, out.stdout[-3000:]

    def settle_nodes(self, names: list[str], tries: int = 3) -> list[str]:
        """Wait until each started 1-CPU worker node's raylet has stayed up 20 s (one wait
        for all of them): on a busy machine a raylet can die a few seconds after `ray
        start` returns (its dashboard agent too slow to come up); such a node is started
        again. (Never judged by a slow `ray status`: killing a node that is up would lose
        its trials.)"""
        pending = list(names)
        for attempt in range(tries):
            if attempt:
                self._start_nodes(pending)
            time.sleep(20)
            for name in list(pending):
                if self.raylet(name) is not None:
                    self.nodes[name] = self.root / name
                    pending.remove(name)
                else:
                    self.kill_node(name)  # what is left of it
            if not pending:
                return list(names)
        raise AssertionError(f"worker node(s) {', '.join(pending)} did not come up in {tries} tries: see {self.root}")

    def raylet(self, name: str):
        """The raylet process of worker node ``name`` (found by its temp folder)."""
        temp = str(self.root / name) + "/"
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and any(temp in part for part in cmd):
                return proc
        return None

    def process_titles(self, name: str) -> list[str]:
        """What runs on worker node ``name``: the titles of its raylet's child processes
        (a Ray worker renames itself ``ray::<actor class>.<method>``)."""
        raylet = self.raylet(name)
        titles = []
        for proc in raylet.children(recursive=True) if raylet is not None else []:
            try:
                titles.append((proc.cmdline() or [""])[0])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return titles

    def node_id(self, name: str) -> str | None:
        proc = self.raylet(name)
        cmd = proc.info["cmdline"] if proc is not None else []
        return next((p.split("=", 1)[1] for p in cmd if p.startswith("--node_id=")), None)

    def kill_node(self, name: str) -> None:
        """Lose worker node ``name`` as a machine is lost: SIGKILL its raylet and every
        process of it (``kill_ray_session`` also takes the raylet's children: workers
        rename themselves ``ray::...``). Killing the raylet alone leaves its workers
        running for a while: a Train worker can still finish its epoch and report."""
        kill_ray_session(str(self.root / name) + "/")
        self.nodes.pop(name, None)

    def submit(self, command: list[str], env_vars: dict) -> str:
        """``ray job submit --no-wait`` of ``command`` with this repository as the working dir."""
        runtime_env = json.dumps({"excludes": [".venv/", ".git/", "results/", "ray_results/", "work/"],
                                  "env_vars": env_vars})
        submit = ["job", "submit", "--address", self.address, "--working-dir", str(PROJECT_ROOT),
                  "--runtime-env-json", runtime_env, "--no-wait", "--", *command]
        for _ in range(30):  # the head's job agent comes up after `ray start` returns; Ray says "try again later"
            out = ray_cli(submit, self.env, self.logs, timeout=300)
            if out.returncode == 0 or "No available agent to submit job" not in out.stdout:
                break
            time.sleep(5)
        assert out.returncode == 0, out.stdout[-3000:]
        return next(line.split("'")[1] for line in out.stdout.splitlines() if "submitted successfully" in line)

    def job_status(self, job_id: str) -> str:
        out = ray_cli(["job", "status", "--address", self.address, job_id], self.env, self.logs, timeout=120)
        for state in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING", "PENDING"):
            if f"' {state.lower()}" in out.stdout.lower():
                return state
        return "UNKNOWN"

    def wait_job(self, job_id: str, timeout: float) -> tuple[str, str]:
        """``(final status, logs)`` once the job has ended (or ``timeout`` passed)."""
        deadline, status = time.time() + timeout, "UNKNOWN"
        while time.time() < deadline:
            status = self.job_status(job_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(2)
        return status, self.job_logs(job_id)

    def job_logs(self, job_id: str) -> str:
        return ray_cli(["job", "logs", "--address", self.address, job_id], self.env, self.logs, timeout=120).stdout

    def stop_job(self, job_id: str) -> None:
        ray_cli(["job", "stop", "--address", self.address, job_id], self.env, self.logs, timeout=300)
