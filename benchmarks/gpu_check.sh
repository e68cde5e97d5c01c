#!/usr/bin/env bash
# The first thing to run on a CUDA machine: checks the GPU code paths that the CPU never takes, and
# measures them, in under 8 minutes, then prints one table (also written as markdown to $OUT):
#
#   (a) the CUDA-only tests: pytest -m cuda tests/
#   (b) the training step at GPT-2 small (12 layers, 768 wide, context 1024) in bf16, with flash
#       attention and torch.compile, MFU against the GPU's data-sheet peak (benchmarks/bench_train.py)
#   (c) the gpu preset's pretraining for $STEPS steps: tokens/s, MFU, loss (its data and tokenizer
#       are built on the CPU in the background while (a) and (b) run)
#   (d) the same with two processes, torchrun --nproc_per_node=2, when there are two GPUs
#
# Each part runs under `timeout`; a part that fails or runs out of time is reported in the table and
# the others still run. Without a CUDA GPU it says so in one line and exits 0.
#
#   bash benchmarks/gpu_check.sh                       # from the repository root
#   PY=/path/to/python OUT=/tmp/gpu.md bash benchmarks/gpu_check.sh
#   GPU_CHECK_HOME=~/minilm-gpu bash benchmarks/gpu_check.sh   # keep (and reuse) the gpu preset's data
#
# PY: the course's Python (default .venv/bin/python); OUT: the markdown table (default
# benchmarks/gpu_check.md); STEPS, DDP_STEPS: optimizer steps in (c) and (d); GPU_CHECK_HOME: the
# MINILM_HOME for (c) and (d) (default: a temporary folder, removed at the end). Relative paths are
# taken from the repository root. Logs of every part stay in a temporary folder named at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu_check.md}
STEPS=${STEPS:-300}
DDP_STEPS=${DDP_STEPS:-20}

if ! command -v "$PY" > /dev/null; then
    echo "gpu_check: no Python at '$PY'; set PY to the course's virtual environment's python" >&2
    exit 2
fi

probe=$("$PY" -c '
import torch
if torch.cuda.is_available():
    print(torch.cuda.device_count())
else:
    cuda = torch.version.cuda
    build = f"CUDA {cuda}, but no device is visible" if cuda else "built without CUDA"
    print(0, f"PyTorch {torch.__version__}, {build}")
')
read -r gpus why <<< "$probe"
if [ "$gpus" -eq 0 ]; then
    echo "gpu_check: no CUDA GPU found ($why); nothing to check."
    exit 0
fi

# --- bookkeeping ---------------------------------------------------------------------------------

logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
export MINILM_HOME=${GPU_CHECK_HOME:-$logs/home}
export PYTHONUNBUFFERED=1
rows=()
failures=0
started=$SECONDS
prep_pid=

cleanup() {
    if [ -n "$prep_pid" ] && kill "$prep_pid" 2> /dev/null; then  # still preparing: stop it (timeout passes it on)
        wait "$prep_pid" 2> /dev/null || true
    fi
    if [ -z "${GPU_CHECK_HOME:-}" ]; then
        rm -rf "$logs/home"  # gigabytes of checkpoints; the logs stay
    fi
}
trap cleanup EXIT

# row CHECK RESULT SECONDS: one line of the final table
row() {
    rows+=("| $1 | $2 | $3 |")
}

trim() {
    sed -E 's/^ +//; s/ +$//' <<< "$1"
}

# run LIMIT LOG COMMAND...: COMMAND under `timeout`, its output shown and kept in LOG; sets rc and took
run() {
    local limit=$1 log=$2
    shift 2
    local start=$SECONDS
    echo
    echo "=== $* (at most ${limit} s)"
    rc=0
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$log" || rc=$?
    took=$((SECONDS - start))
    outcome=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        outcome="**timed out** after ${limit} s (log: $log)"
    elif [ "$rc" -ne 0 ]; then
        outcome="**failed**, exit status $rc (log: $log)"
    fi
    if [ "$rc" -ne 0 ]; then
        failures=$((failures + 1))
    fi
}

# pretrain_summary: the figures of the gpu preset's last pretraining run, from its manifest and log
pretrain_summary() {
    "$PY" - <<'EOF'
from minilm.cache import load_artifact, run_dir
from minilm.train.loop import LOG, read_log

artifact = load_artifact(run_dir("pretrain", "gpu"))
s, compiled = artifact.summary, artifact.manifest["config"]["compile"]
first, *_, last = [r for r in read_log(artifact.path / LOG) if r["kind"] == "train"]
print(f"{s['parameters'] / 1e6:.1f}M parameters on {s['world_size']} x {s['device']}, {s['precision']}, "
      f"{'compiled' if compiled else 'eager'}: "
      f"{s['tokens_per_s']:,.0f} tokens/s (median over log intervals), MFU {s['mfu']:.1%} of "
      f"{s['world_size']} x {s['peak_flops'] / 1e12:.0f} TFLOP/s ({s['peak_source']}); train loss "
      f"{first['loss']:.2f} at step {first['step']} -> {last['loss']:.2f} at step {last['step']}, "
      f"validation {s['val_loss']:.3f}")
EOF
}

# The gpu preset's data and tokenizer take minutes of CPU: build them while the GPU runs (a) and (b).
PREP_LIMIT=270
timeout --kill-after=15 "$PREP_LIMIT" "$PY" -m minilm tokenizer --preset gpu > "$logs/c_prepare.log" 2>&1 &
prep_pid=$!

machine=$("$PY" -c '
import torch
name, count = torch.cuda.get_device_name(), torch.cuda.device_count()
print(f"{name} x {count}, PyTorch {torch.__version__} (CUDA {torch.version.cuda})")
')
commit=$(git rev-parse --short HEAD 2> /dev/null || echo "unknown")

# --- (a) the CUDA-only tests ---------------------------------------------------------------------

run 90 "$logs/a_tests.log" "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/
counts=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)|no tests ran' "$logs/a_tests.log" | tail -n 1 |
    sed -E 's/=//g; s/, [0-9]+ deselected//; s/ in [0-9.]+s.*//; s/^ +//; s/ +$//' || true)
