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
# # 03 · The transformer: attention, blocks and the GPT
#
# Stage 2 turned the corpus into a stream of token ids. This notebook builds the model that will read it: a
# decoder-only transformer, the architecture of GPT-2 and of every large language model since. We build its parts
# one at a time, by hand on tiny inputs first, and check each against the package `minilm.model`, which notebook 04
# trains.
#
# **You will build** self-attention on a four-word sentence, with a pencil-sized example of every step; then several
# heads; then the causal mask that stops a word from seeing the future; the three ways of telling the model where a
# word stands; the transformer block; and the whole GPT. In the exercises you write the central pieces yourself:
# batched attention, rotary positions, a decoding step with a KV cache, a transformer block, and the model's forward
# pass from token ids to logits, each checked against the package's own by loading its weights into yours.
#
# **You will learn**
# * what queries, keys and values are, why the scores are divided by √d, and what a head is;
# * why the mask is what makes a *language model* (predicting the next token) trainable in parallel;
# * learned, sinusoidal and rotary positions (RoPE), and why RoPE sees only distances;
# * LayerNorm and RMSNorm, GELU and SwiGLU, and why every block adds to a residual stream: you will train a deep
#   model with and without residual connections and norms, and watch the difference;
# * what a (briefly) trained model attends to;
# * how many parameters, FLOPs and bytes of memory a model needs, from its config alone, from our tiny models to
#   GPT-2 XL;
# * why generation keeps a KV cache, measured; and how our model converts to Hugging Face's GPT-2.
#
# | preset | models trained here | this notebook takes (measured, 2 CPU cores) |
# |---|---|---|
# | `ci` | 12 blocks × 32 wide for 20 steps (4 variants); 2 blocks × 64 wide for 40 steps | about 15 s |
# | `cpu` | 12 blocks × 32 wide for 150 steps (4 variants); 2 blocks × 64 wide for 300 steps | about 45 s |
# | `gpu` | twice the `cpu` steps; the KV cache is timed on the GPU | not measured |
#
# The times assume that stages 1 and 2 are built (notebooks 01 and 02); if not, the notebook builds them first. The
# models trained here are tiny and run on the CPU in every preset; notebook 04 trains the real one.

# %%
import dataclasses, math, re, time, warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn
from tqdm import tqdm

from minilm import hardware, presets
from minilm.data import stage as data_stage
from minilm.data.documents import read_jsonl
from minilm.display import markdown_table, show
from minilm.model import (GPT, SIZES, GPTConfig, KVCache, Trace, attention_by_hand, config_named, count_parameters,
                          flops_per_token, generate, make_optimizer, memory_estimate, parameter_counts, stream)
from minilm.model.attention import CausalSelfAttention, causal_mask
from minilm.model.gpt import Block
from minilm.model.layers import (MLP, LayerNorm, LearnedPositions, RMSNorm, RotaryEmbedding, SinusoidalPositions,
                                 SwiGLU, apply_rotary, make_norm, sinusoid_table)
from minilm.tokenizer.stage import TokenizerConfig, load_tokenizer, open_shards, run_tokenizer_stage
from minilm.train import TrainConfig

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
torch.set_num_threads(1)  # the models here are tiny: one thread is fastest, and much faster when cores are shared
notebook_started = time.perf_counter()
PRESET = presets.preset_name()
print(f"preset {PRESET!r}, torch {torch.__version__}")


# %% [markdown]
# Figures are shown by `minilm.display`; tables with numbers to two decimals, and matrices, by two helpers:

# %%
def _cell(value, digits: int = 2) -> str:
    if isinstance(value, float):
        return "−∞" if value == float("-inf") else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def show_table(rows: list[dict], columns: list[str] | None = None) -> None:
    # A list of dicts as a markdown table, its numbers to two decimals.
    display(Markdown(markdown_table(rows, columns, cell=_cell)))


def show_matrix(matrix, rows: list[str], columns: list[str], title: str = "", digits: int = 2) -> None:
    # A matrix as a markdown table with named rows and columns.
    values = matrix.tolist() if hasattr(matrix, "tolist") else matrix
    lines = ([f"**{title}**", ""] if title else []) + ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| **{row}** | " + " | ".join(_cell(float(v), digits) for v in line) + " |" for row, line in zip(rows, values)]
    display(Markdown("\n".join(lines)))


def colours(name: str, levels: int = 16):
    # A colour map with a few levels: the figures look the same and their PNGs are several times smaller.
    return plt.get_cmap(name, levels)


def heatmap(ax, matrix, rows, columns, title: str = "", annotate: bool = True, digits: int = 2, cmap: str = "Blues",
            **imshow):
    # A matrix as colours, with its values written on top; -inf (a masked score) is left blank.
    values = np.asarray(matrix.detach() if hasattr(matrix, "detach") else matrix, dtype=float)
    image = ax.imshow(np.where(np.isfinite(values), values, np.nan), cmap=colours(cmap), **imshow)
    ax.set_xticks(range(len(columns)), columns, rotation=90 if max(map(len, columns)) > 5 else 0)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    if annotate:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not np.isfinite(values[i, j]):
                    ax.text(j, i, "−∞", ha="center", va="center", fontsize=8, color="#888888")
                    continue
                red, green, blue, _ = image.cmap(image.norm(values[i, j]))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j, i, f"{values[i, j]:.{digits}f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    return image


# %% [markdown]
# ## 1. Self-attention by hand
#
# A sentence of four words, each already turned into a vector (its *embedding*; in a model, the token embedding).
# Ours have 4 numbers each; GPT-2's have 768. A trained model learns them; here they are random, so the pattern of
# attention below means nothing yet (section 7 looks at a trained model).

# %%
words = ["the", "cat", "drank", "milk"]
generator = torch.Generator().manual_seed(3)
X = torch.randn(4, 4, generator=generator).round(decimals=1)  # one row per word
show_matrix(X, words, ["x1", "x2", "x3", "x4"], "X: the embeddings", digits=1)

# %% [markdown]
# Attention lets every word gather information from the other words. Each word asks a question and offers an answer,
# through three matrices that the model learns:
# * its **query** q = x W_q: what it is looking for;
# * its **key** k = x W_k: what it offers to the queries of others;
# * its **value** v = x W_v: what it hands over when a query picks it.
#
# Here they map the 4 numbers of a word to 3:

# %%
W_q, W_k, W_v = (torch.randn(4, 3, generator=generator).round(decimals=1) for _ in range(3))
Q, K, V = X @ W_q, X @ W_k, X @ W_v  # (4 words, 3)
show_matrix(torch.cat([Q, K, V], dim=1), words, ["q1", "q2", "q3", "k1", "k2", "k3", "v1", "v2", "v3"],
            "queries, keys and values")

# %% [markdown]
# How well does word i's query match word j's key? Their dot product, the **score**. All the scores at once are one
# matrix product, Q Kᵀ, divided by √d (d = 3 here, the size of a query; why is explained just below). Row i holds the
# scores of word i's query against every key:

# %%
d = Q.size(-1)
scores = Q @ K.T / math.sqrt(d)
show_matrix(scores, [f"q({w})" for w in words], [f"k({w})" for w in words], "scores = Q Kᵀ / √d")

# %% [markdown]
# A softmax turns each row into **weights**: positive, summing to 1, the largest score getting the most weight. A
# word's output is the weighted sum of the values, a mix of what the words it attends to had to say:

# %%
weights = torch.softmax(scores, dim=-1)  # over the keys: each row sums to 1
output = weights @ V  # (4, 3): each row is a weighted sum of the rows of V
show_matrix(weights, [f"q({w})" for w in words], [f"k({w})" for w in words], "weights = softmax(scores), row by row")
print("row sums:", [round(total, 6) for total in weights.sum(dim=-1).tolist()])
terms = " + ".join(f"{weights[2, j]:.2f}·v({w})" for j, w in enumerate(words))
print(f"output of 'drank' = {terms} = {[round(v, 2) for v in output[2].tolist()]}")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
extent = scores.abs().max().item()  # scores are centred on white
heatmap(axes[0], scores, words, words, "scores (query row, key column)", cmap="RdBu_r", vmin=-extent, vmax=extent)
heatmap(axes[1], weights, words, words, "weights: each row sums to 1")
for ax in axes:
    ax.set_xlabel("key (the word attended to)")
axes[0].set_ylabel("query (the word attending)")
show(fig)

# %% [markdown]
# That is all of attention: `softmax(Q Kᵀ / √d) V`. The package writes it the same way in
# `minilm.model.attention.attention_by_hand`, for tensors of shape (batch, heads, time, d), and the model itself calls
# PyTorch's fused `F.scaled_dot_product_attention`, which computes the same without storing the matrix of weights
# (a "flash attention" kernel). All three agree (exercise 1 asks you to write the package's version, for batches of
# heads and with a mask):

