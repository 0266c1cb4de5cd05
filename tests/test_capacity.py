"""Sweep feasibility counts the nodes an autoscaler may launch, not only the alive ones: a GPU
sweep on a cluster that keeps zero GPU workers until work arrives starts (trials wait for the
autoscaler), while a request no node type can meet still fails before any trial starts."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from mfer_platform.sweep.capacity import NodeShape, per_node, trial_slots

CPU_HEAD = NodeShape("node 10.0.0.1", {"CPU": 8.0, "memory": 3e10}, 1)
GPU_TYPE = NodeShape("autoscaler node type 'gpu'", {"CPU": 16.0, "GPU": 4.0}, 3)


def test_per_node_counts_the_scarcer_resource():
    assert per_node(GPU_TYPE.resources, cpu=2, gpu=1) == 4  # GPUs bind before CPUs (8)
    assert per_node(GPU_TYPE.resources, cpu=1, gpu=0.25) == 16
    assert per_node(CPU_HEAD.resources, cpu=1, gpu=1) == 0


def test_slots_include_nodes_the_autoscaler_may_launch():
    assert trial_slots([CPU_HEAD], cpu=1, gpu=1) == 0
    assert trial_slots([CPU_HEAD, GPU_TYPE], cpu=1, gpu=1) == 12  # 3 nodes x 4 GPUs
    assert trial_slots([CPU_HEAD, NodeShape("unbounded", GPU_TYPE.resources, math.inf)], 1, 1) == math.inf
    assert trial_slots([CPU_HEAD], cpu=2, gpu=0) == 4


# Runs against a real local Ray instance: first as a hand-started cluster (nothing to launch), then
# as a cluster-launcher head (our cluster/aws.yaml as ~/ray_bootstrap_config.yaml), then with node
# types published to the GCS exactly where an autoscaler publishes them.
SCRIPT = """
import logging, shutil, sys
from pathlib import Path
import ray
from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY as KEY, GCS_AUTOSCALER_STATE_NAMESPACE as NS
from ray.core.generated import autoscaler_pb2
from ray.experimental.internal_kv import _internal_kv_put
from mfer_platform.sweep.runner import check_resources
from mfer_platform.sweep.spaces import SpaceError, load_space

logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
space = load_space("quickstart", overrides={"resources.gpu": 1, "search.max_concurrent": 20})
ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
try:
    check_resources(space)
except SpaceError as e:
    print("REFUSED", e)
print("TRUSTED", check_resources(space, autoscaling=True))
shutil.copy(sys.argv[1], Path.home() / "ray_bootstrap_config.yaml")
print("LAUNCHER", check_resources(space))
config = autoscaler_pb2.ClusterConfig(node_group_configs=[
    autoscaler_pb2.NodeGroupConfig(name="head", resources={"CPU": 1}, min_count=1, max_count=1),
    autoscaler_pb2.NodeGroupConfig(name="gpu_workers", resources={"CPU": 8, "GPU": 1}, min_count=0, max_count=4)])
_internal_kv_put(KEY, config.SerializeToString(), overwrite=True, namespace=NS)
print("PUBLISHED", check_resources(space))
"""


@pytest.mark.slow
def test_gpu_sweep_starts_on_a_cluster_that_scales_gpu_workers_from_zero(ray_env, tmp_path):
    aws = Path(__file__).parents[1] / "cluster" / "aws.yaml"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(aws)], env={**ray_env, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REFUSED" in out.stdout and "1 CPU + 0 GPU" in out.stdout  # no autoscaler: refused, with the reason
    assert "TRUSTED 20" in out.stdout  # cluster.autoscaling=true: the user vouches for an autoscaler
    assert "LAUNCHER 8" in out.stdout  # aws.yaml: up to 8 g5.2xlarge workers of 1 GPU each
    assert "PUBLISHED 4" in out.stdout  # 4 GPU workers of 1 GPU each may be launched
    assert "wait for the autoscaler to launch autoscaler node type 'gpu_workers'" in out.stdout