failed=$(grep -E '^(FAILED|ERROR) ' "$logs/a_tests.log" | awk '{print $2}' | sed 's/.*:://' | paste -sd ' ' - || true)
result="${outcome:+$outcome: }${counts:-no summary}${failed:+; failed: $failed}"
row "(a) CUDA-only tests (\`pytest -m cuda tests/\`)" "$result" "$took"

# --- (b) GPT-2 small: bf16, flash attention, torch.compile -----------------------------------------

run 140 "$logs/b_bench.log" "$PY" benchmarks/bench_train.py --no-cpu --repeats 5 --gpu-steps 10
peak=$(grep -oE 'peak [0-9]+ TFLOP/s \([^)]*\)' "$logs/b_bench.log" | head -n 1 | sed 's/^peak //' || true)
attention=$(grep -oE "minilm's attention: .*" "$logs/b_bench.log" | sed "s/minilm's attention: //" | head -n 1 || true)
sides=$(grep -E '^\| (minilm|HF) ' "$logs/b_bench.log" || true)
if [ -n "$sides" ] && [ "$rc" -eq 0 ]; then
    first=1
    while IFS='|' read -r _ side seconds tokens mfu _; do
        side=$(trim "$side")
        result="$(trim "$tokens") tokens/s, $(trim "$seconds") s/step, MFU $(trim "$mfu") of $peak"
        if [ "$first" -eq 1 ]; then
            row "(b) GPT-2 small training step, context 1024, $side" "$result; attention: $attention" "$took"
            first=0
        else
            row "(b) GPT-2 small training step, context 1024, $side" "$result" ""
        fi
    done <<< "$sides"
else
    result=${outcome:-no table in the output (log: $logs/b_bench.log)}
    row "(b) GPT-2 small training step, context 1024" "$result" "$took"
fi

# --- (c) the gpu preset's pretraining -------------------------------------------------------------

prep_rc=0
wait "$prep_pid" || prep_rc=$?
prep_pid=
prepared=$(grep -oE 'done in [0-9.]+ s' "$logs/c_prepare.log" | grep -oE '[0-9.]+' || true)
if [ "$prep_rc" -ne 0 ]; then
    failures=$((failures + 1))
    if [ "$prep_rc" -eq 124 ] || [ "$prep_rc" -eq 137 ]; then
        problem="building its data and tokenizer timed out after ${PREP_LIMIT} s"
    else
        problem="building its data and tokenizer failed, exit status $prep_rc"
    fi
    result="**not run**: $problem (log: $logs/c_prepare.log). Build them once with"
    result+=" \`MINILM_HOME=DIR python -m minilm tokenizer --preset gpu\`, then rerun with GPU_CHECK_HOME=DIR"
    row "(c) gpu preset pretraining, $STEPS steps" "$result" ""
    row "(d) torchrun, 2 processes" "not run: no data (see (c))" ""
else
    run 115 "$logs/c_pretrain.log" "$PY" -m minilm pretrain --preset gpu --force --set max_steps="$STEPS" \
        --set warmup_steps=$((STEPS / 10)) --set eval_every="$STEPS" --set sample_every="$STEPS" \
        --set checkpoint_every="$STEPS" --set final_samples=4
    if [ "$rc" -eq 0 ]; then
        result=$(pretrain_summary || echo "no summary (the run's manifest or log is unreadable)")
    else
        result=$outcome
    fi
    row "(c) gpu preset pretraining, $STEPS steps (\`python -m minilm pretrain --preset gpu\`)" "$result" \
        "$took (+ ${prepared:-?} s building its data and tokenizer on the CPU, during (a) and (b))"

    # --- (d) two processes ------------------------------------------------------------------------
    if [ "$gpus" -ge 2 ]; then
        run 65 "$logs/d_torchrun.log" "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 \
            -m minilm pretrain --preset gpu --force --set max_steps="$DDP_STEPS" --set warmup_steps=2 \
            --set compile=False --set log_every=5 --set eval_every="$DDP_STEPS" --set sample_every="$DDP_STEPS" \
            --set checkpoint_every="$DDP_STEPS" --set final_samples=0
        if [ "$rc" -eq 0 ]; then
            result=$(pretrain_summary || echo "no summary (the run's manifest or log is unreadable)")
        else
            result=$outcome
        fi
        row "(d) \`torchrun --nproc_per_node=2 -m minilm pretrain\`, $DDP_STEPS steps" "$result" "$took"
    else
        row "(d) \`torchrun --nproc_per_node=2 -m minilm pretrain\`" \
            "skipped: this machine has $gpus CUDA GPU, two are needed" ""
    fi
fi

# --- the table ------------------------------------------------------------------------------------

mkdir -p "$(dirname "$OUT")"
{
    echo "### GPU check ($(date -u +%Y-%m-%d), commit $commit)"
    echo
    echo "$machine; \`bash benchmarks/gpu_check.sh\` in $((SECONDS - started)) s."
    echo
    echo "| check | result | seconds |"
    echo "| --- | --- | ---: |"
    printf '%s\n' "${rows[@]}"
} > "$OUT"
echo
cat "$OUT"
echo
echo "(table written to $OUT; the logs of every part are in $logs)"
if [ "$failures" -gt 0 ]; then
    echo "gpu_check: $failures part(s) failed or ran out of time" >&2
    exit 1
fi
