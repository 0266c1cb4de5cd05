"""cluster/ checked offline: the launcher YAMLs against the schema and the config preparation that ship
inside ray (what `ray up` runs before it contacts a cloud), the KubeRay manifests against the ray.io/v1
CRD fields, the image's install steps, every documented sweep command, and the security defaults
(no credentials, dashboard on loopback, token auth on)."""
from __future__ import annotations

import copy
import json
import re
import shlex
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
LAUNCHERS = ("aws.yaml", "gcp.yaml", "onprem.yaml")
MANIFESTS = ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml")
LOOPBACK = "127.0.0.1"
RAY_SCHEMA = json.loads(Path(ray.autoscaler.__file__).with_name("ray-schema.json").read_text())
SWEEP_SETTINGS = yaml.safe_load((resources.files("mfer_platform") / "conf" / "sweep.yaml").read_text())
SPACES = Path(str(resources.files("search_spaces")))


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def shell_steps(text: str) -> list[str]:
    """Dockerfile instructions or shell lines: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [s.strip() for s in joined.splitlines() if s.strip() and not s.lstrip().startswith("#")]


# ---------------------------------------------------------------- cluster launcher (ray up)
@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_passes_rays_own_validation(name):
    """As written against ray-schema.json, then as `ray up` validates it: merged with the provider's
    defaults and node types filled in. Going further for AWS/GCP needs boto3/googleapiclient and an
    account (the provider bootstrap calls the cloud), so it stops here."""
    config = load(name)
    jsonschema.validate(config, RAY_SCHEMA)
    validate_config(prepare_config(copy.deepcopy(config)))


def test_onprem_config_bootstraps_as_ray_up_does():
    """The local provider needs no cloud API: run all of `ray up`'s config bootstrap, short of SSH."""
    config = _bootstrap_config(load("onprem.yaml"), no_config_cache=True)
    assert config["provider"]["worker_ips"] and config["available_node_types"]


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_keeps_token_auth_and_a_loopback_dashboard(name):
    config = load(name)
    head, workers = (" ".join(config[k]) for k in ("head_start_ray_commands", "worker_start_ray_commands"))
    assert f"--dashboard-host={LOOPBACK}" in head
    assert "RAY_AUTH_MODE=token ray start --head" in head and "RAY_AUTH_MODE=token ray start --address" in workers
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # one token on every node


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_trials_run_on_gpu_workers_scaled_from_zero_that_the_sweep_can_see(name):
    from mfer_platform.sweep.capacity import launcher_node_types, trial_slots

    config = load(name)
    types = config["available_node_types"]
    assert types.pop(config["head_node_type"])["resources"] == {"CPU": 0}
    assert types and all(t["resources"]["GPU"] >= 1 and t["min_workers"] == 0 for t in types.values())
    # What mfer-sweep reads on the head (ray up leaves this file as ~/ray_bootstrap_config.yaml):
    # the workers it may launch fit the paper studies' trials (1 CPU + 1 GPU), 8 at once.
    assert trial_slots(launcher_node_types(str(CLUSTER / name)), cpu=1, gpu=1) == 8


# ---------------------------------------------------------------- what gets installed
@pytest.mark.parametrize("name, project", [("Dockerfile", "./src"), ("setup_node.sh", "mfer_platform-*.whl")])
def test_install_puts_facenet_without_deps_after_torch_and_the_project(name, project):
    steps = shell_steps((CLUSTER / name).read_text())
    facenet = next(i for i, s in enumerate(steps) if "facenet-pytorch==2.6.0" in s)
    assert "--no-deps" in steps[facenet].split()
    before = " ".join(steps[:facenet])
    assert "torch==" in before and project in before and "ray[default" in before


def test_image_is_cuda_based_and_records_its_commit():
    steps = shell_steps((CLUSTER / "Dockerfile").read_text())
    assert steps[0].startswith("ARG CUDA_IMAGE=nvidia/cuda:") and steps[1] == "FROM ${CUDA_IMAGE}"
    assert "ARG MFER_GIT_COMMIT=unknown" in steps and "ENV MFER_GIT_COMMIT=${MFER_GIT_COMMIT}" in steps


