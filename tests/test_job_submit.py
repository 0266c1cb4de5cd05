"""A sweep submitted with `ray job submit` to a locally started head, as on a real cluster: the job
server listens on 127.0.0.1 only, token auth is on (an unauthenticated client is refused), and the
sweep's results land under storage_path. The test stops only the Ray processes it started."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .sweeps import assert_store_holds_each_trial_once, kill_group, kill_processes_mentioning, sweep_cmd, trial_epochs, wait_for

pytestmark = pytest.mark.slow
# The job server is part of the dashboard, which needs ray[default] (aiohttp and friends).
pytest.importorskip("aiohttp", reason="ray[default] is not installed: no dashboard, no job server")

RAY = str(Path(sys.executable).parent / "ray")
LOOPBACK = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((LOOPBACK, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def listeners(port: int) -> set[str]:
    """Addresses with a listening TCP socket on `port` ("ipv6" for any IPv6 one), from /proc/net."""
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path("/proc/net", table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(socket.inet_ntoa(int(address, 16).to_bytes(4, "little")) if table == "tcp" else "ipv6")
    return found


def run(cmd: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def head():
    """A Ray head in its own session with a private temp dir, token auth with a fresh token (never
    the user's ~/.ray/auth_token) and the job server on 127.0.0.1:<free port>.
    Yields (env for clients, job server URL, its port)."""
    tmpdir = f"/tmp/rj{uuid.uuid4().hex[:8]}"  # short: it holds unix sockets
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_TMPDIR=tmpdir, PYTHONUNBUFFERED="1", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    gcs, dashboard, agent, client = free_ports(4)
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--disable-usage-stats",
         "--include-dashboard=true", f"--dashboard-host={LOOPBACK}", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: listeners(dashboard), timeout=120), "the job server did not start"
        yield env, f"http://{LOOPBACK}:{dashboard}", dashboard
    finally:
        kill_group(proc)
        kill_processes_mentioning(tmpdir)  # job drivers and workers the raylet started
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_sweep_submitted_as_a_ray_job_writes_its_results(tmp_path, head):
    env, address, port = head
    assert listeners(port) == {LOOPBACK}  # unreachable from other machines

    anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH_")}
    refused = run([RAY, "job", "list", "--address", address], anonymous)
    assert refused.returncode != 0 and "AuthenticationError" in refused.stdout + refused.stderr

    storage = tmp_path / "store"
    submitted = run([RAY, "job", "submit", "--address", address, "--submission-id", "mfer-job", "--",
                     *sweep_cmd(storage, "job", "cluster.address=auto", "search.num_samples=2")], env, timeout=900)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    status = run([RAY, "job", "status", "--address", address, "mfer-job"], env)
    assert "Job 'mfer-job' succeeded" in status.stdout + status.stderr

    done = trial_epochs(storage / "job")
    assert len(done) == 2 and all(epochs == [1, 2] for epochs in done.values()), done
    assert_store_holds_each_trial_once(storage, "job", 2, 2)  # the store mfer-sweep fills, on the shared path
