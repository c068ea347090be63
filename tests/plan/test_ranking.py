"""``rank_catalog``: the catalog on a machine, ranked, with the real estimator, placement
search and speed model on the bundled presets (no file is read, no machine probed)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.machine.presets import load_machine
from yoyu.machine.types import Machine
from yoyu.models.catalog import (
    CatalogEntry,
    catalog_entries,
    catalog_spec,
    find_catalog_entry,
    relatives_of,
    table_key,
)
from yoyu.models.catalog_tables import TableKey
from yoyu.models.spec import ModelSpec
from yoyu.plan.planner import make_plan
from yoyu.plan.ranking import (
    FIT_ENGINE,
    FitFilters,
    FitReport,
    FitRow,
    context_ladder,
    rank_catalog,
)
from yoyu.plan.types import PlanRequest, Risk, Verdict
from yoyu.units import GIB

REQUEST = PlanRequest(settings=RunSettings(engine=FIT_ENGINE))


def rank(preset: str, filters: FitFilters | None = None, **request: int) -> FitReport:
    asked = dataclasses.replace(REQUEST, **request) if request else REQUEST
    return rank_catalog(catalog_entries(), load_machine(preset), asked, filters or FitFilters())


def row(report: FitReport, model: str) -> FitRow:
    return next(found for found in report.rows if found.model == model)


@pytest.fixture(scope="module")
def rtx4090() -> FitReport:
    return rank("linux-rtx4090-24g")


def test_every_quant_of_every_model_gets_a_row(rtx4090: FitReport) -> None:
    expected = sum(len(entry.quants) for entry in catalog_entries())
    assert len(rtx4090.rows) == expected
    assert len({(found.model, found.quant) for found in rtx4090.rows}) == expected


def test_rows_that_run_come_first_and_the_usable_ones_before_them(rtx4090: FitReport) -> None:
    flags = [(not found.runs, not found.usable) for found in rtx4090.rows]
    assert flags == sorted(flags)
    usable = [found for found in rtx4090.rows if found.usable]
    assert [found.params_total for found in usable] == sorted(
        (found.params_total for found in usable), reverse=True
    )
    assert all(found.decode_tps >= 10 and found.risk is Risk.SAFE for found in usable)


def test_a_24_gib_gpu_holds_an_8b_model_whole_with_a_long_context(rtx4090: FitReport) -> None:
    llama = row(rtx4090, "llama3.1:8b")
    assert (llama.verdict, llama.placement, llama.n_gpu_layers) == (
        Verdict.FITS,
        "all on the GPU",
        33,
    )
    assert llama.ctx >= 32768 and llama.ctx in context_ladder(4096, 131072)
    assert llama.gpu_bytes > catalog_spec(find_catalog_entry("llama3.1:8b")).file_bytes  # type: ignore[arg-type]
    assert llama.decode_tps > 50  # ~1 TB/s read 4.9 GB per token


def test_a_moe_too_big_for_the_gpu_keeps_its_experts_on_the_cpu(rtx4090: FitReport) -> None:
    big = row(rtx4090, "gpt-oss:120b")
    assert big.verdict is Verdict.PARTIAL_OFFLOAD and big.n_cpu_moe > 0
    assert big.n_gpu_layers == big.n_layers_total
    assert "experts" in big.placement


def test_a_dense_model_too_big_for_the_gpu_offloads_layers(rtx4090: FitReport) -> None:
    big = row(rtx4090, "llama3.1:70b")
    assert big.verdict is Verdict.PARTIAL_OFFLOAD
    assert 0 < big.n_gpu_layers < big.n_layers_total and big.n_cpu_moe == 0


def test_a_model_bigger_than_the_machine_is_refused_with_figures(rtx4090: FitReport) -> None:
    huge = row(rtx4090, "deepseek-v3:671b")
    assert huge.verdict is Verdict.DOES_NOT_FIT and not huge.runs
    assert "GiB" in huge.reason and huge.ctx == 0


def test_a_larger_context_never_means_less_memory() -> None:
    """The widest context is where memory meets the headroom: a smaller free memory
    gives a smaller (or equal) context, never a larger one."""
    filters = FitFilters(family="qwen2.5")
    roomy = rank("linux-cpu-32g", filters)
    tight = rank("linux-cpu-32g", filters, ram_free_bytes=12 * GIB)
    for found in tight.rows:
        if found.runs:
            assert found.ctx <= row(roomy, found.model).ctx
    assert any(found.ctx < row(roomy, found.model).ctx for found in tight.rows if found.runs)


def test_cpu_only_machine_places_everything_on_the_cpu() -> None:
    report = rank("linux-cpu-32g", FitFilters(family="llama3.2"))
    assert {found.verdict for found in report.rows} == {Verdict.CPU_ONLY}
    assert all(found.placement == "CPU only" for found in report.rows)


def test_filters_narrow_by_family_use_context_and_size() -> None:
    machine = "mac-studio-m2-max-32g"
    family = rank(machine, FitFilters(family="Qwen3"))
    assert {found.family for found in family.rows} == {"qwen3"}
    embedding = rank(machine, FitFilters(use="embedding"))
    assert embedding.rows and all("embedding" in found.uses for found in embedding.rows)
    long = rank(machine, FitFilters(min_ctx=100_000, family="llama3.1"))
    assert all(found.ctx >= 100_000 for found in long.rows if found.runs)
    small = rank(machine, FitFilters(max_size_bytes=2 * 10**9))
    assert small.rows and all(found.file_bytes <= 2 * 10**9 for found in small.rows)
    default = rank(machine, FitFilters(family="qwen2.5", all_quants=False))
    assert len(default.rows) == 7 and {found.quant for found in default.rows} == {"Q4_K_M"}


def test_the_report_serializes_every_row() -> None:
    report = rank("server-h100-80g", FitFilters(family="mixtral"))
    data = report.to_dict()
    assert data["machine"] == "server-h100-80g"
    assert data["runs"] == sum(found.runs for found in report.rows)
    first = data["models"][0]
    assert first["verdict"] in {verdict.value for verdict in Verdict}
    assert isinstance(first["uses"], list) and "usable" in first


def test_context_ladder_climbs_in_powers_of_two_to_the_trained_context() -> None:
    assert context_ladder(4096, 40960) == [4096, 8192, 16384, 32768, 40960]
    assert context_ladder(512, 512) == [512]
    assert context_ladder(8192, 8192) == [8192]


@pytest.mark.parametrize("entry", catalog_entries(), ids=[e.name for e in catalog_entries()])
def test_every_entry_plans_without_error(entry: CatalogEntry) -> None:
    spec = catalog_spec(entry)
    settings = RunSettings(n_ctx=min(8192, spec.context_length))
    plan = make_plan(
        spec, load_machine("linux-rtx4090-24g"), PlanRequest(settings=settings),
        catalog=relatives_of(spec),
    )  # fmt: skip
    assert plan.model == spec.name and plan.estimate.n_ctx > 0


def test_each_table_is_estimated_once_per_settings_and_fine_tunes_share_their_row() -> None:
    """Fine-tunes of one base in one quant (the same tensor table, ``table_key``) are placed,
    sized and timed once; no (table, settings) is estimated twice on the way (issue 22)."""
    estimated: Counter[tuple[str, str]] = Counter()

    def counting(spec: ModelSpec, machine: Machine, settings: RunSettings) -> MemoryEstimate:
        estimated[repr(dataclasses.replace(spec, name="")), repr(settings)] += 1
        return estimate_memory(spec, machine, settings)

    report = rank_catalog(
        catalog_entries(), load_machine("linux-rtx3060-12g"), REQUEST, estimate=counting
    )
    assert estimated and max(estimated.values()) == 1
    by_key: dict[TableKey, list[FitRow]] = {}
    for found in report.rows:
        entry = find_catalog_entry(found.model)
        assert entry is not None
        by_key.setdefault(table_key(entry, found.quant), []).append(found)
    shared = [rows for rows in by_key.values() if len(rows) > 1]
    assert len(shared) >= 10  # llama2, llama3, mistral and qwen2.5 fine-tunes at least
    for rows in shared:
        figures = {dataclasses.replace(found, model="", family="", uses=()) for found in rows}
        assert len(figures) == 1
        assert len({found.model for found in rows}) == len(rows)
