#!/usr/bin/env bash
# The benchmark suite on one accelerator in about 6 minutes (issue 5; about 375 s on an H100): the 18-million-fit target in float64
# and float32, throughput curves up to 1e6 fits, Epoch's recipe (with the scipy bootstrap on the host CPU)
# and NUTS. Each step writes its own folder under OUT, so a step that times out loses only itself.
#
#   bash benchmarks/gpu.sh OUT [RESAMPLES]     # RESAMPLES of the target (default 4000; 2 for a smoke test)
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUT [RESAMPLES]}
resamples=${2:-4000}
small=$([ "$resamples" -lt 100 ] && echo 1 || echo 0)
max_fits=$([ "$small" = 1 ] && echo 1000 || echo 1000000)
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import jax, numpyro; print('jax', jax.__version__, 'numpyro', numpyro.__version__, jax.devices())"
step() {  # step NAME TIMEOUT SUITES [DTYPE] [OPTIONS as Python dict]
  local t=$SECONDS
  timeout "$2" $py - "$out/$1" "$3" "${4:-float64}" "${5:-{\}}" "$small" <<'PY'
import ast, sys
from atlas_jax.bench import run_suites
out, suites, dtype, options, small = sys.argv[1:]
run_suites(suites.split(","), out, dtype=dtype, quick=small == "1", options=ast.literal_eval(options))
PY
  echo "[gpu.sh] $1: exit $? after $((SECONDS - t)) s"
}
step targets64 110 targets float64 "{'targets': {'resamples': $resamples}}"
step targets32 70 targets float32 "{'targets': {'resamples': $resamples}}"
step targetsmixed 70 targets mixed "{'targets': {'resamples': $resamples}}"
step throughput64 100 throughput float64 "{'throughput': {'max_fits': $max_fits, 'run_counts': (30, 300, 3000)}}"
step throughput32 100 throughput float32 "{'throughput': {'max_fits': $max_fits, 'run_counts': (30, 300, 3000)}}"
step epoch 60 epoch float64 "{'epoch': {'reference': 'bootstrap'}}"
step nuts 40 nuts float64 "{'nuts': {'reference': False, 'hierarchical': False}}"
echo "[gpu.sh] total $SECONDS s"
