"""One real LoRA training step in this process, measured by the kernel's high-water mark.

Run as a child (``python -m yoyu.testing.training_step SPEC_JSON``) by
``yoyu.testing.training_run``, in an interpreter that has ``torch`` and ``peft``
(the CPU wheel): yoyu itself never imports them. The child writes a small Hugging
Face model with random weights (``write_model``, in a first child), then loads it in 16-bit,
wraps it in a PEFT LoRA adapter and runs ``steps`` optimizer steps the way
``transformers.Trainer`` does (the loss is kept, the logits are not). Memory is the
kernel's own figure: ``VmHWM`` (peak RSS) is reset through ``/proc/self/clear_refs``
before each phase and read after it, so a peak between two samples cannot be
missed, read with the monitor's parser (``yoyu.monitor.procfs``). It prints one
JSON line: RSS after ``import torch`` (the baseline), after the other imports,
after the load and after wrapping, and each phase's peak.
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


def main(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    figures: dict[str, Any] = {"rss_torch": rss_bytes()}
    import peft
    import transformers

    figures["rss_libs"] = rss_bytes()
    model = transformers.AutoModelForCausalLM.from_pretrained(spec["folder"], dtype=torch.bfloat16)
    figures["rss_loaded"] = rss_bytes()
    model = wrap(model, spec, peft)
    figures["rss_wrapped"] = rss_bytes()
    figures.update(train(model, spec, torch))
    figures["versions"] = {"torch": torch.__version__, "peft": peft.__version__}
    figures["versions"]["transformers"] = transformers.__version__
    return figures


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


def train(model: Any, spec: dict[str, Any], torch: Any) -> dict[str, Any]:
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
    phases: dict[str, int] = {}
    started = time.monotonic()
    for _ in range(spec.get("steps", 2)):
        phases = one_step(model, optimizer, ids)
    return {**phases, "step_s": (time.monotonic() - started) / spec.get("steps", 2)}


def one_step(model: Any, optimizer: Any, ids: Any) -> dict[str, int]:
    """Forward, backward, step: each phase's peak RSS, and the RSS it ends at."""
    reset_peak()
    loss = model(input_ids=ids, labels=ids).loss  # the output (and its logits) is dropped
    forward = peak_bytes()
    reset_peak()
    loss.backward()
    backward = peak_bytes()
    del loss
    reset_peak()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "peak_forward": forward,
        "peak_backward": backward,
        "peak_step": peak_bytes(),
        "rss_after": rss_bytes(),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
