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
from yoyu.i18n import _, ngettext
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
    embedding = _("{n_embd}, feed-forward {n_ff}, vocab {vocab}").format(
        n_embd=spec.n_embd, n_ff=spec.n_ff, vocab=spec.vocab_size
    )
    rows = [
        (_("Architecture"), spec.architecture),
        (_("Parameters"), _params(spec)),
        (_("Layers"), str(spec.n_layers)),
        (_("Embedding"), embedding),
        (_("Attention"), _attention(spec)),
        (_("KV per token"), _kv_per_token(spec)),
    ]
    if spec.is_moe:
        rows.append((_("Experts"), _experts(spec)))
    if spec.mla is not None:
        rows.append(("MLA", _mla(spec)))
    if spec.sliding_window:
        window = _("{window} tokens on {swa} of {layers} layers").format(
            window=spec.sliding_window, swa=len(spec.swa_layers), layers=spec.n_layers
        )
        rows.append((_("Sliding window"), window))
    rows += [
        (_("Context"), _("{count} tokens").format(count=spec.context_length)),
        (_("Chat template"), _chat_template(spec)),
        (_("Per layer"), _layer_bytes(spec)),
        (_("Non-repeating"), format_bytes(spec.nonrepeating_bytes)),
        (_("Tensor data"), format_bytes(spec.tensor_bytes)),
        (_("File size"), _file_size(spec)),
    ]
    return rows


def _chat_template(spec: ModelSpec) -> str:
    if spec.chat_template is None:
        return _("not stated by this source")
    if spec.chat_template:
        return _("in the file")
    family = family_chat_format(spec.architecture)
    fallback = (
        _("yoyu run/chat use the {family!r} format").format(family=family)
        if family
        else _("engines fall back")
    )
    return _("none in the file ({fallback}; llama-cpp-python alone would use 'llama-2')").format(
        fallback=fallback
    )


def quant_mix_table(spec: ModelSpec) -> Table:
    table = Table(title=_("Quantization mix"), title_justify="left")
    table.add_column(_("type"))
    table.add_column(_("bytes"), justify="right")
    table.add_column(_("share"), justify="right")
    for type_name, n_bytes in spec.type_bytes.items():
        share = n_bytes / spec.tensor_bytes if spec.tensor_bytes else 0.0
        table.add_row(escape(type_name), format_bytes(n_bytes), f"{share:.1%}")
    return table


def tensor_table(spec: ModelSpec) -> Table:
    title = _("Tensors ({count})").format(count=len(spec.tensors))
    table = Table(title=title, title_justify="left")
    for column in (_("name"), _("type"), _("shape")):
        table.add_column(column)
    table.add_column(_("bytes"), justify="right")
    table.add_column(_("layer"))
    for tensor in spec.tensors:
        shape = "x".join(str(dim) for dim in tensor.shape)
        layer = "-" if tensor.layer is None else str(tensor.layer)
        name, type_name = escape(tensor.name), escape(tensor.type_name)
        table.add_row(name, type_name, shape, format_bytes(tensor.n_bytes), layer)
    return table


def _title(spec: ModelSpec) -> str:
    details = ", ".join(part for part in (spec.format, spec.quantization) if part)
    estimate = _(" - estimate from the catalog") if spec.format == "catalog" else ""
    return escape(f"{spec.name} ({details}){estimate}")


def _params(spec: ModelSpec) -> str:
    total = format_count(spec.params_total)
    if spec.params_active == spec.params_total:
        return total
    return _("{total} total, {active} active per token").format(
        total=total, active=format_count(spec.params_active)
    )


def _attention(spec: ModelSpec) -> str:
    return _("{heads} heads, {kv_heads} KV heads, head dim K {dim_k} / V {dim_v}").format(
        heads=spec.n_head, kv_heads=spec.n_head_kv, dim_k=spec.head_dim_k, dim_v=spec.head_dim_v
    )


def _kv_per_token(spec: ModelSpec) -> str:
    """Cache elements one token adds per layer: MLA's latent, or K and V for every KV head."""
    if spec.mla is not None:
        latent = spec.mla.kv_lora_rank + spec.mla.rope_dim
        return _("{latent} elements per layer (MLA latent + RoPE key)").format(latent=latent)
    key, value = spec.n_head_kv * spec.head_dim_k, spec.n_head_kv * spec.head_dim_v
    return _("K {key} + V {value} elements per layer").format(key=key, value=value)


def _experts(spec: ModelSpec) -> str:
    text = _("{used} of {experts} routed").format(used=spec.n_experts_used, experts=spec.n_experts)
    if spec.n_experts_shared:
        text += _(" + {shared} shared").format(shared=spec.n_experts_shared)
    if spec.expert_ff_length:
        text += _(", expert feed-forward {ff}").format(ff=spec.expert_ff_length)
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
        return _("{size} each, {total} in all").format(size=format_bytes(low), total=total)
    return _("{low} to {high}, {total} in all").format(
        low=format_bytes(low), high=format_bytes(high), total=total
    )


def _file_size(spec: ModelSpec) -> str:
    size = format_bytes(spec.file_bytes)
    if spec.format == "catalog":
        return _("{size} (estimated download)").format(size=size)
    count = len(spec.paths)
    return ngettext("{size} in {count} file", "{size} in {count} files", count).format(
        size=size, count=count
    )