# %%
# NBVAL_CHECK_OUTPUT
package_output, package_weights = attention_by_hand(Q[None, None], K[None, None], V[None, None])
fused = F.scaled_dot_product_attention(Q[None, None], K[None, None], V[None, None])
print("equal to minilm.model.attention_by_hand (output and weights):",
      torch.allclose(package_output[0, 0], output, atol=1e-6) and torch.allclose(package_weights[0, 0], weights, atol=1e-6))
print("equal to F.scaled_dot_product_attention, max difference below 1e-6:", (fused[0, 0] - output).abs().max().item() < 1e-6)

# %% [markdown]
# **Why divide by √d?** A dot product of two vectors of d random numbers (mean 0, variance 1) has variance d. With
# the d = 64 of a GPT-2 head, raw scores are spread over ±16 or so, and the softmax of such scores puts most of the
# weight on one key: the output mostly copies one word, and the gradient through the softmax almost vanishes. Dividing
# by √d brings the scores back to variance 1, whatever the size of the head:

# %%
rows = []
for dim in (4, 16, 64, 256):
    q = torch.randn(2000, 1, dim, generator=generator)
    k = torch.randn(2000, 16, dim, generator=generator)  # 16 keys per query
    raw = (q @ k.transpose(1, 2)).squeeze(1)
    rows.append({"d": dim, "std of q·k": raw.std().item(), "√d": math.sqrt(dim),
                 "largest weight, unscaled": torch.softmax(raw, -1).max(-1).values.mean().item(),
                 "largest weight, scaled by 1/√d": torch.softmax(raw / math.sqrt(dim), -1).max(-1).values.mean().item()})
show_table(rows)

# %% [markdown]
# With 16 keys, a uniform softmax would give each 0.06. Unscaled, the largest weight grows towards 1 as d grows;
# scaled, it stays about the same (about 0.24) for every d.
#
# ## 2. Several heads
#
# One set of weights per word is one kind of relation: "which word is my subject", say. A model needs several at
# once (the subject, the previous word, the object of a verb...). So **multi-head attention** splits the width into
# H heads of d/H numbers each; every head has its own queries, keys and values and its own pattern of weights; their
# outputs are put side by side and mixed by one more matrix, the *output projection*. Four numbers in 2 heads of 2
# cost exactly the parameters of one head of 4.
#
# The package's `CausalSelfAttention` computes q, k and v of every head with one matrix, `c_attn` (GPT-2's name).
# Here is one with 2 heads on our 4-number words, set to attend both ways (`causal=False`; the mask comes in section 3),
# computed by hand:

# %%
config = GPTConfig(vocab_size=8, context=8, n_layer=1, n_head=2, n_embd=4, causal=False)
attn = CausalSelfAttention(config)
with torch.no_grad():  # rounded random weights, like the embeddings
    for param in attn.parameters():
        param.copy_(torch.randn(param.shape, generator=generator).round(decimals=1))

heads, head_dim = config.n_head, config.head_dim
qkv = X @ attn.c_attn.weight.T + attn.c_attn.bias  # (4 words, 3 × 4): q, k and v of both heads
q, k, v = qkv.split(config.n_embd, dim=-1)
q, k, v = (t.view(4, heads, head_dim).transpose(0, 1) for t in (q, k, v))  # (heads, words, head_dim)
head_weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)  # (heads, words, words)
head_outputs = head_weights @ v  # (heads, words, head_dim)
side_by_side = head_outputs.transpose(0, 1).reshape(4, config.n_embd)  # (words, heads × head_dim)
by_hand = side_by_side @ attn.c_proj.weight.T + attn.c_proj.bias  # the output projection mixes the heads

fig, axes = plt.subplots(1, heads, figsize=(8, 3.3))
for h, ax in enumerate(axes):
    heatmap(ax, head_weights[h].detach(), words, words, f"head {h}")
    ax.set_xlabel("key")
axes[0].set_ylabel("query")
show(fig)

# %%
# NBVAL_CHECK_OUTPUT
module_output, _ = attn(X[None])
print("by hand equals CausalSelfAttention (2 heads), max difference below 1e-6:",
      (module_output[0] - by_hand).abs().max().item() < 1e-6)
print("parameters: c_attn", tuple(attn.c_attn.weight.shape), "+ c_proj", tuple(attn.c_proj.weight.shape), "+ biases =",
      count_parameters(attn))

# %% [markdown]
# The two heads weigh the words differently: head 0 gives most of every row to "the", head 1 spreads its weight more. In
# the package the heads are a dimension of the tensors, (batch, heads, time, head_dim), so all of them are computed by
# the same matrix products at once.
#
# ## 3. The causal mask
#
# A language model predicts the next token. During training it does so at *every* position of a window at once: from
# "the" predict "cat", from "the cat" predict "drank", and so on, in one forward pass. That is only honest if no
# position can see the words after it; otherwise predicting "drank" would be copying it. The **causal mask** hides
# the future: before the softmax, every score of a query with a later key is set to −∞, and e^−∞ = 0.

# %%
mask = causal_mask(4, 4)  # True where the query (row) may see the key (column)
print(mask.int())
masked_scores = scores.masked_fill(~mask, float("-inf"))
causal_weights = torch.softmax(masked_scores, dim=-1)
causal_output = causal_weights @ V
show_matrix(masked_scores, [f"q({w})" for w in words], [f"k({w})" for w in words], "scores, masked")
show_matrix(causal_weights, [f"q({w})" for w in words], [f"k({w})" for w in words], "weights")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
heatmap(axes[0], masked_scores, words, words, "masked scores", cmap="RdBu_r", vmin=-extent, vmax=extent)
heatmap(axes[1], causal_weights, words, words, "causal weights")
show(fig)

# %% [markdown]
# "the" can only attend to itself; "milk", the last word, sees the whole sentence. The package's `attention_by_hand`
# takes the mask as an argument, and the fused kernel builds it itself with `is_causal=True`:

# %%
# NBVAL_CHECK_OUTPUT
package_output, _ = attention_by_hand(Q[None, None], K[None, None], V[None, None], mask)
fused = F.scaled_dot_product_attention(Q[None, None], K[None, None], V[None, None], is_causal=True)
print("equal to attention_by_hand with causal_mask, max difference below 1e-6:",
      (package_output[0, 0] - causal_output).abs().max().item() < 1e-6)
print("equal to F.scaled_dot_product_attention(is_causal=True), max difference below 1e-6:",
      (fused[0, 0] - causal_output).abs().max().item() < 1e-6)

# %% [markdown]
# The proof that the future stays hidden: replace the last word, "milk", by another ("water", a new random vector).
# With the mask, only the last output changes; without it, every word's output does:

# %%
# NBVAL_CHECK_OUTPUT
X_water = X.clone()
X_water[3] = torch.randn(4, generator=generator).round(decimals=1)


def attend(x: torch.Tensor, causal: bool) -> torch.Tensor:
    out, _ = attention_by_hand((x @ W_q)[None, None], (x @ W_k)[None, None], (x @ W_v)[None, None],
                               causal_mask(4, 4) if causal else None)
    return out[0, 0]


for causal in (True, False):
    changed = (attend(X, causal) - attend(X_water, causal)).abs().max(dim=-1).values > 1e-6
    print(f"{'causal' if causal else 'full  '} attention: outputs changed by the last word:",
          dict(zip(words, changed.tolist())))

# %% [markdown]
# An encoder such as BERT attends both ways (no mask) and is trained differently, to fill in hidden words; the
# package builds one with `GPTConfig(causal=False)`. Every model from here on is a decoder.
#
# ## 4. Where is each word? Positions
#
# Attention itself does not know the order of the words. Shuffle the sentence, and every word gets exactly the output
# it had before (without the mask, which we leave aside here): "milk drank the cat" is "the cat drank milk".

# %%
# NBVAL_CHECK_OUTPUT
order = [3, 2, 0, 1]  # "milk drank the cat"
shuffled = attend(X[order], causal=False)
print("shuffled sentence:", " ".join(words[i] for i in order))
print("each word's output is unchanged:", torch.allclose(shuffled, attend(X, causal=False)[order], atol=1e-6))

# %% [markdown]
# So the model must be told where each token is. Three ways, all in `minilm/model/layers.py` and chosen with
# `GPTConfig(position=...)`:
#
# **Learned positions** (GPT-2, `"learned"`): a second embedding table, one trained vector per position, added to the
# token embedding. Simple and effective, but it costs a vector per position, and the model knows nothing about
# positions beyond its `context`, which it never saw in training:

