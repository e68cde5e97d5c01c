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
# # 00 · Setup, and a map of the course
#
# In this course you build a small language model **for real**, stage by stage: you gather and clean the data,
# train a tokenizer, write the transformer, pretrain it, fine-tune it, align it with human preferences, evaluate it
# and serve it. Every stage runs on a laptop CPU in minutes and produces numbers you can check. All nine stages, from
# the data to serving the model, are here with their notebooks.
#
# **In this notebook** you check your environment, learn the three ideas every later notebook relies on
# (*presets*, the *artifact cache*, *self-checking exercises*) and see the map of the whole pipeline.
#
# | preset | what for | this notebook takes |
# |---|---|---|
# | `ci` | tests | ~5 s |
# | `cpu` | your laptop | ~5 s |
# | `gpu` | one CUDA GPU | ~5 s |

# %% [markdown]
# ## 1. Your environment
#
# The course needs Python 3.10+, PyTorch and a few small libraries (`requirements.txt`). The cell below shows
# what this kernel runs on. Nothing here needs a GPU: with one, the same code runs faster with bigger presets.

# %%
import os, platform, sys
import numpy as np
import torch
import minilm
from minilm import hardware, presets

print(f"python      {platform.python_version()} on {platform.machine()}")
print(f"torch       {torch.__version__}")
print(f"numpy       {np.__version__}")
print(f"minilm      {minilm.__version__}")
print(f"device      {hardware.pick_device()}")
print(f"CUDA        {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
print(f"bf16 in CPU hardware {'yes' if hardware.bf16_native('cpu') else 'no (bf16 would be emulated: the cpu preset trains in float32)'}")
print(f"threads     {torch.get_num_threads()} (of {os.cpu_count()} logical cores)")
print(f"preset      {presets.preset_name()}   (MINILM_PRESET={os.environ.get('MINILM_PRESET', 'unset')})")

# %% [markdown]
# ## 2. The map
#
# The course builds **one** model along one pipeline. Each box is built by one notebook and one module of the
# `minilm` package; all nine are built.

# %%
import matplotlib.pyplot as plt
from minilm.plots import draw_pipeline

draw_pipeline(done=9)
plt.show()

# %% [markdown]
# Each stage can be run three ways, and all three call the same functions:
#
# * **a notebook** (`notebooks/NN_*.ipynb`), which explains the stage and runs it;
# * **the command line**, `python -m minilm <stage>`;
# * **the speedrun**, `python -m minilm speedrun`, which runs every stage and writes a report card.

# %%
from minilm.__main__ import build_parser

build_parser().print_help()

# %% [markdown]
# ## 3. Presets: one code path, three sizes
#
# A *preset* only changes sizes, numbers of steps and a few speed switches (such as `compile` for the GPU), never
# what the code computes, so the tiny `ci` runs in the tests exercise the same code that a `gpu` run uses. The
# whole table lives in one place, `minilm/presets.py`:

# %%
# NBVAL_CHECK_OUTPUT
for stage, rows in presets.PRESETS.items():
    for name in presets.PRESET_NAMES:
        print(f"{stage:9} {name:4} {rows[name]}")

# %% [markdown]
# The preset is picked automatically (`gpu` with CUDA, else `cpu`); set the environment variable
# `MINILM_PRESET` before starting JupyterLab (or pass `--preset` on the command line) to choose. Each stage's config
# dataclass is built from the table, and you can still override any field:

# %%
# NBVAL_CHECK_OUTPUT
from minilm.data.stage import DataConfig

small = presets.config_for(DataConfig, "data", "ci", n_stories=50)
print(small.n_stories, small.n_web_pages, small.seed)

# %% [markdown]
# ## 4. The artifact cache: build once, reuse everywhere
#
# Every stage writes its outputs into a *run folder*, `data/runs/<preset>/<stage>/`, with a `manifest.json` that
# records its config and the fingerprints of its inputs. Asking for a stage again returns the cached folder when
# nothing changed, and rebuilds when the config or an input changed. That is why every notebook can run on its own
# (it builds what it needs from earlier stages) and why notebooks run in order reuse each other's work.
#
# Watch it on a toy stage that counts words:

# %%
import dataclasses, tempfile, time
from pathlib import Path
from minilm.cache import cached_stage

@dataclasses.dataclass
class CountConfig:
    text: str = "the cat sat on the mat"

def build(folder: Path) -> dict:
    time.sleep(0.5)                      # pretend this is expensive
    words = CountConfig().text.split()
    (folder / "count.txt").write_text(str(len(words)))
    return {"words": len(words)}

os.environ["MINILM_HOME"] = tempfile.mkdtemp()   # a scratch home, so this demo leaves nothing behind
for attempt in range(2):
    start = time.perf_counter()
    artifact = cached_stage("count", CountConfig(), build, preset="ci")
    print(f"call {attempt + 1}: {time.perf_counter() - start:.2f} s, summary {artifact.summary}, key {artifact.key}")
artifact = cached_stage("count", CountConfig(text="a new text"), build, preset="ci")
print("changed config -> new key", artifact.key)
print(sorted(p.name for p in artifact.path.iterdir()))
del os.environ["MINILM_HOME"]

# %% [markdown]
# The build runs in a hidden temporary folder and the manifest is written **last**; only then is the folder renamed
# into place. A crash half-way leaves the old result (or nothing), never a half-written folder that looks complete.
# The same rule holds for every single file the course writes: a temporary file, then an atomic rename.

# %%
import inspect
from minilm.files import atomic_write

print(inspect.getsource(atomic_write))


# %% [markdown]
# ## 5. Exercises that check themselves
#
# Every notebook ends with exercises. Each is a function for you to write, followed by a *check cell* that runs your
# function on fresh random inputs against the package's own version and prints a pass or tells you what went wrong.
# Unsolved exercises raise `NotImplementedError`; their check cells show a red error until you solve them, which is
# expected. Worked solutions are in `solutions/` (try first!).
#
# ### Exercise 1: choose a preset
# Write `choose_preset(cuda_available, env_value)`: `env_value` is the value of `MINILM_PRESET` (`None` or `""`
# when unset). It wins when set; otherwise the answer is `"gpu"` with CUDA and `"cpu"` without. Unknown names raise
# `ValueError`.

# %%
def choose_preset(cuda_available: bool, env_value: str | None) -> str:
    ### BEGIN SOLUTION
    name = env_value or ("gpu" if cuda_available else "cpu")
    if name not in ("ci", "cpu", "gpu"):
        raise ValueError(f"unknown preset {name!r}")
    return name
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_choose_preset

check_choose_preset(choose_preset)

# %% [markdown]
# ### Exercise 2: write a file atomically
# Write `write_atomically(path, chunks)` that writes the text pieces of the iterable `chunks` to `path` so that a
# failure half-way (the iterable raises an `OSError`) leaves the previous file untouched and no temporary file behind.
# The error itself must still reach the caller.

# %%
import os, tempfile

def write_atomically(path, chunks) -> None:
    ### BEGIN SOLUTION
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_write_atomically

check_write_atomically(write_atomically)

# %% [markdown]
# ### Exercise 3: fingerprint a config
# The cache decides "same or changed?" with a fingerprint: a short hash of the config that must not depend on the
# order of the keys. Write `config_fingerprint(config)`: `json.dumps` with sorted keys (and `default=str`,
# `ensure_ascii=False`), the sha256 of its UTF-8 bytes, and the first 16 hex digits.

# %%
import hashlib, json

def config_fingerprint(config: dict) -> str:
    ### BEGIN SOLUTION
    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_config_fingerprint

check_config_fingerprint(config_fingerprint)

# %% [markdown]
# **Next:** `01_data.ipynb` gathers the data our model will learn from, and cleans it.
