"""What the estimator takes and returns.

``RunSettings`` mirrors the llama.cpp context and model parameters that change
memory (the names follow llama.cpp's: ``n_ctx``, ``n_ubatch``, ``type_k``...),
so a user can move figures between yoyu, ``llama-server`` flags and
llama-cpp-python arguments without translation. ``MemoryEstimate`` holds one
``DeviceMemory`` per device with every component separately, because "it
doesn't fit" is only useful when it says which part doesn't.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from yoyu.errors import SettingsError
from yoyu.estimate.engine import LLAMA_CPP_PYTHON, EngineProfile, engine_profile
from yoyu.i18n import Message, message_of

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
ALL_LAYERS = -1  # n_gpu_layers value meaning "everything, output layer included"
DEFAULT_CTX_CHECKPOINTS = 2  # llama-server keeps 32 per slot; one or two serve a linear chat


@dataclass(frozen=True)
class RunSettings:
    """The settings that decide memory use, for the engine that will run them.

    ``engine`` names the program (``yoyu.estimate.engine``): what it holds
    around llama.cpp, which defaults it applies and which settings it allows
    are part of the estimate. ``swa_full`` None means the engine's own choice
    (llama-cpp-python: the full-size sliding-window cache; llama-server:
    window + ubatch cells); ``swa_cache_full`` is the resolved value, and the
    emitters always pass it. ``logits_all``, ``ctx_checkpoints`` and
    ``prompt_cache_mib`` are engine-side memory: every token's logits
    (llama-cpp-python), sliding-window checkpoints per slot and a host prompt
    cache (llama-server; llama-cpp-python's RAM cache for the latter).

    ``n_ctx`` 0 means the model's trained context (llama.cpp's rule). The
    estimator pads it as llama.cpp does; the padded value is in the estimate.
    ``repack`` None means "as llama.cpp would decide": repacked CPU weights on
    a CPU-only build whose SIMD supports it.
    """

    n_ctx: int = 512
    n_batch: int = 512
    n_ubatch: int = 512
    n_parallel: int = 1  # n_seq_max: concurrent sequences sharing the context
    kv_unified: bool = False
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    n_gpu_layers: int = 0  # ALL_LAYERS (-1) = every block plus the output layer
    tensor_split: tuple[float, ...] = ()  # share of offloaded layers per GPU; () = by free memory
    n_cpu_moe: int = 0  # MoE experts of the first N blocks stay on the CPU (--n-cpu-moe)
    kv_cache_bytes: int | None = None  # vLLM: the KV pool asked for (None: its own rule)
    gpu_memory_utilization: float | None = None  # vLLM: share of a GPU's total it takes
    use_mmap: bool = True
    repack: bool | None = None
    offload_kqv: bool = True
    embeddings: bool = False
    swa_full: bool | None = None  # None = the engine's default (see ``swa_cache_full``)
    engine: str = LLAMA_CPP_PYTHON
    logits_all: bool = False
    ctx_checkpoints: int = DEFAULT_CTX_CHECKPOINTS
    prompt_cache_mib: int = 0

    def __post_init__(self) -> None:
        _require(
            self.n_ctx >= 0,
            message_of(
                "ctx must be 0 (the model's own) or positive, not {value}", value=self.n_ctx
            ),
        )
        _require(
            self.n_batch >= 1,
            message_of("batch must be at least 1, not {value}", value=self.n_batch),
        )
        _require(
            self.n_ubatch >= 1,
            message_of("ubatch must be at least 1, not {value}", value=self.n_ubatch),
        )
        _require(
            self.n_parallel >= 1,
            message_of("parallel must be at least 1, not {value}", value=self.n_parallel),
        )
        _require(
            self.n_gpu_layers >= ALL_LAYERS,
            message_of("gpu layers must be -1 (all) or more, not {value}", value=self.n_gpu_layers),
        )
        for name, kv_type in (("type_k", self.type_k), ("type_v", self.type_v)):
            if kv_type not in KV_TYPES:
                raise SettingsError.from_message(
                    "{name} {value!r} is not a KV cache type; use one of {known}",
                    name=name, value=kv_type, known=", ".join(KV_TYPES),
                )  # fmt: skip
        _require(
            all(share >= 0 for share in self.tensor_split),
            "tensor split shares must not be negative",
        )
        _require(self.n_cpu_moe >= 0, f"n_cpu_moe must be 0 or more, not {self.n_cpu_moe}")
        _require(
            self.kv_cache_bytes is None or self.kv_cache_bytes > 0,
            f"the KV cache space must be positive, not {self.kv_cache_bytes} bytes",
        )
        _require(
            self.gpu_memory_utilization is None or 0 < self.gpu_memory_utilization <= 1,
            f"gpu_memory_utilization is a share of the GPU, not {self.gpu_memory_utilization}",
        )
        _require(self.ctx_checkpoints >= 0, "ctx checkpoints must not be negative")
        _require(self.prompt_cache_mib >= 0, "the prompt cache size must not be negative")
        self._check_engine(engine_profile(self.engine))

    def _check_engine(self, profile: EngineProfile) -> None:
        """Refuse what the engine cannot do, so a plan never promises an impossible run."""
        _require(
            profile.swa_full_settable or self.swa_full in (None, profile.swa_full),
            f"{profile.program} always uses swa_full={profile.swa_full} (it has no switch for "
            "it); use the llama-server engine to choose the sliding-window cache size",
        )
        _require(
            profile.max_parallel is None or self.n_parallel <= profile.max_parallel,
            f"{profile.program} serves {profile.max_parallel} sequence at a time, not "
            f"{self.n_parallel}; use the llama-server engine for parallel slots",
        )
        _require(
            profile.tensor_overrides or not self.n_cpu_moe,
            f"{profile.program} cannot keep MoE experts on the CPU (n_cpu_moe); use the "
            "llama-server engine for it, or fewer GPU layers",
        )
        _require(
            profile.has_logits_array or not self.logits_all,
            f"logits_all is a llama-cpp-python setting; {profile.program} keeps no array of "
            "every token's logits",
        )

    @property
    def swa_cache_full(self) -> bool:
        """Whether sliding-window layers get a full-context cache (the engine decides on None)."""
        return engine_profile(self.engine).swa_full if self.swa_full is None else self.swa_full

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "swa_full": self.swa_cache_full}


def _require(condition: bool, problem: str | Message) -> None:
    if not condition:
        raise SettingsError(problem)


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes one device holds for one model under one set of settings.

    ``weights_bytes`` counts what is resident for the tensors placed here;
    ``repack_bytes`` is the CPU_REPACK copy llama.cpp makes on top of the
    mapped original (x86 AVX2/AVX-512, ARM NEON), so on the CPU both count.
    ``engine_bytes`` is what the engine program allocates around llama.cpp
    (a logits array, checkpoints, a prompt cache), at its largest.
    """

    name: str  # "CPU", "CUDA0", "Metal", or a node's name
    kind: str  # "cpu" or "gpu"
    layers: tuple[int, ...] = ()  # block indices placed here; n_layers stands for the output layer
    weights_bytes: int = 0
    repack_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    output_bytes: int = 0
    engine_bytes: int = 0  # allocated by the engine program around llama.cpp
    overhead_bytes: int = 0  # the process or runtime context (CUDA, Metal), fixed allocations

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.repack_bytes
            + self.kv_bytes
            + self.compute_bytes
            + self.output_bytes
            + self.engine_bytes
            + self.overhead_bytes
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total_bytes": self.total_bytes}


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-device memory of one model with resolved settings (``n_ctx`` padded)."""

    settings: RunSettings
    n_ctx: int  # effective context after llama.cpp's padding
    n_ctx_swa: int | None  # cells of the sliding-window cache, when the model has one
    devices: tuple[DeviceMemory, ...]
    mapped_bytes: int = 0  # virtual size of the CPU mapping (CPU_Mapped span), not resident
    notes: tuple[str, ...] = field(default=())  # why a figure is what it is, for the user

    def total(self, component: str) -> int:
        """Sum of one component (``weights_bytes``, ``kv_bytes``...) over every device."""
        return sum(int(getattr(device, component)) for device in self.devices)

    @property
    def total_bytes(self) -> int:
        return sum(device.total_bytes for device in self.devices)

    def device(self, name: str) -> DeviceMemory:
        return next(device for device in self.devices if device.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "n_ctx": self.n_ctx,
            "n_ctx_swa": self.n_ctx_swa,
            "devices": [device.to_dict() for device in self.devices],
            "mapped_bytes": self.mapped_bytes,
            "total_bytes": self.total_bytes,
            "notes": [str(note) for note in self.notes],
        }
