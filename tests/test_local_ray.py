"""The local Ray instance of ``mfer-sweep``: what a killed driver leaves is stopped at the next start (and
nothing else), every listener is on loopback, and an interrupted sweep exits 130 with the command that
resumes it. The unit test uses real processes standing in for Ray's; the slow one runs real sweeps."""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from mfer_platform.sweep import local_ray

from .sweeps import assert_store_holds_each_trial_once, sweep_cmd, wait_for

RAY_DIR = os.path.dirname(ray.__file__)


def _spawn(*argv: str, title: str | None = None, log: Path | None = None) -> subprocess.Popen:
    """A sleeping stand-in process: ``title`` as its argv[0] (Ray retitles agents ``ray::…``), its
    stdout into ``log`` (as Ray's processes write their session's logs)."""
    cmd = ["bash", "-c", 'exec -a "$0" sleep 120', title] if title else [sys.executable, "-c",
                                                                          "import time; time.sleep(120)", *argv]
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)


def _session(root: Path, name: str, driver: psutil.Process | None) -> Path:
    (root / name / "logs").mkdir(parents=True)
    if driver:
        (root / name / local_ray.MARKER).write_text(json.dumps({"pid": driver.pid, "create_time": driver.create_time()}))
    return root / name


def test_the_next_start_stops_only_a_dead_drivers_ray_processes(tmp_path):
    root = tmp_path / "ray"
    dead_driver = subprocess.Popen(["true"])
    gone = _session(root, "session_gone", psutil.Process(dead_driver.pid))  # unwaited, it is still there
    dead_driver.wait()
    live_driver = _spawn()
    live = _session(root, "session_live", psutil.Process(live_driver.pid))
    started = _session(root, "session_ray_start", None)  # `ray start`: no record of ours
    (root / "session_latest").symlink_to(gone)  # Ray's link to the newest session
    orphans = [_spawn(RAY_DIR + "/core/src/ray/raylet/raylet", f"--log_dir={gone}/logs"),
               _spawn(title="ray::DashboardAgent", log=gone / "logs" / "dashboard_agent.out")]
    keep = [_spawn(f"{gone}/logs/raylet.out"),  # a `tail -f` of the dead session's log: not Ray's
            _spawn(RAY_DIR + "/core/src/ray/gcs/gcs_server", f"--log_dir={live}/logs"),
            _spawn(title="ray::RuntimeEnvAgent", log=live / "logs" / "runtime_env_agent.out"),
            _spawn(RAY_DIR + "/core/src/ray/gcs/gcs_server", f"--log_dir={started}/logs")]
    try:
        time.sleep(0.5)  # the stand-ins exec'd and opened their logs
        assert local_ray.reap_orphans(str(root)) == 2
        assert not any(psutil.pid_exists(p.pid) for p in orphans)  # killed (and reaped: they are our children)
        assert [p.poll() for p in keep + [live_driver]] == [None] * 5
        assert not (gone / local_ray.MARKER).exists() and (live / local_ray.MARKER).exists()
        assert local_ray.reap_orphans(str(root)) == 0  # the live driver's instance is never touched
    finally:
        for p in orphans + keep + [live_driver]:
            p.kill()
            p.wait()


def _processes_of(token: str, driver: int | None = None) -> list[psutil.Process]:
    """Processes of a test's Ray instances: the driver's tree, and whatever names the test's private Ray
    temp dir on its command line or has a file open there (agents retitle themselves ``ray::…``)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid == os.getpid():
                continue
            if p.pid == driver or token in " ".join(p.info["cmdline"] or []) or any(
                    f.path.startswith(token) for f in p.open_files()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _listeners(procs: list[psutil.Process]) -> list[tuple[str, str]]:
    """(process name, listening address) of every TCP listener of ``procs``."""
    out = []
    for p in procs:
        try:
            out += [(p.name(), c.laddr.ip) for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return out


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


@pytest.mark.slow
def test_killed_then_interrupted_sweep_reaps_stays_on_loopback_and_resumes_each_trial_once(tmp_path, ray_env):
    """Run 1: the driver alone is SIGKILLed while both running trials stall after epoch 1 (``hang@1``, once
    per trial): Ray's helpers outlive it. Run 2 resumes: those are gone, every listener of its instance is
    on loopback, and a Ctrl-C (SIGINT to its process group) while the last two trials stall makes it exit
    130 with the resume command. That command finishes each of the 4 trials exactly once."""
    storage, faults, token = tmp_path / "store", tmp_path / "faults", ray_env["RAY_TMPDIR"]
    env = {**ray_env, "MFER_FAULTS": "hang@1", "MFER_FAULTS_DIR": str(faults)}
    cmd = sweep_cmd(storage, "sigint")
    first = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(list(faults.glob("*.hang"))) == 2, timeout=600), "no trial stalled in time"
    finally:
        first.kill()
        first.wait()
    time.sleep(5)  # Ray's fate sharing takes gcs_server and the raylet down with the driver
    left = {(p.pid, p.create_time()) for p in _processes_of(token)}
    assert left, "nothing outlived the driver: the reaping below would prove nothing"
    log = tmp_path / "second.log"
    with log.open("w") as out:
        second = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=out, stderr=out)
    try:
        assert wait_for(lambda: len(list(faults.glob("*.hang"))) == 4, timeout=600), log.read_text()[-3000:]
        still = {(p.pid, p.create_time()) for p in psutil.process_iter() if (p.pid, p.create_time()) in left}
        assert not still, f"left by the killed driver and still running: {still}"
        listeners = _listeners(_processes_of(token, second.pid) + psutil.Process(second.pid).children(recursive=True))
        names = {name for name, _ in listeners}
        assert {"gcs_server", "raylet"} <= names and len(listeners) >= 6, listeners
        assert all(_loopback(ip) for _, ip in listeners), [(n, ip) for n, ip in listeners if not _loopback(ip)]
        os.killpg(second.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        second.wait(timeout=300)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    text = log.read_text()
    assert second.returncode == 130, text[-3000:]
    assert "sweep finished" not in text
    resume = shlex.split(text.split("resume with: ", 1)[1].splitlines()[0])
    assert resume == ["mfer-sweep", *cmd[3:]]  # the exact command, with the user's arguments
    third = subprocess.run([shutil.which("mfer-sweep", path=os.path.dirname(sys.executable)), *resume[1:]], env=env,
                           capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert_store_holds_each_trial_once(storage, "sigint", 4, 2)
