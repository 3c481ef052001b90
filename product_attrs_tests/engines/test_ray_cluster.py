"""The engine setting and sizing work to the cluster."""

from __future__ import annotations

import sys

import dagster as dg
import pytest

from product_attrs.engines.ray_cluster import Cluster, RayAddressError, check_address
from product_attrs.resources import ComputeResource


@pytest.mark.parametrize("value", ["", "local", "auto", "ray://head:10001", "  local "])
def test_accepted_addresses(value: str):
    assert check_address(value) == value.strip()


@pytest.mark.parametrize("value", ["ray://", "localhost", "http://head:8265", "LOCAL"])
def test_other_addresses_are_refused_saying_what_is_accepted(value: str):
    with pytest.raises(RayAddressError, match="expected unset \\(in-process\\), 'local', 'auto' or 'ray://"):
        check_address(value)


def test_the_resource_falls_back_to_the_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PRODUCT_ATTRS_RAY_ADDRESS", raising=False)
    assert ComputeResource().ray() == ""
    monkeypatch.setenv("PRODUCT_ATTRS_RAY_ADDRESS", "local")
    assert ComputeResource().ray() == "local"
    assert ComputeResource(engine="ray://head:10001").ray() == "ray://head:10001"


def test_actors_leave_the_decoders_half_a_cpu():
    """2 cores, 2 actors: 0.75 CPU each, so read and decode tasks always get a slot (a whole CPU each
    never finishes there); many cores: one CPU per actor; never below a quarter."""
    assert Cluster(cpus=2, gpus=0).actor_cpus(2) == 0.75
    assert Cluster(cpus=2, gpus=0).actor_cpus(1) == 1.0
    assert Cluster(cpus=16, gpus=1).actor_cpus(4) == 1.0
    assert Cluster(cpus=1, gpus=0).actor_cpus(4) == 0.25


def test_a_step_joins_ray_through_dagster_ray_says_so_and_leaves(monkeypatch: pytest.MonkeyPatch):
    """With an engine set, the compute resource joins Ray at the step's set-up (dagster-ray's lifecycle,
    logged in the run), the asset sees the cluster and its Ray job id, and a Ray the step started is shut
    down at teardown."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    seen: dict[str, object] = {}

    @dg.asset
    def probe(compute: ComputeResource):
        seen["initialized"] = ray.is_initialized()
        seen["cpus"] = ray.cluster_resources().get("CPU")
        return dg.MaterializeResult(metadata={"ray_job_id": compute.ray_job_id()})

    instance = dg.DagsterInstance.ephemeral()
    compute = ComputeResource(device="cpu", engine="local", ray_init_options={"num_cpus": 1})
    result = dg.materialize([probe], resources={"compute": compute}, instance=instance)

    assert result.success
    assert seen == {"initialized": True, "cpus": 1.0}
    job_id = result.asset_materializations_for_node("probe")[0].metadata["ray_job_id"].value
    assert isinstance(job_id, str) and job_id
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("Connected to Ray (local)" in m for m in messages), messages
    assert not ray.is_initialized()


def test_in_process_the_step_never_touches_ray(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PRODUCT_ATTRS_RAY_ADDRESS", raising=False)

    @dg.asset
    def probe(compute: ComputeResource):
        return dg.MaterializeResult(metadata={"engine": compute.ray() or "in-process"})

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    result = dg.materialize([probe], resources={"compute": ComputeResource(device="cpu")})
    assert result.asset_materializations_for_node("probe")[0].metadata["engine"].value == "in-process"
    assert ray is None or not ray.is_initialized()  # set-up joined no Ray
    assert ComputeResource().ray_job_id() is None


def test_the_engine_is_named_for_dagster_ray():
    assert ComputeResource(engine="ray://head:10001").host == "head"
    assert ComputeResource(engine="ray://head:10001").ray_address == "ray://head:10001"
    assert ComputeResource(engine="local").ray_address is None  # ray.init starts one
    assert ComputeResource(engine="auto").ray_address == "auto"
    assert ComputeResource(engine="local").name == "Ray (local)"
