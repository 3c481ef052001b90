"""deploy/: the committed KubeRay manifest and Dagster settings agree with each other and with the pinned
Ray; a copy broken in one place is reported in that place."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from product_attrs.engines.deploy_check import (
    check,
    check_dir,
    cpu_quantity,
    load_manifest,
    main,
    read_env_file,
)
from product_attrs.engines.ray_cluster import check_address

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def manifest() -> list[dict[str, Any]]:
    return load_manifest(DEPLOY / "raycluster.yaml")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(DEPLOY / "dagster.env")


def _cluster(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "RayCluster")


def _group(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec = _cluster(docs)["spec"]
    if name == "head":
        return spec["headGroupSpec"]
    return next(g for g in spec["workerGroupSpecs"] if g["groupName"] == name)


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return _group(docs, name)["template"]["spec"]["containers"][0]


def test_the_committed_files_agree(manifest, env):
    assert check(manifest, env) == []
    assert check_dir(DEPLOY) == []
    assert main([str(DEPLOY)]) == 0


def test_ray_is_the_pinned_and_installed_one(manifest):
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(re.fullmatch(r"ray\[[^]]*\]==(.+)", p).group(1) for p in pins if p.startswith("ray["))
    lock = (REPO / "requirements.lock").read_text()
    assert _cluster(manifest)["apiVersion"] == "ray.io/v1"
    assert _cluster(manifest)["spec"]["rayVersion"] == pinned == version("ray")
    assert f"\nray=={pinned}\n" in lock


def test_two_worker_groups_a_cpu_decode_one_and_a_gpu_one(manifest):
    decode, gpu = _group(manifest, "cpu-decode"), _group(manifest, "gpu-model")
    decode_limits = _container(manifest, "cpu-decode")["resources"]["limits"]
    gpu_limits = _container(manifest, "gpu-model")["resources"]["limits"]
    assert "nvidia.com/gpu" not in decode_limits and float(decode["rayStartParams"]["num-gpus"]) == 0
    assert float(decode["rayStartParams"]["num-cpus"]) == cpu_quantity(decode_limits["cpu"]) > 1
    assert gpu_limits["nvidia.com/gpu"] == 1 and gpu["rayStartParams"]["num-gpus"] == "1"
    assert float(gpu["rayStartParams"]["num-cpus"]) == cpu_quantity(gpu_limits["cpu"])
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    assert gpu["template"]["spec"]["nodeSelector"]
    for group in (decode, gpu):
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert decode["maxReplicas"] > decode["minReplicas"]  # the autoscaler has room
    assert _cluster(manifest)["spec"]["enableInTreeAutoscaling"] is True
    assert _group(manifest, "head")["rayStartParams"]["num-cpus"] == "0"


def test_every_pod_mounts_the_data_root_where_dagster_has_it(manifest, env):
    images = set()
    for name in ("head", "cpu-decode", "gpu-model"):
        container = _container(manifest, name)
        spec = _group(manifest, name)["template"]["spec"]
        claim = {v["name"]: v.get("persistentVolumeClaim") for v in spec["volumes"]}
        mounts = {m["mountPath"]: claim[m["name"]] for m in container["volumeMounts"]}
        assert mounts[env["PRODUCT_ATTRS_DATA_DIR"]] == {"claimName": "product-attrs-data"}
        pod_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert pod_env["PRODUCT_ATTRS_DATA_DIR"] == env["PRODUCT_ATTRS_DATA_DIR"] == "/data"
        assert pod_env["PRODUCT_ATTRS_LAKE_DATA"] == env["PRODUCT_ATTRS_LAKE_DATA"]
        assert pod_env["PRODUCT_ATTRS_LAKE_CATALOG"]["secretKeyRef"]["name"] == "product-attrs-lake"
        images.add(container["image"])
    version_ = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert images == {f"product-attrs:{version_}"}
    claim = next(d for d in manifest if d["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "product-attrs-data"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_dagster_joins_this_clusters_head_and_a_postgres_catalog(manifest, env):
    address = check_address(env["PRODUCT_ATTRS_RAY_ADDRESS"])
    meta = _cluster(manifest)["metadata"]
    assert address == f"ray://{meta['name']}-head-svc.{meta['namespace']}.svc.cluster.local:10001"
    assert {"containerPort": 10001, "name": "client"} in _container(manifest, "head")["ports"]
    assert env["PRODUCT_ATTRS_LAKE_CATALOG"].startswith("postgres:")
    assert "password" not in env["PRODUCT_ATTRS_LAKE_CATALOG"]  # libpq takes it from PGPASSWORD


def _drop_gpu_limit(docs):
    for part in ("limits", "requests"):
        del _container(docs, "gpu-model")["resources"][part]["nvidia.com/gpu"]


def _set(path: list[Any], value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def edit(docs):
        node = _cluster(docs)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _env_value(group: str, name: str, value: str):
    def edit(docs):
        for entry in _container(docs, group)["env"]:
            if entry["name"] == name:
                entry.clear()
                entry.update(name=name, value=value)

    return edit


def _env_everywhere(name: str, value: str):
    edits = [_env_value(group, name, value) for group in ("head", "cpu-decode", "gpu-model")]

    def edit(docs):
        for one in edits:
            one(docs)

    return edit


def _unmount_data(docs):
    container = _container(docs, "cpu-decode")
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "data"]


def _mount_elsewhere(docs):
    for mount in _container(docs, "gpu-model")["volumeMounts"]:
        if mount["name"] == "data":
            mount["mountPath"] = "/mnt/data"


def _no_toleration(docs):
    _group(docs, "gpu-model")["template"]["spec"]["tolerations"] = []


def _other_image(docs):
    _container(docs, "gpu-model")["image"] = "product-attrs:0.0.9"


def _claim_read_write_once(docs):
    next(d for d in docs if d["kind"] == "PersistentVolumeClaim")["spec"]["accessModes"] = ["ReadWriteOnce"]


MANIFEST_BREAKS = {
    "gpu group without the GPU limit": (
        _drop_gpu_limit,
        "gpu-model: rayStartParams num-gpus 1 but the container limits 0 nvidia.com/gpu",
    ),
    "another ray version": (
        _set(["spec", "rayVersion"], "2.9.3"),
        "rayVersion '2.9.3' is not the Ray of the client",
    ),
    "num-cpus above the CPU limit": (
        _set(["spec", "workerGroupSpecs", 0, "rayStartParams", "num-cpus"], "16"),
        "cpu-decode: rayStartParams num-cpus 16 but the container's CPU limit is 8",
    ),
    "a GPU asked of a CPU group": (
        _set(["spec", "workerGroupSpecs", 0, "rayStartParams", "num-gpus"], "1"),
        "cpu-decode: rayStartParams num-gpus 1 but the container limits 0 nvidia.com/gpu",
    ),
    "a worker without the shared volume": (
        _unmount_data,
        "cpu-decode: expected one shared volume (a PersistentVolumeClaim) mounted, found []",
    ),
    "the volume at another path": (_mount_elsewhere, "groups mount different claims or paths"),
    "the data root off the volume": (
        _env_value("head", "PRODUCT_ATTRS_DATA_DIR", "/tmp/data"),
        "PRODUCT_ATTRS_DATA_DIR differs between groups",
    ),
    "the catalog written into the manifest": (
        _env_value("head", "PRODUCT_ATTRS_LAKE_CATALOG", "sqlite:/data/lake/catalog.sqlite"),
        "PRODUCT_ATTRS_LAKE_CATALOG differs between groups",
    ),
    "the catalog written into every group": (
        _env_everywhere("PRODUCT_ATTRS_LAKE_CATALOG", "postgres:dbname=lake password=secret"),
        "PRODUCT_ATTRS_LAKE_CATALOG on the pods should come from a Secret",
    ),
    "the data root off the volume everywhere": (
        _env_everywhere("PRODUCT_ATTRS_DATA_DIR", "/tmp/data"),
        "PRODUCT_ATTRS_DATA_DIR=/tmp/data on the pods is not on the shared volume (/data)",
    ),
    "GPU pods that cannot land on GPU nodes": (_no_toleration, "gpu-model: no toleration for nvidia.com/gpu"),
    "two images": (_other_image, "groups run different images"),
    "a volume only one node can mount": (_claim_read_write_once, "product-attrs-data is not ReadWriteMany"),
    "min above max": (
        _set(["spec", "workerGroupSpecs", 1, "minReplicas"], 5),
        "gpu-model: replicas 1, min 5, max 4",
    ),
}


@pytest.mark.parametrize("edit,expected", MANIFEST_BREAKS.values(), ids=MANIFEST_BREAKS.keys())
def test_a_broken_manifest_is_reported(manifest, env, edit, expected):
    broken = copy.deepcopy(manifest)
    edit(broken)
    problems = check(broken, env)
    assert any(expected in p for p in problems), problems


ENV_BREAKS = {
    "another head service": (
        {"PRODUCT_ATTRS_RAY_ADDRESS": "ray://other-head-svc.product-attrs.svc.cluster.local:10001"},
        "is not this cluster's head: expected 'ray://product-attrs-head-svc.product-attrs.svc",
    ),
    "the dashboard's port": (
        {"PRODUCT_ATTRS_RAY_ADDRESS": "ray://product-attrs-head-svc:8265"},
        "is not this cluster's head",
    ),
    "another namespace": (
        {"PRODUCT_ATTRS_RAY_ADDRESS": "ray://product-attrs-head-svc.default.svc.cluster.local:10001"},
        "is not this cluster's head",
    ),
    "not an address": ({"PRODUCT_ATTRS_RAY_ADDRESS": "http://head:8265"}, "expected unset (in-process)"),
    "in-process": ({"PRODUCT_ATTRS_RAY_ADDRESS": ""}, "is not this cluster's head"),
    "a SQLite catalog": (
        {"PRODUCT_ATTRS_LAKE_CATALOG": "sqlite:/data/lake/catalog.sqlite"},
        "expected 'postgres:...'",
    ),
    "another data root": (
        {"PRODUCT_ATTRS_DATA_DIR": "/srv/data"},
        "PRODUCT_ATTRS_DATA_DIR: Dagster has '/srv/data', the Ray pods '/data'",
    ),
    "lake files elsewhere": (
        {"PRODUCT_ATTRS_LAKE_DATA": "/srv/lake"},
        "PRODUCT_ATTRS_LAKE_DATA: Dagster has",
    ),
}


@pytest.mark.parametrize("change,expected", ENV_BREAKS.values(), ids=ENV_BREAKS.keys())
def test_a_broken_env_is_reported(manifest, env, change, expected):
    problems = check(manifest, {**env, **change})
    assert any(expected in p for p in problems), problems


def test_the_short_name_of_the_head_service_is_accepted(manifest, env):
    """Dagster in the cluster's namespace may use the Service's short name."""
    assert check(manifest, {**env, "PRODUCT_ATTRS_RAY_ADDRESS": "ray://product-attrs-head-svc:10001"}) == []


def test_the_command_fails_on_a_broken_copy(tmp_path, capsys):
    (tmp_path / "dagster.env").write_text((DEPLOY / "dagster.env").read_text())
    text = (DEPLOY / "raycluster.yaml").read_text()
    assert 'rayVersion: "2.60.0"' in text
    (tmp_path / "raycluster.yaml").write_text(text.replace('rayVersion: "2.60.0"', 'rayVersion: "2.9.3"'))
    assert main([str(tmp_path)]) == 1
    assert "rayVersion '2.9.3' is not the Ray of the client" in capsys.readouterr().out


def test_env_file_lines_read_as_a_shell_reads_them(tmp_path):
    path = tmp_path / "x.env"
    path.write_text('# comment\n\nexport A=1\nB="x y=z"  # why\nC=\n')
    assert read_env_file(path) == {"A": "1", "B": "x y=z", "C": ""}
    path.write_text("not a setting\n")
    with pytest.raises(ValueError, match="x.env:1: expected KEY=VALUE"):
        read_env_file(path)
