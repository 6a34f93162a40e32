#!/usr/bin/env bash
# The GPU checks of a lent NVIDIA machine, in one call of under 10 minutes:
#
#   bash bench/gpu_check.sh OUT_DIR        # OUT_DIR gets gpu_check.log and the JSON of each step
#
# 1. install the project as README.md says (pip install -e ".[dev,nvml]"); a machine without a
#    package index falls back to the packages it has (--system-site-packages, --no-deps) and says so;
# 2. the CUDA tests (pytest -k cuda);
# 3. CUDA against the numba kernels at P = 1 and 16 (bench/cuda_equivalence.py), and the compiled
#    steps (backend torch-compile: fused kernels, CUDA graphs) at P = 16;
# 4. launches per time step, eager against compiled (bench/step_launches.py, P = 64);
#    bench/throughput.py on CUDA, tinysnn 400 neurons, P = 1, 16, 64, 256 eager and P = 64
#    compiled, training and inference;
# 5. one short study trial on CUDA with the NVML meter as its energy objective (trial attributes
#    energy_meter, energy_is_estimate, idle_power_w, energy_*).
# Each step runs even when an earlier one failed; the log says which failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="$(mkdir -p "${1:-bench/out/gpu}" && cd "${1:-bench/out/gpu}" && pwd)"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
step() { echo "== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
failed=()
run() { local name="$1"; shift; "$@" 2>&1 | tee -a "$LOG"; local code=${PIPESTATUS[0]}; [ "$code" -eq 0 ] || failed+=("$name (exit $code)"); }

step "machine"
run nvidia-smi nvidia-smi --query-gpu=name,memory.total,driver_version,power.draw --format=csv
run git git log -1 --format="revision %h %cd"

step "install"
VENV=/tmp/tinysnn-gpu-venv
python3 -m venv --system-site-packages "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! pip install --quiet -e ".[dev,nvml]" >>"$LOG" 2>&1; then
  echo "no package index: installing with --no-deps over the machine's packages" | tee -a "$LOG"
  run install pip install --quiet --no-deps --no-build-isolation -e .
fi
run versions python -c "import torch, numba, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'numba', numba.__version__, \
'optuna', optuna.__version__)"

step "CUDA tests"
run cuda-tests python -m pytest -q -rs -k cuda tests

step "CUDA against numba, P = 1 and 16"
run equivalence python bench/cuda_equivalence.py --populations 1,16 --samples 100 --json "$OUT/cuda_equivalence.json"
run equivalence-compiled python bench/cuda_equivalence.py --backend torch-compile --populations 16 --samples 30 \
  --json "$OUT/cuda_equivalence_compiled.json"

step "launches per step on CUDA, eager and compiled, P = 64"
run launches python bench/step_launches.py --device cuda --population 64 --json "$OUT/step_launches_cuda.json"

step "throughput on CUDA, tinysnn N = 400, P = 1, 16, 64, 256"
run throughput python bench/throughput.py --devices cuda --variants tinysnn --neurons 400 \
  --populations 1,16,64,256 --no-bindsnet --timeout 240 --json "$OUT/throughput_cuda.json"
run throughput-compiled python bench/throughput.py --devices cuda --cuda-backend torch-compile --variants tinysnn \
  --neurons 400 --populations 64 --no-bindsnet --timeout 240 --json "$OUT/throughput_cuda_compiled.json"

step "one study trial on CUDA with the NVML meter"
STUDY="$(mktemp -d)"
cat >"$STUDY/spec.toml" <<'EOF'
[study]
name = "gpu-check"
trials = 2
population = 2
device = "cuda"
[data]
dataset = "digits"
train_samples = 1437
test_samples = 360
[encoding]
time_steps = 250
[space]
n_neurons = 100
quantize = ["fp32", "qW"]
[space.bits.weights]
int = 1
frac = { low = 7, high = 7 }
[objectives]
energy = "meter"
meter = "nvml"
[constraints]
min_accuracy = 0
EOF
run study bash -c "cd '$STUDY' && tinysnn-search run spec.toml --no-progress"
run study-attrs python - "$STUDY" "$OUT/study_trial.json" <<'EOF'
import json, sys, warnings
import optuna
warnings.simplefilter("ignore")
folder, out = sys.argv[1], sys.argv[2]
study = optuna.load_study(study_name="gpu-check", storage=f"sqlite:///{folder}/runs/gpu-check.db")
keys = ("energy_meter", "energy_is_estimate", "idle_power_w", "energy_train_j", "energy_infer_j_per_sample",
        "energy_share", "energy_meter_note", "device", "backend", "train_samples_per_s", "infer_samples_per_s")
rows = [{"trial": t.number, "state": t.state.name, "values": t.values,
         **{k: t.user_attrs.get(k) for k in keys}} for t in study.trials]
json.dump(rows, open(out, "w"), indent=2)
print(json.dumps(rows, indent=2))
EOF

step "done"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" | tee -a "$LOG"
  exit 1
fi
echo "all steps passed" | tee -a "$LOG"
