# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Scaling up: devices, number formats, compilation, MFU, many processes and sharded optimizers
#
# Notebook 04 trained our model in one process, in float32 or bfloat16, on whatever this machine has. Real language
# models are trained on thousands of GPUs, in 16-bit numbers, with compiled kernels, and every percent of the
# hardware's speed that the run leaves unused costs money. This notebook is stage 5 of the course: it looks at what
# changes between a laptop run and a large one, measures each piece on this machine, and runs our training loop in
# several processes for real.
#
# **You will build**, in the exercises, three pieces of a large run by hand: the dynamic loss scaling that lets float16
# train, data parallelism's averaged gradients, and **ZeRO-1**, data parallelism with the optimizer's state sharded
# across the processes, run in two real processes and checked against PyTorch's DDP. The package already has the rest
# (`minilm.train.distributed`, `minilm.train.loop`): you will measure it, break it on purpose, and launch it with
# `torchrun`.
#
# **You will learn**
# * how the code picks a device (CUDA GPU, Apple GPU, CPU), and what changes on a GPU;
# * what float32, bfloat16, float16 (and TF32, FP8) can and cannot represent, and what breaks in each: an activation
#   that overflows float16, small gradients that vanish in it and how *loss scaling* rescues them, a sum that stops
#   growing in bfloat16;
# * what autocast runs in 16 bits and what it keeps in float32, and how fast a training step is in each format here;
# * what `torch.compile` does (graph capture, then fused kernels), and when it pays;
# * how to count the FLOPs of a step, measure the machine's peak, and compute the **MFU** of a run;
# * how data parallelism works (disjoint data, gradients averaged by an all-reduce, identical copies, `no_sync` for
#   gradient accumulation), by running two processes with `torchrun` and checking that they train as one process on
#   their two batches put together, to float32 rounding; and how the same command scales to many machines;
# * what to do when the model no longer fits on one GPU: ZeRO and FSDP shard the optimizer state, the gradients and
#   the weights; tensor and pipeline parallelism split the model itself; and which engines do each.
#
# This notebook runs on a CPU. Where a cell needs a CUDA GPU and finds none, it shows instead the figures that
# `benchmarks/gpu_check.sh` measured on a real GPU (`docs/gpu_reference.json`, with the GPU and the date), once such a
# run has filled them in.
#
# | preset | what runs here | this notebook takes (measured, 2 CPU cores) |
# |---|---|---|
# | `ci` | step times of the 2-block, 64-wide model; torchrun: 2 processes × 8 steps; ZeRO-1 in 2 processes | under 2 minutes |
# | `cpu` | step times of the preset's model (4 blocks × 128 wide); torchrun: 2 processes × 8 steps; ZeRO-1 in 2 processes | under 3 minutes |
# | `gpu` | the same on one GPU, plus TF32, CUDA timing and `torch.compile` | not measured (no GPU yet) |
#
# The times assume that stages 1 and 2 are built (notebooks 01 and 02); if not, the notebook builds them first. They
# were measured on 2 CPU cores shared with other work (the `cpu` preset: 79 s to the end of section 8, then a few
# seconds of exercises); the last cell before the exercises prints how long it took. The
# model trained by `torchrun` here is the `ci` size in every preset: the point is to see two processes agree, not to
# train a good model.

# %%
import contextlib, copy, inspect, json, os, platform, shutil, socket, subprocess, sys, time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.nn.parallel import DistributedDataParallel

import minilm
from minilm import hardware, presets
from minilm.cache import home, run_dir
from minilm.display import markdown_table, show
from minilm.model import (GPT, GPTConfig, config_named, count_parameters, flops_per_token, make_optimizer, mfu,
                          parameter_counts)
from minilm.model.accounting import matmul_parameters
from minilm.tokenizer.shards import TokenShards
from minilm.tokenizer.stage import open_shards, run_tokenizer_stage
from minilm.train import TrainConfig
from minilm.train import checkpoint as ckpt
from minilm.train.loop import loss_weights, step_windows, train_step
from minilm.train.objectives import make_batch
from minilm.train.schedule import learning_rate

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
notebook_started = time.perf_counter()
COURSE = Path(minilm.__file__).resolve().parents[1]
PRESET = presets.preset_name()
config = TrainConfig.from_preset(PRESET)
print(f"preset {PRESET!r}: a model of {config.n_layer} blocks x {config.n_embd} wide, context {config.context}, "
      f"{config.batch_size} windows per step; torch {torch.__version__}")


# %% [markdown]
# Figures are shown by `minilm.display`; helpers show tables with numbers to three figures, paths relative to the
# course folder, and, in the cells that need a GPU, the figures measured on one:

# %%
def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def show_table(rows: list[dict], columns: list[str] | None = None) -> None:
    # A list of dicts as a markdown table, its numbers to three significant figures.
    display(Markdown(markdown_table(rows, columns, cell=_cell)))


def course_path(path) -> str:
    # Paths are shown relative to the course folder.
    path = Path(path).resolve()
    return path.relative_to(COURSE).as_posix() if path.is_relative_to(COURSE) else path.name


GPU_REFERENCE = json.loads((COURSE / "docs" / "gpu_reference.json").read_text(encoding="utf-8"))


def show_gpu_reference(section: str) -> None:
    # Where a cell needs a CUDA GPU and this machine has none: the figures benchmarks/gpu_check.sh measured for this
    # section on a real one (docs/gpu_reference.json), or, until a GPU has run it, a line that says there are none.
    if not GPU_REFERENCE["measured"]:
        print(GPU_REFERENCE["note"] if section == "1" else "(no GPU reference figures yet: see section 1)")
        return
    print(f"measured on {GPU_REFERENCE['gpu']} on {GPU_REFERENCE['date']} (PyTorch {GPU_REFERENCE['torch']}, "
          f"commit {GPU_REFERENCE['commit']}) by benchmarks/gpu_check.sh:")
    show_table([{"on a GPU": figure["figure"], "measured": figure["value"]}
                for figure in GPU_REFERENCE["figures"] if figure["section"] == section])


def show_source(obj, lines: slice | None = None) -> None:
    # The source of a function of the package, as a code block (optionally only some of its lines).
    source = inspect.getsource(obj)
    if lines is not None:
        source = "\n".join(source.splitlines()[lines])
    display(Markdown(f"```python\n{source.rstrip()}\n```"))


# %% [markdown]
# ## 1. Devices: where the arithmetic happens
#
# PyTorch runs each operation on the device where its tensors live: the CPU, a CUDA GPU (NVIDIA), or an Apple GPU
# (`mps`). The model and every batch must be on the same device. What does this machine have?

# %%
cuda = torch.cuda.is_available()
mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
device = hardware.pick_device()
rows = [
    {"what": "Python, PyTorch", "this machine": f"{platform.python_version()}, {torch.__version__}"},
    {"what": "CUDA GPUs", "this machine": f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else "none"},
    {"what": "Apple GPU (mps)", "this machine": "yes" if mps else "no"},
    {"what": "CPU threads PyTorch uses", "this machine": torch.get_num_threads()},
    {"what": "bfloat16 in hardware (GPU: Ampere+; CPU: AVX512-BF16 or AMX)", "this machine": "yes" if hardware.bf16_native(device) else "no"},
    {"what": "device chosen: hardware.pick_device()", "this machine": device},
    {"what": "number format chosen: choose_precision(device)", "this machine": hardware.choose_precision(device)},
]
show_table(rows)
show_source(hardware.pick_device)

# %% [markdown]
# The training loop asks `choose_device` once, moves the model there (`model.to(device)`), and moves each batch there
# just before using it. What changes on a GPU:
#
# * **Each process takes its own GPU.** Under `torchrun` (section 6), process `LOCAL_RANK` = 3 on a machine uses
#   `cuda:3`; `start()` calls `torch.cuda.set_device` so that every kernel and every communication of that process
#   goes to its GPU.
# * **Copies overlap with compute.** A batch is copied from the CPU with `.to(device, non_blocking=True)`, which
#   returns at once; the GPU does the copy while it still computes the previous step.
# * **The GPU runs asynchronously.** Python only *queues* kernels; they run later. A timer around a GPU operation
#   measures how long it took to queue it, unless you wait for the GPU first (`torch.cuda.synchronize()`). Our loop
#   reads the loss with `.item()` only when it logs, which waits for the GPU, so the time it reports is true and the
#   GPU is never kept waiting for Python in between.
#
# The cell below shows that trap on a GPU; on a machine without one it says what it would do and shows what it
# measured on a real GPU, if the project has run it on one yet.

