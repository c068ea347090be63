"""Does an estimate fit a machine's budget? If not, why, in figures.

Like gpustack's filters, the answer is the list of reasons it does not fit
(empty when it does), each naming the device, the bytes needed and the bytes
it may use, so a refusal can always be explained.
"""

from __future__ import annotations

from yoyu.estimate.types import DeviceMemory, MemoryEstimate
from yoyu.i18n import Message, message_of
from yoyu.plan.budget import DeviceBudget, MachineBudget
from yoyu.plan.types import Reason
from yoyu.units import format_bytes


def fit_failures(estimate: MemoryEstimate, budget: MachineBudget) -> tuple[Reason, ...]:
    """Every device (and the system pool) whose need exceeds its limit."""
    reasons = [
        _over(device.name, device.total_bytes, gpu)
        for device, gpu in gpu_pairs(estimate, budget)
        if device.total_bytes > gpu.limit_bytes
    ]
    pool_bytes = system_pool_bytes(estimate, budget)
    if pool_bytes > budget.system.limit_bytes:
        reasons.append(_over(_pool_name(budget), pool_bytes, budget.system))
    return tuple(reasons)


def system_pool_bytes(estimate: MemoryEstimate, budget: MachineBudget) -> int:
    """What the load takes from system memory: the CPU's part, and Metal's on unified memory."""
    kinds = ("cpu", "gpu") if budget.unified_memory else ("cpu",)
    return sum(device.total_bytes for device in estimate.devices if device.kind in kinds)


def system_free_after(estimate: MemoryEstimate, budget: MachineBudget) -> int:
    """System memory left after the load (negative when it does not fit at all)."""
    return budget.system.usable_bytes - system_pool_bytes(estimate, budget)


def crowded_device(
    estimate: MemoryEstimate, budget: MachineBudget, headroom_bytes: int
) -> Message | None:
    """The first GPU left with less than ``headroom_bytes`` of what it may use, in words.

    A discrete GPU's limit already keeps that headroom (``gpu_margin_bytes``),
    so in practice this is Metal: its working set is a soft limit that loads
    past it slowly, so a plan up to it still runs, with nothing to spare.
    """
    for device, owner in gpu_pairs(estimate, budget):
        if device.name.startswith("RPC["):
            continue  # a node's offer is already net of the floor its guard keeps
        room = owner.usable_bytes - device.total_bytes
        if room < headroom_bytes and owner.usable_bytes > 0:
            share = f"{device.total_bytes / owner.usable_bytes:.1%}"
            return message_of(
                "{device} holds {size} of the {usable} it may use ({share}; {basis}): "
                "less than the {headroom} llama.cpp's --fit keeps free per device",
                device=device.name, size=format_bytes(device.total_bytes),
                usable=format_bytes(owner.usable_bytes), share=share, basis=owner.basis,
                headroom=format_bytes(headroom_bytes),
            )  # fmt: skip
    return None


def device_budgets(estimate: MemoryEstimate, budget: MachineBudget) -> list[DeviceBudget]:
    """The budget each device of the estimate draws on, in the estimate's order.

    GPUs are matched by llama.cpp's device name, else in order; the CPU (and
    a GPU the machine does not list) draws on system memory.
    """
    by_name = {gpu.name: gpu for gpu in budget.gpus}
    names = {device.name for device in estimate.devices}
    unnamed = iter([gpu for gpu in budget.gpus if gpu.name not in names])
    owners = []
    for device in estimate.devices:
        owner = by_name.get(device.name) if device.kind == "gpu" else budget.system
        if owner is None:
            owner = next(unnamed, budget.system)
        owners.append(owner)
    return owners


def gpu_pairs(
    estimate: MemoryEstimate, budget: MachineBudget
) -> list[tuple[DeviceMemory, DeviceBudget]]:
    """Each GPU device of the estimate with its own budget."""
    pairs = zip(estimate.devices, device_budgets(estimate, budget), strict=True)
    return [
        (device, owner) for device, owner in pairs if device.kind == "gpu" and owner.kind == "gpu"
    ]


def _over(name: str, needed: int, budget: DeviceBudget) -> Reason:
    message = message_of(
        "{device} needs {needed} but may use {limit} ({basis}, keeping {margin} free)",
        device=name, needed=format_bytes(needed), limit=format_bytes(budget.limit_bytes),
        basis=budget.basis, margin=format_bytes(budget.margin_bytes),
    )  # fmt: skip
    return Reason(name, needed, budget.limit_bytes, message)


def _pool_name(budget: MachineBudget) -> str:
    return "unified memory" if budget.unified_memory else "RAM"
