"""How much memory each device of a machine may give a model.

Owns the arithmetic from "what the machine reports" to "what a placement may
use": RAM available capped by a container's cgroup limit, minus the user's
reserve; GPU free memory (the estimator counts each GPU's runtime context in
its ``overhead_bytes``, so it is not subtracted twice here); on Apple Silicon
the Metal working-set limit, inside the same unified pool as the CPU. Swap is
never room: a model paged to swap runs at disk speed or takes the box down,
so swap in use only raises the risk (``verdict.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.estimate.weights import RPC_VENDOR, rpc_device_name
from yoyu.i18n import N_, Message, message_of
from yoyu.machine.types import GpuInfo, Machine
from yoyu.plan.types import PlanRequest
from yoyu.units import format_bytes

CPU_DEVICE = "CPU"


@dataclass(frozen=True)
class DeviceBudget:
    """What one device may hold, and how that figure was reached.

    A placement fits a device when its total is at most ``usable_bytes -
    margin_bytes``; the margin is llama.cpp's ``--fit`` target on a GPU and
    the abort threshold on system memory.
    """

    name: str  # "CPU", "CUDA0", "Metal": llama.cpp's device names
    kind: str  # "cpu" or "gpu"
    usable_bytes: int
    margin_bytes: int
    basis: str  # the figures behind usable_bytes, for the user

    @property
    def limit_bytes(self) -> int:
        return self.usable_bytes - self.margin_bytes


@dataclass(frozen=True)
class MachineBudget:
    """The system pool (RAM, or unified memory) and each GPU.

    On unified memory the CPU's part and Metal's part both draw on
    ``system``; on a discrete GPU only the CPU's part does.
    """

    system: DeviceBudget
    gpus: tuple[DeviceBudget, ...]
    unified_memory: bool
    swap_used_bytes: int


def machine_budget(machine: Machine, request: PlanRequest) -> MachineBudget:
    """Budgets for every device of ``machine`` under the request's reserve and overrides."""
    system = system_budget(machine, request)
    gpus = tuple(gpu_budget(gpu, machine, request, system) for gpu in machine.gpus)
    return MachineBudget(system, gpus, machine.unified_memory, machine.memory.swap_used_bytes)


def system_budget(machine: Machine, request: PlanRequest) -> DeviceBudget:
    """RAM a model may use: available (or ``--free``), capped by a cgroup limit, less reserve."""
    memory = machine.memory
    given = request.ram_free_bytes
    available = memory.available_bytes if given is None else given
    size = format_bytes(available)
    basis = (
        message_of("{size} available", size=size)
        if given is None
        else message_of("{size} free (given)", size=size)
    )
    if given is None and memory.assumed_in_use_bytes is not None:
        basis = message_of(
            "{basis} ({size} assumed in use by the desktop)",
            basis=basis, size=format_bytes(memory.assumed_in_use_bytes),
        )  # fmt: skip
    if memory.limit_bytes is not None and memory.limit_bytes < available:
        available = memory.limit_bytes
        basis = message_of(
            "{basis}, capped by the container limit {limit}",
            basis=basis, limit=format_bytes(memory.limit_bytes),
        )  # fmt: skip
    if request.reserve_bytes:
        basis = message_of(
            "{basis}, less {size} reserved", basis=basis, size=format_bytes(request.reserve_bytes)
        )
    usable = max(0, available - request.reserve_bytes)
    return DeviceBudget(CPU_DEVICE, "cpu", usable, request.thresholds.caution_bytes, basis)


def gpu_budget(
    gpu: GpuInfo, machine: Machine, request: PlanRequest, system: DeviceBudget
) -> DeviceBudget:
    """A GPU's free memory; on Apple Silicon the working set, inside the unified pool."""
    name = gpu_device_name(gpu)
    if gpu.vendor == RPC_VENDOR:
        # A node's offer is already net of its own floor (``yoyu node`` keeps it)
        offer = message_of(
            "{size} offered by the node at {node}", size=format_bytes(gpu.free_bytes), node=gpu.name
        )
        return DeviceBudget(name, "gpu", gpu.free_bytes, 0, offer)
    if gpu.vendor == "apple" or machine.unified_memory:
        return _unified_gpu_budget(gpu, machine, name, system)
    free = gpu.free_bytes if request.gpu_free_bytes is None else request.gpu_free_bytes
    template = (
        N_("{free} free of {total}")
        if request.gpu_free_bytes is None
        else N_("{free} free (given) of {total}")
    )
    basis = Message(template, {"free": format_bytes(free), "total": format_bytes(gpu.total_bytes)})
    return DeviceBudget(name, "gpu", free, request.thresholds.gpu_margin_bytes, basis)


def _unified_gpu_budget(
    gpu: GpuInfo, machine: Machine, name: str, system: DeviceBudget
) -> DeviceBudget:
    working_set = machine.apple.gpu_working_set_bytes if machine.apple else gpu.total_bytes
    usable = min(working_set, system.usable_bytes)
    basis = message_of("Metal working set {size}", size=format_bytes(working_set))
    if usable < working_set:
        basis = message_of(
            "{basis}, capped by {size} of unified memory usable",
            basis=basis, size=format_bytes(system.usable_bytes),
        )  # fmt: skip
    return DeviceBudget(name, "gpu", usable, 0, basis)


def gpu_device_name(gpu: GpuInfo) -> str:
    """llama.cpp's name for the device: CUDA0, CUDA1... or Metal."""
    if gpu.vendor == "apple":
        return "Metal"
    if gpu.vendor == "nvidia":
        return f"CUDA{gpu.index}"
    if gpu.vendor == RPC_VENDOR:
        return rpc_device_name(gpu.name)
    return f"GPU{gpu.index}"


def split_by_free_memory(budgets: tuple[DeviceBudget, ...]) -> tuple[float, ...]:
    """Each GPU's share of the offloaded layers, proportional to what it may hold.

    llama.cpp's own default splits by free memory too; passing the split
    explicitly keeps the plan and the emitted ``--tensor-split`` identical.
    """
    room = [max(0, budget.limit_bytes) for budget in budgets]
    total = sum(room)
    if len(budgets) < 2 or total == 0:
        return ()
    return tuple(round(share / total, 4) for share in room)
