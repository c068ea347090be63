"""``yoyu inspect MODEL``: what a model is and what its bytes are, before running it.

Only printing lives here; ``yoyu.models.resolve_model`` does the reading and
raises the one-line errors the CLI boundary turns into exit code 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from yoyu.cli.model_ref import MODEL_HELP, read_model_arg
from yoyu.cli.output import console, print_json
from yoyu.models import ModelSpec
from yoyu.models.chat_format import family_chat_format
from yoyu.units import format_bytes, format_count

if TYPE_CHECKING:
    from yoyu.remote.reader import RemoteModel


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("inspect")(inspect_command)


def inspect_command(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    json_output: Annotated[bool, typer.Option("--json", help="Print ModelSpec as JSON.")] = False,
    tensors: Annotated[bool, typer.Option("--tensors", help="Include the tensor table.")] = False,
) -> None:
    """Show a model's architecture, parameters, quantization and bytes per layer."""
    spec, remote = read_model_arg(model)
    if json_output:
        remote_json = {"remote": remote.to_dict()} if remote else {}
        print_json({**spec.to_dict(include_tensors=tensors), **remote_json})
        return
    console.print(summary_table(spec))
    console.print(quant_mix_table(spec))
    if tensors:
        console.print(tensor_table(spec))
    if remote is not None:
        console.print(f"[dim]{escape(remote_line(remote))}[/]")


def remote_line(remote: RemoteModel) -> str:
    """What reading a remote model's header cost, in one line."""
    transfer = remote.transfer
    cached = f", {remote.cached_files} of {len(remote.files)} from the cache"
    return (
        f"Read {format_bytes(transfer.bytes_read)} of header over HTTP in {transfer.requests} "
        f"requests{cached if remote.cached_files else ''}; the model is not downloaded "
        "(yoyu pull downloads it)"
    )


def summary_table(spec: ModelSpec) -> Table:
    table = Table(title=_title(spec), show_header=False, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summary_rows(spec):
        table.add_row(label, escape(value))
    return table


def summary_rows(spec: ModelSpec) -> list[tuple[str, str]]:
    """The human summary as (label, value) rows; optional rows only when they apply."""
    rows = [
        ("Architecture", spec.architecture),
        ("Parameters", _params(spec)),
        ("Layers", str(spec.n_layers)),
        ("Embedding", f"{spec.n_embd}, feed-forward {spec.n_ff}, vocab {spec.vocab_size}"),
        ("Attention", _attention(spec)),
        ("KV per token", _kv_per_token(spec)),
    ]
    if spec.is_moe:
        rows.append(("Experts", _experts(spec)))
    if spec.mla is not None:
        rows.append(("MLA", _mla(spec)))
    if spec.sliding_window:
        window = f"{spec.sliding_window} tokens on {len(spec.swa_layers)} of {spec.n_layers} layers"
        rows.append(("Sliding window", window))
    rows += [
        ("Context", f"{spec.context_length} tokens"),
        ("Chat template", _chat_template(spec)),
        ("Per layer", _layer_bytes(spec)),
        ("Non-repeating", format_bytes(spec.nonrepeating_bytes)),
        ("Tensor data", format_bytes(spec.tensor_bytes)),
        ("File size", _file_size(spec)),
    ]
    return rows


def _chat_template(spec: ModelSpec) -> str:
    if spec.chat_template is None:
        return "not stated by this source"
    if spec.chat_template:
        return "in the file"
    family = family_chat_format(spec.architecture)
    fallback = f"yoyu run/chat use the {family!r} format" if family else "engines fall back"
    return f"none in the file ({fallback}; llama-cpp-python alone would use 'llama-2')"


def quant_mix_table(spec: ModelSpec) -> Table:
    table = Table(title="Quantization mix", title_justify="left")
    table.add_column("type")
    table.add_column("bytes", justify="right")
    table.add_column("share", justify="right")
    for type_name, n_bytes in spec.type_bytes.items():
        share = n_bytes / spec.tensor_bytes if spec.tensor_bytes else 0.0
        table.add_row(escape(type_name), format_bytes(n_bytes), f"{share:.1%}")
    return table


def tensor_table(spec: ModelSpec) -> Table:
    table = Table(title=f"Tensors ({len(spec.tensors)})", title_justify="left")
    for column in ("name", "type", "shape", "bytes", "layer"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for tensor in spec.tensors:
        shape = "x".join(str(dim) for dim in tensor.shape)
        layer = "-" if tensor.layer is None else str(tensor.layer)
        name, type_name = escape(tensor.name), escape(tensor.type_name)
        table.add_row(name, type_name, shape, format_bytes(tensor.n_bytes), layer)
    return table


def _title(spec: ModelSpec) -> str:
    details = ", ".join(part for part in (spec.format, spec.quantization) if part)
    estimate = " - estimate from the catalog" if spec.format == "catalog" else ""
    return escape(f"{spec.name} ({details}){estimate}")


def _params(spec: ModelSpec) -> str:
    total = format_count(spec.params_total)
    if spec.params_active == spec.params_total:
        return total
    return f"{total} total, {format_count(spec.params_active)} active per token"


def _attention(spec: ModelSpec) -> str:
    dims = f"head dim K {spec.head_dim_k} / V {spec.head_dim_v}"
    return f"{spec.n_head} heads, {spec.n_head_kv} KV heads, {dims}"


def _kv_per_token(spec: ModelSpec) -> str:
    """Cache elements one token adds per layer: MLA's latent, or K and V for every KV head."""
    if spec.mla is not None:
        latent = spec.mla.kv_lora_rank + spec.mla.rope_dim
        return f"{latent} elements per layer (MLA latent + RoPE key)"
    key, value = spec.n_head_kv * spec.head_dim_k, spec.n_head_kv * spec.head_dim_v
    return f"K {key} + V {value} elements per layer"


def _experts(spec: ModelSpec) -> str:
    text = f"{spec.n_experts_used} of {spec.n_experts} routed"
    if spec.n_experts_shared:
        text += f" + {spec.n_experts_shared} shared"
    if spec.expert_ff_length:
        text += f", expert feed-forward {spec.expert_ff_length}"
    return text


def _mla(spec: ModelSpec) -> str:
    assert spec.mla is not None
    mla = spec.mla
    return f"kv_lora_rank {mla.kv_lora_rank}, q_lora_rank {mla.q_lora_rank}, rope {mla.rope_dim}"


def _layer_bytes(spec: ModelSpec) -> str:
    if not spec.layer_bytes:
        return "-"
    low, high = min(spec.layer_bytes), max(spec.layer_bytes)
    total = format_bytes(sum(spec.layer_bytes))
    if low == high:
        return f"{format_bytes(low)} each, {total} in all"
    return f"{format_bytes(low)} to {format_bytes(high)}, {total} in all"


def _file_size(spec: ModelSpec) -> str:
    size = format_bytes(spec.file_bytes)
    if spec.format == "catalog":
        return f"{size} (estimated download)"
    return f"{size} in {len(spec.paths)} file{'s' if len(spec.paths) != 1 else ''}"