# ---------------------------------------------------------------- KubeRay
# Field names and types of KubeRay v1.5.1's ray.io/v1 CRDs (ray-operator/apis/ray/v1/raycluster_types.go
# and rayjob_types.go; v1.5.1 is the first with authOptions). `required` adds to the CRD's own what this
# project relies on. The API server silently prunes unknown fields, so a misspelt one (say
# `shutdownAfterJobFinish`) would vanish without an error: unknown fields fail here instead.
def _obj(required=(), **fields):
    return {"type": "object", "required": list(required), "properties": fields, "additionalProperties": False}


_ANY, _BOOL, _STR = {}, {"type": "boolean"}, {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_STR_MAP = {"type": "object", "additionalProperties": _STR}  # map[string]string: "0", never 0
_QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer", "number"]}}
_CONTAINER = {"type": "object", "required": ["name", "image", "resources"],
              "properties": {"resources": _obj(["requests", "limits"], requests=_QUANTITIES, limits=_QUANTITIES)}}
_POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": _CONTAINER}}}}}
_HEAD = _obj(["rayStartParams", "template"], serviceType={"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
             headService=_ANY, enableIngress=_BOOL, resources=_STR_MAP, labels=_STR_MAP, rayStartParams=_STR_MAP,
             template=_POD_TEMPLATE)
_WORKER = _obj(["groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"],
               suspend=_BOOL, groupName=_STR, replicas=_COUNT, minReplicas=_COUNT, maxReplicas=_COUNT,
               idleTimeoutSeconds=_COUNT, resources=_STR_MAP, labels=_STR_MAP, rayStartParams=_STR_MAP,
               template=_POD_TEMPLATE, scaleStrategy=_ANY, numOfHosts=_COUNT)
_CLUSTER_SPEC = _obj(["headGroupSpec", "workerGroupSpecs", "rayVersion", "authOptions"],
                     upgradeStrategy=_ANY, authOptions=_obj(mode={"enum": ["disabled", "token"]}), suspend=_BOOL,
                     managedBy=_STR, autoscalerOptions=_ANY, headServiceAnnotations=_STR_MAP,
                     enableInTreeAutoscaling=_BOOL, gcsFaultToleranceOptions=_ANY, headGroupSpec=_HEAD,
                     rayVersion=_STR, workerGroupSpecs={"type": "array", "minItems": 1, "items": _WORKER})
_JOB_SPEC = _obj(["entrypoint", "rayClusterSpec", "shutdownAfterJobFinishes"],
                 activeDeadlineSeconds=_COUNT, backoffLimit=_COUNT, rayClusterSpec=_CLUSTER_SPEC,
                 submitterPodTemplate=_ANY, metadata=_STR_MAP, clusterSelector=_STR_MAP, submitterConfig=_ANY,
                 managedBy=_STR, deletionStrategy=_ANY, entrypoint=_STR, runtimeEnvYAML=_STR, jobId=_STR,
                 submissionMode={"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                 entrypointResources=_STR, entrypointNumCpus={"type": "number"},
                 entrypointNumGpus={"type": "number"}, ttlSecondsAfterFinished=_COUNT,
                 shutdownAfterJobFinishes=_BOOL, suspend=_BOOL)
CRD = {kind: {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
              "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind},
                             "metadata": {"type": "object", "required": ["name"]}, "spec": spec}}
       for kind, spec in (("RayCluster", _CLUSTER_SPEC), ("RayJob", _JOB_SPEC))}


def cluster_spec(manifest: dict) -> dict:
    return manifest["spec"].get("rayClusterSpec", manifest["spec"])


@pytest.mark.parametrize("name", MANIFESTS)
def test_kuberay_manifest_has_the_crd_fields(name):
    manifest = load(name)
    jsonschema.validate(manifest, CRD[manifest["kind"]])
    for group in cluster_spec(manifest)["workerGroupSpecs"]:
        assert all(int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1 for c in group["template"]["spec"]["containers"])


@pytest.mark.parametrize("name", MANIFESTS)
def test_kuberay_keeps_token_auth_and_the_job_server_inside(name):
    manifest = load(name)
    spec = cluster_spec(manifest)
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    if manifest["kind"] == "RayCluster":
        assert head["rayStartParams"]["dashboard-host"] == LOOPBACK
    else:  # the operator polls the job server through the head Service: in-cluster only, token required
        assert head["serviceType"] == "ClusterIP"


def test_rayjob_cluster_is_the_raycluster():
    """rayjob.yaml repeats raycluster.yaml's pods (no include in YAML): keep them from drifting apart."""
    standing, job = cluster_spec(load(MANIFESTS[0])), cluster_spec(load(MANIFESTS[1]))
    assert job["workerGroupSpecs"] == standing["workerGroupSpecs"]
    assert job["headGroupSpec"]["template"] == standing["headGroupSpec"]["template"]


# ---------------------------------------------------------------- documented sweep commands
def sweep_settings(command: str) -> dict[str, str]:
    """`mfer-sweep k=v ...` -> {k: v}, failing on a key that mfer_platform/conf/sweep.yaml lacks."""
    program, *args = shlex.split(command)
    assert program == "mfer-sweep", command
    settings = dict(arg.split("=", 1) for arg in args)
    for key in settings:
        node = SWEEP_SETTINGS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{command}: no setting {key}"
            node = node[part]
    return settings


def documented_sweep_commands() -> list[str]:
    readme = re.sub(r"\\\n\s*", " ", (CLUSTER / "README.md").read_text())
    lines = [line[line.index("mfer-sweep search_space="):] for line in readme.splitlines() if "mfer-sweep search_space=" in line]
    return [load(MANIFESTS[1])["spec"]["entrypoint"], *lines]


@pytest.mark.parametrize("command", documented_sweep_commands())
def test_documented_sweep_command_joins_the_cluster_and_shared_storage(command):
    settings = sweep_settings(command)
    assert settings["cluster.address"] == "auto" and settings["name"]
    assert re.match(r"(s3|gs)://", settings["storage_path"])
    space = settings["search_space"]
    assert space.endswith(".yaml") or (SPACES / f"{space}.yaml").is_file()  # a shipped space, or the user's file


# ---------------------------------------------------------------- no credentials, auth never disabled
_SECRET_KEY = re.compile(r"access_key|secret|passw|token|credential|private_key", re.I)
_SECRET_TEXT = re.compile(
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"          # AWS access key id
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"      # a key pasted inline
    r"|(?<!sha256:)\b[0-9a-f]{64}\b"       # a Ray token (256-bit hex)
    r"|aws_(secret_)?access_key(_id)?"     # AWS credential settings
    r"|RAY_AUTH_MODE\W*disabled", re.I)


def _secret_entries(node, where=""):
    """Mapping entries whose key looks secret but whose value is not a file path, and Kubernetes env
    entries with a secret-looking name and a literal value (they must use valueFrom)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _secret_entries(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        if _SECRET_KEY.search(str(node.get("name", ""))) and "value" in node:
            yield f"{where}.env {node['name']}"
        for key, value in node.items():
            if _SECRET_KEY.search(str(key)) and not (isinstance(value, str) and value.startswith(("~/", "/"))):
                yield f"{where}.{key}"
            yield from _secret_entries(value, f"{where}.{key}")


@pytest.mark.parametrize("path", sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*") if p.is_file()))
def test_no_credentials_and_auth_never_disabled(path):
    text = (CLUSTER / path).read_text()
    assert not _SECRET_TEXT.search(text), _SECRET_TEXT.search(text)
    if path.endswith(".yaml"):
        assert not list(_secret_entries(yaml.safe_load(text)))