# %%
if torch.cuda.is_available():
    a = torch.randn(8192, 8192, device="cuda")
    a @ a  # warm up
    torch.cuda.synchronize()
    started = time.perf_counter()
    b = a @ a
    queued = time.perf_counter() - started
    torch.cuda.synchronize()
    done = time.perf_counter() - started
    print(f"a 8192 x 8192 matmul: {queued * 1e3:.2f} ms to queue, {done * 1e3:.2f} ms to compute "
          f"(timing without synchronize would be off by {done / max(queued, 1e-9):.0f}x)")
    print(f"GPU memory in use: {torch.cuda.memory_allocated() / 2**20:,.0f} MiB "
          f"(peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB)")
else:
    print("no CUDA GPU here: on one, this cell times a large matmul with and without torch.cuda.synchronize() "
          "(without it the time is that of queueing the kernel, often 100x too short) and reports GPU memory\n")
    show_gpu_reference("1")

# %% [markdown]
# ## 2. Number formats: what 16 bits can and cannot hold
#
# A floating-point number is a sign, an **exponent** (which sets its *range*: how large and how small it can be) and
# a **mantissa** (which sets its *precision*: how many digits it keeps). Training in 16 bits instead of 32 halves the
# memory and the bytes moved, and modern hardware multiplies 16-bit numbers many times faster. But there are two ways
# to spend 16 bits:

# %%
# NBVAL_CHECK_OUTPUT
FORMATS = {"float32": (torch.float32, 8, 23), "tf32 (matmuls only)": (None, 8, 10), "bfloat16": (torch.bfloat16, 8, 7),
           "float16": (torch.float16, 5, 10), "float8 e4m3": (torch.float8_e4m3fn, 4, 3), "float8 e5m2": (torch.float8_e5m2, 5, 2)}
print(f"{'format':<20}{'exp':>4}{'mant':>5}{'largest':>11}{'smallest normal':>16}{'smallest':>11}{'step at 1':>11}{'digits':>7}")
for name, (dtype, exponent, mantissa) in FORMATS.items():
    info = torch.finfo(dtype if dtype is not None else torch.float32)
    eps = 2.0**-mantissa
    smallest = info.smallest_normal * 2.0**-mantissa  # subnormals go down to one unit of the last mantissa bit
    print(f"{name:<20}{exponent:>4}{mantissa:>5}{info.max:>11.3g}{info.smallest_normal:>16.3g}{smallest:>11.3g}"
          f"{eps:>11.3g}{-np.log10(eps):>7.1f}")

# %%
fig, ax = plt.subplots(figsize=(7, 2.0))
for row, (name, (_, exponent, mantissa)) in enumerate(FORMATS.items()):
    parts = [("sign", 1, "#888888"), ("exponent", exponent, "#4f81bd"), ("mantissa", mantissa, "#f79646")]
    left = 0
    for label, width, colour in parts:
        ax.barh(row, width, left=left, color=colour, edgecolor="white", label=label if row == 0 else None)
        left += width
    ax.text(left + 0.4, row, f"{left} bits", va="center", fontsize=8)
ax.set_yticks(range(len(FORMATS)), list(FORMATS))
ax.invert_yaxis()
ax.set_xlim(0, 37)
ax.set_xlabel("bits")
ax.legend(ncol=3, fontsize=8, loc="lower right")
show(fig)

# %% [markdown]
# **bfloat16** ("brain float", from Google's TPUs) keeps float32's 8 exponent bits, so it has the same range, and
# gives up precision: 7 mantissa bits, between 2 and 3 decimal digits. **float16** keeps more precision (10 bits) but
# only 5 exponent bits: nothing above 65,504, nothing below 6 × 10⁻⁸. **TF32** is what NVIDIA's tensor cores use for
# float32 matmuls when allowed (section 3): float32's range with float16's precision, inside the matmul only.
# **FP8** (two variants) is what the newest GPUs multiply fastest; it needs a scale per tensor to fit in its range.
#
# ### What breaks: overflow
#
# Numbers inside a transformer are not all near 1. A dot product of two long vectors, a sum of squares inside a norm,
# an `exp` inside a softmax can be large:

# %%
# NBVAL_CHECK_OUTPUT
values = torch.tensor([1.0, 1000.0, 65_504.0, 70_000.0, 1e6, 3e38])
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    print(f"{str(dtype).removeprefix('torch.'):<9} {values.to(dtype).tolist()}")
x = torch.tensor(300.0)
print(f"\na LayerNorm's sum of squares, 300²: float16 {(x.half() ** 2).item()}, bfloat16 {(x.bfloat16() ** 2).item()}")
print(f"a softmax's exp(12):             float16 {torch.tensor(12.0).half().exp().item()}, "
      f"bfloat16 {torch.tensor(12.0).bfloat16().exp().item()}")
scores = torch.tensor([11.0, 12.0, 3.0]).half()
print(f"softmax of {scores.tolist()} computed naively in float16: {(scores.exp() / scores.exp().sum()).tolist()}")

# %% [markdown]
# In float16 a value above 65,504 becomes `inf`, and the next operation turns it into `nan` (∞/∞), which then
# spreads to every weight. bfloat16 has no such problem: 70,000 becomes 70,144 (the nearest value it has), which is
# inexact but harmless. This is one reason bfloat16 replaced float16 for training wherever hardware has it.
#
# ### What breaks: underflow, and how loss scaling rescues it
#
# At the other end, gradients are small, and get smaller as the loss falls and as models grow. In float16 anything
# below 6 × 10⁻⁸ is 0, and below 6 × 10⁻⁵ it keeps fewer and fewer bits. Here are the real gradients of the `ci`-size
# model on a batch of our corpus. To see what a later, larger run looks like, the loss is also multiplied by 10⁻⁴,
# which shrinks every gradient by as much:

# %%
tokenizer_artifact = run_tokenizer_stage(PRESET)
train_shards = open_shards(tokenizer_artifact, "train")
small_config = TrainConfig.from_preset("ci", precision="fp32", device="cpu")
small_model_config = small_config.model_config(train_shards.vocab_size)
x, y = step_windows(train_shards, small_config, step=0)
inputs, targets = make_batch(x, y, "causal")