# %%
gpt2 = config_named("gpt2")
table = LearnedPositions(gpt2).weight
print(f"GPT-2's position table: {tuple(table.shape)} = {table.numel():,} parameters, "
      f"{table.numel() / parameter_counts(gpt2)['total']:.1%} of the model")

# %% [markdown]
# **Sinusoidal positions** (the 2017 Transformer, `"sinusoidal"`): a fixed table, nothing to learn. Column pair i is
# sin and cos of the position times a frequency that falls geometrically from 1 to 1/10,000 across the columns: fast
# waves on the left, slow ones on the right, like the hands of a clock. Each position gets a unique pattern, and the
# similarity of two positions depends only on how far apart they are (right: the same curve shifted):

# %%
table = sinusoid_table(128, 64)
similarity = table @ table.T / table.norm(dim=-1).pow(2).mean()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
sines_then_cosines = torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)  # the table interleaves them
image = axes[0].imshow(sines_then_cosines.T, aspect="auto", cmap=colours("RdBu_r", 16), interpolation="nearest")
axes[0].set_xlabel("position")
axes[0].set_yticks([15.5, 47.5], ["sin\n(columns\n0, 2, ...)", "cos\n(columns\n1, 3, ...)"], fontsize=8)
axes[0].axhline(31.5, color="black", linewidth=0.8)
axes[0].set_title("sinusoid_table(128, 64)")
fig.colorbar(image, ax=axes[0])
for p in (20, 60, 100):
    axes[1].plot(similarity[p], label=f"position {p}")
axes[1].set_xlabel("other position")
axes[1].set_ylabel("normalised dot product")
axes[1].set_title("similarity with every other position")
axes[1].legend()
show(fig)
print("the package's module adds 0.02 × this table (the size of the token embeddings):",
      torch.allclose(SinusoidalPositions(GPTConfig(context=128, n_embd=64, n_head=4)).table, 0.02 * table))

# %% [markdown]
# **Rotary positions** (RoPE, Su et al. 2021; LLaMA, Mistral, Qwen and most recent models, `"rope"`): nothing is added
# to the embeddings. Instead, inside every attention layer, each query and key is *rotated* by an angle proportional
# to its position: its dimensions are taken in pairs, and pair i turns by p × θ_i at position p, with frequencies
# θ_i = 10,000^(−2i/d) as in the sinusoids. Left: two of the 16 pairs of a 32-number query at positions 0 to 7:
# pair 0, the fastest, turns by 1 radian per position, pair 4 by 0.1 radian.
#
# Rotations keep lengths and add angles. So the dot product of a query at position p with a key at position s
# depends only on p − s: attention sees *relative* positions. Right: the score of the same query and key placed at
# many absolute positions, against their distance; the curves lie on top of each other:

# %%
rope_config = GPTConfig(vocab_size=8, context=256, n_layer=1, n_head=1, n_embd=32, position="rope")
rotary = RotaryEmbedding(rope_config)  # cos and sin of every position and pair, shared by all layers
half = rope_config.head_dim // 2
arrow = torch.zeros(1, 1, 1, 32)  # (batch, time, heads, head_dim): pair i is dimensions (i, i + 16)
arrow[..., 0], arrow[..., 4] = 1.0, 0.6  # pair 0 and pair 4 point along the x axis at position 0


def rotated(x: torch.Tensor, position: int) -> torch.Tensor:
    return apply_rotary(x, *rotary(torch.tensor([position])))[0, 0, 0]


fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for pair, colour in ((0, "#d1495b"), (4, "#35608f")):
    for p in range(8):
        r = rotated(arrow, p)
        axes[0].annotate("", xy=(r[pair].item(), r[pair + half].item()), xytext=(0, 0),
                         arrowprops=dict(arrowstyle="->", color=colour, alpha=0.3 + 0.1 * p))
        if pair == 0 or p in (0, 7):
            axes[0].text(1.12 * r[pair].item(), 1.12 * r[pair + half].item(), str(p), color=colour, fontsize=8,
                         ha="center", va="center")
    axes[0].plot([], [], color=colour, label=f"pair {pair}: {rope_config.rope_theta ** (-pair / half):.2g} rad per position")
axes[0].set_xlim(-1.5, 1.5)
axes[0].set_ylim(-1.3, 1.3)
axes[0].set_aspect("equal")
axes[0].legend(fontsize=7, loc="lower left")
axes[0].set_title("a query's pairs 0 and 4, at positions 0..7")

query = torch.randn(1, 1, 1, 32, generator=generator)  # a random query and key, for the scores
key = torch.randn(1, 1, 1, 32, generator=generator)

distances = np.arange(0, 100)
curves = {}
for p in (100, 150, 200):  # the query's position; the key sits `distance` positions before it
    curves[p] = [(rotated(query, p) @ rotated(key, p - int(dist))).item() for dist in distances]
    axes[1].plot(distances, curves[p], label=f"query at position {p}", linewidth=3 if p == 100 else 1.2)
axes[1].set_xlabel("distance p − s between query and key")
axes[1].set_ylabel("q · k after rotation")
axes[1].set_title("the score depends on the distance only")
axes[1].legend()
show(fig)

# %%
# NBVAL_CHECK_OUTPUT
spread = max(np.abs(np.array(curves[100]) - np.array(curves[p])).max() for p in curves)
print("same score at every absolute position, max difference below 1e-4:", spread < 1e-4)
print("RoPE has parameters:", len(list(rotary.parameters())) > 0)

# %% [markdown]
# RoPE needs no parameters, adds nothing to the residual stream, and the relative view it gives attention makes it
# easier to extend the context later (by changing θ). The model applies it to q and k in `CausalSelfAttention`, as
# `apply_rotary(q, cos, sin)`.
#
# ## 5. The transformer block
#
# Attention mixes information *across* positions. A block pairs it with an **MLP**, which works on each position
# alone, and wraps both in **norms** and **residual connections**. The package's `Block` (in `minilm.model.gpt`)
# holds four modules, `ln_1`, `attn`, `ln_2` and `mlp`, and reads the stream twice: attention reads a normalised copy
# of the **residual stream** `x` and *adds* its result back to it; then the MLP reads a normalised copy of the new
# stream and adds its result too. A block takes a stream and returns one of the same shape, so blocks stack:

# %%
block = Block(GPTConfig(context=16, n_layer=1, n_head=4, n_embd=32), layer=0)
stream_in = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))  # (batch, positions, width)
stream_out, _ = block(stream_in)
print(f"{type(block).__name__}: {tuple(stream_in.shape)} -> {tuple(stream_out.shape)}, "
      f"{count_parameters(block):,} parameters in {[name for name, _ in block.named_children()]}")

# %% [markdown]
# The stream itself is never normalised nor replaced, only added to: a straight path from the embedding to the
# output. This is GPT-2's *pre-norm* arrangement; the 2017 Transformer normalised after adding (`x = norm(x + f(x))`),
# which trains worse when deep (section 6 shows what the residual path and the norms are for).
#
# **LayerNorm and RMSNorm.** The stream grows as blocks add to it; a norm rescales each position's vector before a
# branch reads it. LayerNorm (GPT-2) subtracts the mean and divides by the standard deviation, then multiplies by a
# learned gain (and adds a learned bias). RMSNorm (LLaMA) only divides by the root mean square: no centring, no bias,
# one reduction fewer, and in practice as good.

# %%
x = torch.tensor([[2.0, 4.0, 6.0, 8.0, 30.0]])
layer_norm, rms_norm = LayerNorm(5), RMSNorm(5)
rows = []
for name, y in [("input", x), ("LayerNorm", layer_norm(x)), ("RMSNorm", rms_norm(x))]:
    y = y.detach()[0]
    rows.append({"": name, "values": [round(v, 2) for v in y.tolist()], "mean": y.mean().item(),
                 "std": y.std(unbiased=False).item(), "root mean square": y.pow(2).mean().sqrt().item()})
show_table(rows)

# %%
# NBVAL_CHECK_OUTPUT
textbook_layer_norm = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
textbook_rms_norm = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
print("LayerNorm is (x - mean) / std:", torch.allclose(layer_norm(x), textbook_layer_norm, atol=1e-5))
print("RMSNorm is x / rms:", torch.allclose(rms_norm(x), textbook_rms_norm, atol=1e-5))

# %% [markdown]
# **GELU and SwiGLU.** GPT-2's MLP widens each vector 4×, applies GELU (a smooth ReLU), and projects back. LLaMA's
# SwiGLU uses a *gate*: two projections, one through SiLU (x·sigmoid(x)), multiplied element by element, then the
# projection back. Three matrices instead of two, so the hidden width is 8/3 × instead of 4× to keep the parameter
# count; gated units train to a lower loss at the same size (Shazeer, 2020). (The package stores the gate's and the up
# projection's matrices as one, (2 × hidden, width), which is why the table below lists two tensors.)

