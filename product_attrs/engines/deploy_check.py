"""Does deploy/ hold together? The KubeRay manifest against the Dagster-side settings and the pinned Ray.

A RayCluster that kubectl accepts can still be wrong in ways that show only at run time, on someone's
GPU bill: a GPU group that asks Ray for a GPU the pod never gets (actors wait forever), a ``num-cpus``
above the container's limit (Ray oversubscribes the pod), a worker without the shared volume (a
checkpoint written there is missing elsewhere), an address that names another cluster's head or port,
a Ray version other than the client's (Ray Client refuses it). Each such mismatch is a line here.

``python -m product_attrs.engines.deploy_check [deploy/]`` prints them and exits 1 when there are any.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import Any

from product_attrs.engines.ray_cluster import RayAddressError, check_address

#: Ray Client's port on the head (KubeRay's default and the one the head Service exposes).
CLIENT_PORT = 10001
GPU = "nvidia.com/gpu"
DATA_DIR, LAKE_DATA, LAKE_CATALOG, RAY_ADDRESS = (
    "PRODUCT_ATTRS_DATA_DIR",
    "PRODUCT_ATTRS_LAKE_DATA",
    "PRODUCT_ATTRS_LAKE_CATALOG",
    "PRODUCT_ATTRS_RAY_ADDRESS",
)
MANIFEST, ENV_FILE = "raycluster.yaml", "dagster.env"


def load_manifest(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (a PersistentVolumeClaim, the RayCluster, ...)."""
    import yaml  # PyYAML: a dependency of ray, locked in requirements.lock

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as a shell reads them (quotes removed, ``#`` comments skipped)."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        words = shlex.split(value, comments=True)
        env[key.strip()] = " ".join(words)
    return env


def cpu_quantity(value: Any) -> float:
    """A Kubernetes CPU quantity in cores: 8, "8", "500m"."""
    text = str(value).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def check(
    manifest: list[dict[str, Any]], env: Mapping[str, str], ray_version: str | None = None
) -> list[str]:
    """Every inconsistency between the manifest's documents, the Dagster-side ``env`` and Ray, one line
    each ([] when none). ``ray_version``: the Ray the client runs (default: the installed one)."""
    ray_version = ray_version or version("ray")
    clusters = [d for d in manifest if d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        return [f"expected one RayCluster in the manifest, found {len(clusters)}"]
    cluster = clusters[0]
    problems: list[str] = []
    if cluster.get("apiVersion") != "ray.io/v1":
        problems.append(f"RayCluster apiVersion {cluster.get('apiVersion')!r}: expected 'ray.io/v1'")
    spec = cluster.get("spec") or {}
    if str(spec.get("rayVersion")) != ray_version:
        problems.append(
            f"rayVersion {spec.get('rayVersion')!r} is not the Ray of the client ({ray_version}): Ray Client "
            "refuses a cluster of another version"
        )

    groups = [("head", spec.get("headGroupSpec") or {})]
    groups += [(g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs") or []]
    pods = {name: _pod(name, group, problems) for name, group in groups}
    for name, group in groups[1:]:
        _check_replicas(name, group, problems)
    for name, group in groups:
        if pods[name] is not None:
            _check_resources(name, group, pods[name], problems)
    workers = [name for name, _ in groups[1:] if pods[name] is not None]
    gpu_groups = [name for name in workers if _limit(pods[name], GPU) > 0]
    if not gpu_groups:
        problems.append(f"no worker group limits {GPU}: the model actors and Ray Train workers have no GPU")
    if not [name for name in workers if name not in gpu_groups]:
        problems.append("no CPU-only worker group: decoding would take the GPU nodes' CPUs")
    for name in gpu_groups:
        tolerations = (_template_spec(dict(groups)[name]).get("tolerations")) or []
        if not any(t.get("key") == GPU for t in tolerations):
            problems.append(f"{name}: no toleration for {GPU}: its pods cannot land on tainted GPU nodes")

    pods_ok = {name: pod for name, pod in pods.items() if pod is not None}
    images = {name: pod["container"].get("image") for name, pod in pods_ok.items()}
    if len(set(images.values())) > 1:
        problems.append(f"groups run different images {images}: Ray needs one Ray and Python on every node")
    mount = _check_shared_volume(pods_ok, problems)
    claims = {d["metadata"]["name"]: d for d in manifest if d.get("kind") == "PersistentVolumeClaim"}
    for claim in {c for pod in pods_ok.values() for c in _claims(pod).values()} & claims.keys():
        if "ReadWriteMany" not in (claims[claim].get("spec") or {}).get("accessModes", []):
            problems.append(
                f"PersistentVolumeClaim {claim} is not ReadWriteMany: pods on many nodes mount it"
            )
    _check_env(cluster, pods_ok, env, mount, problems)
    return problems


def check_dir(deploy: Path, ray_version: str | None = None) -> list[str]:
    """``check`` on ``deploy/raycluster.yaml`` and ``deploy/dagster.env``."""
    return check(load_manifest(deploy / MANIFEST), read_env_file(deploy / ENV_FILE), ray_version)


def _template_spec(group: Mapping[str, Any]) -> dict[str, Any]:
    return ((group.get("template") or {}).get("spec")) or {}


def _pod(name: str, group: Mapping[str, Any], problems: list[str]) -> dict[str, Any] | None:
    """The group's Ray container (KubeRay: the first) and pod volumes, or None (said in ``problems``)."""
    spec = _template_spec(group)
    containers = spec.get("containers") or []
    if not containers:
        problems.append(f"{name}: the pod template has no container")
        return None
    return {"container": containers[0], "volumes": spec.get("volumes") or []}


def _limit(pod: Mapping[str, Any], resource: str) -> float:
    limits = ((pod["container"].get("resources") or {}).get("limits")) or {}
    return cpu_quantity(limits[resource]) if resource in limits else 0.0


def _start_param(group: Mapping[str, Any], key: str) -> float | None:
    value = (group.get("rayStartParams") or {}).get(key)
    return None if value is None else float(value)


def _check_replicas(name: str, group: Mapping[str, Any], problems: list[str]) -> None:
    low, high = group.get("minReplicas"), group.get("maxReplicas")
    if low is None or high is None:
        problems.append(f"{name}: minReplicas and maxReplicas are needed for the autoscaler")
        return
    replicas = group.get("replicas", low)
    if not (0 <= low <= replicas <= high and high >= 1):
        problems.append(
            f"{name}: replicas {replicas}, min {low}, max {high}: "
            "expected 0 <= min <= replicas <= max, max >= 1"
        )


def _check_resources(
    name: str, group: Mapping[str, Any], pod: Mapping[str, Any], problems: list[str]
) -> None:
    """Ray schedules by what rayStartParams tell it: they must be what the container gets."""
    cpus, gpus = _limit(pod, "cpu"), _limit(pod, GPU)
    num_cpus, num_gpus = _start_param(group, "num-cpus"), _start_param(group, "num-gpus")
    if cpus <= 0:
        problems.append(f"{name}: no CPU limit: Ray would count the node's cores, not the pod's")
    if num_cpus is None:
        problems.append(f"{name}: rayStartParams has no num-cpus")
    elif not (num_cpus == cpus or (name == "head" and num_cpus == 0)):
        problems.append(
            f"{name}: rayStartParams num-cpus {num_cpus:g} but the container's CPU limit is {cpus:g}"
            + (" (the head may also say 0: no work on the head)" if name == "head" else "")
        )
    if (num_gpus or 0) != gpus:
        problems.append(
            f"{name}: rayStartParams num-gpus {num_gpus or 0:g} but the container limits {gpus:g} {GPU}"
        )


def _claims(pod: Mapping[str, Any]) -> dict[str, str]:
    """The pod's PersistentVolumeClaim volumes: volume name -> claim name."""
    return {
        v["name"]: v["persistentVolumeClaim"].get("claimName")
        for v in pod["volumes"]
        if v.get("persistentVolumeClaim")
    }


def _check_shared_volume(pods: Mapping[str, Mapping[str, Any]], problems: list[str]) -> str | None:
    """The data root: one PersistentVolumeClaim mounted at one path on every pod; that path, or None."""
    mounts: dict[str, tuple[str, str] | None] = {}
    for name, pod in pods.items():
        claims = _claims(pod)
        found = [
            (claims[m["name"]], m.get("mountPath"))
            for m in pod["container"].get("volumeMounts") or []
            if m.get("name") in claims
        ]
        mounts[name] = found[0] if len(found) == 1 else None
        if len(found) != 1:
            problems.append(
                f"{name}: expected one shared volume (a PersistentVolumeClaim) mounted, found {found}"
            )
    if None in mounts.values():
        return None
    if len(set(mounts.values())) > 1:
        problems.append(
            f"groups mount different claims or paths {mounts}: one path must name one file everywhere"
        )
        return None
    return next(iter(mounts.values()), (None, None))[1]


def _env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def _under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(root))


def _check_env(
    cluster: Mapping[str, Any],
    pods: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
    mount: str | None,
    problems: list[str],
) -> None:
    """The pods' settings agree with each other, with the shared volume and with Dagster's."""
    pod_env = {name: _env_of(pod["container"]) for name, pod in pods.items()}
    for key in (DATA_DIR, LAKE_DATA, LAKE_CATALOG):
        values = {name: e.get(key) for name, e in pod_env.items()}
        if None in values.values():
            problems.append(f"{key} is not set on {sorted(n for n, v in values.items() if v is None)}")
            continue
        if len({repr(v) for v in values.values()}) > 1:
            problems.append(f"{key} differs between groups: {values}")
            continue
        value = next(iter(values.values()), None)
        if key == LAKE_CATALOG:
            if not (isinstance(value, dict) and "secretKeyRef" in value):
                problems.append(f"{key} on the pods should come from a Secret (secretKeyRef), not be written")
            continue
        if mount is not None and not _under(str(value), mount):
            problems.append(f"{key}={value} on the pods is not on the shared volume ({mount})")
        if env.get(key) != value:
            problems.append(f"{key}: Dagster has {env.get(key)!r}, the Ray pods {value!r}: paths must agree")

    if not env.get(LAKE_CATALOG, "").startswith("postgres:"):
        problems.append(
            f"{LAKE_CATALOG}={env.get(LAKE_CATALOG)!r} in the env file: expected 'postgres:...' "
            "(many writers on many machines; a SQLite catalog takes one machine)"
        )
    _check_address(cluster, env.get(RAY_ADDRESS, ""), problems)


def _check_address(cluster: Mapping[str, Any], address: str, problems: list[str]) -> None:
    """``ray://<cluster>-head-svc[.<namespace>.svc...]:10001``: this cluster's head, Ray Client's port."""
    try:
        address = check_address(address)
    except RayAddressError as error:
        problems.append(str(error))
        return
    metadata = cluster.get("metadata") or {}
    service, namespace = f"{metadata.get('name')}-head-svc", metadata.get("namespace")
    expected = f"ray://{service}.{namespace}.svc.cluster.local:{CLIENT_PORT}"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    labels = host.split(".")
    if (
        not address.startswith("ray://")
        or port != str(CLIENT_PORT)
        or labels[0] != service
        or (len(labels) > 1 and labels[1] != namespace)
    ):
        problems.append(f"{RAY_ADDRESS}={address!r} is not this cluster's head: expected {expected!r}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    deploy = Path(args[0] if args else "deploy")
    problems = check_dir(deploy)
    for line in problems:
        print(f"{deploy}: {line}")
    if not problems:
        print(f"{deploy}: {MANIFEST} and {ENV_FILE} agree (Ray {version('ray')})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