def gradients(precision: str, loss_factor: float = 1.0, scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    # All the gradients of the small model, as one float32 vector, after one backward pass in `precision`.
    model = GPT(small_model_config, seed=0)
    with hardware.autocast("cpu", precision):
        _, loss = model(inputs, targets)
    loss = loss * loss_factor
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        scaler.unscale_(optimizer)  # what train_step does before clipping: divide by the scale again
    return torch.cat([p.grad.flatten() for p in model.parameters()]) / loss_factor


exact = gradients("fp32")
rows = []
for label, precision, factor, scaler in [
    ("float16", "fp16", 1.0, None),
    ("float16, loss x 1e-4", "fp16", 1e-4, None),
    ("float16, loss x 1e-4, GradScaler (x 65,536)", "fp16", 1e-4, torch.amp.GradScaler("cpu", init_scale=2.0**16)),
    ("bfloat16, loss x 1e-4", "bf16", 1e-4, None),
]:
    got = gradients(precision, factor, scaler)
    rows.append({"backward pass in": label, "gradients lost (0 instead of a value)": f"{((got == 0) & (exact != 0)).float().mean():.2%}",
                 "relative error of the gradient": f"{((got - exact).norm() / exact.norm()).item():.2%}"})
show_table(rows)

# %%
small = (exact * 1e-4).abs()
small = small[small > 0].log10().numpy()
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
for ax, shift, title in [(axes[0], 0.0, "gradients, loss x 1e-4"), (axes[1], np.log10(2.0**16), "the same, scaled by 2^16")]:
    ax.hist(small + shift, bins=80, color="#4f81bd")
    ax.axvspan(-12, np.log10(2.0**-24), color="#c0504d", alpha=0.25, label="float16: 0")
    ax.axvspan(np.log10(2.0**-24), np.log10(2.0**-14), color="#f79646", alpha=0.25, label="float16: fewer bits")
    ax.axvline(np.log10(65_504), color="#c0504d", linestyle="--", label="float16: overflow")
    ax.set_xlim(-12, 6)
    ax.set_xlabel("log10 |gradient|")
    ax.set_title(title)
axes[0].set_ylabel("entries")
axes[1].legend(fontsize=7, loc="upper left")
show(fig)

# %% [markdown]
# Most of the small gradients fall below float16's range and become 0: the model would simply stop learning in those
# weights. **Loss scaling** multiplies the loss by a large factor *S* before the backward pass. By the chain rule every
# gradient is multiplied by *S* too, which moves the whole histogram right, into float16's range. Before the optimizer
# step the gradients are divided by *S* again, in float32, where they fit. bfloat16 needs no scaling: its range is
# float32's, so it loses digits but not values.
#
# How large should *S* be? Too small and gradients underflow; too large and the largest ones overflow to `inf`.
# PyTorch's `GradScaler` finds it as it goes (**dynamic loss scaling**): it starts high (65,536); when a step produces
# `inf` or `nan` it *skips that step* and halves *S*; after every 2,000 good steps in a row it doubles *S*, to try a
# larger one again. Here it is on a real run of the `ci`-size model in float16, started too high (2²⁴) and allowed
# to grow after every 4 good steps, so that it moves within a few dozen steps (exercise 1 writes the rule):

# %%
model = GPT(small_model_config, seed=0)
optimizer = make_optimizer(model, 3e-3, 0.1, (0.9, 0.95))
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_interval=4)
scales, skipped, losses = [], [], []
for step in range(40):
    x, y = step_windows(train_shards, small_config, step)
    scale = scaler.get_scale()
    loss, _ = train_step(model, optimizer, scaler, [make_batch(x, y, "causal")], lr=3e-3, grad_clip=1.0, device="cpu",
                         precision="fp16")
    scales.append(scale)
    skipped.append(scaler.get_scale() < scale)  # the scale went down: this step found inf and was skipped
    losses.append(loss.item())
print(f"{sum(skipped)} of 40 steps skipped; the scale went from 2^{np.log2(scales[0]):.0f} to 2^{np.log2(scaler.get_scale()):.0f}; "
      f"loss {losses[0]:.2f} -> {losses[-1]:.2f}")
fig, ax = plt.subplots(figsize=(7, 2.4))
ax.step(range(40), np.log2(scales), where="post", color="#4f81bd", label="log2 of the loss scale")
ax.plot([i for i in range(40) if skipped[i]], [np.log2(scales[i]) for i in range(40) if skipped[i]], "x", color="#c0504d",
        label="overflow: step skipped, scale halved")
ax.set_xlabel("step")
ax.legend(fontsize=8)
show(fig)

# %% [markdown]
# ### What breaks: precision
#
# bfloat16 pays for its range with precision. With 8 bits of mantissa (7 stored, 1 implied) it counts exactly only
# up to 256; after that, adding 1 changes nothing. The same happens to a weight: an update a thousand times smaller
# than the weight is lost.

# %%
# NBVAL_CHECK_OUTPUT
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    total = torch.zeros((), dtype=dtype)
    for _ in range(3000):
        total += 1  # a running sum, one addition at a time, kept in `dtype`
    weight = torch.ones((), dtype=dtype)
    print(f"{str(dtype).removeprefix('torch.'):<9} 1 + 1 + ... (3,000 times) = {total.item():>6,.0f}    "
          f"weight 1.0 after an update of +0.001: {(weight + 0.001).item():.6f}")

# %%
fig, ax = plt.subplots(figsize=(6, 2.4))
count = np.arange(3001)
for dtype, colour in ((torch.float32, "#4f81bd"), (torch.float16, "#9bbb59"), (torch.bfloat16, "#c0504d")):
    total, path = torch.zeros((), dtype=dtype), [0.0]
    for _ in range(3000):
        total += 1
        path.append(total.item())
    ax.plot(count, path, color=colour, label=str(dtype).removeprefix("torch."))
ax.set_xlabel("numbers added")
ax.set_ylabel("running sum of 1s")
ax.legend(fontsize=8)
show(fig)

# %% [markdown]
# That is why mixed precision is *mixed*:
# * the **weights** and AdamW's moments stay in float32 (a "master copy"), so that small updates accumulate;
# * matmul hardware multiplies 16-bit inputs but **accumulates** the products in float32, so a long dot product does
#   not stall like the running sum above;
# * **reductions** that need digits (norms, softmax, the loss over the vocabulary) run in float32.
#
# `torch.autocast` applies these rules operation by operation, which is the next section.
#
# ## 3. Autocast, and the speed of each format here
#
# Inside `with torch.autocast(device_type, dtype=torch.bfloat16):` each operation runs in the format that suits it.
# Here is what it picks on this machine for the operations of our model:

# %%
a = torch.randn(4, 8, 64)
w = torch.randn(64, 64)
operations = {
    "linear (every projection)": lambda: F.linear(a, w),
    "matmul": lambda: a @ w,
    "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(a[:, None], a[:, None], a[:, None], is_causal=True),
    "gelu": lambda: F.gelu(F.linear(a, w)),
    "layer_norm": lambda: F.layer_norm(F.linear(a, w), (64,)),
    "softmax": lambda: torch.softmax(F.linear(a, w), dim=-1),
    "cross_entropy (the loss)": lambda: F.cross_entropy(F.linear(a, w).view(-1, 64), torch.zeros(32, dtype=torch.long)),
    "residual add (float32 stream + result)": lambda: a + F.linear(a, w),
}
ON_CUDA = ["bfloat16", "bfloat16", "bfloat16", "bfloat16 (as its input)", "float32", "float32", "float32", "float32"]
rows = []
for (name, operation), on_cuda in zip(operations.items(), ON_CUDA):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows.append({"operation under autocast(bfloat16)": name, "on this CPU": str(operation().dtype).removeprefix("torch."),
                     "on a CUDA GPU (PyTorch's autocast lists)": on_cuda})
show_table(rows)
show_source(hardware.choose_precision)
show_source(hardware.autocast)
show_source(hardware.grad_scaler)


# %% [markdown]
# The matmuls and attention run in bfloat16 everywhere. On CUDA, autocast runs the operations that need digits
# (norms, softmax, `exp`, sums, losses) in float32 outright; on CPUs it lets them take and return bfloat16, and their
# kernels do the sums inside in float32. The loss is float32 on both (our model also computes it in float32
# explicitly: `logits.float()` in `GPT.forward`), and the residual stream stays float32, because adding a bfloat16
# result to a float32 tensor gives float32. The weights are never converted: autocast casts a bfloat16 copy of each
# weight matrix for the step.
#
# How fast is a training step in each format here? We time the real `train_step` of the package on the model size of
# this preset, on real batches (two warm-up steps first, then the fastest of a few):

# %%
def time_steps(precision: str, steps: int) -> float:
    # The seconds of one training step of the preset's model in `precision`: the fastest of `steps`, after two
    # warm-up steps (as Python's timeit does: other programs on the machine can only ever slow a step down).
    model = GPT(config.model_config(train_shards.vocab_size), seed=0).to(device)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    scaler = hardware.grad_scaler(device, precision)
    times = []
    for step in range(steps + 2):
        x, y = step_windows(train_shards, config, step)
        started = time.perf_counter()
        loss, _ = train_step(model, optimizer, scaler, [make_batch(x, y, "causal")], config.lr, config.grad_clip, device,
                             precision)
        loss.item()  # on a GPU: wait until the step is really done
        times.append(time.perf_counter() - started)
    return min(times[2:])


precisions = ["fp32", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])
tokens_per_step = config.batch_size * config.context
step_seconds = {precision: time_steps(precision, steps=8 if PRESET == "ci" else 4) for precision in precisions}
rows = [{"precision": p, "seconds per step": s, "tokens/s": tokens_per_step / s,
         "speed-up over fp32": step_seconds["fp32"] / s} for p, s in step_seconds.items()]