# %%
t = torch.linspace(-4, 3, 200)
fig, ax = plt.subplots(figsize=(5, 2.8))
ax.plot(t, F.relu(t), label="ReLU", color="#999999")
ax.plot(t, F.gelu(t, approximate="tanh"), label="GELU (GPT-2's tanh form)", color="#35608f")
ax.plot(t, F.silu(t), label="SiLU, the gate of SwiGLU", color="#d1495b", linestyle="--")
ax.axhline(0, color="black", linewidth=0.5)
ax.set_title("activation functions")
ax.legend()
show(fig)

rows = []
for mlp in ("gelu", "swiglu"):
    config = config_named("gpt2", mlp=mlp)
    module = MLP(config) if mlp == "gelu" else SwiGLU(config)
    rows.append({"MLP of GPT-2 small's width": mlp, "hidden width": config.hidden,
                 "matrices": " + ".join(str(tuple(p.shape)) for p in module.parameters() if p.dim() == 2),
                 "parameters per block": f"{count_parameters(module):,}"})
show_table(rows)

# %% [markdown]
# **The whole model.** Token embedding (plus learned or sinusoidal positions), `n_layer` blocks, a final norm, and the
# output head that turns each position's vector into one score (logit) per token of the vocabulary. The head reuses
# the token embedding matrix (*weight tying*). Here is the model that notebook 04 trains with this preset (its
# vocabulary comes from stage 2's tokenizer), with its parameters by part:

# %%
tokenizer_artifact = run_tokenizer_stage()
tokenizer = load_tokenizer(tokenizer_artifact)
train_shards = open_shards(tokenizer_artifact, "train")
stage4 = TrainConfig.from_preset(PRESET).model_config(tokenizer.vocab_size)
model = GPT(stage4)
print(model if stage4.n_layer <= 4 else f"{model.__class__.__name__} with {stage4.n_layer} blocks like this one:\n{model.transformer.h[0]}")
counts = parameter_counts(stage4)
show_table([{"part": part, "parameters": f"{n:,}", "share": f"{n / counts['total']:.1%}"} for part, n in counts.items()])

# %%
# NBVAL_CHECK_OUTPUT
print("the accounting formula counts the model's tensors exactly:", parameter_counts(stage4)["total"] == count_parameters(model))


# %% [markdown]
# ## 6. Why residual connections and norms matter
#
# Take a deep, narrow model (12 blocks, 32 numbers wide) and take out its residual connections, its norms, or both,
# keeping GPT-2's initialisation. A block without a residual connection *replaces* the stream with its branch's
# output instead of adding to it; without norms, a branch reads the stream as it is:

# %%
class VariantBlock(Block):
    # The package's block, with its residual connections and/or its norms taken out.

    def __init__(self, config: GPTConfig, layer: int, residual: bool = True, norm: bool = True):
        super().__init__(config, layer)
        self.residual = residual
        if not norm:
            self.ln_1, self.ln_2 = nn.Identity(), nn.Identity()

    def forward(self, x, rotary=None, mask=None, cache=None, return_weights=False):
        attended, weights = self.attn(self.ln_1(x), rotary, mask, cache, return_weights)
        x = x + attended if self.residual else attended
        transformed = self.mlp(self.ln_2(x))
        x = x + transformed if self.residual else transformed
        return x, weights


def make_variant(config: GPTConfig, residual: bool, norm: bool, seed: int = 0) -> GPT:
    model = GPT(config, seed=seed)
    with torch.random.fork_rng(devices=[]):  # building layers draws random numbers: leave the global state alone
        model.transformer.h = nn.ModuleList(VariantBlock(config, i, residual, norm) for i in range(config.n_layer))
    if not norm:
        model.transformer.ln_f = nn.Identity()
    model.init_weights(seed)  # GPT-2's initialisation, for the new blocks too
    return model


VARIANTS = {"residual + norm (GPT-2)": (True, True), "residual, no norm": (True, False),
            "norm, no residual": (False, True), "neither": (False, False)}
deep = GPTConfig(vocab_size=tokenizer.vocab_size, context=32, n_layer=12, n_head=4, n_embd=32)
x, y = (torch.from_numpy(a) for a in train_shards.batch(16, 32, np.random.default_rng(0)))  # real windows of stage 2
print(f"{deep.n_layer} blocks of width {deep.n_embd}: {parameter_counts(deep)['total']:,} parameters; "
      f"a batch of {tuple(x.shape)} token ids from the train shards")


# %% [markdown]
# Before any training, one forward and backward pass on a batch of real windows. Left: the size of the signal
# entering each block. Middle: how alike the vectors of different positions of a window are (their mean cosine
# similarity; 1 means every position holds the same vector). Right: the size of the gradient that reaches each
# block's weights, without which a block cannot learn:

# %%
def position_similarity(h: torch.Tensor) -> float:
    # The mean cosine similarity between the vectors of different positions of each window of h (B, T, C).
    h = h.double() / h.double().norm(dim=-1, keepdim=True)  # NaN where the signal has vanished entirely
    similarity = h @ h.transpose(1, 2)  # (B, T, T)
    length = h.size(1)
    return ((similarity.sum((1, 2)) - similarity.diagonal(dim1=1, dim2=2).sum(-1)) / (length * (length - 1))).mean().item()


torch.set_flush_denormal(True)  # vanishing signals become "denormal" floats, which CPUs compute 10-100x slower
# Each variant has its own line style as well as its colour: where two curves coincide, both stay visible.
STYLES = {"residual + norm (GPT-2)": dict(color="#35608f", linestyle="-", marker="o", markersize=6, linewidth=3),
          "residual, no norm": dict(color="#f0a202", linestyle="--", marker="s", markersize=3, linewidth=1.5),
          "norm, no residual": dict(color="#5aa469", linestyle="-", marker="^", markersize=4, linewidth=1.5),
          "neither": dict(color="#d1495b", linestyle=":", marker="x", markersize=4, linewidth=1.5)}
signal, alike, reads = {}, {}, {}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for name, (residual, norm) in VARIANTS.items():
    model = make_variant(deep, residual, norm)
    trace = Trace()
    _, loss = model(x, y, trace=trace)
    loss.backward()
    entering = [trace.residual[i].detach() for i in range(deep.n_layer + 1)]
    gradient = [torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item() for block in model.transformer.h]
    with torch.no_grad():  # what each block's attention reads: the stream after the block's first norm
        reads[name] = [block.ln_1(h).std().item() for block, h in zip(model.transformer.h, entering)]
    signal[name] = [h.std().item() for h in entering]
    alike[name] = [position_similarity(h) for h in entering]
    axes[0].semilogy(signal[name], label=name, **STYLES[name])
    axes[1].plot(alike[name], label=name, **STYLES[name])
    axes[2].semilogy(gradient, label=name, **STYLES[name])

for ax, title in zip(axes, ["std of the signal entering each block", "how alike the positions are",
                            "gradient norm of each block's weights"]):
    ax.set_xlabel("block (12 = after the last)" if ax is not axes[2] else "block")
    ax.set_title(title)
axes[1].set_ylim(-0.05, 1.05)
axes[1].legend(fontsize=8)
show(fig)

blue, orange = np.array(signal["residual + norm (GPT-2)"]), np.array(signal["residual, no norm"])
print(f"blue and orange coincide on the left: their signal's std differs by at most {np.abs(blue / orange - 1).max():.0%} "
      f"({blue[0]:.3f} -> {blue[-1]:.3f} and {orange[0]:.3f} -> {orange[-1]:.3f}); and in the middle: their positions "
      f"are at most {max(alike['residual + norm (GPT-2)']):.3f} and {max(alike['residual, no norm']):.3f} alike")

# %% [markdown]
# Without residual connections and norms (red), every block multiplies the signal by a small factor (GPT-2
# initialises its weights small), so after a few blocks nothing of the input is left (the curve stops where it
# reaches 0), and the gradient of the first blocks vanishes with it: the same product of small factors, backwards.
#
# With norms but no residual path (green), the signal shrinks too, far more slowly, and gradients flow. A block without
# a residual path hands on only its MLP's output, which GPT-2's initialisation makes small (the MLP's output projection
# starts with a standard deviation of 0.02 / √(2 × 12 blocks)): the stream falls from about 0.03 to below 0.001 at the
# first block. A norm rescales what its branch reads to size 1, whatever the size of the stream; but it divides by
# √(variance + ε), where a small ε (1e-5, as in GPT-2) keeps it from dividing by zero. Once the stream's std is below
# √ε ≈ 0.003, ε dominates, and the norm restores only part of the size. The green model closer, with the size of what
# each block's attention reads, and the same model with ε = 1e-12 (grey):

