"""One real LoRA / QLoRA training step in this process, measured where it runs.

Run as a child (``python -m yoyu.testing.training_step SPEC_JSON``) by
``yoyu.testing.training_run``, in an interpreter that has ``torch`` and ``peft``
(the CPU wheel here; a CUDA build on a GPU machine, with ``bitsandbytes`` for
QLoRA): yoyu itself never imports them. The child loads a Hugging Face model
written by ``write_model`` (random weights, in a first child), wraps it in a PEFT
LoRA adapter (after ``prepare_model_for_kbit_training`` for QLoRA, the recipe's
first call) and runs ``steps`` optimizer steps the way ``transformers.Trainer``
does (the loss is kept, the logits are not).

Memory is the runtime's own figure, per phase. On the CPU: the kernel's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each phase, read with
the monitor's parser ``yoyu.monitor.procfs``), so a peak between two samples
cannot be missed. On CUDA: PyTorch's peak allocated and reserved bytes (reset
per phase), the bytes allocated after the load (the weights alone) and the
device memory in use once CUDA is up (its context). It prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from yoyu.monitor.procfs import parse_status


def rss_bytes() -> int:
    return parse_status(Path("/proc/self/status").read_text()).rss_bytes


def peak_bytes() -> int:
    return parse_status(Path("/proc/self/status").read_text()).hwm_bytes


def reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


class HostMemory:
    """The process's RSS: what a CPU step costs."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.context_bytes = 0

    def now(self) -> int:
        return rss_bytes()

    def reset(self) -> None:
        reset_peak()

    def peaks(self) -> dict[str, int]:
        return {"peak": peak_bytes()}


class CudaMemory:
    """PyTorch's allocator on the GPU: allocated (tensors) and reserved (its pool)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        torch.zeros(1, device="cuda")  # CUDA and its context up
        free, total = torch.cuda.mem_get_info()
        self.context_bytes = total - free

    def now(self) -> int:
        return int(self.torch.cuda.memory_allocated())

    def reset(self) -> None:
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()

    def peaks(self) -> dict[str, int]:
        self.torch.cuda.synchronize()
        return {
            "peak": int(self.torch.cuda.max_memory_allocated()),
            "reserved": int(self.torch.cuda.max_memory_reserved()),
        }


def main(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    figures: dict[str, Any] = {"rss_torch": rss_bytes()}
    import peft
    import transformers

    figures["rss_libs"] = rss_bytes()
    cuda = spec.get("device", "cpu") == "cuda"
    memory = CudaMemory(torch) if cuda else HostMemory(torch)
    figures["cuda_context"] = memory.context_bytes
    model = load(spec, torch, transformers, peft)
    figures["loaded"] = memory.now()
    figures["rss_loaded"] = rss_bytes()
    model = wrap(model, spec, peft)
    figures.update(train(model, spec, torch, memory))
    figures["versions"] = {"torch": torch.__version__, "peft": peft.__version__}
    figures["versions"]["transformers"] = transformers.__version__
    return figures


def load(spec: dict[str, Any], torch: Any, transformers: Any, peft: Any) -> Any:
    """16-bit weights; for QLoRA NF4 with double quantization and the recipe's preparation."""
    options: dict[str, Any] = {"dtype": torch.bfloat16}
    if spec.get("device", "cpu") == "cuda":
        options["device_map"] = "cuda"
    if spec.get("method", "lora") == "qlora":
        options["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_pretrained(spec["folder"], **options)
    if spec.get("method", "lora") == "qlora":
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec["checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )  # fmt: skip
    return model


def write_model(folder: Path, config: dict[str, Any]) -> None:
    """Random weights in bf16 for a real architecture config (``model_type`` picks the class)."""
    import torch
    import transformers

    torch.manual_seed(0)
    settings = dict(config)
    kind = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
    model = transformers.AutoModelForCausalLM.from_config(kind, dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)


def wrap(model: Any, spec: dict[str, Any], peft: Any) -> Any:
    config = peft.LoraConfig(
        r=spec["rank"], lora_alpha=spec.get("alpha", 2 * spec["rank"]), lora_dropout=0.0,
        target_modules=spec["targets"], task_type="CAUSAL_LM",
    )  # fmt: skip
    model = peft.get_peft_model(model, config)
    if spec["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    return model


def train(model: Any, spec: dict[str, Any], torch: Any, memory: Any) -> dict[str, Any]:
    """``steps`` steps; the last one's phases are the steady state (optimizer states exist)."""
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = (
        torch.optim.SGD(trainable, lr=1e-3)
        if spec["optimizer"] == "sgd"
        else torch.optim.AdamW(trainable, lr=1e-4)
    )
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (spec["batch"], spec["seq"]), generator=generator)
    ids = ids.to(next(model.parameters()).device)
    phases: dict[str, int] = {}
    started = time.monotonic()
    for _ in range(spec.get("steps", 2)):
        phases = one_step(model, optimizer, ids, memory)
    return {**phases, "step_s": (time.monotonic() - started) / spec.get("steps", 2)}


def one_step(model: Any, optimizer: Any, ids: Any, memory: Any) -> dict[str, int]:
    """Forward, backward, step: each phase's peaks (``peak_forward``, ``reserved_forward``...)."""
    figures: dict[str, int] = {}
    memory.reset()
    loss = model(input_ids=ids, labels=ids).loss  # the output (and its logits) is dropped
    figures.update(_named(memory.peaks(), "forward"))
    memory.reset()
    loss.backward()
    figures.update(_named(memory.peaks(), "backward"))
    del loss
    memory.reset()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    figures.update(_named(memory.peaks(), "step"))
    figures["after"] = memory.now()
    return figures


def _named(peaks: dict[str, int], phase: str) -> dict[str, int]:
    return {f"{name}_{phase}": value for name, value in peaks.items()}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