show_table(rows)
print(f"on {device}: {config.n_layer} blocks x {config.n_embd} wide, {config.batch_size} windows x {config.context} tokens per step"
      + ("" if hardware.bf16_native(device) else "; this CPU has no bfloat16 hardware, so bf16 is emulated and slow"))
if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.8 * os.cpu_count():
    print(f"note: the machine's load average was {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores while timing: other "
          f"programs shared the CPU, so these times are noisy (run the cell again on a quiet machine)")

# %% [markdown]
# In the run shown here (the `cpu` preset) the bfloat16 step is even slightly slower than the float32 one (0.93x).
# Whether bfloat16 is faster depends on the hardware and on the size of the matmuls. A CPU with AMX (recent Xeons)
# or AVX512-BF16 multiplies bfloat16 twice as fast as float32 or more, but only when the matrices are large enough
# to keep it busy; for small ones the casts and the other operations of the step dominate. Here is the speed of
# square matmuls of growing size on this machine, in each format:

# %%
sizes = [128, 256, 512, 1024, 2048] if PRESET != "ci" else [128, 256, 512, 1024]
matmul_speed = {dtype: [hardware.measure_matmul_flops("cpu", dtype, size, 0.2) for size in sizes]
                for dtype in (torch.float32, torch.bfloat16)}
fig, ax = plt.subplots(figsize=(6, 2.6))
for dtype, speeds in matmul_speed.items():
    ax.plot(sizes, np.array(speeds) / 1e9, "o-", label=str(dtype).removeprefix("torch."))
ax.set_xscale("log", base=2)
ax.set_xlabel("matrix size n (an n x n by n x n matmul)")
ax.set_ylabel("GFLOP/s")
ax.set_ylim(bottom=0)
ax.legend(fontsize=8)
show(fig)
print("GFLOP/s:", {str(d).removeprefix("torch."): [round(s / 1e9) for s in speeds] for d, speeds in matmul_speed.items()})
print(f"our model's largest matmul in a step: ({config.batch_size * config.context} x {config.n_embd}) "
      f"by ({config.n_embd} x {4 * config.n_embd})")

# %% [markdown]
# On a GPU the picture is the same, with larger numbers: an H100 multiplies bfloat16 at up to 989 TFLOP/s, float32 at
# 67, and float32 matmuls may use **TF32** (float32's range, a 10-bit mantissa, about 7x faster), which
# `hardware.allow_tf32` turns on. Older GPUs without bfloat16 (before Ampere, such as the T4 or V100) use float16
# with a `GradScaler`, which `choose_precision` picks for them. The cell below measures TF32 on a GPU; without one,
# it shows the reference figures for this section: TF32, and the training step of the `gpu` preset's model in each
# format.

# %%
if torch.cuda.is_available():
    a = torch.randn(4096, 4096, device="cuda")
    matmul = torch.backends.cuda.matmul
    for label, tf32 in (("float32", False), ("TF32", True)):
        matmul.allow_tf32 = tf32
        a @ a
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        print(f"{label}: {20 * 2 * 4096**3 / (time.perf_counter() - started) / 1e12:.1f} TFLOP/s")
    hardware.allow_tf32("cuda")
else:
    print("no CUDA GPU here: on one, this cell times float32 matmuls with TF32 off and on "
          "(on an A100 or H100 TF32 is several times faster)\n")
    show_gpu_reference("3")

# %% [markdown]
# ## 4. `torch.compile`: capture the graph, fuse the kernels
#
# In ordinary ("eager") PyTorch each operation runs as soon as Python reaches it: a GELU reads the whole activation
# from memory and writes it back, then the next operation reads it again. On a GPU most operations other than matmuls
# are limited by memory traffic, not arithmetic, so this costs a lot. `torch.compile(model)` works in two steps:
#
# 1. **Dynamo** runs the Python code once with tracing tensors and records the operations it performs as a graph (a
#    *graph break* splits it where Python does something it cannot trace, such as printing a tensor's value);
# 2. **Inductor** compiles the graph: it fuses chains of elementwise operations into single kernels (Triton on GPUs,
#    C++/OpenMP on CPUs), picks matmul kernels, and can capture the whole step as a CUDA graph to save launch time.
#
# We can look at the first step cheaply, with a "backend" that only keeps the graph Dynamo hands it:

# %%
graphs = []


def keep_graph(graph_module, example_inputs):
    # A torch.compile backend that compiles nothing: it records Dynamo's graph and runs it as it is.
    graphs.append(graph_module)
    return graph_module.forward


torch._dynamo.reset()
started = time.perf_counter()
traced = torch.compile(GPT(small_model_config, seed=0), backend=keep_graph)
traced(inputs, targets)
kinds = Counter(getattr(node.target, "__name__", str(node.target)) for g in graphs for node in g.graph.nodes
                if node.op == "call_function")
print(f"Dynamo traced the forward pass in {time.perf_counter() - started:.1f} s into {len(graphs)} graph(s) "
      f"({len(graphs) - 1} graph breaks) of {sum(kinds.values())} operations:")
print(", ".join(f"{name} x{count}" for name, count in kinds.most_common()))
torch._dynamo.reset()

# %% [markdown]
# Those operations are what Inductor would fuse: in each block, the GELU into the matmul before it, the bias adds,
# the dropout and the residual add into one pass over memory each, and LayerNorm into a single kernel.
#
# Compiling for real takes time: the first call generates and compiles code, and every new input shape compiles
# again (unless shapes are marked dynamic). On this 2-core machine, compiling the `ci`-size model for CPU took about a
# minute, and its steps were then no faster than eager ones: the model is too small for fusion to matter, and CPU
# kernels gain less than GPU ones. On a GPU, for a model like GPT-2, compilation takes a minute or two and makes each
# step faster by a good fraction; that is why the `gpu` preset sets `TrainConfig.compile = True` and the others do not.
# The cell below compiles and times the model on a GPU; on a CPU it does so only if you set `COMPILE_ON_CPU = True`.

# %%
COMPILE_ON_CPU = False  # set to True to measure it here: expect about a minute of compiling on 2 cores

if torch.cuda.is_available() or COMPILE_ON_CPU:
    where = "cuda" if torch.cuda.is_available() else "cpu"
    model = GPT(config.model_config(train_shards.vocab_size), seed=0).to(where)
    compiled = torch.compile(model)
    x, y = step_windows(train_shards, config, 0)
    batch = [t.to(where) for t in make_batch(x, y, "causal")]

    def seconds_per_step(module, steps: int = 5) -> float:
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            with hardware.autocast(where, hardware.choose_precision(where)):
                _, loss = module(*batch)
            loss.backward()
            if where == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    started = time.perf_counter()
    seconds_per_step(compiled, steps=1)  # the first call compiles
    print(f"compiling took {time.perf_counter() - started:.0f} s")
    print(f"eager: {seconds_per_step(model) * 1e3:.1f} ms per forward+backward, compiled: {seconds_per_step(compiled) * 1e3:.1f} ms")
else:
    print("skipped: compiling for this CPU takes about a minute here and gives this small model no speed-up; "
          "on a GPU this cell compiles the model and compares its step time with eager mode "
          "(set COMPILE_ON_CPU = True to try it here)\n")
    if not torch.cuda.is_available():
        show_gpu_reference("4")

# %% [markdown]
# ## 5. Throughput and MFU: how much of the machine a run uses
#
# **Tokens per second** is the number a training run is judged by: it sets how many tokens (and so how good a model)
# a budget buys. To compare runs across models and machines, we turn it into **MFU**, *model FLOPs utilisation*: the
# FLOPs the model needs per second at that speed, divided by the peak FLOPs of the hardware.
#
# The FLOPs come from the config alone (`minilm.model.accounting`, notebook 03): a forward pass does one multiply and
# one add per weight of every matmul and per token (2N), plus attention's dot products with the context; the backward
# pass costs twice the forward. So one token of training costs 6N + 12 · n_layer · context · n_embd FLOPs.