# %%
tiny_eps = make_variant(dataclasses.replace(deep, norm_eps=1e-12), residual=False, norm=True)
trace = Trace()
with torch.no_grad():
    tiny_eps(x, trace=trace)
    signal_tiny_eps = [trace.residual[i].std().item() for i in range(deep.n_layer + 1)]
    reads_tiny_eps = [block.ln_1(trace.residual[i]).std().item() for i, block in enumerate(tiny_eps.transformer.h)]

fig, ax = plt.subplots(figsize=(9, 3.2))
green = STYLES["norm, no residual"]
ax.semilogy(signal["norm, no residual"], label=f"the stream, ε = {deep.norm_eps:g} (as above)", **green)
ax.semilogy(reads["norm, no residual"], label="what attention reads (after the norm)", **{**green, "linestyle": "--"})
ax.semilogy(signal_tiny_eps, "^-", color="#888888", markersize=4, label="the stream, ε = 1e-12")
ax.semilogy(reads_tiny_eps, "^--", color="#888888", markersize=4, label="what attention reads, ε = 1e-12")
ax.axhline(math.sqrt(deep.norm_eps), color="black", linestyle=":", linewidth=1, label=f"√ε for ε = {deep.norm_eps:g}")
ax.set_xlabel("block (12 = after the last)")
ax.set_ylabel("std")
ax.set_title("norm, no residual: the size of the stream and of what attention reads")
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
show(fig)
print("what attention reads (std) at blocks 0, 1 and 11:",
      " ".join(f"{reads['norm, no residual'][i]:.2f}" for i in (0, 1, -1)), f"with ε = {deep.norm_eps:g};",
      " ".join(f"{reads_tiny_eps[i]:.2f}" for i in (0, 1, -1)), "with ε = 1e-12")


# %% [markdown]
# With ε = 1e-5, the first block's attention reads a signal of size 1 and each later one less, and the stream shrinks a
# little at each block; with ε = 1e-12 the norms restore the size in full, and after its fall at the first block the
# stream keeps its (small) size through the 12 blocks. Either way, look at the middle panel above: every attention layer
# mixes the positions, and after a few blocks every position holds the same vector. The model can no longer tell one
# token from another (the "rank collapse" of attention without residual connections, Dong et al. 2021).
#
# With a residual connection, a block computes x + f(x): each position keeps its own token in the stream, whatever
# the branches add, and the gradient reaches every block directly, since the derivative of x + f(x) is 1 + f′(x).
# At initialisation the branches add little, so with or without norms the stream keeps the size of the embeddings
# and its positions stay distinct: the blue and orange curves coincide in the left and middle panels (the line printed
# under the first figure checks it). The norms make their difference on the right, and in training.
#
# Now train each variant for a short while on the same batches of our stage-2 shards (AdamW, warmup, gradient
# clipping at 1, as notebook 04 does). The dashed line is the entropy of the token frequencies: the loss of a model
# that ignores its input and always predicts how common each token is. Getting below it means using the context.

# %%
def train_briefly(model: GPT, steps: int, lr: float, batch_size: int, context: int, desc: str = "") -> list[float]:
    # AdamW with a short warmup and gradient clipping, on random windows of the train shards (the same for every model).
    optimizer = make_optimizer(model, lr=lr)
    windows = np.random.default_rng(0)
    losses = []
    for step in tqdm(range(steps), desc=desc, mininterval=2):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 20)
        x, y = (torch.from_numpy(a) for a in train_shards.batch(batch_size, context, windows))
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


ids = train_shards.read(0, len(train_shards))
frequencies = np.bincount(ids, minlength=tokenizer.vocab_size) / len(ids)
unigram = float(-(frequencies[frequencies > 0] * np.log(frequencies[frequencies > 0])).sum())

DEEP_STEPS = {"ci": 20, "cpu": 150, "gpu": 300}[PRESET]
curves, seconds = {}, {}
for name, (residual, norm) in VARIANTS.items():
    started = time.perf_counter()
    curves[name] = train_briefly(make_variant(deep, residual, norm), DEEP_STEPS, 3e-3, 16, 32, desc=name)
    seconds[name] = time.perf_counter() - started


