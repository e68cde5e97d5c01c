#!/usr/bin/env bash
# The first thing to run on a CUDA machine: checks the GPU code paths that the CPU never takes, and
# measures them, in under 10 minutes, then prints one table (also written as markdown to $OUT) and
# writes the figures notebook 05 shows on a machine without a GPU to $REFERENCE:
#
#   (a) the CUDA-only tests: pytest -m cuda tests/
#   (b) the training step at GPT-2 small (12 layers, 768 wide, context 1024) in bf16, with flash
#       attention and torch.compile, MFU against the GPU's data-sheet peak (benchmarks/bench_train.py)
#   (c) the gpu preset's pretraining for $STEPS steps: tokens/s, MFU, loss (its data and tokenizer
#       are built on the CPU in the background while (a), (b) and (e) run)
#   (d) the same with two processes, torchrun --nproc_per_node=2, when there are two GPUs
#   (e) the figures of notebook 05's GPU cells: a matmul queued and computed (section 1), float32
#       matmuls with TF32 off and on, the training step of the gpu preset's model in fp32, bf16 and
#       fp16 (section 3), torch.compile against eager (section 4), the MFU of each step (section 5)
#
# Everything but (a) and (c) also goes to $REFERENCE (default docs/gpu_reference.json, committed):
# the GPU, the date, the commit and each figure with the notebook section that shows it. Notebook 05
# shows that table where its GPU cells find no GPU.
#
# Each part runs under `timeout`; a part that fails or runs out of time is reported in the table and
# the others still run. Without a CUDA GPU it says so in one line and exits 0.
#
#   bash benchmarks/gpu_check.sh                       # from the repository root
#   PY=/path/to/python OUT=/tmp/gpu.md bash benchmarks/gpu_check.sh
#   GPU_CHECK_HOME=~/minilm-gpu bash benchmarks/gpu_check.sh   # keep (and reuse) the gpu preset's data
#
# PY: the course's Python (default .venv/bin/python); OUT: the markdown table (default
# benchmarks/gpu_check.md); REFERENCE: the figures as JSON (default docs/gpu_reference.json);
# STEPS, DDP_STEPS: optimizer steps in (c) and (d); GPU_CHECK_HOME: the MINILM_HOME for (c) and (d)
# (default: a temporary folder, removed at the end). Relative paths are taken from the repository
# root. Logs of every part stay in a temporary folder named at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu_check.md}
REFERENCE=${REFERENCE:-docs/gpu_reference.json}
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

# notebook_script SCRIPT: write the Python script of (e) to SCRIPT (a file, so that `timeout` can run it). It
# measures the figures of notebook 05's GPU cells as those cells do and writes them to its argument (a JSON list
# of {section, figure, value}) as each is measured, so that a timeout keeps the ones before it
notebook_script() {
    cat > "$1" <<'EOF'
import json, sys, time

import numpy as np
import torch

from minilm import hardware, presets
from minilm.model import GPT, make_optimizer, mfu
from minilm.train import TrainConfig
from minilm.train.loop import train_step
from minilm.train.objectives import make_batch

device, out = "cuda", sys.argv[1]
figures = []


def figure(section: str, what: str, value: str) -> None:
    figures.append({"section": section, "figure": what, "value": value})
    print(f"section {section}: {what}: {value}", flush=True)
    with open(out, "w", encoding="utf-8") as file:
        json.dump(figures, file, indent=1, ensure_ascii=False)


def wait() -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def set_tf32(on: bool) -> None:
    if device != "cuda":
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # PyTorch >= 2.9
        matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on


# Section 1: Python queues a kernel and goes on; only synchronize waits for the GPU.
set_tf32(False)
a = torch.randn(8192, 8192, device=device)
a @ a
wait()
started = time.perf_counter()
a @ a
queued = time.perf_counter() - started
wait()
done = time.perf_counter() - started
figure("1", "an 8192 x 8192 float32 matmul: the time to queue it (no synchronize)", f"{queued * 1e3:.2f} ms")
figure("1", "the same matmul until the GPU has computed it (torch.cuda.synchronize)", f"{done * 1e3:.2f} ms")

# Section 3: TF32, then the training step of the preset's model in each format.
a = torch.randn(4096, 4096, device=device)
for label, on in (("TF32 off", False), ("TF32 on", True)):
    set_tf32(on)
    a @ a
    wait()
    started = time.perf_counter()
    for _ in range(20):
        a @ a
    wait()
    figure("3", f"4096 x 4096 float32 matmuls, {label}", f"{20 * 2 * 4096**3 / (time.perf_counter() - started) / 1e12:.1f} TFLOP/s")
del a
hardware.allow_tf32(device)  # as the training loop does

config = TrainConfig.from_preset("gpu")
model_config = config.model_config(presets.PRESETS["tokenizer"]["gpu"]["vocab_size"])
tokens = np.random.default_rng(0).integers(0, model_config.vocab_size, (config.batch_size, config.context + 1))
batch = make_batch(tokens[:, :-1], tokens[:, 1:], "causal")  # the step's speed does not depend on which tokens
tokens_per_step = config.batch_size * config.context
shape = f"{config.n_layer} blocks x {config.n_embd} wide, {config.batch_size} x {config.context} tokens"
for precision in ("fp32", "bf16", "fp16"):
    try:
        model = GPT(model_config, seed=0).to(device)
        optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
        scaler = hardware.grad_scaler(device, precision)
        times = []
        for step in range(2 + 5):  # two warm-up steps, then the fastest of five, as the notebook times them
            started = time.perf_counter()
            loss, _ = train_step(model, optimizer, scaler, [batch], config.lr, config.grad_clip, device, precision)
            loss.item()
            times.append(time.perf_counter() - started)
        seconds = min(times[2:])
        peak = hardware.peak_flops(device, precision)
        label = precision + (" (matmuls in TF32)" if precision == "fp32" else "")
        figure("3", f"training step of the gpu preset's model ({shape}), {label}",
               f"{seconds * 1e3:.0f} ms, {tokens_per_step / seconds:,.0f} tokens/s")
        figure("5", f"MFU of that step, {label}",
               f"{mfu(model_config, tokens_per_step / seconds, peak.flops, config.context):.1%} of "
               f"{peak.flops / 1e12:,.0f} TFLOP/s ({peak.source})")
    except Exception as error:  # bf16 on a GPU without it, or out of memory: say so, go on
        figure("3", f"training step of the gpu preset's model, {precision}", f"failed: {type(error).__name__}: {error}"[:200])
    finally:
        model = optimizer = None
        if device == "cuda":
            torch.cuda.empty_cache()

# Section 4: torch.compile against eager, forward and backward in the format the GPU trains in.
precision = hardware.choose_precision(device)
model = GPT(model_config, seed=0).to(device)
compiled = torch.compile(model)
inputs, targets = (t.to(device) for t in batch)


def seconds_per_step(module, steps: int = 5) -> float:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        with hardware.autocast(device, precision):
            _, loss = module(inputs, targets)
        loss.backward()
        wait()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


started = time.perf_counter()
seconds_per_step(compiled, steps=1)
figure("4", "torch.compile of the gpu preset's model: the first call, which compiles", f"{time.perf_counter() - started:.0f} s")
eager, fast = seconds_per_step(model), seconds_per_step(compiled)
figure("4", f"forward + backward in {precision}, eager", f"{eager * 1e3:.1f} ms")
figure("4", f"forward + backward in {precision}, compiled", f"{fast * 1e3:.1f} ms (speed-up over eager: {eager / fast:.2f}x)")
EOF
}