# %%
model_config = config.model_config(train_shards.vocab_size)
n_matmul = matmul_parameters(model_config)
per_token = flops_per_token(model_config, config.context)
attention = 12 * model_config.n_layer * config.context * model_config.n_embd
show_table([
    {"": "parameters (all)", "count": f"{count_parameters(GPT(model_config)):,}"},
    {"": "N: weights in matmuls (the head counted, the embedding lookup not)", "count": f"{n_matmul:,}"},
    {"": "6N (matmuls, forward + backward)", "count": f"{6 * n_matmul:,}"},
    {"": "12 · n_layer · context · n_embd (attention scores)", "count": f"{attention:,}"},
    {"": "training FLOPs per token (accounting.flops_per_token)", "count": f"{per_token['training']:,}"},
])
assert per_token["training"] == 6 * n_matmul + attention

# %% [markdown]
# The peak: for GPUs we take the vendors' data sheets (`hardware.KNOWN_PEAKS`); for a CPU there is no such
# number, so `peak_flops` measures it: the speed of large matmuls in the same format, at several sizes and several
# timings of each, keeping the best (other programs on the machine can only slow a matmul down, and small matmuls do
# not keep every unit busy). Section 3 timed the same matmuls at more sizes; where one of those was faster, it is the
# peak instead. So the peak below is the fastest matmul this notebook saw in that format, and the cell prints the
# figures it is the best of. Then the MFU of the steps timed in section 3:

# %%
MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the formats of section 3's matmul timings
rows, peaks, measured = [], {}, []
for precision, seconds in step_seconds.items():
    found = hardware.peak_flops(device, precision)
    peak, source = found.flops, found.source
    curve = matmul_speed.get(MATMUL_DTYPES.get(precision)) if device == "cpu" else None
    if curve:  # section 3 timed the same matmuls on this CPU at other sizes: its fastest counts too
        measured.append(f"{precision}: peak_flops {peak / 1e9:,.0f}; section 3, by size: "
                        + ", ".join(f"{size} → {speed / 1e9:,.0f}" for size, speed in zip(sizes, curve)))
        if max(curve) > peak:
            peak, source = max(curve), f"section 3's matmul of size {sizes[int(np.argmax(curve))]}"
    peaks[precision] = peak
    tokens_per_s = tokens_per_step / seconds
    rows.append({"precision": precision, "tokens/s": tokens_per_s, "GFLOP/s achieved": per_token["training"] * tokens_per_s / 1e9,
                 "peak GFLOP/s": peak / 1e9, "peak from": source, "MFU": f"{mfu(model_config, tokens_per_s, peak, config.context):.1%}"})
show_table(rows)
if measured:
    print("matmul GFLOP/s measured on this CPU, of which the peak is the best:\n   " + "\n   ".join(measured))
if "bf16" in peaks:
    print(f"bfloat16's peak is {peaks['bf16'] / peaks['fp32']:.1f}x float32's on this machine "
          f"({peaks['bf16'] / 1e9:,.0f} against {peaks['fp32'] / 1e9:,.0f} GFLOP/s)")
if not torch.cuda.is_available():
    print("\nthe MFU of a training step on a GPU:")
    show_gpu_reference("5")

# %% [markdown]
# A good GPU run of a model with hundreds of millions of parameters or more reaches 35-55% MFU (nanoGPT's GPT-2 on
# A100s: about 40%; large runs on thousands of GPUs report 40-60%). Compare the two rows above: the higher the
# hardware's peak, the harder it is to reach. A CPU's float32 peak is low, so even our small matmuls get a fair share
# of it. Where the CPU has bfloat16 in hardware (section 1's table says whether this one does), its bfloat16 peak is
# twice float32's or more (the ratio is printed under the table), and our step leaves most of it unused, for
# reasons that are easy to see here: the matrices are small (the figure of section 3), the optimizer and the
# elementwise operations are not matmuls at all, and Python runs between every operation. A GPU's peak is higher still. Making a
# run fast is making these shrink: larger matrices per kernel, fewer trips to memory (fusion, section 4), 16-bit
# formats, and a GPU kept busy.
#
# What the same count says about a real run: how many tokens per second GPT-2 (124M) trains at, at 40% MFU, and how
# long 10 billion tokens take on 8 GPUs:

# %%
# NBVAL_CHECK_OUTPUT
gpt2 = config_named("gpt2", vocab_size=50257, context=1024)
print(f"GPT-2 (124M): {flops_per_token(gpt2)['training'] / 1e6:,.0f} MFLOPs per token of training, at context 1024\n")
print(f"{'GPU (bf16 dense peak)':<24}{'TFLOP/s':>8}{'tokens/s per GPU at 40% MFU':>30}{'10B tokens on 8 GPUs':>22}")
for name, peak, _ in hardware.KNOWN_PEAKS:
    tokens_per_s = 0.40 * peak / flops_per_token(gpt2)["training"]
    hours = 10e9 / (8 * tokens_per_s) / 3600
    print(f"{name:<24}{peak / 1e12:>8.0f}{tokens_per_s:>30,.0f}{hours:>19.1f} h")

# %% [markdown]
# ## 6. Data parallelism: many processes, one model
#
# One GPU is not enough for a big run, so the work is spread over many. The simplest and most common way is **data
# parallelism** (PyTorch's `DistributedDataParallel`, DDP):
#
# ```
#             process 0 (GPU 0)                    process 1 (GPU 1)
#    full copy of the model + optimizer     full copy of the model + optimizer
#    its own batch, from its own part       its own batch, from its own part
#    of the data                            of the data
#    forward, backward -> gradients g0      forward, backward -> gradients g1
#                 \                                  /
#                  ---- all-reduce: g = (g0 + g1) / 2 ----
#                 /                                  \
#    optimizer step with g                  optimizer step with g
#    -> the same new weights                -> the same new weights
# ```
#
# Three promises make it work:
# 1. **Each process trains on its own data.** Our loop cuts the token stream into `world_size` contiguous parts and
#    process `rank` draws its windows only from part `rank`: rank r's part runs from token r · n // world_size to
#    token (r + 1) · n // world_size, so the parts differ in size by one token at most:

# %%
for world_size in (1, 2, 4):
    parts = [train_shards.part(rank, world_size) for rank in range(world_size)]
    print(f"world size {world_size}: " + ", ".join(f"rank {r}: tokens {a:,}-{b:,}" for r, (a, b) in enumerate(parts)))

# %% [markdown]
# 2. **Gradients are averaged.** After the backward pass, an **all-reduce** leaves on every process the sum of all
#    processes' gradients, which DDP divides by `world_size`. When every process predicts as many tokens (next-token
#    prediction), the mean of the per-process mean losses is the mean loss over the whole global batch, so the
#    averaged gradient is exactly the gradient of one big batch (exercise 2 checks this by hand). With masked language
#    modelling each process has its own random number of masked tokens; `train_step` then weights each loss by its
#    share of all the step's predicted tokens (`loss_weights`, one more all-reduce of a single number), and the
#    result is again exactly the big batch's gradient. DDP does not wait for the end of the backward pass: it groups gradients into *buckets* and sends
#    each bucket as soon as its gradients are ready, while the backward pass continues with earlier layers.
# 3. **The copies start equal and stay equal.** DDP broadcasts rank 0's weights when it wraps the model; after that,
#    every process applies the same update to the same weights.
#
# **Gradient accumulation** (several micro-batches per optimizer step) needs one more idea: gradients only need
# averaging once per step, after the last micro-batch. `model.no_sync()` tells DDP to skip the all-reduce of the
# other micro-batches and just add their gradients locally. This is `train_step` in `minilm.train.loop`:

# %%
show_source(loss_weights)
show_source(train_step)


# %% [markdown]
# We can count the all-reduces in this notebook's own process: a process group of one process (gloo, through
# 127.0.0.1) is enough for DDP to run its machinery, and a *communication hook* sees every bucket it would send. Four
# micro-batches per optimizer step, small buckets of 0.1 MB:

# %%
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_all_reduces(use_no_sync: bool, micro_batches: int = 4) -> list[int]:
    # The number of values in each bucket that DDP all-reduces during one optimizer step.
    sent = []

    def hook(state, bucket):
        sent.append(bucket.buffer().numel())
        future = torch.futures.Future()
        future.set_result(bucket.buffer())  # in a world of one process, the sum is the bucket itself
        return future

    ddp = DistributedDataParallel(GPT(small_model_config, seed=0), bucket_cap_mb=0.1)
    ddp.register_comm_hook(None, hook)
    for index in range(micro_batches):
        last = index == micro_batches - 1
        with contextlib.nullcontext() if last or not use_no_sync else ddp.no_sync():
            _, loss = ddp(inputs[:2], targets[:2])
            (loss / micro_batches).backward()
    return sent


