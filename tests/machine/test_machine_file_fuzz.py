"""Machine files with wrong types, unknown keys and huge values (hypothesis): every
document is a Machine or one line of MachineError; never another exception.

Documents are the real preset's tables and keys with any TOML value in their place, so
most get past the first check and into the sizes, counts and GPU entries."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from yoyu.errors import YoyuError
from yoyu.machine.machine_file import machine_from_document

VALUE = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["64 GiB", "0 B", "-1 GiB", "1e400 GiB", "89.6 GB/s", "8.9", "nvidia",
                       "apple", "Linux", "Darwin", "x86_64", "9" * 40 + " TiB"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip
OS = ["system", "arch", "release", "distribution", "typo"]
CPU = ["model", "cores", "threads", "simd", "performance_cores", "typo"]
MEMORY = ["total", "available", "in_use", "swap_total", "swap_used", "bandwidth", "limit",
          "wired", "wired_limit_mb", "typo"]  # fmt: skip
GPU = ["vendor", "name", "total", "free", "used", "compute_capability", "memory_bus_width_bits",
       "memory_clock_mhz", "gpu_cores", "uuid", "default_working_set", "typo"]  # fmt: skip


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), VALUE, max_size=5)


DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "description": VALUE, "os": table(OS) | VALUE, "cpu": table(CPU) | VALUE,
        "memory": table(MEMORY) | VALUE, "gpus": st.lists(table(GPU), max_size=2) | VALUE,
        "typo": VALUE,
    },
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENT)
def test_any_machine_file_is_a_machine_or_one_line_saying_what_is_wrong(
    document: dict[str, Any],
) -> None:
    try:
        machine_from_document(document, name="fuzzed", origin="fuzzed.toml")
    except YoyuError as error:
        message = str(error)
        assert message and "\n" not in message, message
