"""The local Ray instance a sweep starts for itself: reachable from this machine only, and cleaned up
after a driver that was killed.

- Loopback. On Linux Ray takes the machine's routable address as the node address, and its services
  (GCS, the raylet's node and object managers, every core worker, the dashboard and runtime-env agents,
  the metrics export) listen on it or on all interfaces (0.0.0.0/::): anyone on the network could reach
  them. Ray's own local mode on macOS and Windows uses 127.0.0.1 instead, switched by
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (``ray/_private/services.py``, ``get_node_ip_address``); set
  for the start, it puts every listener of the instance on loopback (``ray.init(_node_ip_address=
  "127.0.0.1")`` alone does not: Ray turns a loopback address back into the routable one). The
  dashboard stays off, and no Ray client server is started.
- Orphans. A SIGKILLed driver takes ``gcs_server`` and the raylet with it (Ray's fate sharing), but the
  raylet's dashboard and runtime-env agents live on (~230 MB). Each start leaves a record (driver pid and
  start time) in its Ray session folder; the next start stops the processes of every recorded session
  whose driver is dead. A cluster started with ``ray start`` has no record, and a live driver's instance
  has a live driver: neither is touched.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from typing import Iterator, Optional

import psutil

log = logging.getLogger("mfer_platform")

MARKER = "mfer_driver.json"  # in the Ray session folder: {"pid": ..., "create_time": ...} of the driver
_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start(num_cpus: Optional[int], num_gpus: Optional[int]) -> None:
    """Stop what killed drivers left, then start this driver's loopback-only instance and record it."""
    import ray

    reap_orphans(ray_temp_dir())
    with _loopback():
        context = ray.init(num_cpus=num_cpus, num_gpus=num_gpus, log_to_driver=False,
                           logging_level=logging.WARNING, include_dashboard=False)
    me = psutil.Process()
    with open(os.path.join(context.address_info["session_dir"], MARKER), "w") as f:
        json.dump({"pid": me.pid, "create_time": me.create_time()}, f)


def ray_temp_dir() -> str:
    """Where ``ray.init`` puts its session folders (``RAY_TMPDIR`` or the system's, then ``ray``)."""
    from ray._common.utils import get_default_ray_temp_dir

    return get_default_ray_temp_dir()


@contextlib.contextmanager
def _loopback() -> Iterator[None]:
    """Ray's local-only node address for the processes ``ray.init`` starts (they inherit the variable;
    the driver's copy of Ray's constant was read at import, so it is switched too), then as before."""
    from ray._private import ray_constants

    before_env, before_const = os.environ.get(_LOCAL_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOCAL_ONLY], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_const
        if before_env is None:
            os.environ.pop(_LOCAL_ONLY, None)
        else:
            os.environ[_LOCAL_ONLY] = before_env


def _alive(pid: int, create_time: float) -> bool:
    """The process that had this pid at ``create_time`` still runs (not a later one reusing the pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def session_processes(session_dir: str) -> list[psutil.Process]:
    """This user's Ray processes of one Ray session: Ray's programs naming its folder on their command
    line (gcs_server, raylet, monitors) and Ray-titled ones (``ray::…``: agents, workers) writing its
    logs. Anything else that names the folder (a ``tail -f`` of its logs) is not Ray's, and is left."""
    import ray

    ray_dir = os.path.dirname(ray.__file__)
    found = []
    for p in psutil.process_iter(["uids", "cmdline"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != os.getuid() or p.pid == os.getpid():
                continue
            cmdline = " ".join(p.info["cmdline"] or [])
            if (session_dir in cmdline and ray_dir in cmdline) or (cmdline.startswith("ray::") and any(
                    f.path.startswith(session_dir + os.sep) for f in p.open_files())):
                found.append(p)
        except psutil.Error:  # it ended meanwhile, or is not ours to inspect
            continue
    return found


def reap_orphans(temp_dir: str) -> int:
    """Stop the processes of recorded sessions under ``temp_dir`` whose driver is dead; return how many.
    SIGKILL: the orphaned agents ignore SIGTERM, and an instance without its GCS has nothing to save."""
    stopped = 0
    # realpath: Ray's ``session_latest`` link names one of the sessions a second time
    for marker in sorted({os.path.realpath(m) for m in glob.glob(os.path.join(temp_dir, "session_*", MARKER))}):
        try:
            with open(marker) as f:
                driver = json.load(f)
            if _alive(int(driver["pid"]), float(driver["create_time"])):
                continue  # a live driver's instance
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record we wrote whole: leave it alone
        procs = session_processes(os.path.dirname(marker))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
        with contextlib.suppress(OSError):
            os.remove(marker)
        if procs:
            log.warning(f"stopped {len(procs)} Ray processes left by a killed sweep driver (pid {driver['pid']})")
        stopped += len(procs)
    return stopped