if not dist.is_initialized():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
try:
    rows = []
    for use_no_sync in (False, True):
        sent = count_all_reduces(use_no_sync)
        rows.append({"4 micro-batches": "with no_sync" if use_no_sync else "without no_sync", "buckets all-reduced": len(sent),
                     "values sent": f"{sum(sent):,}", "values sent per parameter": sum(sent) / count_parameters(GPT(small_model_config))})
finally:
    dist.destroy_process_group()
show_table(rows)

# %% [markdown]
# Without `no_sync` every micro-batch sends every gradient; with it, only the last one does: 4x less communication
# for the same result.
#
# ### Two processes, for real: `torchrun`
#
# `torchrun --nproc_per_node=2 script.py` starts two copies of a program and tells each who it is through
# environment variables (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`). The package's
# `processes()` reads them and joins the process group (NCCL on GPUs, gloo on CPUs); `train` then wraps the model in
# DDP and every process trains on its own part of the data. The whole pretraining stage runs this way with
# `torchrun --nproc_per_node=2 -m minilm pretrain`.
#
# Here we launch a small script with the `ci`-size model for 8 steps, two processes on this CPU, 2 micro-batches
# of 4 windows per process and step (a global batch of 16 windows). We use `python -m torch.distributed.run`, which
# is what the `torchrun` command runs, with this notebook's Python, and a free port on 127.0.0.1 for the processes
# to meet. In float32, so that we can compare exactly afterwards.

# %%
DDP_SCRIPT = '''
# Pretrain a small model for a few steps. Under torchrun every process runs this file.
import json, sys

from minilm.tokenizer.stage import load_tokenizer, open_shards, run_tokenizer_stage
from minilm.train import TrainConfig, processes, train

preset, out_dir, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = TrainConfig.from_preset("ci", **overrides)  # the ci-size model, on this preset's tokenizer
tokenizer = run_tokenizer_stage(preset)  # built by the notebook already: every process only reads it
with processes("cpu") as world:  # join the process group torchrun set up (gloo, on CPUs)
    shards = open_shards(tokenizer, "train")
    start, stop = shards.part(world.rank, world.world_size)
    sys.stdout.write(f"rank {world.rank} of {world.world_size} ({world.backend}): trains on tokens {start:,}-{stop:,}\\n")
    sys.stdout.flush()  # one write per line: the two processes share the output
    summary = train(config, shards, open_shards(tokenizer, "val"), load_tokenizer(tokenizer), out_dir, world=world,
                    resume=False, progress=False)
    if world.is_main:
        print(json.dumps({key: summary[key] for key in ("steps", "world_size", "tokens", "tokens_per_s", "val_loss")}))
'''.lstrip()

DDP_STEPS = 8
ddp_overrides = dict(precision="fp32", device="cpu", batch_size=4, grad_accum=2, max_steps=DDP_STEPS, warmup_steps=2,
                     log_every=DDP_STEPS, eval_every=DDP_STEPS, checkpoint_every=DDP_STEPS, final_samples=0)
ddp_config = TrainConfig.from_preset("ci", **ddp_overrides)
work = run_dir("scaling", PRESET)
shutil.rmtree(work, ignore_errors=True)  # a fresh run each time
work.mkdir(parents=True)
script = work / "ddp_train.py"
script.write_text(DDP_SCRIPT, encoding="utf-8")
print(f"wrote {course_path(script)}; global batch {ddp_config.tokens_per_step(world_size=2):,} tokens per step")


# %%
def relative(path: Path) -> str:
    # How the command line names `path`: relative to the course folder, where the command runs.
    path = Path(path).resolve()
    return path.relative_to(COURSE).as_posix() if path.is_relative_to(COURSE) else str(path)


launch = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
          relative(script), PRESET, relative(work / "ddp"), json.dumps(ddp_overrides)]
print("$ torchrun " + " ".join(launch[2:-1]) + " '" + launch[-1] + "'")
environment = {**os.environ, "MINILM_HOME": str(home().resolve()), "MINILM_PRESET": PRESET}
started = time.perf_counter()
result = subprocess.run([sys.executable, *launch], cwd=COURSE, env=environment, capture_output=True, text=True, timeout=900)
ddp_seconds = time.perf_counter() - started
clean = lambda text: text.replace(str(COURSE) + os.sep, "").replace(str(COURSE), ".")
print(clean(result.stdout).rstrip())
if result.returncode != 0:
    print(clean(result.stderr)[-3000:])
    raise RuntimeError(f"torchrun failed with exit code {result.returncode} (its error output is above)")
print(f"(2 processes, {ddp_seconds:.1f} s including starting Python and PyTorch twice)")


# %% [markdown]
# Both processes trained, each on its half of the stream, and rank 0 wrote the checkpoint. Did they really train as
# one model on their two batches put together? We replay the same 8 steps in this notebook, in one process, on one
# batch per step made of both ranks' windows, with the same initial weights, learning rates and optimizer, and
# compare every weight. As a control we also train on rank 0's windows alone:

# %%
def single_process(config: TrainConfig, shards: TokenShards, ranks: list[int], world_size: int = 2) -> dict:
    # One process, one big batch per step: the windows that `ranks` of `world_size` processes would draw, put together.
    model = GPT(config.model_config(shards.vocab_size), seed=config.seed)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    scaler = hardware.grad_scaler("cpu", "fp32")
    for step in range(config.max_steps):
        parts = [step_windows(shards, config, step, rank, world_size) for rank in ranks]
        batch = make_batch(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), "causal")
        lr = learning_rate(step, config.lr, config.warmup_steps, config.max_steps, config.min_lr)
        train_step(model, optimizer, scaler, [batch], lr, config.grad_clip, "cpu")
    return model.state_dict()


trained = ckpt.read_checkpoint(ckpt.latest_checkpoint(work / "ddp" / "checkpoints"))[0]
together = single_process(ddp_config, train_shards, ranks=[0, 1])
alone = single_process(ddp_config, train_shards, ranks=[0])
initial = GPT(ddp_config.model_config(train_shards.vocab_size), seed=ddp_config.seed).state_dict()


def largest_differences(a: dict, b: dict) -> tuple[float, float]:
    # The largest difference between two sets of weights: in the keys' bias of attention, and in all other weights.
    keys = slice(ddp_config.n_embd, 2 * ddp_config.n_embd)  # c_attn.bias holds the biases of q, k, v in turn
    key_bias, others = 0.0, 0.0
    for name in a:
        difference = (a[name] - b[name]).abs()
        if name.endswith("attn.c_attn.bias"):
            key_bias = max(key_bias, difference[keys].max().item())
            difference[keys] = 0
        others = max(others, difference.max().item())
    return others, key_bias


rows = []
for label, other in [("1 process, both ranks' windows per step", together), ("1 process, rank 0's windows only", alone),
                     ("the initial weights (how far 8 steps moved them)", initial)]:
    others, key_bias = largest_differences(trained, other)
    rows.append({"2 processes (torchrun) compared with": label, "largest difference: all weights but the keys' bias": f"{others:.1g}",
                 "in the keys' bias": f"{key_bias:.1g}"})
show_table(rows)
if not torch.cuda.is_available():
    print("torchrun with 2 processes on 2 GPUs:")
    show_gpu_reference("6")

