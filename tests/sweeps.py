"""Helpers for end-to-end sweep tests: run the real CLI, read what Ray left on disk, clean up."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SMOKE = Path(__file__).parent / "fixtures" / "spaces" / "smoke.yaml"


def sweep_cmd(storage: Path, name: str, *extra: str, space: Path = SMOKE) -> list[str]:
    return [sys.executable, "-m", "mfer_platform.cli.sweep", f"search_space={space}", f"name={name}",
            f"storage_path={storage}", *extra]


def trial_epochs(exp_dir: Path) -> dict[str, list[int]]:
    """{trial_id: epochs reported, in order} from each trial's result.json."""
    out = {}
    for result in sorted(exp_dir.glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = [r["epoch"] for r in rows]
    return out


def trial_nodes(exp_dir: Path) -> set[str]:
    nodes = set()
    for result in exp_dir.glob("*/result.json"):
        nodes |= {json.loads(line)["node_id"] for line in result.read_text().splitlines() if line.strip()}
    return nodes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_nodes(address: str, env: dict) -> int:
    """Alive nodes of the Ray cluster at ``address`` (0 while it cannot be reached)."""
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


def wait_for(predicate, timeout: float, every: float = 1.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def kill_processes_mentioning(token: str) -> None:
    """Stop the Ray processes a test started (they carry its private temp dir on the command line)."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
