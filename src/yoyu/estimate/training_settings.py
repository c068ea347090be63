"""What a LoRA / QLoRA fine-tuning run is asked to do, in the words PEFT uses.

The fields are the choices that change memory: the adapter's rank and the
modules it wraps, the tokens per micro-batch (``seq`` x ``batch``), gradient
checkpointing, the optimizer, and for QLoRA the 4-bit base. Gradient
accumulation changes no byte (the adapters' gradients exist anyway); it is
kept so a "smaller batch" move can say how to keep the effective batch.
``alpha`` is left out: it scales the adapter's output, not its memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoyu.errors import SettingsError

METHODS = ("lora", "qlora")
# PEFT's module names are "<target>_proj" in Llama, Qwen, Mistral, Gemma and Phi-3 folders
TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
DEFAULT_TARGETS = ("q", "v")  # PEFT's own default for Llama-family models


@dataclass(frozen=True)
class TrainingSettings:
    """One micro-batch of LoRA training; checked on creation (bad values are user errors)."""

    method: str = "lora"
    rank: int = 16
    targets: tuple[str, ...] = DEFAULT_TARGETS
    seq: int = 2048
    batch: int = 1
    grad_accum: int = 1
    grad_checkpointing: bool = False
    optimizer: str = "adamw"

    def __post_init__(self) -> None:
        _one_of("--train", self.method, METHODS)
        _one_of("--optimizer", self.optimizer, OPTIMIZERS)
        for flag, value in (("--rank", self.rank), ("--seq", self.seq), ("--batch", self.batch)):
            if value < 1:
                raise SettingsError(f"{flag} must be 1 or more, not {value}")
        if self.grad_accum < 1:
            raise SettingsError(f"--grad-accum must be 1 or more, not {self.grad_accum}")
        if not self.targets:
            raise SettingsError(f"--targets needs at least one of {','.join(TARGETS)}")
        for target in self.targets:
            _one_of("--targets", target, TARGETS)

    @property
    def tokens(self) -> int:
        """Tokens in one micro-batch: what activations and logits scale with."""
        return self.seq * self.batch

    @property
    def alpha(self) -> int:
        """The LoRA alpha a measured run uses (2 x rank, a common choice; memory ignores it)."""
        return 2 * self.rank

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "rank": self.rank,
            "targets": list(self.targets),
            "seq": self.seq,
            "batch": self.batch,
            "grad_accum": self.grad_accum,
            "effective_batch": self.batch * self.grad_accum,
            "grad_checkpointing": self.grad_checkpointing,
            "optimizer": self.optimizer,
        }


def parse_targets(text: str) -> tuple[str, ...]:
    """``q,k,v,o`` (or PEFT's ``q_proj,v_proj``, or ``all``) -> target names, checked."""
    if text.strip().lower() == "all":
        return TARGETS
    names = [part.strip().lower().removesuffix("_proj") for part in text.split(",")]
    found = tuple(dict.fromkeys(name for name in names if name))
    for name in found:
        _one_of("--targets", name, TARGETS)
    return found


def _one_of(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"unknown {flag} value {value!r}; choose from {', '.join(allowed)}")