# %% [markdown]
# The two-process run and the one-process run on the same global batch agree to float32 rounding (the sums are done in
# another order), while rank 0's half of the batch alone leads somewhere else: the all-reduce really combined the two
# halves. The keys' bias is the one place where the rounding shows more: adding the same number to the scores of all
# keys of a query changes nothing after the softmax, so its true gradient is 0 and what the backward pass computes is
# rounding noise, which differs with the order of the sums. Adam divides every gradient by its own running size, so
# even noise moves this bias a little (the last row: it hardly moved from its initial value), and differently in the
# two runs. The tests of the package (`tests/test_distributed.py`) check the same thing on every change.
#
# Two details of the training loop that matter under several processes: only rank 0 writes logs and checkpoints, and
# every process waits at a barrier at the end (`distributed.stop`), so that none tears the group down while another
# still sends to it. A checkpoint records the number of processes, and resuming with another number is refused: each
# process trains on its own part of the data, so the run would not continue the same way.
#
# ## 7. Many machines
#
# The same program runs on many machines; only the launch changes. On each of, say, 2 machines with 8 GPUs each,
# with machine 0 reachable at 10.0.0.1:
#
# ```bash
# # on machine 0
# torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 -m minilm pretrain
# # on machine 1
# torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 -m minilm pretrain
# ```
#
# or, with the elastic rendezvous, the same command on every machine (torchrun assigns the node ranks, and tolerates
# machines joining late):
#
# ```bash
# torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=10.0.0.1:29500 --rdzv_id=minilm-run-1 -m minilm pretrain
# ```
#
# What changes:
# * **16 processes**: `RANK` runs 0-15 over all machines, `LOCAL_RANK` 0-7 on each (it picks the GPU), `WORLD_SIZE`
#   is 16. Nothing in `minilm` changes: `processes()` reads the variables, the data is cut into 16 parts.
# * **NCCL** carries the all-reduce: over NVLink inside a machine, over InfiniBand or RoCE between machines. When it
#   picks the wrong network, `NCCL_SOCKET_IFNAME` names the right interface; `NCCL_DEBUG=INFO` shows what it chose.
# * **Storage is shared.** Rank 0 builds the earlier stages and writes checkpoints, and every process reads them:
#   `MINILM_HOME` must point to a file system all machines see (or the data must be copied to each first).
# * **Communication becomes the limit.** A ring all-reduce sends about 2 · (N−1)/N times the gradient's bytes per GPU
#   and step, so its time depends on the link, not on the number of GPUs. NVLink connects the GPUs inside a machine
#   (H100: 450 GB/s each way); between machines it is InfiniBand (here 400 Gb/s), or Ethernet:

# %%
# NBVAL_CHECK_OUTPUT
links = {"NVLink 4": 450e9, "InfiniBand 400G": 50e9, "PCIe 4 x16": 25e9, "Ethernet 100G": 12.5e9}  # bytes/s, one way
models = {"GPT-2 (124M)": config_named("gpt2", vocab_size=50257), "GPT-2 XL (1.5B)": config_named("gpt2-xl", vocab_size=50257),
          "Llama-2-7B shape": GPTConfig(vocab_size=32_000, context=4096, n_layer=32, n_head=32, n_embd=4096, position="rope",
                                        norm="rmsnorm", mlp="swiglu", mlp_hidden=11_008, bias=False, tie_weights=False)}
print("milliseconds per all-reduce of float32 gradients across 16 GPUs (ring: 2 x 15/16 x the bytes per GPU)\n")
print(f"{'model':<17}" + "".join(f"{link:>17}" for link in links))
for name, model_config_ in models.items():
    gradient_bytes = 4 * parameter_counts(model_config_)["total"]
    print(f"{name:<17}" + "".join(f"{2 * 15 / 16 * gradient_bytes / bandwidth * 1e3:>17.1f}" for bandwidth in links.values()))

# %% [markdown]
# DDP hides much of this by sending buckets during the backward pass, and gradients can be sent in bfloat16 to halve
# the bytes.
#
# ## 8. When the model no longer fits: ZeRO, FSDP, tensor and pipeline parallelism
#
# Data parallelism keeps a whole copy of everything on every GPU: the weights, the gradients and AdamW's two moments,
# 4 + 4 + 8 = 16 bytes per parameter in float32, before any activation. Every GPU holds the same optimizer state, and
# each uses it only to update the same weights as all the others. **ZeRO** (*Zero Redundancy Optimizer*, Rajbhandari
# et al., 2020, the heart of DeepSpeed) removes that redundancy in three stages: each of N processes keeps and updates
# only 1/N of the optimizer state (stage 1), also of the gradients (stage 2), and also of the weights (stage 3, what
# PyTorch's **FSDP**, *fully sharded data parallel*, does). What it costs is communication: after each step the
# updated weights travel from the process that owns them to all the others (stages 1 and 2: an all-gather, which,
# with a reduce-scatter in place of DDP's all-reduce, sends no more than DDP does), and stage 3 gathers each layer's
# weights just before it runs and frees them after (about 1.5 times DDP's traffic). What one GPU must hold for the
# models of the table above, on 8 GPUs:

# %%
# NBVAL_CHECK_OUTPUT
BYTES = {"weights": 4, "gradients": 4, "AdamW's moments": 8}  # float32, per parameter
SHARDED = {"DDP (nothing sharded)": [], "ZeRO-1 (optimizer state)": ["AdamW's moments"],
           "ZeRO-2 (+ gradients)": ["AdamW's moments", "gradients"], "ZeRO-3 / FSDP (+ weights)": list(BYTES)}


def gigabytes_per_gpu(n_parameters: int, n_gpus: int, sharded: list[str]) -> float:
    # The memory one GPU needs for the weights, gradients and optimizer state (activations not counted), when the
    # parts in `sharded` are split between the GPUs and the others are whole on each.
    return sum(size / (n_gpus if part in sharded else 1) for part, size in BYTES.items()) * n_parameters / 1e9


print(f"GB per GPU, 8 GPUs, float32 training with AdamW, activations not counted\n\n{'':<27}"
      + "".join(f"{name:>19}" for name in models))
for stage, sharded in SHARDED.items():
    print(f"{stage:<27}" + "".join(f"{gigabytes_per_gpu(parameter_counts(c)['total'], 8, sharded):>19.1f}"
                                   for c in models.values()))

# %% [markdown]
# ZeRO-1 alone cuts what the Llama-2-7B shape needs per GPU from 108 GB to 61 GB, and ZeRO-3 to 13.5 GB: the same
# training, the same result, in memory that shrinks with the number of GPUs. Exercise 3 writes ZeRO-1 by hand and
# runs it in two processes, and its check measures what each rank's optimizer holds.
#
# Sharding the state is not the only way. A very wide model can split each matmul across the GPUs of a machine
# (**tensor parallelism**: Megatron-LM cuts the MLP's first weight by columns and its second by rows, and attention
# by heads, so that a block's forward pass needs just two all-reduces; there are so many of them that tensor
# parallelism stays inside a machine, on NVLink), and a very deep one can give each group of GPUs
# a slice of the layers, micro-batches flowing through them like an assembly line (**pipeline parallelism**, with
# schedules such as GPipe or 1F1B that keep the stages busy). Large runs combine all of them ("3D parallelism":
# tensor inside a machine, pipeline across a few, data parallelism with ZeRO across the rest). The engines that do it:
# PyTorch's own **FSDP** (`torch.distributed.fsdp.fully_shard`), its `ZeroRedundancyOptimizer` (ZeRO-1) and its
# `torch.distributed.tensor.parallel` and `torch.distributed.pipelining` modules; **DeepSpeed** (ZeRO stages 1-3,
# with offloading to CPU memory and NVMe, and pipelines); and NVIDIA's **Megatron-LM** (tensor, pipeline, sequence
# and expert parallelism). Our model is small enough for plain DDP, which is why `minilm` stops there.
#
# ## Summary
#
# * `choose_device` picks the device; on GPUs each process owns one, copies overlap compute, and time is measured
#   only after waiting for the GPU.
# * float16 overflows above 65,504 and loses small gradients below 6 × 10⁻⁸; loss scaling with a dynamic scale rescues
#   the gradients. bfloat16 has float32's range and no such problems, but only 2-3 digits, so weights, accumulations
#   and reductions stay in float32: autocast does this operation by operation.
# * `torch.compile` captures the graph and fuses kernels; it pays on GPUs and for long runs.
# * MFU = FLOPs per token × tokens/s ÷ peak FLOP/s; 6N + 12·L·T·d FLOPs per token of training.
# * Data parallelism: disjoint data, an all-reduce of the gradients (once per step, thanks to `no_sync`), identical
#   copies. Two processes here trained as one process on their batches put together, to float32 rounding; `torchrun`
#   launches the same program on many machines.
# * When the model no longer fits, ZeRO shards the optimizer state (1), the gradients (2) and the weights (3, FSDP)
#   across the processes; tensor and pipeline parallelism split the model; FSDP, DeepSpeed and Megatron-LM do it.

