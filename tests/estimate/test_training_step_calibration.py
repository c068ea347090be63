"""A real LoRA step (PEFT + PyTorch on the CPU, in a child) against the plan's figure.

The benchmark's own code (``yoyu.testing.training_run``) writes a Llama-3-shaped
model with random weights and Llama 3's vocabulary, runs two optimizer steps
and reads the kernel's peak RSS; the prediction is yoyu's CPU total less the
same ``import torch`` baseline. Skipped when torch or peft cannot be imported
(``pip install torch==2.13.0 peft``, or a folder of them in ``YOYU_TORCH_PATH``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.estimate.training import TORCH_PROCESS_BYTES, estimate_training
from yoyu.estimate.training_settings import TrainingSettings
from yoyu.models.hf_model import read_hf_model
from yoyu.testing.training_run import LLAMA3_SHAPED, measure_step, torch_available, write_model

GOAL = 0.10


@pytest.mark.slow
def test_a_real_lora_step_peaks_within_ten_percent_of_the_plan(tmp_path: Path) -> None:
    missing = torch_available()
    if missing:
        pytest.skip(missing)
    folder = write_model(tmp_path / "llama3-shaped", LLAMA3_SHAPED)
    settings = TrainingSettings(rank=16, targets=("q", "k", "v", "o"), seq=256, batch=2)
    measured = measure_step(folder, settings)
    predicted = estimate_training(read_hf_model(folder), settings, "CPU")
    ratio = measured.measured_bytes / (predicted.total_bytes - TORCH_PROCESS_BYTES)
    assert abs(ratio - 1) <= GOAL, f"measured / predicted = {ratio:.3f}"
    # the logits dominate: the backward phase (three fp32 copies) peaks above the forward (2.5)
    assert measured.peak_backward_bytes > measured.peak_forward_bytes
