"""What planning a model before downloading it costs: bytes read over HTTP, per model.

Serves real files from a local Range server on 127.0.0.1 and a local hub
(``yoyu.testing.http_files``): the real Gemma 3 270M Q4_K_M, and real-shape
sparse GGUFs of Llama-3.1-70B Q4_K_M (one 42.52 GB file) and DeepSeek-V3
Q4_K_M (404 GB in 9 parts, read from ``hf://ORG/REPO:Q4_K_M``). For each:
the file size, the header (where tensor data begins, summed over parts), the
bytes yoyu read and its requests, the same read a second time (from the
cache), and the wall time of a cold read (noisy on a shared machine: loopback
HTTP, no network latency).

    python benchmarks/remote_header.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from yoyu.models.gguf import read_gguf_file
from yoyu.remote.reader import RemoteModel, read_remote_model
from yoyu.testing.http_files import FileServer, LocalHub
from yoyu.testing.real_models import GEMMA3_270M, real_model_path
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.units import format_bytes


@contextmanager
def hub_env(hub: LocalHub) -> Iterator[None]:
    os.environ["HF_ENDPOINT"] = hub.endpoint
    try:
        yield
    finally:
        del os.environ["HF_ENDPOINT"]


def row(label: str, paths: list[Path], read: Callable[[], RemoteModel]) -> None:
    start = time.perf_counter()
    cold = read()
    seconds = time.perf_counter() - start
    warm = read()
    header = sum(read_gguf_file(path).data_offset for path in paths)
    size = sum(path.stat().st_size for path in paths)
    print(
        f"| {label} | {format_bytes(size)} | {format_bytes(header)} | "
        f"{format_bytes(cold.transfer.bytes_read)} ({cold.transfer.bytes_read:,} B) | "
        f"{cold.transfer.requests} | {warm.transfer.bytes_read} B, {warm.transfer.requests} "
        f"requests | {seconds * 1000:.0f} ms |"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        os.environ["YOYU_HOME"] = str(folder / "home")  # an empty header cache
        gemma = real_model_path(GEMMA3_270M)
        llama70 = write_sparse_model(folder / "70b", "llama-3.1-70b-q4_k_m").paths[0]
        deepseek = list(write_sparse_model(folder / "dsv3", "deepseek-v3-q4_k_m").paths)
        print("| model | file | header | read (cold) | requests | read again | cold time |")
        print("|---|---|---|---|---|---|---|")
        with FileServer.of(gemma, llama70).running() as server:
            row("Gemma 3 270M Q4_K_M (real), URL", [gemma],
                lambda: read_remote_model(server.url(gemma.name)))  # fmt: skip
            row("Llama-3.1-70B Q4_K_M (sparse), URL", [llama70],
                lambda: read_remote_model(server.url(llama70.name)))  # fmt: skip
        repo = {f"Q4_K_M/{path.name}": path for path in deepseek}
        with LocalHub({"unsloth/DeepSeek-V3-GGUF": repo}).running() as hub, hub_env(hub):
            row("DeepSeek-V3 Q4_K_M, 9 parts (sparse), hf://…:Q4_K_M", deepseek,
                lambda: read_remote_model("hf://unsloth/DeepSeek-V3-GGUF:Q4_K_M"))  # fmt: skip


if __name__ == "__main__":
    main()