# %%
def smooth(values: list[float], window: int = 10) -> np.ndarray:
    window = max(1, min(window, len(values) // 3))
    return np.convolve(values, np.ones(window) / window, mode="valid")


fig, ax = plt.subplots(figsize=(7, 3.4))
for (name, losses), colour in zip(curves.items(), ["#35608f", "#f0a202", "#5aa469", "#d1495b"]):
    ax.plot(losses, color=colour, alpha=0.25, linewidth=0.8)
    window = max(1, min(10, len(losses) // 3))
    ax.plot(np.arange(window - 1, len(losses)), smooth(losses), color=colour, label=name)
ax.axhline(unigram, color="black", linestyle="--", linewidth=1, label=f"token frequencies alone ({unigram:.2f})")
ax.set_xlabel("step")
ax.set_ylabel("training loss (cross-entropy, nats)")
ax.set_title(f"12 blocks, 32 wide, {DEEP_STEPS} steps")
ax.set_ylim(unigram - 1.2, math.log(tokenizer.vocab_size) + 0.2)
ax.legend(fontsize=8)
show(fig)
show_table([{"variant": name, "loss, last 20 steps": float(np.mean(losses[-20:])),
             "below token frequencies by": float(unigram - np.mean(losses[-20:])), "seconds": round(seconds[name], 1)}
            for name, losses in curves.items()])

# %% [markdown]
# In the committed `cpu` run (150 steps; the `ci` preset's 20 steps end before this), all four quickly learn how common
# each token is: that needs only the biases of the last block. Then they part. GPT-2's block, with both the residual
# connections and the norms, goes well below the line: it uses the tokens before to predict the next. The residual
# path alone gets a little below it, after a loss spike early on (off the top of the plot): without norms, nothing
# keeps the scale of the stream in check as 24 branches add to it. Without a residual path the model stays at the line
# (a little above it), normalised or not: it has learned the token frequencies and nothing else, because its last
# block sees the same vector at every position.
#
# ## 7. What a trained model attends to
#
# The attention maps of section 1 were random. Here is a small GPT (2 blocks of 4 heads, 64 wide), trained briefly on
# the stage-2 shards, reading a sentence from the validation stories. It is only *briefly* trained, a few hundred steps
# at most; notebook 04 trains the real model properly, for much longer.

# %%
small = GPTConfig(vocab_size=tokenizer.vocab_size, context=128, n_layer=2, n_head=4, n_embd=64)
small_model = GPT(small)
SMALL_STEPS = {"ci": 40, "cpu": 300, "gpu": 600}[PRESET]
started = time.perf_counter()
small_losses = train_briefly(small_model, SMALL_STEPS, 3e-3, 16, 64, desc="small GPT")
small_model.eval()
print(f"{parameter_counts(small)['total']:,} parameters, {SMALL_STEPS} steps in {time.perf_counter() - started:.0f} s: "
      f"loss {np.mean(small_losses[:5]):.2f} -> {np.mean(small_losses[-20:]):.2f} "
      f"(token frequencies alone: {unigram:.2f})")

# %%
data_artifact = data_stage.run_data_stage()
story = next(doc.text for doc in read_jsonl(data_artifact.path / "val.jsonl") if doc.domain == "books")
sentences = re.split(r"(?<=[.!?])\s+", story.strip())
sentence = sentences[0]
for more in sentences[1:]:  # as many whole sentences as fit in 24 tokens
    if len(tokenizer.encode_ordinary(sentence + " " + more)) > 24:
        break
    sentence += " " + more
sentence_ids = tokenizer.encode_ordinary(sentence)[:24]
labels = [tokenizer.decode([i]).replace(" ", "·") for i in sentence_ids]
print(repr(sentence))
print(len(sentence_ids), "tokens:", labels)

# %% [markdown]
# `model.inspect(ids)` runs the model and records, for the layers asked for, the attention weights of every head and
# the residual stream (a `Trace`). The weights of the second block's four heads (`·` is a space; row = the token
# attending, column = the token attended to; the mask leaves the upper triangle empty):

# %%
trace = small_model.inspect(torch.tensor([sentence_ids]), layers={1})
attention = trace.attention[1][0]  # (heads, tokens, tokens)
fig, axes = plt.subplots(1, small.n_head, figsize=(12, 3.6))
for h, ax in enumerate(axes):
    ax.imshow(attention[h], cmap=colours("Blues"), vmin=0, vmax=attention.max().item())
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels if h == 0 else [], fontsize=7)
    ax.set_title(f"block 1, head {h}")
show(fig)

# %% [markdown]
# What does each head do, on average over this sentence? The share of weight on the token itself, on the one just
# before, on the first token, the mean distance it looks back, and the two tokens (besides the first) that the
# queries of the second half of the sentence look at most. A number means little alone: a query that sees n tokens
# and spreads its weight evenly gives each 1/n, so the first query puts all its weight on itself, the fifth a fifth
# on each token. The last row is that baseline, uniform causal attention over the same tokens, computed with the same
# code; a head does something only where it differs from that row:

# %%
trace = small_model.inspect(torch.tensor([sentence_ids]))
length = len(sentence_ids)
positions = torch.arange(length)
distance = (positions[:, None] - positions[None, :]).clamp(min=0).float()
uniform = causal_mask(length, length).float()
uniform = uniform / uniform.sum(dim=-1, keepdim=True)  # query i gives each of the i + 1 tokens it sees 1 / (i + 1)


def head_summary(w: torch.Tensor) -> dict:
    # The columns of the table for one head's weights w (T, T).
    late = w[length // 2:, 1:]  # the queries of the second half (each sees half the sentence), first token left out
    top = (late.sum(dim=0) / late.size(0)).topk(2)
    return {"on itself": w.diagonal().mean().item(), "on the previous token": w.diagonal(-1).mean().item(),
            "on the first token": w[1:, 0].mean().item(), "mean distance back": (w * distance).sum(-1).mean().item(),
            "the second half looks most at": ", ".join(f"{labels[1 + int(i)]} {v:.0%}" for v, i in zip(*top))}


rows = [{"block": layer, "head": h, **head_summary(trace.attention[layer][0, h])}
        for layer in range(small.n_layer) for h in range(small.n_head)]
baseline = head_summary(uniform)
show_table(rows + [{"block": "uniform", "head": "(baseline)", **baseline}])

first_token = np.mean([row["on the first token"] for row in rows])
print(f"weight on the first token, mean over the {len(rows)} heads: {first_token:.3f}; "
      f"uniform causal attention over these {length} tokens gives {baseline['on the first token']:.3f} "
      f"(the mean of 1/2, 1/3, ..., 1/{length})")
for column in ("on itself", "on the previous token", "on the first token"):
    above = [f"{row['block']}.{row['head']} ({row[column]:.2f})" for row in rows if row[column] > 1.5 * baseline[column]]
    print(f"heads with more than 1.5 × the uniform weight {column} ({1.5 * baseline[column]:.2f}):",
          ", ".join(above) or "none")

# %% [markdown]
# Even after a short training the heads differ, but less than the colours of the figure suggest: most numbers of the
# table are close to the uniform row. In the committed `cpu` run, the clearest departures are in what the second half
# of the sentence looks at: head 2 of block 0 sends 20% of its attention to "·firefighter" and 16% to "·Most", head 0
# of block 0 sends 17% to ".", the end of the first sentence, and head 3 of block 1 16% to "·was" (uniform attention
# gives no token more than 7%). One head just passes 1.5 × the uniform weight, as the printout finds: head 2 of block
# 0 on the first token (0.23 against a threshold of 0.22). No head does so on itself or on the token just
# before: the simplest useful pattern for predicting the next token, copying from the token before, takes longer
# training.
#
# The first token gets, on average over the heads, about the weight uniform attention gives it (the printout compares
# the two for the preset you ran). Models trained for long often put much of the weight of many heads on the first
# token, a resting place when nothing else is useful (an "attention sink", Xiao et al. 2023); this briefly trained one
# shows at most a hint of it, in one head. With more training, the patterns become sharper and more specialised: heads
# that copy the previous token, heads that find the earlier mention of a name (Olsson et al. 2022), and so on.
#
# ## 8. Counting: parameters, FLOPs and memory
#
# Everything about a model's cost follows from its config, before any weight exists (`minilm.model.accounting`).
# **Parameters** first. Our formula against the sizes OpenAI published for GPT-2:

# %%
published = {"gpt2": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1.5B"}
rows, shares = [], {}
for name, known in published.items():
    config = config_named(name)
    counts = parameter_counts(config)
    shares[name] = counts
    rows.append({"model": name, "layers": config.n_layer, "heads": config.n_head, "width": config.n_embd,
                 "parameters (ours)": f"{counts['total']:,}", "published": known,
                 "embeddings": f"{(counts['token_embedding'] + counts['position_embedding']) / counts['total']:.0%}",
                 "≈ 12 × layers × width²": f"{12 * config.n_layer * config.n_embd ** 2 / 1e6:,.0f}M"})
show_table(rows)

fig, ax = plt.subplots(figsize=(7, 2.8))
left = np.zeros(len(shares))
for part, colour in [("token_embedding", "#bde0fe"), ("position_embedding", "#a2d2ff"), ("attention", "#35608f"),
                     ("mlp", "#d1495b"), ("norms", "#999999")]:
    values = np.array([shares[name][part] / 1e6 for name in shares])
    ax.barh(list(shares), values, left=left, color=colour, label=part)
    left += values
ax.set_xlabel("parameters (millions)")
ax.legend(fontsize=7, ncol=2, loc="upper right")
ax.set_title("where the parameters are")
ax.invert_yaxis()
show(fig)

# %% [markdown]
# A block holds about 12 × width² parameters: 4 width² in attention (q, k, v and the output projection) and 8 width²
# in the MLP (two matrices, 4× wide). As models grow, the blocks dominate and the embeddings shrink to a few percent.
#
# And the course's models, the ones notebook 04 trains with each preset (the vocabulary is the preset's tokenizer):

# %%
rows = []
for name in presets.PRESET_NAMES:
    train_config = TrainConfig.from_preset(name)
    config = train_config.model_config(TokenizerConfig.from_preset(name).vocab_size)
    counts = parameter_counts(config)
    flops = flops_per_token(config)
    memory = memory_estimate(config, train_config.batch_size)
    rows.append({"preset": name, "layers × heads × width": f"{config.n_layer} × {config.n_head} × {config.n_embd}",
                 "context": config.context, "vocabulary": config.vocab_size, "parameters": f"{counts['total']:,}",
                 "embeddings": f"{counts['token_embedding'] / counts['total']:.0%}",
                 "training FLOPs per token": f"{flops['training'] / 1e6:,.0f}M",
                 f"memory to train (batch of the preset, fp32)": f"{memory['total'] / 2**20:,.0f} MiB"})
show_table(rows)

# %% [markdown]
# In a small model the token embedding (the column "embeddings") is a large share of the parameters: a quarter of the
# course's `ci` model and two fifths of the `cpu` one (a vocabulary of 4,096 tokens for blocks only 128 wide), against
# 7% of the `gpu` model and 5% of GPT-2 XL.
#
# **FLOPs.** A forward pass does one multiply and one add per weight per token, 2N FLOPs for N weights in matrices,
# plus attention's dot products with the context; the backward pass costs twice the forward. So training costs about
# **6N FLOPs per token**, plus 12 × layers × context × width for attention (Kaplan et al. 2020):

# %%
rows = []
for name in published:
    config = config_named(name)
    n = parameter_counts(config)["total"]
    flops = flops_per_token(config, seq_len=1024)
    rows.append({"model": name, "forward GFLOPs / token": flops["forward"] / 1e9,
                 "training GFLOPs / token": flops["training"] / 1e9, "6N": 6 * n / 1e9,
                 "attention's share": f"{12 * config.n_layer * 1024 * config.n_embd / flops['training']:.0%}",
                 "H100-hours for 10B tokens at 40% MFU": flops["training"] * 10e9 / (0.4 * 989e12) / 3600})
show_table(rows)

# %% [markdown]
# (989 TFLOP/s is an H100's dense bf16 peak; a good training run uses 40-50% of it, its *MFU*. Notebook 04 measures
# ours.)
#
# **Memory.** Training with AdamW keeps, per parameter, the weight, its gradient, and AdamW's two moments: 16 bytes
# in float32. On top of that come the *activations* that the forward pass keeps for the backward pass, which grow with
# batch size × context. With bf16 autocast ("mixed precision") the tensors that the matrix products read are kept in
# 2 bytes instead of 4; the residual stream, the norms' inputs and the loss's log-softmax over the vocabulary stay in
# float32, and autocast keeps a bf16 copy of every weight matrix. So the activations shrink by a third to two fifths,
# not by half, and the total by a fifth to a quarter:

# %%
GiB = 2**30
rows = []
for name in published:
    config = config_named(name)
    fp32 = memory_estimate(config, batch_size=8, seq_len=1024)
    mixed = memory_estimate(config, batch_size=8, seq_len=1024, mixed_precision=True)
    rows.append({"model (batch 8 × 1024 tokens)": name, "weights": fp32["weights"] / GiB, "gradients": fp32["gradients"] / GiB,
                 "AdamW moments": fp32["optimizer"] / GiB, "activations fp32": fp32["activations"] / GiB,
                 "activations bf16 autocast": mixed["activations"] / GiB,
                 "total fp32 (GiB)": fp32["total"] / GiB, "total bf16 autocast (GiB)": mixed["total"] / GiB})
show_table(rows)

# %% [markdown]
# Even GPT-2 small needs about 8 GiB at this batch size in float32, three quarters of it activations: activations, not
# weights, are most of the memory. That is why training uses gradient accumulation (several small batches per step),
# and, at scale, recomputes activations instead of storing them.
#
# ## 9. Generating text, and the KV cache
#
# A decoder writes one token at a time: run the model on the text so far, sample the next token from the last
# position's logits, append it, repeat. Done naively, step t recomputes the keys and values of all t tokens, although
# they never change (the mask keeps earlier positions from seeing later ones). The **KV cache** keeps every layer's
# keys and values; each step then runs the model on the one new token and attends to the cache. The work per step no
# longer grows with the length, only the attention over the cache does. This is the same computation as exercise 3.
#
# The cache's size per token is 2 (k and v) × layers × width numbers; GPT-2 small, in 16 bits, for its full context
# of 1,024 tokens:

# %%
for name in ("gpt2", "gpt2-xl"):
    config = config_named(name)
    cache = KVCache(config, batch_size=1, max_length=config.context)
    numbers = math.prod(cache.shape) * 2  # keys and values
    print(f"{name}: a cache of shape {cache.shape} for keys and as much for values: {numbers * 2 / 2**20:,.0f} MiB per sequence in bf16")
config = config_named("gpt2-xl", n_kv_head=5)
print(f"gpt2-xl with grouped-query attention (5 key/value heads for 25 query heads): "
      f"{math.prod(KVCache(config, 1, 1024).shape) * 2 * 2 / 2**20:,.0f} MiB")

# %% [markdown]
# Grouped-query attention (`GPTConfig(n_kv_head=...)`, LLaMA 2 70B and later) shares each key/value head among a
# group of query heads: a smaller cache, so more sequences fit on a server at once.
#
# Now the speed. We generate with a model of the shape notebook 04 trains (its speed does not depend on its weights,
# so random ones do), greedily, once with the cache and once recomputing everything, timing every step. Greedy is
# `temperature=0`: the sampler divides the logits by a *temperature* before the softmax (below 1 sharpens the
# distribution, above 1 flattens it), and 0 stands for the limit, always the most likely token.

# %%
DEVICE = hardware.pick_device()  # speed is the point here: on a GPU if there is one
timed_model = GPT(stage4).to(DEVICE).eval()
prompt = tokenizer.encode_ordinary("Once upon a time")
n_new = stage4.context - len(prompt)
step_times, tokens = {}, {}
for use_cache in (True, False):
    times, out = [], []
    started = time.perf_counter()
    for step in stream(timed_model, [prompt], n_new, temperature=0, use_cache=use_cache):
        out.append(step[0])
        times.append(time.perf_counter() - started)  # the step's token is known: on a GPU, the work is done
        started = time.perf_counter()
    step_times[use_cache], tokens[use_cache] = np.array(times), out

lengths = [n for n in (16, 64, 128, 256, 512) if n < n_new] + [n_new]
show_table([{"new tokens": n, "with the KV cache (s)": step_times[True][:n].sum(),
             "recomputing (s)": step_times[False][:n].sum(),
             "speed-up": f"{step_times[False][:n].sum() / step_times[True][:n].sum():.1f}×"} for n in lengths])
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(1000 * step_times[True][1:], label="with the KV cache", color="#35608f")
ax.plot(1000 * step_times[False][1:], label="recomputing the whole sequence", color="#d1495b")
ax.set_xlabel("new token")
ax.set_ylabel("ms for this token")
ax.set_title(f"{stage4.n_layer} layers × {stage4.n_embd} wide, on {DEVICE}")
ax.legend()
show(fig)

# %%
# NBVAL_CHECK_OUTPUT
print("the same tokens with and without the cache:", tokens[True] == tokens[False])

# %% [markdown]
# Recomputing costs more and more per token as the sequence grows; with the cache each token costs about the same (the
# spikes of both curves are the noise of a shared CPU, which also makes the first few tokens' comparison a toss-up).
# Over a whole generation the cache wins, by the factor in the table's last row for this run. How much it saves
# depends on the length and on the size of the model, and timings on a shared CPU vary from run to run; with the tiny
# `ci` model there is little to save.
#
# The briefly trained model of section 7 can already write, a little; notebook 09 (coming) covers sampling with
# temperature, top-k and top-p. Greedy decoding of a story opening, with the cache and without, gives the same text:

# %%
opening = tokenizer.encode_ordinary(sentence.split()[0] + " " + sentence.split()[1])
continuation = {use_cache: generate(small_model, [opening], 40, temperature=0, use_cache=use_cache)[0] for use_cache in (True, False)}
print(repr(tokenizer.decode(opening + continuation[True])))
print("same tokens without the cache:", continuation[True] == continuation[False])

# %% [markdown]
# ## 10. Hugging Face interoperability
#
# Our parameter names follow GPT-2's, so `minilm.model.hf` converts a GPT-2-shaped model to Hugging Face's
# `GPT2LMHeadModel` and back (GPT-2 stores its linear layers transposed, as `Conv1D`; the conversion transposes
# them). A small random model, both ways, and the logits compared on a batch of real windows:

# %%
from minilm.model.hf import from_hf, to_hf

with warnings.catch_warnings():  # transformers imports tqdm.auto, which warns when ipywidgets is not installed
    warnings.simplefilter("ignore")
    import transformers

ours = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context=64, n_layer=2, n_head=4, n_embd=64), seed=1).eval()
theirs = to_hf(ours).eval()
back = from_hf(theirs).eval()
ids = torch.from_numpy(train_shards.batch(4, 64, np.random.default_rng(1))[0])
with torch.no_grad():
    our_logits, _ = ours(ids)
    their_logits = theirs(ids).logits
    back_logits, _ = back(ids)
print(type(theirs).__name__, f"with {sum(p.numel() for p in theirs.parameters()):,} parameters (ours: {count_parameters(ours):,})")

# %%
# NBVAL_CHECK_OUTPUT
print("logits of GPT2LMHeadModel equal ours, max abs difference below 1e-4:", (our_logits - their_logits).abs().max().item() < 1e-4)
print("converted back, the weights are identical:",
      all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), back.state_dict().values())))
