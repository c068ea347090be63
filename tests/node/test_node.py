"""yoyu node: what a worker reports, how the head plans with it, and what it refuses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from yoyu.errors import BackendUnavailableError, ConfigError
from yoyu.estimate.types import RunSettings
from yoyu.machine.types import CpuInfo, Machine, MemoryInfo, OsInfo
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.models.spec import ModelSpec
from yoyu.node.client import read_node
from yoyu.node.status import LiveNode, NodeStatus, parse_node_address, with_nodes
from yoyu.node.worker import NodeOptions, NodeWorker, check_bind, rpc_server_devices
from yoyu.plan.emit.llama_cpp import rpc_endpoints
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest, Verdict
from yoyu.testing.gateway_process import free_port
from yoyu.units import GIB, MIB

HEAD = Machine(
    name="head", source="test", os=OsInfo("Linux", "6", "", "x86_64"),
    cpu=CpuInfo("x", 8, 16, ("avx2",)), memory=MemoryInfo(64 * GIB, 60 * GIB, 0, 0),
)  # fmt: skip


def status(
    budget: int, available: int = 100 * GIB, floor: int = 4 * GIB, rss: int = 0
) -> NodeStatus:
    return NodeStatus(
        name="w", rpc_port=50052, budget_bytes=budget, available_bytes=available,
        total_bytes=128 * GIB, floor_bytes=floor, engine_pid=1234, engine_rss_bytes=rss,
        stopped_reason=None, devices=("CPU: x (1 MiB, 1 MiB free)",), yoyu_version="0",
    )  # fmt: skip


def test_a_node_offers_its_budget_or_what_is_available_less_its_floor() -> None:
    assert status(budget=20 * GIB).offer_bytes == 16 * GIB
    assert status(budget=20 * GIB, available=10 * GIB, rss=2 * GIB).offer_bytes == 8 * GIB
    assert status(budget=2 * GIB).offer_bytes == 0  # the floor is more than the budget


def test_nodes_become_rpc_devices_in_front_of_the_heads_own() -> None:
    nodes = [LiveNode("10.0.0.2", status(20 * GIB)), LiveNode("10.0.0.3", status(40 * GIB))]
    machine = with_nodes(HEAD, nodes)
    assert rpc_endpoints(machine) == ["10.0.0.2:50052", "10.0.0.3:50052"]
    assert [gpu.free_bytes for gpu in machine.gpus] == [16 * GIB, 36 * GIB]
    stopped = dataclasses.replace(
        status(GIB), engine_pid=None, stopped_reason="stopped by the guard"
    )
    with pytest.raises(ConfigError, match=r"no rpc-server running .stopped by the guard"):
        with_nodes(HEAD, [LiveNode("10.0.0.4", stopped)])


def test_a_split_that_fits_the_offers_is_safe_and_uses_every_node(real_gemma: Path) -> None:
    """The offers already keep each node's floor: no GPU headroom is taken off again."""
    spec = read_gguf_model(real_gemma)
    roomy = [  # offers of 300 and 500 MiB
        LiveNode("127.0.0.1", status(budget=4 * GIB + 300 * MIB)),
        LiveNode("127.0.0.2", status(budget=4 * GIB + 500 * MIB)),
    ]
    settings = RunSettings(n_ctx=2048, engine="llama-server")
    plan = make_plan(spec, with_nodes(HEAD, roomy), PlanRequest(settings=settings))
    assert plan.verdict is Verdict.FITS and plan.risk.value == "safe"
    layers = [len(device.layers) for device in plan.estimate.devices[1:]]
    assert sum(layers) == spec.n_layers + 1 and layers[0] < layers[1]  # all of it, by offer


def test_a_model_nodes_and_head_cannot_hold_is_refused_with_the_figures(
    real_gemma: Path,
) -> None:
    spec: ModelSpec = read_gguf_model(real_gemma)
    small = [LiveNode("127.0.0.1", status(budget=4 * GIB + 20 * MIB))]  # offers 20 MiB
    request = PlanRequest(
        settings=RunSettings(n_ctx=2048, engine="llama-server"), ram_free_bytes=100 * MIB
    )
    plan = make_plan(spec, with_nodes(HEAD, small), request)
    assert plan.verdict is Verdict.DOES_NOT_FIT
    text = " ".join(reason.message for reason in plan.reasons)
    assert "20.00 MiB offered by the node at 127.0.0.1:50052" in text


@pytest.mark.parametrize(
    ("address", "expected"), [("10.0.0.2:50053", ("10.0.0.2", 50053)), ("[::1]:9", ("::1", 9))]
)
def test_node_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_node_address(address) == expected


@pytest.mark.parametrize("address", ["10.0.0.2", "host:port", ":80", "h:70000"])
def test_a_bad_node_address_is_one_line(address: str) -> None:
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        parse_node_address(address)


def test_an_open_bind_needs_the_flag_and_then_a_key() -> None:
    check_bind(NodeOptions(host="127.0.0.1"))
    with pytest.raises(ConfigError, match=r"no authentication.*--i-know-rpc-is-unauthenticated"):
        check_bind(NodeOptions(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="needs an API key"):
        check_bind(NodeOptions(host="192.168.1.5", allow_unauthenticated_rpc=True))
    check_bind(NodeOptions(host="0.0.0.0", allow_unauthenticated_rpc=True, api_key="k"))


def test_nothing_listening_or_a_stranger_is_one_line() -> None:
    with pytest.raises(BackendUnavailableError, match=r"did not answer.*yoyu node") as caught:
        read_node(f"127.0.0.1:{free_port()}")
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="did not answer like a yoyu node"):
        NodeStatus.from_dict({"name": "x"}, "node 127.0.0.1:1")


def test_rpc_servers_device_lines_are_read_from_its_output() -> None:
    text = (  # rpc-server 7.0.0 (llama.cpp 0c1e570), as it prints on start
        "Starting RPC server v7.0.0\n  endpoint       : 127.0.0.1:50061\n"
        "  local cache    : n/a\nDevices:\n  CPU: AMD EPYC (24105 MiB, 24105 MiB free)\n"
        "  transport      : TCP\nAccepted client connection\n"
    )
    assert rpc_server_devices(text) == ("CPU: AMD EPYC (24105 MiB, 24105 MiB free)",)


@pytest.mark.slow
def test_a_worker_with_a_key_answers_only_with_it_and_stops_its_engine(
    built_rpc_server: Path, tmp_path: Path
) -> None:
    options = NodeOptions(
        rpc_port=free_port(), status_port=free_port(), budget_bytes=GIB, api_key="sekret",
        rpc_server=str(built_rpc_server), log_dir=tmp_path,
    )  # fmt: skip
    with NodeWorker(options) as worker:
        address = f"127.0.0.1:{worker.status_port}"
        assert httpx.get(f"http://{address}/status").status_code == 401
        with pytest.raises(BackendUnavailableError, match="refused the API key"):
            read_node(address)
        live = read_node(address, "sekret").status
        assert live.budget_bytes == GIB and live.engine_pid is not None
        assert live.devices and live.devices[0].startswith("CPU")
        assert live.offer_bytes == GIB - live.floor_bytes
        engine = worker.engine
    assert engine is not None and not engine.is_alive()
