#!/usr/bin/env bash
# One device call: wheels, the trimmed llama.cpp tree, a CUDA build through yoyu's installer,
# then benchmarks/gpu_memory.py. Everything lands in $OUT as it comes (log.txt, gpu_memory.*).
# Usage (from the repository root, .device carried): bash .device/run.sh [--quick]
# .device is made by benchmarks/gpu_memory_payload.sh (this file is copied there as run.sh).
set -u
T0=$(date +%s)
D=$PWD/.device
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-540}   # the whole script; the call's timeout_s must be above it
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONUNBUFFERED=1 CUDAARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
stamp "host: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(python3 --version)"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
nvcc --version | tail -2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$D"/whl/*.whl || exit 3
export PYTHONPATH=$D/src:/tmp/site
stamp "wheels installed"
# cuBLAS: the toolkit's, else the pip package's (symlinked where cmake's find_library looks)
if [ ! -e /usr/local/cuda/include/cublas_v2.h ]; then
  DIRS="$(python3 -c 'import site; print(" ".join(site.getsitepackages()))') /usr/local /opt"
  H=$(find $DIRS -name cublas_v2.h -path '*nvidia*' 2>/dev/null | head -1)
  L=$(find $DIRS -name 'libcublas.so.*' -path '*nvidia*' 2>/dev/null | head -1)
  stamp "no cublas in /usr/local/cuda; pip one: $H $L"
  if [ -n "$H" ] && [ -n "$L" ]; then
    mkdir -p /tmp/cublas/lib
    for f in $(dirname "$L")/lib*.so.*; do b=$(basename "$f"); ln -sf "$f" /tmp/cublas/lib/"${b%%.so.*}.so"; done
    export CMAKE_LIBRARY_PATH=/tmp/cublas/lib CPATH=$(dirname "$H") CUDAFLAGS="-I$(dirname "$H")"
    export LD_LIBRARY_PATH=$(dirname "$L"):${LD_LIBRARY_PATH:-}
  fi
fi
ENG=/tmp/engines; V=0.3.36
SRC=$ENG/llama-cpp-python-$V-cuda/src/llama_cpp_python-$V/vendor
mkdir -p "$SRC" && tar -xJf "$D/llama.cpp.tar.xz" -C "$SRC" || exit 4
stamp "llama.cpp tree unpacked"
LEFT=$(( BUDGET_S - ($(date +%s) - T0) ))
# LLAMA_SERVER=PATH: a server already built (then no build; with --cpu, the local dry run)
ENGINE_ARGS=(--build-cuda "$ENG" --engine-version $V)
[ -n "${LLAMA_SERVER:-}" ] && ENGINE_ARGS=(--llama-server "$LLAMA_SERVER")
python3 "$D/benchmarks/gpu_memory.py" --out "$OUT" --models /tmp/gpu-models \
  "${ENGINE_ARGS[@]}" --deadline-s "$LEFT" "$@"
RC=$?
stamp "benchmark exit $RC"
for f in "$ENG"/*/build.log; do [ -f "$f" ] && tail -c 400000 "$f" > "$OUT/build.log"; done
[ -d /tmp/gpu-models/logs ] && tar -czf "$OUT/server-logs.tgz" -C /tmp/gpu-models logs
exit $RC