print("and the logits too:", torch.equal(our_logits, back_logits))

# %% [markdown]
# So anything written for HF's GPT-2 (its `generate`, evaluation harnesses, serving tools) can run our model, and
# `from_hf(GPT2LMHeadModel.from_pretrained(path))` loads OpenAI's released weights into our code when you have them
# (the course does not download them). The package's tests check the conversion on a forward pass and on a training
# step.

# %%
print(f"this notebook has run for {time.perf_counter() - notebook_started:.0f} s with preset {PRESET!r}")


# %% [markdown]
# ## 11. Exercises
#
# You now write the central pieces of the model yourself, from the attention kernel to the whole forward pass. Each
# exercise is a function or a module for you to write, followed by a check cell that runs it on fresh random inputs
# against the package's own version and prints a pass, or shows the input where they differ with a hint. The checks of
# unsolved exercises show a red error: that is expected. Solutions are in `solutions/03_transformer.ipynb` (try
# first!). Write them with plain tensor operations and your own earlier answers, not with the package's functions.
#
# ### Exercise 1: scaled dot-product attention
#
# You will have built the kernel that every attention layer calls, for batches of heads and with a mask; exercises 4
# and 5 use it. Write `attention(q, k, v, mask=None)`: `q` has shape (batch, heads, T, d), `k` and `v` (batch, heads,
# S, d) with S ≥ T. `mask` is None (every query sees every key) or booleans that broadcast to (batch, heads, T, S),
# True where a query may see a key; every query sees at least one key. Return the attention output, shape
# (batch, heads, T, d).

# %%
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: no weight on a hidden key
    return torch.softmax(scores, dim=-1) @ v
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.model import check_attention

check_attention(attention)


# %% [markdown]
# ### Exercise 2: rotary positions
#
# You will have built rotary positions, LLaMA's way of telling attention where each token stands (exercise 4 uses
# them). Write `rotate(x, positions, theta=10_000.0)`: `x` holds queries or keys, shape (batch, T, heads, d) with d
# even, and `positions` (T,) the position of each of the T tokens (not always 0, 1, 2, ...: with a cache they continue
# from earlier ones). The package's convention, which you cannot guess: pair i is dimension i with dimension i + d/2
# (for i < d/2; the paper pairs neighbours instead), and at position p it turns by the angle p × theta^(−2i/d), the
# frequencies of section 4. Return the rotated tensor, the shape of `x`.

