"""Run a real LoRA step in a child process and put its peak beside yoyu's plan.

yoyu does not depend on ``torch``: the child (``yoyu.testing.training_step``)
runs in whatever interpreter has ``torch`` and ``peft`` importable, found with
``torch_available``. The model is written by a first child (its memory is not
the measured one's), then every setting runs in a fresh child, so each peak is
one step's alone. The measured figure is the step's peak RSS less the RSS of the
same process after ``import torch`` (the baseline every PyTorch job pays before
it has a model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.estimate.training_settings import TrainingSettings

# A Llama 3 tokenizer's vocabulary on a small body: the logits are as large as the
# real model's per token while the rest stays small enough for a 2-core CI machine.
LLAMA3_SHAPED = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 512,
    "intermediate_size": 1536, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}  # fmt: skip
# Qwen2's vocabulary and layout (q/k/v biases, tied embeddings like Qwen2.5 0.5B).
QWEN2_SHAPED = {
    "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 384,
    "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 6,
    "num_key_value_heads": 2, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}  # fmt: skip
# Llama 3.2 1B's real config (meta-llama/Llama-3.2-1B): the GPU calibration's model
LLAMA32_1B_SHAPED = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}  # fmt: skip
STEP_TIMEOUT_S = 600


@dataclass(frozen=True)
class MeasuredStep:
    """What the child reported, in bytes: on the CPU RSS figures, on CUDA PyTorch's
    allocated bytes (the baseline is then 0) with its reserved peak and the context."""

    baseline_bytes: int  # RSS after ``import torch``; 0 on CUDA
    libraries_bytes: int  # RSS after transformers and peft too
    loaded_bytes: int  # after the load: RSS, or on CUDA the weights allocated
    peak_forward_bytes: int
    peak_backward_bytes: int
    peak_step_bytes: int
    step_s: float
    versions: dict[str, str]
    reserved_bytes: int = 0  # CUDA: the caching allocator's peak pool
    context_bytes: int = 0  # CUDA: device memory in use once CUDA is up, before any tensor

    @property
    def peak_bytes(self) -> int:
        return max(self.peak_forward_bytes, self.peak_backward_bytes, self.peak_step_bytes)

    @property
    def measured_bytes(self) -> int:
        """The step's peak less the baseline: what the plan's total is compared with."""
        return self.peak_bytes - self.baseline_bytes


def torch_available(python: str = sys.executable) -> str | None:
    """None when ``python`` imports torch and peft; else why not, for a skip reason."""
    probe = subprocess.run(
        [python, "-c", "import torch, peft, transformers"],
        capture_output=True, text=True, env=child_env(), timeout=120,
    )  # fmt: skip
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"torch/peft/transformers not importable by {python} ({last})"


def write_model(folder: Path, config: dict[str, Any], python: str = sys.executable) -> Path:
    """Random weights for ``config`` saved as a Hugging Face folder (skipped when present)."""
    if not (folder / "config.json").is_file():
        script = (
            "from yoyu.testing.training_step import write_model as w; import sys, json, pathlib"
        )
        script += "; w(pathlib.Path(sys.argv[1]), json.loads(sys.argv[2]))"
        command = [python, "-c", script, str(folder), json.dumps(config)]
        subprocess.run(command, check=True, env=child_env(), timeout=STEP_TIMEOUT_S)
    return folder


def measure_step(
    folder: Path,
    settings: TrainingSettings,
    steps: int = 2,
    python: str = sys.executable,
    device: str = "cpu",
    extra_path: Path | None = None,
) -> MeasuredStep:
    """One child: load ``folder``, wrap it in LoRA as ``settings`` say, run ``steps`` steps;
    ``extra_path`` is a folder of more packages (bitsandbytes for QLoRA rows only, since
    peft imports it whenever it can)."""
    spec = {**step_spec(folder, settings, steps), "device": device}
    command = [python, "-m", "yoyu.testing.training_step", json.dumps(spec)]
    env = child_env(extra_path)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"training step failed: {done.stderr.strip()[-2000:]}")
    return measured(json.loads(done.stdout.strip().splitlines()[-1]), device)


def measured(figures: dict[str, Any], device: str) -> MeasuredStep:
    """The child's JSON line as a ``MeasuredStep``."""
    cuda = device == "cuda"
    reserved = ("reserved_forward", "reserved_backward", "reserved_step")
    return MeasuredStep(
        baseline_bytes=0 if cuda else figures["rss_torch"],
        libraries_bytes=figures["rss_libs"],
        loaded_bytes=figures["loaded"],
        peak_forward_bytes=figures["peak_forward"],
        peak_backward_bytes=figures["peak_backward"],
        peak_step_bytes=figures["peak_step"],
        step_s=figures["step_s"],
        versions=figures["versions"],
        reserved_bytes=max(figures.get(name, 0) for name in reserved),
        context_bytes=figures.get("cuda_context", 0),
    )


def step_spec(folder: Path, settings: TrainingSettings, steps: int) -> dict[str, Any]:
    """The child's instructions: PEFT's module names for the targets, the step's sizes."""
    return {
        "folder": str(folder),
        "method": settings.method,
        "rank": settings.rank,
        "alpha": settings.alpha,
        "targets": [f"{target}_proj" for target in settings.targets],
        "checkpointing": settings.grad_checkpointing,
        "optimizer": settings.optimizer,
        "seq": settings.seq,
        "batch": settings.batch,
        "steps": steps,
    }


def child_env(extra_path: Path | None = None) -> dict[str, str]:
    """This process's environment with ``src`` first on the path, so the child imports
    this yoyu; ``YOYU_TORCH_PATH`` adds a folder where torch and peft were installed
    (``pip install --target``) without putting them in yoyu's own environment."""
    source = str(Path(__file__).resolve().parents[2])
    extra = [os.environ["YOYU_TORCH_PATH"]] if os.environ.get("YOYU_TORCH_PATH") else []
    extra += [str(extra_path)] if extra_path else []
    parts = [source, *extra, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}
