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
# (*presets*, the *artifact cache*, *self-checking exercises*) and see the map of the whole pipeline. Then you meet
# a language model in numbers: you measure text in bytes, characters and tokens, work out the loss of a guess that
# knows nothing, and build, score and sample a first language model, a bigram model fitted by counting.
#
# | preset | what for | this notebook takes |
# |---|---|---|
# | `ci` | tests | ~5 s, plus ~10 s the first time (it builds stages 1 and 2) |
# | `cpu` | your laptop | ~10 s, plus ~1 min the first time (it builds stages 1 and 2) |
# | `gpu` | one CUDA GPU | ~10 s, plus a few minutes the first time (it builds stages 1 and 2) |

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
# ## 5. A language model, in numbers
#
# A language model reads a text as a sequence of **tokens**, and at every position it gives a probability to each
# token of its vocabulary for what comes next. Before any transformer, four words to pin down:
#
# * **bytes**: files, datasets and networks hold text as UTF-8 bytes, which spends one to four bytes on a character;
# * **characters**: a Python `str` is a sequence of Unicode *code points*; what you see as one letter can be one
#   code point or several (a letter followed by a combining accent, a flag, a family emoji);
# * **tokens**: the tokenizer (stage 2) cuts text into pieces from a fixed vocabulary and gives each an id. A model's
#   context, its compute and its training budget are counted in tokens;
# * **the loss**: when the token that really came next had probability *p*, the model pays −ln *p* (in *nats*); a
#   sure and right prediction costs nothing, a confident wrong one a lot. The loss of a text is the mean over its
#   tokens. The loss per token depends on the tokenizer (fewer, longer tokens are each harder to guess), so models
#   with different tokenizers are compared in **bits per byte**: the nats of the whole text, in bits (divided by
#   ln 2), per byte of the text. It is also how many bits a compressor driven by the model would need per byte.
#
# ## 6. Exercises that check themselves
#
# Every notebook ends with exercises. Each is a function for you to write, followed by a *check cell* that runs your
# function on fresh random inputs against the package's own version and prints a pass or tells you what went wrong.
# Unsolved exercises raise `NotImplementedError`; their check cells show a red error until you solve them, which is
# expected. Worked solutions are in `solutions/` (try first!).
#
# ### Exercise 1: bytes, characters and tokens
# Write `text_sizes(text, encode)`, where `encode` is a tokenizer's function from a text to its list of token ids. It
# returns a dict with the text's length three ways: `"bytes"` (UTF-8), `"characters"` (code points) and `"tokens"`.
# You will have built the three rulers this course measures text with: the data stage counts bytes, the tokenizer
# turns bytes into tokens, and the model counts its context in tokens. The check uses a small tokenizer trained on
# the spot, and texts with accents, Japanese and emoji.

# %%
def text_sizes(text: str, encode) -> dict[str, int]:
    ### BEGIN SOLUTION
    return {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(encode(text))}
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_text_sizes

check_text_sizes(text_sizes)

# %% [markdown]
# ### Exercise 2: the loss of a guess
# Before training anything, know what a model must beat. Two guessers ignore the context altogether: the *uniform*
# one gives every token of the vocabulary the same probability; the *unigram* one predicts every token with its
# frequency in the text (on that text, no guesser that ignores the context does better). Write
# `guess_losses(ids, vocab_size, n_bytes)`: `ids` is a 1-D tensor of the token ids of a text of `n_bytes` bytes; return
# the losses of both guessers on these ids, in nats per token (keys `"uniform"` and `"unigram"`) and in bits per byte
# (`"uniform_bpb"` and `"unigram_bpb"`). You will have built the two baselines every language model is measured
# against; the check computes them with the package's cross-entropy, the function that scores the transformer in
# notebook 04.

# %%
import math


def guess_losses(ids: torch.Tensor, vocab_size: int, n_bytes: int) -> dict[str, float]:
    ### BEGIN SOLUTION
    counts = torch.bincount(ids, minlength=vocab_size).double()
    freqs = counts[counts > 0] / len(ids)  # a token that never occurs costs nothing: it is never the answer
    uniform = math.log(vocab_size)
    unigram = -(freqs * freqs.log()).sum().item()  # each token pays -ln(its frequency), as often as it occurs
    to_bits_per_byte = len(ids) / n_bytes / math.log(2)
    return {"uniform": uniform, "unigram": unigram,
            "uniform_bpb": uniform * to_bits_per_byte, "unigram_bpb": unigram * to_bits_per_byte}
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_guess_losses

check_guess_losses(guess_losses)


# %% [markdown]
# ### Exercise 3: a bigram language model
# The simplest model that uses the context: the next token depends on the previous one only. It is trained by
# counting how often each token *b* follows each token *a* in a training text. A pair that never occurred there
# would get probability 0, and a loss of ∞ the first time it occurs in a new text; *add-k smoothing* adds a small
# `k` to every count first. Write `bigram(ids, vocab_size, k)`: it returns a `(vocab_size, vocab_size)` float tensor
# whose row *a* holds ln *p*(next = *b* | previous = *a*) for every *b*, estimated from the 1-D tensor `ids`. You will
# have built, and trained, your first language model: the section after the exercises scores it on the course's
# validation text.

