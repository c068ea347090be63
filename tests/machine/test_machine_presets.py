"""Machine presets: built-in and user TOML files, human units, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from yoyu.errors import MachineError
from yoyu.machine import list_presets, load_machine, parse_rate, parse_size

GIB = 1024**3
MIB = 1024**2
BUILT_IN = {
    "mac-studio-m2-max-32g",
    "mac-studio-m3-ultra-512g",
    "macbook-pro-m4-max-128g",
    "linux-rtx5060ti-16g",
    "linux-rtx4090-24g",
    "server-h100-80g",
    "server-h200-141g",
    "linux-cpu-32g",
}
Validate = Callable[[Any], None]


# --- units ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32 GiB", 32 * GIB),
        ("16GB", 16 * GIB),  # memory is sold in binary units: a "16 GB" card has 16 GiB
        ("24564 MiB", 24564 * MIB),
        ("1.5 TiB", 1536 * GIB),
        ("8g", 8 * GIB),
        ("512 B", 512),
        ("4096", 4096),
        (34359738368, 34359738368),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["32 GiBs", "lots", "-1 GiB", "", -5, True, 1.5, ["32 GiB"]])
def test_bad_sizes_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ValueError, match=r"is not a size; write a byte count"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("400 GB/s", 400 * 10**9),
        ("3.35 TB/s", 3_350 * 10**9),
        ("546GB/s", 546 * 10**9),
        ("83.2 GB/s", 83_200_000_000),
        ("64 GiB/s", 64 * GIB),
        (1008000000000, 1_008_000_000_000),
    ],
)
def test_rates(text: object, rate: int) -> None:
    assert parse_rate(text) == rate


def test_a_size_is_not_a_rate() -> None:
    with pytest.raises(ValueError, match="not a bandwidth"):
        parse_rate("400 GB")


# --- built-in presets -----------------------------------------------------------------


def test_every_required_preset_is_built_in() -> None:
    built_in = {ref.name for ref in list_presets() if ref.origin == "built-in"}
    assert built_in >= BUILT_IN
    assert all(ref.description for ref in list_presets())


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_preset_loads_and_validates(name: str, validate_machine: Validate) -> None:
    machine = load_machine(name)
    assert machine.name == name
    assert machine.source == f"preset:{name}"
    assert machine.memory.total_bytes > 0
    assert machine.cpu.threads >= machine.cpu.cores >= 1
    validate_machine(machine.to_dict())


def test_rtx5060ti_preset_is_the_issue_machine() -> None:
    machine = load_machine("linux-rtx5060ti-16g")
    assert machine.memory.total_bytes == 27 * GIB
    assert machine.memory.swap_total_bytes == 8 * GIB
    (gpu,) = machine.gpus
    assert (gpu.vendor, gpu.total_bytes, gpu.free_bytes) == ("nvidia", 16311 * MIB, 16311 * MIB)
    assert gpu.bandwidth_bytes_per_s == 128 // 8 * 14001 * 10**6 * 2  # NVIDIA: 448 GB/s
    assert not machine.unified_memory


def test_h100_preset_bandwidth_is_computed_from_bus_and_clock() -> None:
    (gpu,) = load_machine("server-h100-80g").gpus
    assert gpu.bandwidth_bytes_per_s is not None
    assert gpu.bandwidth_bytes_per_s / 1e12 == pytest.approx(3.35, rel=0.002)


def test_h200_preset_states_the_datasheet_bandwidth_and_the_cards_usable_memory() -> None:
    (gpu,) = load_machine("server-h200-141g").gpus
    assert (gpu.name, gpu.total_bytes) == ("NVIDIA H200", 143771 * MIB)  # nvidia-smi's total
    assert gpu.bandwidth_bytes_per_s == 4_800_000_000_000  # 4.8 TB/s, not NVML's 4.92
    assert gpu.fp32_flops == 67 * 10**12


def test_m2_max_preset_uses_macos_default_working_set() -> None:
    machine = load_machine("mac-studio-m2-max-32g")
    assert machine.unified_memory
    assert machine.apple is not None
    assert f"{machine.apple.gpu_working_set_bytes / MIB:.2f}" == "21845.34"  # ollama#434's log
    (gpu,) = machine.gpus
    assert gpu.vendor == "apple"
    assert gpu.total_bytes == machine.apple.gpu_working_set_bytes
    assert gpu.bandwidth_bytes_per_s == machine.memory.bandwidth_bytes_per_s == 400 * 10**9


def test_m3_ultra_preset_uses_the_measured_working_set() -> None:
    machine = load_machine("mac-studio-m3-ultra-512g")
    assert machine.apple is not None
    assert machine.memory.total_bytes == 512 * GIB
    assert machine.apple.default_working_set_bytes == 464 * GIB
    assert machine.apple.gpu_working_set_bytes == 464 * GIB


# --- user presets -----------------------------------------------------------------------

MINIMAL_LINUX = """
description = "my box"
[cpu]
model = "Ryzen 5 5600"
cores = 6
threads = 12
[memory]
total = "16 GiB"
[[gpus]]
name = "NVIDIA GeForce RTX 3060"
total = "12 GiB"
free = "11 GiB"
"""


def user_machines(isolated_home: Path) -> Path:
    folder = isolated_home / "yoyu" / "machines"  # conftest points YOYU_HOME at home/yoyu
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_user_preset_from_yoyu_home(isolated_home: Path, validate_machine: Validate) -> None:
    (user_machines(isolated_home) / "my-box.toml").write_text(MINIMAL_LINUX, encoding="utf-8")
    refs = {ref.name: ref for ref in list_presets()}
    assert refs["my-box"].origin == "user"
    assert refs["my-box"].description == "my box"
    machine = load_machine("my-box")
    assert machine.source == "preset:my-box"
    (gpu,) = machine.gpus
    assert (gpu.total_bytes, gpu.free_bytes, gpu.used_bytes) == (12 * GIB, 11 * GIB, GIB)
    assert gpu.bandwidth_bytes_per_s is None  # neither given nor derivable
    validate_machine(machine.to_dict())


def test_user_preset_shadows_a_built_in_of_the_same_name(isolated_home: Path) -> None:
    (user_machines(isolated_home) / "server-h100-80g.toml").write_text(
        MINIMAL_LINUX, encoding="utf-8"
    )
    assert load_machine("server-h100-80g").cpu.model == "Ryzen 5 5600"
    origins = [ref.origin for ref in list_presets() if ref.name == "server-h100-80g"]
    assert origins == ["user"]


def test_env_argument_selects_the_user_folder(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere" / "machines"
    folder.mkdir(parents=True)
    (folder / "lab.toml").write_text(MINIMAL_LINUX, encoding="utf-8")
    env = {"YOYU_HOME": str(tmp_path / "elsewhere")}
    assert "lab" in {ref.name for ref in list_presets(env)}
    assert load_machine("lab", env).cpu.cores == 6


def test_a_path_loads_without_being_installed(tmp_path: Path) -> None:
    path = tmp_path / "rig.toml"
    path.write_text('name = "rig"\n' + MINIMAL_LINUX, encoding="utf-8")
    machine = load_machine(str(path))
    assert (machine.name, machine.source) == ("rig", "preset:rig")


def test_desktop_presets_assume_what_the_system_and_apps_hold() -> None:
    mac = load_machine("mac-studio-m2-max-32g")
    assert mac.memory.assumed_in_use_bytes == 6 * GIB
    assert mac.memory.available_bytes == 26 * GIB
    for name in ("linux-rtx5060ti-16g", "linux-rtx4090-24g", "macbook-pro-m4-max-128g"):
        memory = load_machine(name).memory
        assert memory.assumed_in_use_bytes is not None and memory.assumed_in_use_bytes >= 4 * GIB
        assert memory.available_bytes == memory.total_bytes - memory.assumed_in_use_bytes


def test_an_apple_file_with_a_raised_wired_limit(tmp_path: Path) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(
        '[cpu]\nmodel = "Apple M4 Pro"\ncores = 14\n[memory]\ntotal = "64 GiB"\n'
        "[apple]\ngpu_cores = 20\nwired_limit_mb = 57344\n",
        encoding="utf-8",
    )
    machine = load_machine(str(path))
    assert machine.apple is not None
    assert machine.apple.chip == "Apple M4 Pro"  # defaults to the CPU model
    assert machine.apple.default_working_set_bytes == 48 * GIB
    assert machine.apple.gpu_working_set_bytes == 56 * GIB
    assert machine.memory.bandwidth_bytes_per_s == 273 * 10**9  # from Apple's table
    assert (machine.os.system, machine.os.arch) == ("Darwin", "arm64")
    assert machine.cpu.threads == 14


# --- errors -----------------------------------------------------------------------------


def test_unknown_preset_names_the_closest_match() -> None:
    with pytest.raises(MachineError) as caught:
        load_machine("mac-studio-m2-max-23g")
    message = str(caught.value)
    assert "unknown machine preset 'mac-studio-m2-max-23g'" in message
    assert "did you mean 'mac-studio-m2-max-32g'?" in message
    assert "yoyu machine --list-presets" in message
    assert "\n" not in message


def test_unknown_preset_without_a_close_match_still_says_how_to_list() -> None:
    with pytest.raises(MachineError, match=r"'zzz' \(list them with"):
        load_machine("zzz")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MachineError, match=r"machine file .*nope\.toml not found"):
        load_machine(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[cpu\nmodel=", "not valid TOML"),
        (MINIMAL_LINUX.replace('"16 GiB"', '"16 GiBs"'), "[memory] total: '16 GiBs' is not a size"),
        (
            MINIMAL_LINUX.replace("cores = 6", "cores = 0"),
            "[cpu] cores: expected a whole number >= 1",
        ),
        (MINIMAL_LINUX.replace("threads = 12", "thread = 12"), "[cpu] thread: unknown key"),
        (MINIMAL_LINUX + "[network]\nspeed = 1\n", "unknown key or table 'network'"),
        (
            MINIMAL_LINUX.replace('total = "16 GiB"', 'swap_total = "1 GiB"'),
            "[memory] total: is required",
        ),
        (
            MINIMAL_LINUX.replace('name = "NVIDIA', 'vendor = "AMD"\nname = "NVIDIA'),
            "[[gpus]] #1 vendor: expected one of nvidia, amd, intel, got 'AMD'",
        ),
        (MINIMAL_LINUX.replace("[[gpus]]", "[gpus]"), "gpus must be an array of tables"),
        (
            MINIMAL_LINUX.replace(
                'total = "16 GiB"', 'total = "16 GiB"\nin_use = "2 GiB"\navailable = "9 GiB"'
            ),
            "[memory] in_use: give available or in_use, not both",
        ),
        (
            MINIMAL_LINUX.replace('total = "16 GiB"', 'total = "16 GiB"\nin_use = "16 GiB"'),
            "[memory] in_use: 17179869184 B is not below total",
        ),
        ('[memory]\ntotal = "1 GiB"\n', "the [cpu] table is missing"),
        (MINIMAL_LINUX + '[apple]\nchip = "Apple M2"\n', "[apple] describes the GPU"),
        (
            MINIMAL_LINUX.replace("[[gpus]]", '[apple]\nmemory_pressure = "high"\n[[gpus]]'),
            "[apple] describes the GPU",
        ),
        (
            '[cpu]\nmodel = "Apple M1"\ncores = 8\n[memory]\ntotal = "16 GiB"\n'
            '[apple]\nmemory_pressure = "high"\n',
            "[apple] memory_pressure: expected one of normal, warn, critical, got 'high'",
        ),
    ],
)
def test_malformed_files_name_the_file_and_the_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MachineError) as caught:
        load_machine(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert "\n" not in message