# write_reference: $REFERENCE from (e)'s figures and the rows of (b) and (d), with the GPU, the date and the commit
write_reference() {
    printf '%s\n' "${rows[@]}" > "$logs/rows.md"
    "$PY" - "$REFERENCE" "$logs/e_figures.json" "$logs/rows.md" "$commit" <<'EOF'
import datetime, json, sys
from pathlib import Path

import torch

out, figures_file, rows_file, commit = sys.argv[1:]
figures = json.loads(Path(figures_file).read_text(encoding="utf-8")) if Path(figures_file).exists() else []
sections = {"(b)": "5", "(d)": "6"}  # GPT-2 small's step and MFU go with section 5, torchrun with section 6
for line in Path(rows_file).read_text(encoding="utf-8").splitlines():
    check, result = (cell.strip() for cell in line.strip().strip("|").split("|")[:2])
    if check[:3] in sections:
        figures.append({"section": sections[check[:3]], "figure": check[4:], "value": result})
reference = {
    "measured": True,
    "gpu": f"{torch.cuda.get_device_name()} x {torch.cuda.device_count()}",
    "date": datetime.date.today().isoformat(),
    "commit": commit,
    "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
    "note": "measured by `bash benchmarks/gpu_check.sh`",
    "figures": figures,
}
Path(out).parent.mkdir(parents=True, exist_ok=True)
Path(out).write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"{len(figures)} figures written to {out}")
EOF
}

# The gpu preset's data and tokenizer take minutes of CPU: build them while the GPU runs (a), (b) and (e).
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

# --- (e) the figures of notebook 05's GPU cells (while the gpu preset's data is still being built) -------

notebook_script "$logs/e_notebook05.py"
run 120 "$logs/e_notebook05.log" "$PY" "$logs/e_notebook05.py" "$logs/e_figures.json"
measured=$(grep -c '^section ' "$logs/e_notebook05.log" || true)
row "(e) notebook 05's GPU cells: matmul timing, TF32, step by precision, compile, MFU" \
    "${outcome:+$outcome: }$measured figures (in $REFERENCE)" "$took"

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
        "$took (+ ${prepared:-?} s building its data and tokenizer on the CPU, during (a), (b) and (e))"

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
write_reference || { echo "gpu_check: could not write $REFERENCE" >&2; failures=$((failures + 1)); }
echo "(table written to $OUT; the logs of every part are in $logs)"
if [ "$failures" -gt 0 ]; then
    echo "gpu_check: $failures part(s) failed or ran out of time" >&2
    exit 1
fi