# %%
def rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    ### BEGIN SOLUTION
    half = x.size(-1) // 2
    frequencies = theta ** (-2 * torch.arange(half, dtype=torch.float32) / x.size(-1))  # (d/2,)
    angles = positions.float()[:, None] * frequencies  # (T, d/2)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (T, 1, d/2): the same for every head
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.model import check_rotate

check_rotate(rotate)


# %% [markdown]
# ### Exercise 3: one step of attention with a KV cache
#
# You will have built the step that makes generation fast (section 9): one new token attends to the cached keys and
# values of all earlier ones. Write `attention_step(q, k_new, v_new, k_cache, v_cache)`, one decoding step of one
# attention layer. The new token's query `q` has shape (batch, heads, 1, d); its key and value `k_new`, `v_new` are
# (batch, kv_heads, 1, d); the cache holds the keys and values of the S earlier positions, (batch, kv_heads, S, d),
# and S may be 0. Append the new key and value to the cache, attend with the new query to all S + 1 positions, and
# return `(output, k_cache, v_cache)`: the output (batch, heads, 1, d) and the grown cache.
#
# With grouped-query attention, kv_heads divides heads, and key/value head j serves the query heads
# j·g .. j·g + g − 1, where g = heads / kv_heads. The check decodes whole sequences with your function, token by
# token from an empty cache, and compares every step with full causal attention over the sequence: the
# cached computation must equal the full one.

# %%
def attention_step(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor,
                   v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    k_cache = torch.cat([k_cache, k_new], dim=2)  # the new position goes last
    v_cache = torch.cat([v_cache, v_new], dim=2)
    group = q.size(1) // k_cache.size(1)
    k = k_cache.repeat_interleave(group, dim=1)  # key/value head j serves query heads j*g .. j*g + g - 1
    v = v_cache.repeat_interleave(group, dim=1)
    # The new token is the last position: it may see every key, so no mask is needed.
    return attention(q, k, v), k_cache, v_cache
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.model import check_attention_step

check_attention_step(attention_step)


# %% [markdown]
# ### Exercise 4: a transformer block
#
# You will have built the heart of the model: one block of GPT-2, or of LLaMA, as its config says. The skeleton's
# `__init__` makes the block's parameters with the package's names and shapes, so that the weights of the package's
# `Block` load into yours; you write `forward(x)`: `x` is the residual stream (batch, T, n_embd); return the new stream,
# the same shape, as a tensor. The block is pre-norm (section 5). The package's conventions, which you cannot guess:
#
# * `attn.c_attn` computes the queries, keys and values side by side: first `n_head × head_dim` numbers for the
#   queries, then `kv_heads × head_dim` for the keys, then as many for the values; within each, head h has the numbers
#   h × head_dim to (h + 1) × head_dim − 1 (as in section 2). With fewer key/value heads than query heads
#   (`config.kv_heads < config.n_head`), key/value head j serves query heads j·g .. j·g + g − 1 (as in exercise 3).
# * With `config.position == "rope"`, rotate the queries and the keys (not the values) of every head at the positions
#   0, 1, ..., T − 1 with your `rotate`, by `config.rope_theta`, before attention. Learned and sinusoidal positions are
#   added by the model, not in the block.
# * Attention is causal, with your `attention` (so solve exercises 1 and 2 first); the heads' outputs side by side
#   again, (batch, T, n_embd), go through `attn.c_proj`.
# * The MLP is `mlp.c_fc`, GELU in GPT-2's tanh approximation (`F.gelu(h, approximate="tanh")`), then `mlp.c_proj`.
#   With `config.mlp == "swiglu"`, `mlp.c_fc` computes the gate and the up projection side by side, [gate | up], and
#   the MLP is `c_proj(silu(gate) × up)`.
# * `ln_1` and `ln_2` are the package's LayerNorm or RMSNorm (section 5): call them as they are.
#
# The check builds the package's `Block` for a dozen random small configs (LayerNorm or RMSNorm, GELU or SwiGLU, with
# or without biases, grouped-query heads, rotary positions or none), draws all its weights at random (biases and norm
# gains too), loads them into yours with `load_state_dict(strict=True)`, and compares the two outputs on random
# streams: they must agree within a relative tolerance of 1e-4 and an absolute one of 1e-5 (float32 sums taken in
# another order differ by about 1e-6).

# %%
class MyBlock(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.ln_1 = make_norm(config)  # LayerNorm or RMSNorm, as the config says
        self.attn = nn.ModuleDict(dict(
            c_attn=nn.Linear(config.n_embd, (config.n_head + 2 * config.kv_heads) * config.head_dim, bias=config.bias),
            c_proj=nn.Linear(config.n_embd, config.n_embd, bias=config.bias)))
        self.ln_2 = make_norm(config)
        first = 2 * config.hidden if config.mlp == "swiglu" else config.hidden  # SwiGLU: [gate | up]
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(config.n_embd, first, bias=config.bias),
                                      c_proj=nn.Linear(config.hidden, config.n_embd, bias=config.bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        c = self.config
        batch, length, width = x.shape
        # Attention, reading the normalised stream.
        h = self.ln_1(x)
        q, k, v = self.attn.c_attn(h).split([c.n_head * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim],
                                            dim=-1)
        q = q.view(batch, length, c.n_head, c.head_dim)  # (B, T, heads, head_dim)
        k = k.view(batch, length, c.kv_heads, c.head_dim)
        v = v.view(batch, length, c.kv_heads, c.head_dim)
        if c.position == "rope":
            positions = torch.arange(length)
            q, k = rotate(q, positions, c.rope_theta), rotate(k, positions, c.rope_theta)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, head_dim)
        group = c.n_head // c.kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        mask = torch.ones(length, length, dtype=torch.bool).tril()  # causal: query t sees keys 0..t
        y = attention(q, k, v, mask).transpose(1, 2).reshape(batch, length, width)  # the heads side by side
        x = x + self.attn.c_proj(y)
        # The MLP, reading the normalised new stream.
        h = self.mlp.c_fc(self.ln_2(x))
        if c.mlp == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return x + self.mlp.c_proj(h)
        ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.model import check_block

check_block(MyBlock)


# %% [markdown]
# ### Exercise 5: the model's forward pass
#
# You will have built a whole GPT: token ids in, one logit per token of the vocabulary out, at every position. The
# skeleton's `__init__` names the parts as the package's `GPT` does (section 5 printed them), with your blocks of
# exercise 4; you write `forward(idx)`: `idx` holds token ids, (batch, T) with T ≤ `config.context`; return the logits,
# (batch, T, vocab_size). The tokens stand at positions 0, 1, ..., T − 1. The conventions:
#
# * learned positions (`config.position == "learned"`) are a table, `transformer.wpe`, added to the token embeddings;
#   sinusoidal ones are 0.02 × `sinusoid_table(config.context, config.n_embd)` (section 4; the package's function, use
#   it), added the same way; rotary ones add nothing, your blocks rotate;
# * after the blocks comes the final norm `transformer.ln_f`;
# * the head: with tied weights (`config.tie_weights`, and then `lm_head` is None) it is the token embedding matrix
#   itself, (vocab_size, n_embd); otherwise `lm_head`, a linear layer without bias.
#
# The check builds the package's `GPT` for ten random small configs of 1 to 3 blocks (every kind of position, tied and
# untied heads, and the block's switches of exercise 4), draws all its weights at random, loads them into yours
# (strict), and compares the logits on random token ids within the tolerance of exercise 4. Check exercise 4 first:
# the model is only as right as its blocks.

# %%
class MyGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList(MyBlock(config) for _ in range(config.n_layer)),
            ln_f=make_norm(config)))
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.context, config.n_embd)
        self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        c = self.config
        positions = torch.arange(idx.size(1))
        x = self.transformer.wte(idx)  # (B, T, n_embd)
        if c.position == "learned":
            x = x + self.transformer.wpe(positions)
        elif c.position == "sinusoidal":
            x = x + 0.02 * sinusoid_table(c.context, c.n_embd)[positions]
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        head = self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight  # (vocab, n_embd)
        return x @ head.T
        ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.model import check_gpt

check_gpt(MyGPT)

# %% [markdown]
# Your model computes what the package's does. The package's own block, `Block.forward` in `minilm/model/gpt.py`, is
# three lines, because its attention is a module of its own (`CausalSelfAttention` in `minilm/model/attention.py`),
# and it runs PyTorch's fused `scaled_dot_product_attention` where you wrote the attention out; it also takes a KV
# cache, a padding mask and positions from its caller, which generation needs (section 9).
#
# **Next:** notebook 04 pretrains this model on the token shards of stage 2, on one CPU or several GPUs, and measures
# how well it learned.
