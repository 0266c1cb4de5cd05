"""How many trials a Ray cluster can host at once — including nodes it does not have yet.

A cluster started by the cluster launcher or KubeRay often keeps zero GPU workers until work
arrives, so "no alive node fits a trial" does not mean "no node ever will". A sweep is feasible
when an alive node or a node type the autoscaler may launch can host a trial. The node types
are read from what the cluster says about itself:

1. the cluster config an autoscaler publishes to the GCS (``ray._private.state.state
   .get_cluster_config``, which Ray Data reads; not every Ray autoscaler publishes it yet);
2. ``~/ray_bootstrap_config.yaml``, the cluster-launcher config ``ray up`` leaves on the head —
   where ``ray job submit`` runs the sweep driver (Tune's own "is this an autoscaling cluster"
   check reads the same file);
3. failing both (e.g. KubeRay, whose autoscaler reads the RayCluster from Kubernetes), the user
   says so: ``cluster.autoscaling=true``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


@dataclass(frozen=True)
class NodeShape:
    """``count`` nodes with ``resources`` each: an alive node (1) or an autoscaler node type
    (its max count; ``math.inf`` when unbounded)."""
    name: str
    resources: dict[str, float]
    count: float


def alive_nodes() -> list[NodeShape]:
    import ray

    return [NodeShape(f"node {n['NodeManagerAddress']}", dict(n["Resources"]), 1)
            for n in ray.nodes() if n.get("Alive")]


def published_node_types() -> list[NodeShape]:
    """Node types from the cluster config in the GCS ([] when none was published)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 — a private API: missing or changed means "nothing published"
        return []
    if config is None:
        return []
    return [NodeShape(f"autoscaler node type {g.name!r}", {k: float(v) for k, v in g.resources.items()},
                      math.inf if g.max_count == -1 else g.max_count)
            for g in config.node_group_configs if g.max_count != 0]


def launcher_node_types(path: str = BOOTSTRAP_CONFIG) -> list[NodeShape]:
    """Worker node types of the cluster-launcher config on this head ([] on other machines)."""
    import yaml

    file = Path(path).expanduser()
    if not file.exists():
        return []
    config = yaml.safe_load(file.read_text()) or {}
    head = config.get("head_node_type")
    cap = config.get("max_workers", math.inf)
    return [NodeShape(f"autoscaler node type {name!r}", {k: float(v) for k, v in (t.get("resources") or {}).items()},
                      min(t.get("max_workers", cap), cap))
            for name, t in (config.get("available_node_types") or {}).items() if name != head]


def autoscaler_node_types() -> list[NodeShape]:
    return published_node_types() or launcher_node_types()


def per_node(resources: dict[str, float], cpu: float, gpu: float) -> int:
    """Trials one node of this shape hosts at once (``cpu`` > 0: the search space checks it)."""
    by_gpu = resources.get("GPU", 0) // gpu if gpu else math.inf
    return int(min(resources.get("CPU", 0) // cpu, by_gpu))


def trial_slots(shapes: list[NodeShape], cpu: float, gpu: float) -> float:
    """Upper bound on concurrent trials over ``shapes`` (``math.inf`` for an unbounded node type)."""
    return sum(per_node(s.resources, cpu, gpu) * s.count for s in shapes if per_node(s.resources, cpu, gpu))
