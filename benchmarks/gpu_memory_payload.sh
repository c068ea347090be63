#!/usr/bin/env bash
# Assemble what benchmarks/gpu_memory.py needs on a GPU machine with no network, in one
# folder to carry there (the device tool's `carry`): this checkout's src/ and the benchmark,
# the wheels yoyu's import path lacks on that image (gguf; pydantic and its parts, which
# `yoyu machine` imports), and llama-cpp-python's vendored llama.cpp tree without docs,
# models, tests and the other GPU backends (176 MB -> about 6 MB as tar.xz).
# Usage: bash benchmarks/gpu_memory_payload.sh DEST   (e.g. /work/main/.device)
set -euo pipefail
DEST=${1:?usage: gpu_memory_payload.sh DEST}
HERE=$(cd "$(dirname "$0")/.." && pwd)
V=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
TREE=${LLAMA_CPP_TREE:-$HOME/.local/share/yoyu/engines/llama-cpp-python-$V-cpu+rpc/src/llama_cpp_python-$V/vendor/llama.cpp}
[ -f "$TREE/CMakeLists.txt" ] || { echo "no llama.cpp tree at $TREE: run yoyu engine install first" >&2; exit 2; }
rm -rf "$DEST" && mkdir -p "$DEST/whl" "$DEST/benchmarks"
cp -r "$HERE/src" "$DEST/src" && find "$DEST/src" -name __pycache__ -prune -exec rm -rf {} +
cp "$HERE/benchmarks/gpu_memory.py" "$DEST/benchmarks/"
cp "$HERE/benchmarks/gpu_memory_device.sh" "$DEST/run.sh"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$DEST/whl" gguf==0.19.0 pydantic==2.14.4 \
  pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
WORK=$(mktemp -d)
cp -a "$TREE" "$WORK/llama.cpp"
(cd "$WORK/llama.cpp" && rm -rf docs models media benches tests gguf-py conversion examples pocs \
  .github .devops ci grammars prompts requirements requirements.txt)
(cd "$WORK/llama.cpp/ggml/src" && rm -rf ggml-cann ggml-et ggml-hexagon ggml-metal ggml-musa \
  ggml-hip ggml-opencl ggml-openvino ggml-sycl ggml-virtgpu ggml-vulkan ggml-webgpu ggml-zdnn ggml-zendnn)
tar -cJf "$DEST/llama.cpp.tar.xz" -C "$WORK" llama.cpp
rm -rf "$WORK"
du -sh "$DEST"
