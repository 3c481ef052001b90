"""The engine setting and sizing work to the cluster."""

from __future__ import annotations

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
    assert ComputeResource(ray_address="ray://head:10001").ray() == "ray://head:10001"


def test_actors_leave_the_decoders_half_a_cpu():
    """2 cores, 2 actors: 0.75 CPU each, so read and decode tasks always get a slot (a whole CPU each
    never finishes there); many cores: one CPU per actor; never below a quarter."""
    assert Cluster(cpus=2, gpus=0).actor_cpus(2) == 0.75
    assert Cluster(cpus=2, gpus=0).actor_cpus(1) == 1.0
    assert Cluster(cpus=16, gpus=1).actor_cpus(4) == 1.0
    assert Cluster(cpus=1, gpus=0).actor_cpus(4) == 0.25
