"""Each training-step component against a hand calculation from Llama 3.2 1B's config.

Llama 3.2 1B (``LLAMA_3_2_1B``): hidden 2048, FFN 8192, 16 blocks, 32 heads, 8 KV
heads of 64, vocabulary 128,256, tied embeddings. Per block: q and o 2048 x 2048,
k and v 2048 x 512, gate/up/down 3 x 2048 x 8192, two norms of 2048.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yoyu.errors import SettingsError
from yoyu.estimate.training import estimate_training
from yoyu.estimate.training_settings import TrainingSettings, parse_targets
from yoyu.models.hf_model import read_hf_model
from yoyu.models.spec import ModelSpec
from yoyu.testing.hf_folders import LLAMA_3_2_1B, write_llama_folder
from yoyu.units import MIB

H, FF, LAYERS, VOCAB = 2048, 8192, 16, 128256
Q_OUT, KV_OUT = 32 * 64, 8 * 64
BLOCK_LINEAR = 2 * H * Q_OUT + 2 * H * KV_OUT + 3 * H * FF
PARAMS = VOCAB * H + LAYERS * (BLOCK_LINEAR + 2 * H) + H  # tied: one embedding matrix


@pytest.fixture(scope="module")
def llama_1b(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return read_hf_model(write_llama_folder(tmp_path_factory.mktemp("l1b"), LLAMA_3_2_1B))


def block_per_token(rank: int, lora_inputs: list[int]) -> int:
    """Norms (fp32 copy + rsqrt, two), SDPA (q, out, k, v in bf16 + fp32 lse per head),
    SwiGLU (three bf16 FFN-wide tensors), per adapter the fp32 input and A's output."""
    norms = 2 * (4 * H + 4)
    attention = (2 * Q_OUT + 2 * KV_OUT) * 2 + 32 * 4
    mlp = 3 * FF * 2
    return norms + attention + mlp + sum(4 * (width + rank) for width in lora_inputs)


def test_lora_components_match_the_hand_calculation(llama_1b: ModelSpec) -> None:
    settings = TrainingSettings(rank=16, targets=("q", "v"), seq=1024, batch=1)
    memory = estimate_training(llama_1b, settings, "CUDA0")
    adapter_params = LAYERS * (16 * (H + Q_OUT) + 16 * (H + KV_OUT))
    assert llama_1b.params_total == PARAMS
    assert memory.base_weights_bytes == 2 * PARAMS
    assert memory.adapter_params == adapter_params
    assert memory.adapter_bytes == memory.gradient_bytes == 4 * adapter_params
    assert memory.optimizer_bytes == 8 * adapter_params  # two fp32 Adam moments
    assert memory.activation_bytes == LAYERS * block_per_token(16, [H, H]) * 1024
    assert memory.logits_bytes == 3 * 4 * VOCAB * 1024  # 1.5 GB at 1024 tokens
    assert memory.framework_bytes == 457 * MIB  # the CUDA context, as inference plans count it
    assert memory.host_bytes == 412 * MIB  # the process stays on the host


def test_all_targets_and_batch_scale_activations_and_logits(llama_1b: ModelSpec) -> None:
    settings = TrainingSettings(rank=8, targets=parse_targets("all"), seq=512, batch=4)
    memory = estimate_training(llama_1b, settings, "CUDA0")
    inputs = [H, H, H, Q_OUT, H, H, FF]  # q k v o gate up down: each one's in_features
    assert memory.activation_bytes == LAYERS * block_per_token(8, inputs) * 2048
    assert memory.logits_bytes == 12 * VOCAB * 2048


def test_checkpointing_keeps_block_inputs_and_one_recomputed_block(llama_1b: ModelSpec) -> None:
    settings = TrainingSettings(rank=16, targets=("q", "v"), seq=2048, grad_checkpointing=True)
    memory = estimate_training(llama_1b, settings, "CUDA0")
    per_token = LAYERS * H * 2 + (4 * H + 4) + block_per_token(16, [H, H])
    assert memory.activation_bytes == per_token * 2048
    plain = dataclasses.replace(settings, grad_checkpointing=False)
    without = estimate_training(llama_1b, plain, "CUDA0")
    assert memory.activation_bytes < without.activation_bytes / 8


