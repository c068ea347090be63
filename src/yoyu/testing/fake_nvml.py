"""A stand-in for the ``pynvml`` module that replays recorded NVIDIA boards.

No NVIDIA GPU is available where yoyu's tests run, so the NVML conversion code
is exercised against this object instead. It answers the same calls with the
same shapes as pynvml (``nvmlDeviceGetMemoryInfo`` returns an object with
``total``/``free``/``used`` in bytes, ``nvmlSystemGetCudaDriverVersion`` an int
like 12020) and raises pynvml's own exception classes, so ``except
pynvml.NVMLError`` behaves exactly as it does on a real machine.

Where each board's values come from (public printouts of real machines):

* RTX 4090 24 GB: ``nvidia-smi`` showing "33MiB / 24564MiB", driver 535.129.03,
  CUDA 12.2; CUDA ``deviceQuery`` on an RTX 4090 (compute capability 8.9,
  "Memory Clock rate: 10501 Mhz", "Memory Bus Width: 384-bit"); UUID from an
  RTX 4090 test report.
* H100 80GB HBM3: ``nvidia-smi -a`` on a Princeton "della" PLI node, Feb 2024
  (driver 545.23.08, CUDA 12.3, FB total 81559 MiB / reserved 328 / used 2 /
  free 81227, Max Clocks memory 2619 MHz, UUID GPU-10f35015-...); 5120-bit bus
  from ``deviceQuery`` on the same cluster's H100s.
* RTX 5060 Ti 16 GB: ``nvidia-smi --query-gpu`` printing "16311 MiB, 1 MiB,
  580.178.04, 12.0"; ``clocks.max.memory`` 14001 MHz on a 128-bit bus; UUID from
  an ``nvidia-smi -L`` listing. Driver 580 reports CUDA 13.0.

NVML's v1 memory query counts the driver's reservation as used, so ``used`` here
is ``total - free`` (332 MiB on the H100, where nvidia-smi shows 2 MiB used plus
328 MiB reserved).
"""

# ruff: noqa: N802  (method names must be pynvml's own camelCase names)

from __future__ import annotations

from dataclasses import dataclass, field

import pynvml

MIB = 1024**2


@dataclass(frozen=True)
class RecordedGpu:
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    memory_bus_width_bits: int | None  # None: the board answers NVML_ERROR_NOT_SUPPORTED
    max_memory_clock_mhz: int | None

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.free_bytes


@dataclass(frozen=True)
class RecordedDriver:
    version: str
    cuda_driver_version: int  # NVML's encoding: 1000 * major + 10 * minor


RTX_4090_24G = RecordedGpu(
    name="NVIDIA GeForce RTX 4090",
    uuid="GPU-1790118a-a6d7-4eaf-fcac-dcacac5f4351",
    total_bytes=24564 * MIB,
    free_bytes=(24564 - 33) * MIB,
    compute_capability=(8, 9),
    memory_bus_width_bits=384,
    max_memory_clock_mhz=10501,
)
H100_80G_HBM3 = RecordedGpu(
    name="NVIDIA H100 80GB HBM3",
    uuid="GPU-10f35015-e921-bfab-2eb8-4e9b6664d5f1",
    total_bytes=81559 * MIB,
    free_bytes=81227 * MIB,
    compute_capability=(9, 0),
    memory_bus_width_bits=5120,
    max_memory_clock_mhz=2619,
)
RTX_5060_TI_16G = RecordedGpu(
    name="NVIDIA GeForce RTX 5060 Ti",
    uuid="GPU-961e3133-170e-e898-1f77-0bd7e59fe168",
    total_bytes=16311 * MIB,
    free_bytes=(16311 - 1) * MIB,
    compute_capability=(12, 0),
    memory_bus_width_bits=128,
    max_memory_clock_mhz=14001,
)
DRIVER_535_CUDA_12_2 = RecordedDriver(version="535.129.03", cuda_driver_version=12020)
DRIVER_545_CUDA_12_3 = RecordedDriver(version="545.23.08", cuda_driver_version=12030)
DRIVER_580_CUDA_13_0 = RecordedDriver(version="580.178.04", cuda_driver_version=13000)


@dataclass(frozen=True)
class _MemoryInfo:
    """Same attribute names as pynvml's ``c_nvmlMemory_t``."""

    total: int
    free: int
    used: int


@dataclass
class FakeNvml:
    """Answers the pynvml calls yoyu makes, for the boards it was given.

    ``init_error`` (an ``NVML_ERROR_*`` code) makes ``nvmlInit`` fail the way a
    machine without the driver does. ``open_sessions`` lets a test check that
    every ``nvmlInit`` was matched by ``nvmlShutdown``.
    """

    gpus: tuple[RecordedGpu, ...] = ()
    driver: RecordedDriver = DRIVER_535_CUDA_12_2
    init_error: int | None = None
    open_sessions: int = field(default=0, init=False)

    NVMLError = pynvml.NVMLError
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.open_sessions += 1

    def nvmlShutdown(self) -> None:
        if self.open_sessions == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        self.open_sessions -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver.version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.driver.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._require_session()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> RecordedGpu:
        self._require_session()
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: RecordedGpu) -> str:
        return handle.name

    def nvmlDeviceGetUUID(self, handle: RecordedGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetMemoryInfo(self, handle: RecordedGpu) -> _MemoryInfo:
        return _MemoryInfo(handle.total_bytes, handle.free_bytes, handle.used_bytes)

    def nvmlDeviceGetCudaComputeCapability(self, handle: RecordedGpu) -> tuple[int, int]:
        return handle.compute_capability

    def nvmlDeviceGetMemoryBusWidth(self, handle: RecordedGpu) -> int:
        return _supported(handle.memory_bus_width_bits)

    def nvmlDeviceGetMaxClockInfo(self, handle: RecordedGpu, clock_type: int) -> int:
        if clock_type != pynvml.NVML_CLOCK_MEM:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # only memory was recorded
        return _supported(handle.max_memory_clock_mhz)

    def _require_session(self) -> None:
        if self.open_sessions == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)


def _supported(value: int | None) -> int:
    if value is None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return value
