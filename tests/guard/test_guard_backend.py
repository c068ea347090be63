"""The guard around the real managed llama.cpp backend: its graceful step stops the server.

Memory runs short because of another process (a hog outside the guarded tree),
as when a user opens something big beside a loaded model: the guard cannot
stop that process, but unloading the model gives memory back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from conftest import Hog
from yoyu.backends.llamacpp_server import LlamaCppServerBackend, python_engine
from yoyu.backends.openai_http import HttpTimeouts
from yoyu.backends.protocol import ModelRef
from yoyu.guard import AuditLog, BackendTarget, Guard, GuardPolicy
from yoyu.testing.tiny_models import write_tiny_model

MIB = 1024**2


@pytest.mark.slow
def test_abort_unloads_the_model_and_stops_its_server(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    model = write_tiny_model(tmp_path / "tiny.gguf")
    backend = LlamaCppServerBackend(
        engine=python_engine(),
        log_dir=tmp_path / "logs",
        start_timeout_s=60,
        stop_grace_s=5,
        timeouts=HttpTimeouts(connect_s=2, read_s=20),
    )
    try:
        loaded = backend.load(ModelRef("tiny", model.path), {"n_ctx": 256, "seed": 1})
        assert loaded.pid is not None
        server = psutil.Process(loaded.pid)
        policy = GuardPolicy(budget_bytes=1024 * MIB, grace_s=5.0)
        with Guard(BackendTarget(backend), policy, audit=AuditLog(tmp_path / "g.jsonl")) as guard:
            hog = start_hog(400, "--limit", "704")
            hog.read_until_taken(704 * MIB)
            server.wait(timeout=15)  # the unload stops the server
        assert backend.loaded_models() == []
        steps = [record.kind for record in guard.actions if record.kind != "warn"]
        assert steps == ["unload"]
        assert guard.stopped_target
        assert hog.process.poll() is None  # not in the guarded tree: never signalled
    finally:
        backend.close()
