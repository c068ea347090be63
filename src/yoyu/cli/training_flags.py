"""``yoyu plan --train`` flags as given, and the ``TrainingSettings`` they make.

Every training flag defaults to None so that a flag given without ``--train``
(or an inference-only flag given with it) is a one-line user error, not a
silently ignored option.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yoyu.errors import SettingsError

if TYPE_CHECKING:  # the training model is imported with --train only
    from yoyu.estimate.training_settings import TrainingSettings


@dataclass(frozen=True)
class TrainingFlags:
    train: str | None
    rank: int | None
    targets: str | None
    seq: int | None
    batch: int | None  # shared with the inference plan's --batch (n_batch there)
    grad_accum: int | None
    grad_checkpointing: bool | None
    optimizer: str | None

    def settings(self, untaken: Mapping[str, object]) -> TrainingSettings:
        """The settings, with the documented defaults; inference-only flags are refused."""
        from yoyu.estimate.training_settings import DEFAULT_TARGETS, TrainingSettings, parse_targets

        given = [flag for flag, value in untaken.items() if value]
        if given:
            raise SettingsError(f"{', '.join(given)} plans inference; leave it out with --train")
        defaults = TrainingSettings()
        return TrainingSettings(
            method=(self.train or "").lower(),
            rank=_or(self.rank, defaults.rank),
            targets=parse_targets(self.targets) if self.targets is not None else DEFAULT_TARGETS,
            seq=_or(self.seq, defaults.seq),
            batch=_or(self.batch, defaults.batch),
            grad_accum=_or(self.grad_accum, defaults.grad_accum),
            grad_checkpointing=bool(self.grad_checkpointing),
            optimizer=(self.optimizer or defaults.optimizer).lower(),
        )

    def refuse_without_train(self) -> None:
        """A training flag on an inference plan is a mistake worth saying."""
        named = {
            "--rank": self.rank, "--targets": self.targets, "--seq": self.seq,
            "--grad-accum": self.grad_accum, "--grad-checkpointing": self.grad_checkpointing,
            "--optimizer": self.optimizer,
        }  # fmt: skip
        given = [flag for flag, value in named.items() if value is not None]
        if given:
            raise SettingsError(f"{', '.join(given)} plans fine-tuning; add --train lora|qlora")


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