# %%
print(f"this notebook ran in {time.perf_counter() - notebook_started:.0f} s with the {PRESET!r} preset")


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: dynamic loss scaling
#
# You will have built the rule that lets float16 train without losing its small gradients (section 2): how PyTorch's
# `GradScaler` finds its scale as the run goes.
#
# Write `update_scale(scale, good_steps, found_inf, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000)`,
# the rule `GradScaler.update` applies after every step, returning the new `(scale, good_steps)`:
# * if the step found `inf` or `nan` in the gradients (`found_inf`), the step was skipped: multiply the scale by
#   `backoff_factor` and start counting good steps from 0 again;
# * otherwise count one more good step; when the count reaches `growth_interval`, multiply the scale by
#   `growth_factor` and start counting from 0. The scale is kept as a float32: if growing it would exceed float32's
#   largest value (`torch.finfo(torch.float32).max`), leave it as it is (but still restart the count).
#
# The check compares your rule with PyTorch's own, step by step.

# %%
def update_scale(scale: float, good_steps: int, found_inf: bool, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    ### BEGIN SOLUTION
    if found_inf:
        return scale * backoff_factor, 0
    good_steps += 1
    if good_steps < growth_interval:
        return scale, good_steps
    grown = scale * growth_factor
    return (grown if grown <= torch.finfo(torch.float32).max else scale), 0
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.scaling import check_update_scale

check_update_scale(update_scale)


# %% [markdown]
# ### Exercise 2: data parallelism by hand
#
# You will have built what DDP computes in each step, in one process: the gradients of several processes and their
# all-reduce, and seen that they give exactly the gradient of the whole batch.
#
# Write `data_parallel_gradients(model, inputs, targets, world_size)`, which simulates DDP in one process. The batch
# (`inputs`, `targets`: (batch, T) token ids; the batch divides by `world_size`, and every target counts) is split into
# `world_size` equal parts, rank r taking the rows r·b to (r+1)·b − 1. Each rank computes, on its own copy of the
# model, the gradient of the mean loss of its rows (`_, loss = model(x, y)`); then the all-reduce averages the ranks'
# gradients. Return `{name: gradient}` for every name of `model.named_parameters()`, and leave the weights unchanged.
# The check compares your gradients with those of the whole batch in one pass: they must be equal.

# %%
def data_parallel_gradients(model: GPT, inputs: torch.Tensor, targets: torch.Tensor, world_size: int) -> dict[str, torch.Tensor]:
    ### BEGIN SOLUTION
    rows = len(inputs) // world_size
    summed: dict[str, torch.Tensor] = {}
    for rank in range(world_size):
        replica = copy.deepcopy(model)  # each process holds its own copy
        replica.zero_grad(set_to_none=True)
        _, loss = replica(inputs[rank * rows:(rank + 1) * rows], targets[rank * rows:(rank + 1) * rows])
        loss.backward()
        for name, parameter in replica.named_parameters():
            summed[name] = summed[name] + parameter.grad if name in summed else parameter.grad.clone()  # all-reduce: sum
    return {name: gradient / world_size for name, gradient in summed.items()}  # ... then divide: the average
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.scaling import check_data_parallel_gradients

check_data_parallel_gradients(data_parallel_gradients)


# %% [markdown]
# Why must every target count, and every rank have the same number of rows? Each rank averages over *its own*
# tokens, and the all-reduce then averages the ranks equally. If one rank had more counted tokens than another (uneven
# batches, or padding positions ignored by the loss, as in fine-tuning on conversations of different lengths), the
# average of the averages would weigh the tokens unequally. The fix is to all-reduce the *sums* of the losses and the
# number of counted tokens, and divide once.
#
# ### Exercise 3: ZeRO-1 by hand, in two processes
#
# You will have built the first stage of ZeRO (section 8), the optimizer sharding of DeepSpeed and of PyTorch's
# `ZeroRedundancyOptimizer`: the same training as data parallelism, with each process keeping AdamW's moments for
# its share of the parameters only, and you will have run it in two real processes.
#
# Write `zero1_train(model, batches, adamw, rank, world_size)`. It runs in each of `world_size` processes, which are
# already joined in a process group (gloo), as under `torchrun`; `rank` is this process's number. It trains this
# process's copy of `model` for one optimizer step per `(inputs, targets)` in `batches`, this rank's part of each
# global batch:
# * the parameters are split into `world_size` shards, each owned by one rank (any split, as long as every parameter
#   has exactly one owner and every rank owns some); this rank's optimizer is `adamw(the parameters it owns)` (the
#   check's `torch.optim.AdamW`, with its learning rate and weight decay), so that it keeps state for those only;
# * in each step: the forward and backward pass on this rank's batch, the gradients averaged over the ranks, this
#   rank's shard stepped, and then every rank given the new values of the parameters it does not own.
#
# Return this rank's optimizer. The collectives are in `torch.distributed` (imported as `dist`): `dist.all_reduce`,
# `dist.reduce`, `dist.broadcast`, `dist.all_gather`... Each one must be called by every rank, in the same order.
#
# The check starts two processes with `multiprocessing`'s *fork*, which makes each a copy of this kernel, your
# function included (*spawn*, a fresh Python, could not import a function defined in a notebook; Windows has no
# fork). On three small models it runs your function for a few steps and, from the same weights and batches,
# PyTorch's `DistributedDataParallel` with a whole AdamW on each rank; the weights must agree, and the optimizer
# states of the two ranks must add up to one whole AdamW's, not twice it. A rank that waits more than 20 seconds
# in a collective stops with an error.

# %%
def zero1_train(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]], adamw, rank: int,
                world_size: int) -> torch.optim.Optimizer:
    ### BEGIN SOLUTION
    parameters = list(model.parameters())
    owner = [index % world_size for index in range(len(parameters))]  # rank r owns parameters r, r + world_size, ...
    optimizer = adamw([p for p, o in zip(parameters, owner) if o == rank])  # AdamW's moments for this shard only
    for inputs, targets in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(inputs, targets)
        loss.backward()
        for p in parameters:  # the average over the ranks (only the owner needs it: dist.reduce would do as well)
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()  # updates this rank's shard; the other parameters are now stale here
        for p, o in zip(parameters, owner):  # every rank takes part in every broadcast, in the same order
            dist.broadcast(p.data, src=o)
    return optimizer
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.scaling import check_zero1

check_zero1(zero1_train)

# %% [markdown]
# PyTorch's own ZeRO-1 passes the same check. `ZeroRedundancyOptimizer` wraps any optimizer (here the check's
# `adamw`), gives each rank a shard, steps it and broadcasts it; DDP averages the gradients. It assigns the parameters
# by size, largest first, each to the rank that holds the fewest numbers so far, so that the shards come out about
# even whatever the order of the parameters (here, on the models of seed 0, its two ranks hold the same number of
# bytes for the last one):

# %%
from torch.distributed.optim import ZeroRedundancyOptimizer


def pytorch_zero1(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]], adamw, rank: int,
                  world_size: int) -> torch.optim.Optimizer:
    replica = DistributedDataParallel(model)  # averages the gradients during the backward pass
    optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=adamw)  # shards, steps, broadcasts
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        _, loss = replica(inputs, targets)
        loss.backward()
        optimizer.step()
    return optimizer


check_zero1(pytorch_zero1, seed=0)

# %% [markdown]
# The memory saved here is tens of kilobytes at most (10 to 26 KiB per rank in the checks above); on 8 GPUs training
# the Llama-2-7B shape it is 47 GB per GPU (section 8).
# What it costs: after every step, each parameter travels from its owner to every other rank, as many bytes as the
# all-reduce of the gradients sent, so ZeRO-1 communicates about 1.5 times what DDP does (real implementations
# replace the all-reduce with a *reduce-scatter*, each rank receiving only its shard's summed gradients, and the
# broadcasts with one *all-gather*: then ZeRO-1 sends exactly as much as DDP).
#
# **Next:** [notebook 06](06_finetuning.ipynb) fine-tunes the pretrained model to follow instructions (SFT), in full and with LoRA, and into a classifier.