# %%
def bigram(ids: torch.Tensor, vocab_size: int, k: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    pairs = (ids[:-1], ids[1:])  # (previous, next): the last token has no next one
    counts.index_put_(pairs, torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
    counts += k
    return (counts / counts.sum(dim=1, keepdim=True)).log()
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_bigram

check_bigram(bigram)


# %% [markdown]
# ### Exercise 4: sampling text from the bigram model
# A language model writes by drawing the next token from its distribution, appending it, and starting again.
# Write `sample(log_probs, start, length, generator)`: it returns the list of the `length` ids that follow the id
# `start`, each drawn from the row of `log_probs` of the id before it. Draw with the `torch.Generator` you are given
# (`torch.multinomial` takes one), so that a seed reproduces a text. The output is random, so the check compares how
# often each transition occurs over thousands of draws with the table's probabilities, and checks that the same seed
# gives the same text. You will have built the loop that generates text; stage 3's `generate` is the same loop with
# a transformer in place of the table.

# %%
def sample(log_probs: torch.Tensor, start: int, length: int, generator: torch.Generator) -> list[int]:
    ### BEGIN SOLUTION
    ids, previous = [], start
    for _ in range(length):
        probs = log_probs[previous].exp()
        previous = int(torch.multinomial(probs, 1, generator=generator))
        ids.append(previous)
    return ids
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.setup import check_sample

check_sample(sample)

# %% [markdown]
# ## 7. What a model must beat
#
# Now the real thing: the course's own text and tokenizer. Stage 2 is cached (the first time, this cell builds
# stages 1 and 2). The cells below use the package's versions of your four functions, from `minilm.exercises.setup`,
# so that they run whether or not you have solved the exercises.

# %%
from minilm.exercises.setup import reference_bigram, reference_guess_losses, reference_sample, reference_text_sizes
from minilm.tokenizer.stage import load_tokenizer, open_shards, run_tokenizer_stage

stage2 = run_tokenizer_stage()
tokenizer = load_tokenizer(stage2)
train_shards, val_shards = open_shards(stage2, "train"), open_shards(stage2, "val")
print(tokenizer, "\n", train_shards, "\n", val_shards, sep="")

for text in ["Once upon a time, a little cat sat on the mat.", "Il était une fois un café très célèbre.",
             "昔々、小さな猫がいました。", "😀 👍🏽 👩‍👩‍👧"]:
    sizes = reference_text_sizes(text, tokenizer.encode_ordinary)
    print(f"{sizes['bytes']:3} bytes {sizes['characters']:3} characters {sizes['tokens']:3} tokens  {text}")
val_bytes = val_shards.manifest["text_bytes"]
print(f"validation split: {val_bytes:,} bytes in {len(val_shards):,} tokens, "
      f"{val_bytes / len(val_shards):.2f} bytes per token")

# %% [markdown]
# The tokenizer was trained on this course's text (English, and some Spanish), so English costs it far fewer tokens
# than bytes. French costs more per byte, and text it has never seen (Japanese, emoji) falls back to about one token
# per byte, more than one per character. The model's context is counted in tokens (128 in the `cpu` preset): at the
# 3.93 bytes per token printed above (the `cpu` preset's tokenizer; the `ci` preset's smaller vocabulary compresses
# less), it holds four times the text that a byte-level model of the same context would see, and attention's cost grows with the
# square of the context.
#
# Next, the scores. The bigram model is fitted on the train split for a few values of `k`, and every loss is
# measured on the validation split, which no model saw (the unigram guess is the best in hindsight: its frequencies
# are the validation text's own).

# %%
train_ids = torch.from_numpy(train_shards.read(0, len(train_shards)))
val_ids = torch.from_numpy(val_shards.read(0, len(val_shards)))
vocab = tokenizer.vocab_size
guesses = reference_guess_losses(val_ids, vocab, val_bytes)
print(f"{'model':22} {'train nats':>10} {'val nats':>9} {'val bits/byte':>14}")
print(f"{'uniform guess':22} {'':>10} {guesses['uniform']:9.3f} {guesses['uniform_bpb']:14.3f}")
print(f"{'unigram guess':22} {'':>10} {guesses['unigram']:9.3f} {guesses['unigram_bpb']:14.3f}")
tables = {}
for k in (1.0, 0.1, 0.01, 0.001):
    tables[k] = reference_bigram(train_ids, vocab, k)
    train_loss = -tables[k][train_ids[:-1], train_ids[1:]].mean().item()  # -ln p of each next token, averaged
    val_loss = -tables[k][val_ids[:-1], val_ids[1:]].mean().item()
    val_bpb = val_loss * (len(val_ids) - 1) / val_bytes / math.log(2)
    print(f"{f'bigram, k = {k:g}':22} {train_loss:10.3f} {val_loss:9.3f} {val_bpb:14.3f}")

# %% [markdown]
# Knowing nothing costs ln(vocabulary size) per token; knowing the token frequencies saves a part of that; knowing
# the previous token saves far more. Smoothing is a trade: a large `k` spreads probability over pairs that never
# occur, a tiny `k` trusts the training counts too much, so the validation loss is lowest in between (at k = 0.01
# with the `cpu` preset) while the train loss keeps falling. Choosing such a setting on text the model was not
# fitted on is what a validation split is for. With the `cpu` preset, the transformer of notebook 04 reaches a
# validation loss of about 2.0 nats per token, or 0.73 bits per byte, well below the bigram model: that gap is what
# a model that reads 128 tokens of context, not one, buys. Here is what the bigram model writes, starting after an
# end-of-text token, as at the start of a document:

# %%
generator = torch.Generator().manual_seed(0)
for _ in range(3):
    ids = reference_sample(tables[0.01], val_shards.eot_id, 40, generator)
    print(repr(tokenizer.decode(ids)), "\n")

# %% [markdown]
# Locally plausible, globally aimless: each token fits the one before it and nothing else. The rest of the course
# builds the model that does better.
#
# **Next:** `01_data.ipynb` gathers the data our model will learn from, and cleans it.
