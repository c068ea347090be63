"""How long ``yoyu inspect`` takes on a 500+ GB split model, beside gguf.GGUFReader.

The model is a sparse Kimi-K2-shaped GGUF (61 layers, 384 experts, a real-size
163,840-token vocabulary) split into shards whose data regions are holes, so it
takes no disk. The issue's target is < 100 ms for the whole split set.

    python benchmarks/inspect_speed.py [--repeat 5] [--split 13]

The peer, ``gguf.GGUFReader`` (the reference reader shipped with llama.cpp),
reads one file at a time, so it is timed on the first shard only (the one that
holds the vocabulary); yoyu's time covers every shard.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gguf

from yoyu.models.gguf_spec import read_gguf_model
from yoyu.testing.sparse_models import write_sparse_model
from yoyu.units import format_bytes


def time_calls(function: Callable[[], object], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--split", type=int, default=13, help="number of shards")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = write_sparse_model(Path(folder), "kimi-k2-q4_k_m", split_count=args.split)
        first = Path(model.paths[0])
        yoyu_seconds = time_calls(lambda: read_gguf_model(first), args.repeat)
        peer_seconds = time_calls(lambda: gguf.GGUFReader(first), args.repeat)
        spec = read_gguf_model(first)
    yoyu_ms = statistics.median(yoyu_seconds) * 1000
    peer_ms = statistics.median(peer_seconds) * 1000
    print(f"model: {spec.name}, {len(spec.paths)} shards, {format_bytes(spec.file_bytes)} on disk")
    print(f"yoyu read_gguf_model, all shards:   median {yoyu_ms:8.1f} ms  (target < 100 ms)")
    print(f"gguf.GGUFReader, first shard only: median {peer_ms:8.1f} ms")
    print(f"ratio (GGUFReader / yoyu):          {peer_ms / yoyu_ms:8.1f}x")


if __name__ == "__main__":
    main()