def test_qlora_stores_block_projections_in_nf4_and_the_rest_in_fp32(
    llama_1b: ModelSpec,
) -> None:
    memory = estimate_training(llama_1b, TrainingSettings(method="qlora"), "CUDA0")
    nf4_bits = 4 + 8 / 64 + 32 / (64 * 256)  # QLoRA paper, double quantization
    quantized = LAYERS * BLOCK_LINEAR
    leftover = PARAMS - quantized  # embeddings and norms: prepare_model_for_kbit_training's fp32
    assert memory.base_weights_bytes == round(quantized * nf4_bits / 8) + 4 * leftover


def test_qlora_checkpoints_an_fp32_residual_stream(llama_1b: ModelSpec) -> None:
    """prepare_model_for_kbit_training's fp32 embeddings make every block input fp32."""
    settings = TrainingSettings(method="qlora", seq=512, grad_checkpointing=True)
    lora = dataclasses.replace(settings, method="lora")
    extra = LAYERS * H * (4 - 2) * 512
    qlora_bytes = estimate_training(llama_1b, settings, "CUDA0").activation_bytes
    assert qlora_bytes == estimate_training(llama_1b, lora, "CUDA0").activation_bytes + extra


@pytest.mark.parametrize(("optimizer", "per_param"), [("sgd", 0), ("adamw8bit", 2 + 8 / 256)])
def test_optimizer_states_per_adapter_parameter(
    llama_1b: ModelSpec, optimizer: str, per_param: float
) -> None:
    memory = estimate_training(llama_1b, TrainingSettings(optimizer=optimizer), "CUDA0")
    assert memory.optimizer_bytes == round(memory.adapter_params * per_param)


def test_cpu_counts_the_process_and_the_heap_it_keeps(llama_1b: ModelSpec) -> None:
    small = TrainingSettings(seq=256)
    memory = estimate_training(llama_1b, small, "CPU")
    block = block_per_token(16, [H, H]) * 256
    assert memory.host_bytes == 0
    assert memory.framework_bytes == 412 * MIB + 64 * MIB + 2 * block
    # 4096 tokens x 2048 x 4 B = 32 MiB fp32 hidden states: mmapped, handed back when freed
    large = estimate_training(llama_1b, TrainingSettings(seq=4096), "CPU")
    assert large.framework_bytes == 412 * MIB + 64 * MIB
    qlora = estimate_training(llama_1b, TrainingSettings(method="qlora", seq=4096), "CPU")
    assert qlora.framework_bytes == 412 * MIB + 46 * MIB + 64 * MIB  # bitsandbytes imported


def test_qk_norm_architectures_keep_the_per_head_norms(llama_1b: ModelSpec) -> None:
    qwen3 = dataclasses.replace(llama_1b, architecture="qwen3")
    settings = TrainingSettings(seq=100)
    extra = (32 + 8) * (4 * 64 + 4) * LAYERS * 100
    llama = estimate_training(llama_1b, settings, "CUDA0").activation_bytes
    assert estimate_training(qwen3, settings, "CUDA0").activation_bytes == llama + extra
    gemma3 = dataclasses.replace(llama_1b, architecture="gemma3")  # and two more norms a block
    two_norms = 2 * (4 * H + 4) * LAYERS * 100
    assert (
        estimate_training(gemma3, settings, "CUDA0").activation_bytes == llama + extra + two_norms
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rank": 0}, "--rank must be 1 or more, not 0"),
        ({"seq": -5}, "--seq must be 1 or more"),
        ({"targets": ("q", "gatee")}, "unknown --targets value 'gatee'"),
        ({"optimizer": "adam9"}, "unknown --optimizer value 'adam9'"),
        ({"method": "full"}, "unknown --train value 'full'"),
        ({"grad_accum": 0}, "--grad-accum must be 1 or more"),
    ],
)
def test_bad_settings_are_user_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        TrainingSettings(**change)  # type: ignore[arg-type]


def test_targets_accept_peft_names_and_all() -> None:
    assert parse_targets("q_proj, V,q") == ("q", "v")
    assert parse_targets("all") == ("q", "k", "v", "o", "gate", "up", "down")
    with pytest.raises(SettingsError, match="unknown --targets value 'qkv'"):
        parse_targets("qkv")


def test_a_gguf_and_its_folder_give_the_same_adapter(llama_1b: ModelSpec, tmp_path: Path) -> None:
    """Shapes alone decide adapters and activations, whatever the file format says."""
    gguf_like = dataclasses.replace(llama_1b, format="gguf", quantization="Q4_K_M", tensors=())
    settings = TrainingSettings(targets=parse_targets("all"))
    ours, theirs = (estimate_training(s, settings, "CPU") for s in (llama_1b, gguf_like))
    assert ours == theirs
