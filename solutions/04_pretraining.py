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
# # 04 · Pretraining: from a random transformer to a language model
#
# Notebook 03 built the transformer; its weights are random and it writes noise. This notebook trains it on the token
# shards of stage 2, the same way GPT-2, LLaMA and every other base model were made: show it text, ask it to predict
# each next token, nudge every weight to make the right token a little more likely, and repeat a few million times.
#
# **You will build** the central pieces yourself, in the exercises at the end: the loss of a batch, BERT's masking
# rule, gradient accumulation, AdamW as a PyTorch optimizer (checked step by step against `torch.optim.AdamW`) and the
# training loop (checked against the package's on the same batches). Before them the notebook runs the package's
# versions: the real run of stage 4 (a model that writes stories); checkpoints that resume exactly; an encoder trained
# the BERT way next to a decoder trained the GPT way; and a small scaling study. After the exercises it writes the
# loss, an AdamW step and the loop out by hand, next to the package's.
#
# **You will learn**
# * what pretraining asks the model to predict: the next token (GPT), or hidden tokens from both sides (BERT);
# * cross-entropy, perplexity and bits per byte, and why a fresh model's loss is ln(vocabulary size);
# * what AdamW's two moments do, why weight decay spares biases and norms, why the learning rate warms up and then
#   decays;
# * how to tell that training works: loss curves, samples before and after, and a text-quality score that the story
#   world makes possible;
# * why a checkpoint must hold the optimizer and the random generators, not only the weights;
# * what an encoder is good at and what a decoder is good at, measured;
# * how loss falls with model size and data: the power laws behind scaling;
# * what each layer has learnt: the logit lens and linear probes of facts about a story.
#
# | preset | the real run (stage 4) | the rest of this notebook (measured, 2 CPU cores) |
# |---|---|---|
# | `ci` | 2 layers × 64 wide, 60 steps: seconds | about 15 seconds |
# | `cpu` | 4 layers × 128 wide (1.3M parameters), 1,000 steps of 4,096 tokens: about 10 minutes the first time (section 5 prints how long: 611 s in the run shown, its 2 cores shared with other work), then cached | 5 to 8 minutes (the last cell prints the whole notebook's time: 944 s in the run shown, stage 4's first build included) |
# | `gpu` | 12 layers × 768 wide, 1,500 steps of 32,768 tokens, bf16, compiled: minutes | a minute or two |
#
# The run of stage 4 is cached in `data/runs/<preset>/pretrain/`: run this notebook again, or the speedrun, and it
# is reused. If stages 1 and 2 are not built yet (notebooks 01 and 02), the notebook builds them first.

# %%
import json, math, os, subprocess, sys, tempfile, time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Image, Markdown, display
from tqdm import tqdm

from minilm import presets
from minilm.data import stage as data_stage
from minilm.data.documents import DOMAINS, read_jsonl
from minilm.data.sources.stories.grammar import story_sentences
from minilm.model import GPT, count_parameters, make_optimizer
from minilm.model.gpt import IGNORE_INDEX
from minilm.tokenizer.shards import TokenShards, write_shards
from minilm.tokenizer.stage import TOKENIZER_DIR, load_tokenizer, open_shards, run_tokenizer_stage
from minilm.train import (TrainConfig, evaluate, learning_rate, load_model, make_batch, read_log, text_quality, train,
                          train_step)
from minilm.hardware import grad_scaler
from minilm.train.distributed import World
from minilm.train.loop import micro_batches, step_windows, write_samples
from minilm.train.objectives import MASK_TOKEN
from minilm.train.report import describe, plot_training
from minilm.train.stage import load_pretrained, run_pretrain_stage

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
CORES = torch.get_num_threads()
torch.set_num_threads(1)  # the small models of this notebook run fastest on one thread; the real run uses them all
notebook_started = time.perf_counter()
PRESET = presets.preset_name()
print(f"preset {PRESET!r}, torch {torch.__version__}")


# %%
def show_table(rows: list[dict], columns: list[str] | None = None) -> None:
    # A list of dicts as a markdown table.
    columns = columns or list(rows[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|").replace("\n", "↵")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


def show(fig) -> None:
    # A figure as a small PNG (keeps the notebook light).
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue()))


def quote(text: str, limit: int = 400) -> str:
    text = text.strip()
    return "> " + (text[:limit] + " …" if len(text) > limit else text).replace("\n\n", "\n>\n> ").replace("\n", " ")


# %% [markdown]
# ## 1. What pretraining learns
#
# Stage 2 wrote the training text as one long stream of token ids (`train_*.bin`), documents separated by
# `<|endoftext|>`. Training reads random **windows** of that stream. The preset's sizes, and the stage's config:

# %%
tokenizer_artifact = run_tokenizer_stage()
tokenizer = load_tokenizer(tokenizer_artifact)
train_shards, val_shards = open_shards(tokenizer_artifact, "train"), open_shards(tokenizer_artifact, "val")
config = TrainConfig.from_preset()
print(train_shards)
print(val_shards)
print(f"vocabulary {tokenizer.vocab_size:,} tokens; the stage trains {config.n_layer} layers × {config.n_embd} wide on windows of "
      f"{config.context} tokens, {config.batch_size} windows per step, {config.max_steps} steps")

# %% [markdown]
# **Next-token prediction (causal language modelling).** A window of `context + 1` tokens gives an input (all but
# the last) and a target (all but the first): the target at position t is the token that follows position t. A
# decoder's causal mask lets position t see tokens 0..t only, so one window holds `context` predictions, each made
# from everything before it, all computed at once. `step_windows` draws a step's windows from a generator seeded by
# (seed, step), so step 7 always reads the same windows, and `make_batch` turns them into tensors:

# %%
x, y = step_windows(train_shards, config, step=0)
inputs, targets = make_batch(x, y, "causal")
print(f"inputs {tuple(inputs.shape)}, targets {tuple(targets.shape)}: targets[:, t] == inputs[:, t + 1]:",
      torch.equal(targets[:, :-1], inputs[:, 1:]))
piece = lambda i: repr(tokenizer.decode([int(i)]))[1:-1].replace("|", "\\|") or " "
row = int(np.argmax([(r == train_shards.eot_id).sum() == 0 for r in x]))  # a window inside one document
show_table([{"t": t, "the model has read (…)": "…" + "".join(piece(i) for i in inputs[row, max(0, t - 6):t + 1]),
             "and must predict": piece(targets[row, t])} for t in range(0, 12)])

# %% [markdown]
# **Masked language modelling (BERT).** An encoder sees the whole window, both sides, so predicting the next token
# would be trivial: it can read it. Instead 15% of the positions are chosen and hidden; the model predicts the
# original token at those positions only (the others have target −100, which the loss ignores). Of the chosen
# positions 80% show a mask token, 10% a random token and 10% stay as they are, so that the model cannot learn that
# only mask tokens need predicting (each position is drawn at random, so one batch's shares wobble around these).
# Our tokenizer has no `<|mask|>`; the encoder uses `<|pad|>`, which never occurs in pretraining text.

# %%
mask_id = tokenizer.special_id(MASK_TOKEN)
masked_inputs, masked_targets = make_batch(x, y, "masked", mask_id=mask_id, vocab_size=tokenizer.vocab_size,
                                           generator=torch.Generator().manual_seed(0))
chosen = masked_targets != IGNORE_INDEX
print(f"chosen: {chosen.float().mean():.1%} of {chosen.numel():,} positions; of those {int(chosen.sum())}, "
      f"{(masked_inputs[chosen] == mask_id).float().mean():.0%} show the mask, "
      f"{(masked_inputs[chosen] == masked_targets[chosen]).float().mean():.0%} the true token, the rest a random one")
shown = []
for t in range(min(48, config.context)):
    token = piece(masked_inputs[row, t])
    if chosen[row, t]:
        shown.append(f"<b>[{'MASK' if masked_inputs[row, t] == mask_id else token}→{piece(masked_targets[row, t])}]</b>")
    else:
        shown.append(token)
display(Markdown("".join(shown)))

# %% [markdown]
# Each window gives `context` signals to a decoder but only 15% as many to an encoder, which is one reason decoders
# learn faster per token of data (section 7 comes back to it). What the decoder gains is a model that can *write*:
# predict a token, append it, predict the next. That is why every large language model since GPT-2 is a decoder.
#
# ## 2. The loss
#
# For each position the model outputs one score (logit) per vocabulary token. Softmax turns them into probabilities;
# the loss is the **cross-entropy**: minus the log of the probability given to the true next token, averaged over
# positions (in nats, natural logs). A model that gives the right token probability 1 has loss 0; a fresh model
# spreads its bets evenly over V tokens and has loss ln V. `exp(loss)` is the **perplexity**: the number of tokens the
# model is, on average, as unsure as a uniform choice among. The model computes it when it is given the targets
# (exercise 1 has you write it from the logits; section 11 shows it by hand, after the exercises):

# %%
model = GPT(config.model_config(tokenizer.vocab_size), seed=config.seed)
with torch.no_grad():
    logits, loss_fresh = model(inputs, targets)  # logits (batch, context, vocabulary)
print(f"logits {tuple(logits.shape)}; the fresh model's loss {loss_fresh:.6f}, ln(vocabulary) = "
      f"{math.log(tokenizer.vocab_size):.6f}; perplexity {loss_fresh.exp():,.0f}")

# %% [markdown]
# The fresh model's loss is within a hair of ln V: GPT-2's initialisation (small weights) makes the logits nearly
# equal, so the model starts with no opinion. Anything that pushes the loss below ln V is learned from the data.
#
# ## 3. The training loop
#
# One step: draw the step's windows, compute the loss, backpropagate, clip the gradient's norm to 1 (a rare bad batch
# cannot throw the weights far), set the step's learning rate, and let AdamW update the weights. That loop is the
# whole algorithm; everything else in `minilm.train` (mixed precision, several processes, gradient accumulation,
# checkpoints, evaluation, logs) is bookkeeping around it. You will write the loop in exercise 5 (section 11 then
# writes it out and checks it against the package's). Here `minilm.train.train` runs it for a handful of steps of a
# small model (it also evaluates on the validation split at the end, and writes a checkpoint):

# %%
SMALL = {"ci": dict(n_layer=2, n_head=2, n_embd=32, context=32, batch_size=8),
         "cpu": dict(n_layer=2, n_head=4, n_embd=64, context=64, batch_size=16),
         "gpu": dict(n_layer=2, n_head=4, n_embd=64, context=64, batch_size=16)}[PRESET]
SMALL["position"] = "rope"  # rotary positions: a briefly trained model knows word order from the first step
LOOKING = dict(log_every=1, eval_every=10_000, sample_every=10_000, checkpoint_every=10_000, final_samples=0,
               eval_tokens=4096, precision="fp32", device="cpu")  # quiet: no evaluation, samples or checkpoints
small = TrainConfig(**SMALL, **LOOKING, max_steps=20, warmup_steps=5, lr=3e-3, min_lr=3e-4)
started = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    summary = train(small, train_shards, val_shards, tokenizer, folder, progress=False)
    package_losses = [r["loss"] for r in read_log(Path(folder) / "log.jsonl") if r["kind"] == "train"]
print(f"{small.max_steps} steps in {time.perf_counter() - started:.1f} s; the loss at each step:",
      " ".join(f"{l:.2f}" for l in package_losses))
print(f"validation loss {summary['val_loss']:.3f} (perplexity {summary['val_perplexity']:.0f}) after "
      f"{summary['tokens']:,} tokens")

# %% [markdown]
# ## 4. AdamW and the learning rate
#
# Plain gradient descent moves each weight by `lr × gradient`. Gradients of different weights differ by orders of
# magnitude, so one learning rate is too big for some and too small for others. **Adam** keeps two running averages
# per weight: the **first moment** m (the mean gradient: momentum, which smooths the noise of small batches) and the
# **second moment** v (the mean squared gradient: the weight's typical gradient size). It moves each weight by
# `lr × m / (√v + ε)`: every weight moves by about `lr`, whatever the scale of its gradient. Both averages start at
# 0, so early on they are divided by `1 − βᵗ` to undo that bias. **AdamW** adds weight decay, decoupled from the
# gradient: each step also shrinks each weight by `lr × weight_decay × w`, which keeps weights small.
#
# You will write AdamW in exercise 4 (section 11 then takes one step by hand). Here is what one step of PyTorch's
# does to one weight matrix of a fresh model, whose gradients are of very different sizes:

# %%
tiny = GPT(small.model_config(tokenizer.vocab_size), seed=0)
optimizer = make_optimizer(tiny, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
weight = tiny.transformer.h[0].mlp.c_fc.weight
weight_before = weight.detach().clone()
_, loss = tiny(inputs[:, :small.context], targets[:, :small.context])
loss.backward()
g = weight.grad.clone()
optimizer.step()
move = (weight.detach() - weight_before * (1 - 1e-2 * 0.1)).abs() / 1e-2  # how far each weight moved, decay aside, in lr
print(f"gradients span {g.abs().min():.1e} .. {g.abs().max():.1e}; yet the weights moved by {move.median():.3f} × lr "
      f"(median), {move.min():.3f} × lr at the least")

# %% [markdown]
# At the first step m̂/√v̂ is g/|g|, the sign of the gradient: each weight moves by `lr`, however small its gradient
# (less only where |g| is not far above ε = 10⁻⁸, or below it: compare the smallest gradient printed above with the
# least-moved weight). Later the moments average many steps: a weight whose gradient keeps its sign moves steadily,
# one whose gradient flips from batch to batch moves little.
#
# **Weight decay on matrices only.** `make_optimizer` puts the 2-D parameters (weight matrices and embeddings, which
# store what the model knows) in a group with weight decay, and the 1-D ones (biases and the gains of the norms,
# which set offsets and scales) in a group without: pulling a norm's gain towards 0 would shrink a whole layer's
# output, not regularise it.

# %%
stage_model = GPT(config.model_config(tokenizer.vocab_size))
stage_optimizer = make_optimizer(stage_model, config.lr, config.weight_decay, (config.beta1, config.beta2))
names = {id(p): n for n, p in stage_model.named_parameters()}
show_table([{"group": i, "weight decay": group["weight_decay"], "tensors": len(group["params"]),
             "parameters": f"{sum(p.numel() for p in group['params']):,}",
             "for example": ", ".join(names[id(p)] for p in group["params"][:3]) + ", …"}
            for i, group in enumerate(stage_optimizer.param_groups)])

# %% [markdown]
# **The schedule.** At step 0 the weights are random and Adam's moments hold a single gradient; full-size steps then
# can throw the model somewhere it does not recover from. So the rate **warms up** linearly over the first steps,
# then **decays** along a half cosine to a floor (a tenth of the peak): late in training the loss is limited by the
# noise of each small batch, and smaller steps average that noise away. The stage's schedule:

# %%
steps = np.arange(config.max_steps)
rates = [learning_rate(int(s), config.lr, config.warmup_steps, config.max_steps, config.min_lr) for s in steps]
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.plot(steps, rates, color="#c0504d")
ax.axvline(config.warmup_steps, color="grey", linestyle=":", linewidth=1)
ax.text(config.warmup_steps, config.lr * 0.5, f"  end of warmup ({config.warmup_steps} steps)", fontsize=8)
ax.axhline(config.min_lr, color="grey", linestyle="--", linewidth=0.8)
ax.set(xlabel="step", ylabel="learning rate", title="warmup, then cosine decay to min_lr")
show(fig)

# %% [markdown]
# ## 5. The real run
#
# `run_pretrain_stage()` trains the stage's model with the preset's config and caches the result: with `cpu` it takes
# minutes the first time (a progress bar shows the loss and tokens per second, and a sample every `sample_every`
# steps; the summary below says how long it took, and in which number format: float32, or a 16-bit one where the
# hardware computes it natively, as notebook 05 explains) and a second the next. It evaluates on part of the
# validation split every `eval_every` steps, and at the end on the whole split:
#
# * the **loss** (nats per token) and **perplexity**;
# * **bits per byte**: the loss summed over the text's tokens, in bits, divided by the bytes of that text. Unlike the
#   loss, it does not depend on the tokenizer: a model with a bigger vocabulary has fewer, harder tokens to predict,
#   and bits per byte compares them fairly.

# %%
torch.set_num_threads(CORES)  # the real run uses every core
artifact = run_pretrain_stage()
torch.set_num_threads(1)
print(describe(artifact))

# %%
records = read_log(artifact.path / "log.jsonl")
axes = plot_training(records)
fig = axes[0].figure
fig.set_size_inches(12, 3.2)
show(fig)

# %% [markdown]
# Both losses fall fast at first, then slowly. The throughput is the stage's tokens per second over each log interval;
# a dip means something else was using the processor at the time. The summary above gives the median of these rates
# and the run's whole time, so a run that shared its processor for long stretches reports fewer tokens per second,
# and more seconds, than the same run on an idle machine.
#
# **Why is the validation loss above the training loss?** At the end of the run the two curves are apart (with the
# `cpu` preset by about four tenths of a nat; the numbers are printed below). A gap is often read as overfitting, the
# model doing better on text it has trained on than on new text. But here the two curves do not measure the same
# kind of text either: stage 1 kept the validation split in the sources' natural mixture (it measures) and gave the
# train split the mixture of `DataConfig.mixture` (it teaches): 70% books and 10% each of web pages, docs and code,
# by bytes. Where a domain has too little text for its share, its documents are repeated, up to 4 times; where it
# has too much, some are left out. (Before the domains, stage 1 balanced the languages by repeating Spanish
# documents, so a Spanish document can come more often: that is why the books' copies below are above 1 and the web
# pages' above 4.) So we measure the two causes apart: we cut each split into its four domains, write each part as a
# token stream with stage 2's `write_shards`, and evaluate the trained model on each with `evaluate`, the function
# the run uses on the validation split (on at most a few thousand tokens of each part, to keep it quick).

# %%
PART_TOKENS = {"ci": 4096, "cpu": 8192, "gpu": 65_536}[PRESET]  # evaluated per split and domain
device, precision = artifact.summary["device"], artifact.summary["precision"]  # evaluate as the run did
pretrained = load_pretrained(artifact, device)
data_artifact = data_stage.run_data_stage()
tokens, copies, domain_loss = defaultdict(dict), defaultdict(dict), defaultdict(dict)
torch.set_num_threads(CORES)
with tempfile.TemporaryDirectory() as folder:
    for split in ("train", "val"):
        docs = defaultdict(list)
        for doc in read_jsonl(data_artifact.path / f"{split}.jsonl"):
            docs[doc.domain].append(doc)
        for domain, part in docs.items():
            name = f"{split}_{domain}"
            manifest = write_shards([doc.text for doc in part], tokenizer_artifact.path / TOKENIZER_DIR, folder, name,
                                    workers=0, progress=False)
            tokens[split][domain] = manifest["tokens"]
            copies[split][domain] = len(part) / len({doc.id.split("#")[0] for doc in part})  # a repeat is "<id>#r<k>"
            domain_loss[split][domain] = evaluate(pretrained, TokenShards(folder, name), config, None,
                                                  World(device=device), precision, PART_TOKENS)["val_loss"]
torch.set_num_threads(1)
domains = [d for d in DOMAINS if d in tokens["val"]]
share = {split: {d: tokens[split][d] / sum(tokens[split].values()) for d in domains} for split in tokens}
show_table([{"domain": d, "train: share of tokens": f"{share['train'][d]:.1%}",
             "train: copies of each document": f"{copies['train'][d]:.2f}",
             "val: share of tokens": f"{share['val'][d]:.1%}", "loss on train documents": domain_loss["train"][d],
             "loss on val documents": domain_loss["val"][d]} for d in domains])

mixed = lambda split, weights: sum(share[weights][d] * domain_loss[split][d] for d in domains)
train_end = [r["loss"] for r in records if r["kind"] == "train" and r["step"] > 0.9 * artifact.summary["steps"]]
as_trained, reweighted, as_validated = mixed("train", "train"), mixed("train", "val"), mixed("val", "val")
print(f"train documents in the train mixture:    {as_trained:.3f}  (the training curve over the last 10% of steps: "
      f"{np.mean(train_end):.3f})")
print(f"train documents in the natural mixture:  {reweighted:.3f}")
print(f"val documents in the natural mixture:    {as_validated:.3f}  (the run's validation loss: "
      f"{artifact.summary['val_loss']:.3f})")
print(f"the gap, {as_validated - as_trained:.3f} nats = {reweighted - as_trained:.3f} from the mixture (the same "
      f"documents, weighted as validation is) + {as_validated - reweighted:.3f} from the documents (the same weights, "
      f"unseen text)")
passes = artifact.summary["tokens"] / len(train_shards)
print(f"the run read {passes:.2f} times as many tokens as the train split holds")

# %% [markdown]
# Read the table by columns. The shares differ: the train split has more web pages (few pages, each repeated: the
# *copies* column) and less code than the validation split's natural mixture. (The table counts tokens, so the train
# shares are not quite the mixture's, which counts bytes: code and docs take more tokens per byte than prose.) With the
# `cpu` preset the losses differ far more between domains than between the splits: the books, stories from a generator
# with a small vocabulary and a few sentence patterns, are the easiest to predict (the web pages close behind), code and
# docs by far the hardest (the `ci` model has learned too little for its domains to differ). The last two columns
# compare each domain with itself: where the loss on train documents is clearly below the loss on val documents, the
# model has learned those very documents, not only their kind. Reading a document again and again invites that (the
# copies, times the passes over the split printed last), but it is not the only way: with the `cpu` preset the
# differences are largest for code and docs, read not even twice, whose files each have names and phrases of their own
# that a reading or two can partly teach, and smallest for the books, whose stories all share the generator's few
# patterns. (Each part is scored on a few thousand tokens only, so a difference of a few hundredths is noise.)
#
# The lines below the table weight these losses two ways. The train documents in the train mixture come out close to
# the end of the training curve, but not exactly on it: the curve averages the losses of the last steps, taken while
# the weights were still improving, and each part is scored on a few thousand tokens only. Weighting the same
# documents as the validation split is weighted changes the loss by the **mixture** part of the gap: not
# overfitting, only a different mix of text. What is left, between the train and the val documents under the same
# weights, is the **documents** part: what the model gains on text it has trained on, which grows when a run repeats
# its data, and which is the part to watch. The last lines print how the gap splits between the two. So a gap between
# the curves of a run whose splits are mixed differently says little on its own; to look for overfitting, compare the
# two splits under one mixture, or domain by domain, as the table does.
#
# **Samples, before and after.** To write, a model turns its logits for the next position into probabilities with
# the softmax, draws a token from them, appends it and repeats. The **sampling temperature** T reshapes those
# probabilities first: the logits are divided by T before the softmax. T < 1 sharpens them (the likely tokens get
# likelier; as T goes to 0 the draw always picks the most likely token), T > 1 flattens them towards uniform (more
# varied text, more mistakes). Three logits, at four temperatures:

# %%
example_logits = torch.tensor([2.0, 1.0, 0.0])
for temperature in (0.5, 0.8, 1.0, 2.0):
    probabilities = torch.softmax(example_logits / temperature, dim=-1)
    print(f"T = {temperature}: logits {example_logits.tolist()} give probabilities",
          " ".join(f"{p:.2f}" for p in probabilities))

# %% [markdown]
# Both models below start each story with one of the ways the generator's stories start, and sample at temperature
# 0.8: a little sharper than the model's own probabilities. Because the stories come from a known generator, we can
# also *score* text: the share of its words that are in the story world's vocabulary, and the share of its sentences
# that the story grammar accepts word for word, that is, sentences the generator could have written exactly
# (`minilm.train.quality`). The validation split's own stories are scored too, for reference.

# %%
untrained = GPT(config.model_config(tokenizer.vocab_size), seed=config.seed)
before = write_samples(untrained, tokenizer, 5, 60, "fp32", seed=0)
saved = json.loads((artifact.path / "samples.json").read_text())
after = saved["samples"]
print("Untrained:")
display(Markdown(quote(before[0], 300)))
print("After pretraining:")
for text in after[:3]:
    display(Markdown(quote(text)))

# %%
stories = [doc.text for doc in read_jsonl(data_artifact.path / "val.jsonl") if doc.domain == "books"]
quality_stories = text_quality(stories[:100])
show_table([
    {"text": name, "texts": count, "words in the story vocabulary": f"{q['vocabulary']:.1%}",
     "sentences the story grammar accepts": f"{q['grammar']:.1%}", "sentences": q["sentences"]}
    for name, count, q in (("untrained model", len(before), text_quality(before)),
                           (f"pretrained model ({artifact.summary['steps']} steps)", len(after), saved["quality"]),
                           ("stories of the validation split", min(100, len(stories)), quality_stories))
])
quality_after = saved["quality"]
if quality_after["rejected"]:
    print("sentences of the pretrained model that the story grammar cannot write (the generator could not have written "
          "them word for word), for example:")
    for sentence in quality_after["rejected"][:3]:
        print("  ", sentence)

# %% [markdown]
# The untrained model writes random tokens: in its 5 texts it ends a single sentence, which the grammar rejects, and
# its share of story words is counted on that one sentence's few words, so it means little (a random token is often a
# whole common word, such as " field" or " orange"; with the `cpu` preset the share came out at about a half). With
# the `cpu` preset, the pretrained model's words are nearly all the story world's (99.8%) and most of its sentences
# (95.4%) are ones the generator could have written; the grammar score is the strict one (one wrong pronoun or a name
# used twice in a row and the sentence counts as wrong), and the validation split's own stories score only 84% on it:
# most of the sentences it rejects there are the graded readers' questions and answers ("Question: Where did Lena
# go?"), which the story grammar does not cover, and a few are lines such as e-mail addresses, dates or e-book titles.
# The model's samples start as stories and rarely reach a question, so they can score higher. The `ci` preset's model
# trains for seconds and writes little that is right.
#
# The log also kept two samples from the middle of training at every `sample_every` steps; their scores come from
# very few sentences, so they are rough, but they show the order in which the model learns: the words first, whole
# sentences later.

# %%
for record in [r for r in records if r["kind"] == "samples"][:-1][:3]:
    q = text_quality(record["texts"])
    print(f"step {record['step']}: {q['vocabulary']:.0%} of {q['words']} words in the story vocabulary, "
          f"{q['grammar']:.0%} of {q['sentences']} sentences accepted by the story grammar")
    display(Markdown(quote(record["texts"][0], 250)))

# %% [markdown]
# ## 6. Checkpoints and resuming
#
# A long run stops: a crash, a preempted machine, a closed laptop. A **checkpoint** must hold everything the next
# step depends on, not only the weights: AdamW's two moments for every weight (3 numbers per weight in all), the
# step (the learning rate and the data order are functions of it), and the random generators. The stage keeps its
# final checkpoint:

# %%
folder = artifact.path / "checkpoint"
show_table([{"file": str(path.relative_to(artifact.path)), "bytes": f"{path.stat().st_size:,}"}
            for path in sorted(folder.iterdir())])
meta = json.loads((folder / "checkpoint.json").read_text())
print("checkpoint.json:", {k: meta[k] for k in ("format", "version", "step", "world_size", "precision")})
print("model:", {k: meta["model"][k] for k in ("vocab_size", "context", "n_layer", "n_head", "n_embd")})

# %% [markdown]
# `model.safetensors` holds the weights as raw tensor bytes behind a small header: loading it runs no code, unlike a
# pickle, so a downloaded model file cannot take over the machine. `state.pt` holds the optimizer's moments and the
# generators and is loaded with `torch.load(weights_only=True)`, which refuses anything but tensors and plain
# containers. `checkpoint.json` records the configs and the sha256 of both files, and is written last, into a folder
# that gets its final name only when all three are on disk: a run killed mid-write leaves the previous checkpoint
# intact.
#
# The test of a checkpoint: crash a run between two checkpoints, resume it, and compare with a run that never
# stopped. Every logged loss and every final weight must be the same, bit for bit. A real crash gives no warning:
# we train in a child process that is killed with SIGKILL at the start of step 8 (what the out-of-memory killer or
# `kill -9` does: no exception, no clean-up, nothing written that was not on disk already). Its run checkpoints
# every 5 steps, so the newest checkpoint at the crash is step 5's; steps 6 and 7 are done and logged, but their work
# dies with the process.

# %%
CRASHING_RUN = """
import os, signal
import torch
from minilm.tokenizer import Tokenizer
from minilm.tokenizer.shards import TokenShards
from minilm.train import loop

torch.set_num_threads(1)  # as in the notebook: the same threads add in the same order, for bit-equal results
real_train_step, steps_begun = loop.train_step, []

def train_step(*args, **kwargs):  # the process dies as step {crash_step} begins
    # (Windows has no SIGKILL; there SIGTERM kills at once)
    steps_begun.append(1)
    if len(steps_begun) == {crash_step}:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    return real_train_step(*args, **kwargs)

loop.train_step = train_step
loop.train(loop.TrainConfig(**{config}), TokenShards({shards!r}, "train"), TokenShards({shards!r}, "val"),
           Tokenizer.load({tokenizer!r}), {out!r}, progress=False)
"""
resume_config = TrainConfig(**{**SMALL, **LOOKING, "checkpoint_every": 5}, max_steps=16, warmup_steps=4, lr=3e-3,
                            min_lr=3e-4)
train_losses = lambda folder: {r["step"]: r["loss"] for r in read_log(Path(folder) / "log.jsonl")
                               if r["kind"] == "train"}
with tempfile.TemporaryDirectory() as crashed, tempfile.TemporaryDirectory() as straight:
    script = CRASHING_RUN.format(crash_step=8, config=asdict(resume_config), shards=str(train_shards.folder),
                                 tokenizer=str(tokenizer_artifact.path / TOKENIZER_DIR), out=crashed)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode != 0, f"the run was meant to crash: {child.stderr[-2000:]}"
    kept = sorted(str(p.relative_to(crashed)) for p in Path(crashed).rglob("*") if p.is_file())
    before_crash = train_losses(crashed)
    resumed = train(resume_config, train_shards, val_shards, tokenizer, crashed, progress=False)
    uninterrupted = train(resume_config, train_shards, val_shards, tokenizer, straight, progress=False)
    after_resume, straight_losses = train_losses(crashed), train_losses(straight)
    starts = [r["step"] for r in read_log(Path(crashed) / "log.jsonl") if r["kind"] == "start"]
    weights = [load_model(Path(f) / "checkpoints").state_dict() for f in (crashed, straight)]
print(f"the training process died: return code {child.returncode} (on Linux and macOS -9: killed by signal 9, "
      f"SIGKILL)")
print("after the crash the run folder held:", ", ".join(kept))
print(f"the log held steps {min(before_crash)}-{max(before_crash)}; the resumed run started from step {starts[-1]}")
six = lambda loss: f"{loss:.6f}"
show_table([{"step": step, "loss logged before the crash": six(before_crash[step]) if step in before_crash else "-",
             "by the resumed run": six(after_resume[step]) if step > starts[-1] else "(kept from before)",
             "by the uninterrupted run": six(straight_losses[step])} for step in range(3, 11)])
print(f"resumed: val loss {resumed['val_loss']:.6f}; uninterrupted: {uninterrupted['val_loss']:.6f}")

# %%
# NBVAL_CHECK_OUTPUT
same_losses = after_resume == straight_losses and resumed["val_loss"] == uninterrupted["val_loss"]
same_weights = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
repeated = [step for step in before_crash if step > starts[-1]]
print("steps done twice:", repeated, "with the same losses both times:",
      all(before_crash[step] == after_resume[step] for step in repeated))
print("resuming gives the same losses and the same weights as not stopping:", same_losses and same_weights)


# %% [markdown]
# The process died during step 8, with steps 1 to 7 in its log and step 5's checkpoint on disk. The resumed run
# loaded that checkpoint (weights, AdamW's moments, the step, the generators), cut the log back to step 5, and did
# steps 6 and 7 again: with the same windows (the data order is a function of the step) and the same optimizer
# state, they gave the same losses, bit for bit, as before the crash. Then it went on to step 16 and ended with the
# same weights as the run that never stopped. Had the checkpoint held only the weights, AdamW would have restarted
# with empty moments: its first step would move every weight by a full `lr` (section 4), and the resumed run would
# no longer be the same run.
#
# ## 7. Masked or causal: encoder or decoder?
#
# Same blocks, same data, same number of steps: one model with a causal mask trained to predict the next token, one
# without a mask trained with BERT's masking. Then two tasks:
#
# * **fill a word in the middle of a sentence** ("Mia went to the ___ with her dog."): the encoder sees both sides;
#   the decoder only the words before the gap;
# * **continue a text**: the next-token loss at the end of a prefix. The decoder was trained for it; the encoder can
#   be asked by putting a mask token after the prefix.
#
# Both are trained step by step with the package's `train_step`, on the same batches, masks and steps that `train`
# uses, and evaluated by `minilm.train.evaluate` along the way. The encoder uses rotary positions
# too: with learned position embeddings it starts knowing nothing of word order (a decoder's causal mask gives it
# some for free), and in a budget this small it stays stuck at guessing frequent words.

# %%
def quick_train(config: TrainConfig, eval_every: int | None = None, desc: str = "") -> tuple[GPT, list[dict]]:
    # train() without checkpoints or logs; evaluates every `eval_every` steps on config.eval_tokens tokens.
    model = GPT(config.model_config(tokenizer.vocab_size), seed=config.seed)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    scaler, world, points = grad_scaler("cpu", "fp32"), World(), []
    mask = mask_id if config.objective == "masked" else None
    for step in tqdm(range(config.max_steps), desc=desc, leave=False, mininterval=5):
        x, y = step_windows(train_shards, config, step)
        batches = micro_batches(x, y, config, step, mask_id=mask, vocab_size=tokenizer.vocab_size)
        lr = learning_rate(step, config.lr, config.warmup_steps, config.max_steps, config.min_lr)
        train_step(model, optimizer, scaler, batches, lr, config.grad_clip, "cpu")
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == config.max_steps):
            result = evaluate(model, val_shards, config, None, world, "fp32", config.eval_tokens, mask)
            points.append({"step": step + 1, "tokens": (step + 1) * config.tokens_per_step(), **result})
    return model.eval(), points


COMPARE_STEPS = {"ci": 40, "cpu": 1500, "gpu": 1500}[PRESET]
compare, curves = {}, {}
for objective in ("causal", "masked"):
    cfg = TrainConfig(**SMALL, **LOOKING, objective=objective, max_steps=COMPARE_STEPS, warmup_steps=COMPARE_STEPS // 10,
                      lr=3e-3, min_lr=3e-4)
    started = time.perf_counter()
    compare[objective], curves[objective] = quick_train(cfg, eval_every=max(1, COMPARE_STEPS // 6), desc=objective)
    print(f"{objective}: {count_parameters(compare[objective]):,} parameters, {COMPARE_STEPS} steps of "
          f"{cfg.tokens_per_step():,} tokens in {time.perf_counter() - started:.0f} s; validation loss "
          f"{curves[objective][-1]['val_loss']:.3f} on {curves[objective][-1]['val_tokens']:,} predictions")
decoder, encoder = compare["causal"], compare["masked"]

# %% [markdown]
# The two validation losses are not the same task: the decoder's is over every next token, from the left; the
# encoder's over the 15% masked tokens, from both sides. The gaps to fill: sentences of the validation stories, each
# on its own (the validation stories of section 5), with one whole word in the middle (a single token) to guess.

# %%
eot = tokenizer.special_id("<|endoftext|>")
is_word = lambda i: tokenizer.decode([i])[:1] == " " and tokenizer.decode([i])[1:].isalpha()  # " river", one token


def gap_cases(limit: int) -> list[tuple[list[int], int]]:
    # (ids, position) pairs: a sentence, and the position of a whole word in its middle third.
    cases = []
    for story in stories:
        for sentence in story_sentences(story)[1:]:
            ids = [eot] + tokenizer.encode_ordinary(sentence)
            if not 8 <= len(ids) <= SMALL["context"]:
                continue
            middle = range(len(ids) // 3, 2 * len(ids) // 3)
            whole = [i for i in middle if is_word(ids[i]) and not tokenizer.decode([ids[i + 1]])[:1].isalpha()]
            if whole:
                cases.append((ids, whole[len(cases) % len(whole)]))
            if len(cases) == limit:
                return cases
    return cases


@torch.no_grad()
def fill_gap(ids: list[int], position: int, model: GPT, k: int = 1) -> list[int]:
    # The model's k best guesses for ids[position]: the encoder reads both sides, the decoder the left only.
    if model.config.causal:
        logits = model(torch.tensor([ids[:position]]))[0][0, -1]
    else:
        masked = ids.copy()
        masked[position] = mask_id
        logits = model(torch.tensor([masked]))[0][0, position]
    return logits.topk(k).indices.tolist()


cases = gap_cases({"ci": 60, "cpu": 400, "gpu": 400}[PRESET])
for ids, position in cases[:3]:
    print(tokenizer.decode(ids[1:position]) + " ___" + tokenizer.decode(ids[position + 1:]))
    print(f"    the word: {tokenizer.decode([ids[position]])!r}; the encoder guesses "
          f"{' / '.join(repr(tokenizer.decode([i])) for i in fill_gap(ids, position, encoder, 3))}; the decoder "
          f"{' / '.join(repr(tokenizer.decode([i])) for i in fill_gap(ids, position, decoder, 3))}")

# %% [markdown]
# A gap in a sentence on its own is one test; a gap in running text, where the story so far comes before the
# sentence, is another: there the decoder also reads the sentences before the gap's (the gap sits in the middle half
# of a window of `context` tokens). We measure both, and the continuation:

# %%
context = SMALL["context"]
starts = np.linspace(0, len(val_shards) - context - 2, {"ci": 64, "cpu": 512, "gpu": 512}[PRESET]).astype(int)
windows = np.stack([val_shards.read(int(s), int(s) + context) for s in starts])
# in running text: a whole word between two whole words, in the middle half of a window
in_text = [(row, t) for row in range(len(windows)) for t in range(context // 4, 3 * context // 4, 7)
           if is_word(windows[row, t]) and is_word(windows[row, t - 1]) and is_word(windows[row, t + 1])]


@torch.no_grad()
def fill_in_text(model: GPT) -> float:
    # The share of in_text gaps whose token the model ranks first, reading the whole window (encoder) or its left.
    inputs = torch.from_numpy(windows.astype(np.int64))
    if model.config.causal:
        logits = model(inputs)[0]
        guesses = [int(logits[row, t - 1].argmax()) for row, t in in_text]  # position t - 1 predicts token t
    else:
        guesses = []
        for row, t in in_text:
            masked = inputs[row].clone()
            masked[t] = mask_id
            guesses.append(int(model(masked[None])[0][0, t].argmax()))
    return float(np.mean([guess == windows[row, t] for guess, (row, t) in zip(guesses, in_text)]))


@torch.no_grad()
def next_token_loss(model: GPT, cuts: list[int]) -> float:
    # The mean cross-entropy of predicting windows[:, t] from windows[:, :t], over the cut points t.
    losses = []
    for t in cuts:
        prefix = torch.from_numpy(windows[:, :t].astype(np.int64))
        if model.config.causal:
            logits = model(prefix)[0][:, -1]
        else:  # the encoder fills a mask token put after the prefix
            logits = model(torch.cat([prefix, torch.full((len(prefix), 1), mask_id)], dim=1))[0][:, -1]
        losses.append(F.cross_entropy(logits, torch.from_numpy(windows[:, t].astype(np.int64))).item())
    return float(np.mean(losses))


cuts = list(range(context // 4, context, context // 8))
rows = []
for name, model in (("decoder (causal LM)", decoder), ("encoder (masked LM)", encoder)):
    rows.append({"model": name,
                 f"fill a word in a sentence ({len(cases)}): accuracy": np.mean([fill_gap(ids, p, model)[0] == ids[p] for ids, p in cases]),
                 f"fill a word in running text ({len(in_text)}): accuracy": fill_in_text(model),
                 f"continue text ({len(starts) * len(cuts):,} predictions): next-token loss, nats": next_token_loss(model, cuts)})
show_table(rows)

# %% [markdown]
# With the `cpu` preset (1,500 steps of a 2-layer, 64-wide model) the two models split the tasks as their
# objectives predict. **Filling a gap in a sentence, the encoder wins clearly** (in the table, about two gaps in
# three against a little under half): the words after the gap ("… with her dog.") say a lot about it, and only the
# encoder reads them. **Continuing text, the decoder wins by far** (its loss is lower by more than two nats): the
# encoder was never asked to predict from one side only, and a mask with nothing after it is not a gap it has seen.
# In running text the decoder is ahead at this budget: it reads the story so far, which often names
# the missing word already, and it has had far more training signal (next paragraph). (With the `ci` preset the
# models train for seconds and the encoder has not yet learned to use its neighbours: its guesses are still mostly
# frequent words.)
#
# The encoder learns from 15% of the positions, the decoder from all of them, so for the same tokens read it gets
# about a seventh of the training signal. The validation losses along the way (each is its own task, so compare
# the shapes of the curves, not their heights):

# %%
fig, ax = plt.subplots(figsize=(6, 2.8))
for objective, label in (("causal", "decoder: next token, from the left"), ("masked", "encoder: masked tokens, both sides")):
    ax.plot([p["step"] for p in curves[objective]], [p["val_loss"] for p in curves[objective]], "o-", markersize=3, label=label)
ax.set(xlabel="step", ylabel="validation loss (nats)", title="the same model, two objectives")
ax.legend(fontsize=8)
show(fig)
for objective, points in curves.items():
    losses_along = [p["val_loss"] for p in points]
    print(f"{objective}: {losses_along[0]:.2f} nats at step {points[0]['step']}, {losses_along[-1]:.2f} at step "
          f"{points[-1]['step']}; each evaluation lower than the one before: "
          f"{all(b < a for a, b in zip(losses_along, losses_along[1:]))}; over the last "
          f"{points[-1]['step'] - points[-2]['step']} steps it fell by {losses_along[-2] - losses_along[-1]:.3f}")

# %% [markdown]
# Neither curve has a plateau: both fall from their first evaluation on, steeply at first, then more slowly. With
# the `cpu` preset the encoder's loss is still falling faster at the end than the decoder's: with a seventh of the
# signal, it is further from what this model can learn, and more steps would help it more.
#
# That is the division of labour of the late 2010s: BERT-style encoders for understanding (classification, search,
# filling in), GPT-style decoders for writing. Decoders won in the end because writing turned out to cover
# understanding too, once the model is large enough and the task is phrased as text to continue, and because they
# learn from every token.
#
# ## 8. Scaling: loss against model size and data
#
# How much better does a bigger model get? Kaplan et al. (2020) and Hoffmann et al. (2022, "Chinchilla") found that
# the loss falls as a **power law** in the number of parameters N (when data is plentiful) and in the number of
# tokens D (when the model is big enough): L ≈ a·N^(−α), a straight line on log-log axes. We train a few small
# models of growing width on the same tokens, evaluating along the way, and fit the line. As Kaplan did, N counts the
# parameters outside the embedding, the ones that compute.

# %%
WIDTHS, SCALE_STEPS = {"ci": ([8, 16, 32], 30), "cpu": ([16, 32, 64, 128], 300), "gpu": ([16, 32, 64, 128], 600)}[PRESET]
scaling = []
started = time.perf_counter()
for width in WIDTHS:
    cfg = TrainConfig(**{**SMALL, **LOOKING, "n_embd": width, "n_head": max(1, width // 16), "eval_tokens": 8192},
                      max_steps=SCALE_STEPS, warmup_steps=SCALE_STEPS // 10, lr=3e-3, min_lr=3e-4)
    model, points = quick_train(cfg, eval_every=max(1, SCALE_STEPS // 8), desc=f"width {width}")
    embedding = model.transformer.wte.weight.numel()  # rotary positions have no parameters
    scaling.append({"width": width, "N": count_parameters(model) - embedding, "points": points})
print(f"{len(WIDTHS)} models × {SCALE_STEPS} steps of {cfg.tokens_per_step():,} tokens in {time.perf_counter() - started:.0f} s")
show_table([{"width": s["width"], "non-embedding parameters": f"{s['N']:,}", "validation loss": s["points"][-1]["val_loss"]}
            for s in scaling])

# %%
N = np.array([s["N"] for s in scaling], dtype=float)
final = np.array([s["points"][-1]["val_loss"] for s in scaling])
slope, intercept = np.polyfit(np.log(N), np.log(final), 1)
alpha = -slope

biggest = scaling[-1]["points"]
tokens = np.array([p["tokens"] for p in biggest], dtype=float)
losses_d = np.array([p["val_loss"] for p in biggest])
later = tokens >= tokens[len(tokens) // 4]  # past warmup
slope_d, intercept_d = np.polyfit(np.log(tokens[later]), np.log(losses_d[later]), 1)

fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(10, 3.4))
ax_n.loglog(N, final, "o", color="#1f77b4", label="validation loss")
grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 50)
ax_n.loglog(grid, np.exp(intercept) * grid**slope, "--", color="grey", label=f"fit: {np.exp(intercept):.2f}·N^(−{alpha:.3f})")
ax_n.set(xlabel="non-embedding parameters N", ylabel="validation loss (nats)", title="loss against model size")
ax_n.legend(fontsize=8)
for s in scaling:
    ax_d.loglog([p["tokens"] for p in s["points"]], [p["val_loss"] for p in s["points"]], "o-", markersize=3,
                label=f"width {s['width']}")
ax_d.loglog(tokens[later], np.exp(intercept_d) * tokens[later]**slope_d, "--", color="grey",
            label=f"fit (widest): D^(−{-slope_d:.3f})")
ax_d.set(xlabel="training tokens D", title="loss against data")
ax_d.legend(fontsize=8)
show(fig)
print(f"loss ∝ N^(−{alpha:.3f}) across sizes; ∝ D^(−{-slope_d:.3f}) along the widest model's run")
along_runs = []
for s in scaling:  # the same fit as for the widest model, along each run
    run_tokens = np.array([p["tokens"] for p in s["points"]], dtype=float)
    run_losses = np.array([p["val_loss"] for p in s["points"]])
    past_warmup = run_tokens >= run_tokens[len(run_tokens) // 4]
    slope_run = np.polyfit(np.log(run_tokens[past_warmup]), np.log(run_losses[past_warmup]), 1)[0]
    along_runs.append(f"width {s['width']}: D^(−{-slope_run:.3f})")
print("along each run:", ", ".join(along_runs))

# %% [markdown]
# On the left the points lie close to a straight line: a power law. On the right the runs are only roughly straight:
# each bends, flattening as it goes. Kaplan et al. measured small exponents, α ≈ 0.076 for N and 0.095 for D, on loss in
# nats, at sizes up to a billion parameters. A small exponent is why scale is expensive: with α ≈ 0.08, halving the
# loss's distance takes roughly 2^(1/0.08) ≈ 6,000 times the parameters. Two cautions: our models are tiny and trained
# briefly, so our exponents are rough (with the `cpu` preset they come out larger than Kaplan's); and the points along a
# run are not quite independent runs of D tokens (the learning rate had not decayed yet), the mistake that Chinchilla
# corrected and that led to training smaller models on far more tokens (about 20 tokens per parameter). On the right,
# compare the exponents along each run (the last line above): with the `cpu` preset the narrowest model's is the
# smallest, its curve the flattest: with too few parameters, more data helps less.

# %% [markdown]
# ### 8.1 The data mixture: two languages in one model
#
# Stage 1's corpus is mostly English, with some Spanish (stories and web pages; stage 1 labels every document with the
# language its identifier finds). Read as it is, the model sees little Spanish. Multilingual models sample each
# language in proportion to size^(1/T) (`temperature_shares`, notebook 01): T = 1 keeps the natural shares, a high T
# moves towards equal shares, repeating the small language's data (mT5 and XLM-R use T ≈ 3.3). For a fixed budget of
# tokens and parameters it is a trade: every extra Spanish token is an English token not read.
# `language_tradeoff` trains two small models of the same size on the same number of tokens, one on the natural
# mixture and one at T = 5, and measures each on the validation documents of each language, in nats per token and
# in bits per byte (the fairer comparison across languages: the tokenizer cuts Spanish into more, shorter tokens).

# %%
from minilm.train.languages import language_tradeoff, small_config

tradeoff_config = small_config(**({"n_embd": 32, "context": 32, "batch_size": 8, "max_steps": 40, "warmup_steps": 4}
                                  if PRESET == "ci" else {}))
started = time.perf_counter()
tradeoff = language_tradeoff(list(read_jsonl(data_artifact.path / "train.jsonl")),
                             list(read_jsonl(data_artifact.path / "val.jsonl")), tokenizer,
                             temperatures=(1.0, 5.0), config=tradeoff_config)
print(f"2 models × {tradeoff_config.max_steps} steps of {tradeoff_config.tokens_per_step():,} tokens in "
      f"{time.perf_counter() - started:.0f} s")
show_table(tradeoff)
fig, ax = plt.subplots(figsize=(6, 2.8))
for offset, row in zip((-0.2, 0.2), tradeoff):
    ax.bar(np.arange(2) + offset, [row["bits/byte en"], row["bits/byte es"]], 0.4,
           label=f"{row['mixture']}: {row['share of Spanish']:.0%} Spanish")
ax.set_xticks(np.arange(2), ["English", "Spanish"])
ax.set(ylabel="validation bits per byte", title="the same model and tokens, two language mixtures")
ax.legend(fontsize=8)
show(fig)

# %% [markdown]
# With the `cpu` preset, at T = 5 Spanish's share of the training text grows from its natural 7.8% to 35%, and the
# tempered mixture holds Spanish's text 6.5 times over (the column "Spanish read (times)"). The rest of the text,
# mostly English, falls from 92% of it to 65%: English gets about 30% fewer tokens. The Spanish loss falls by a
# third, from 5.039 to 3.445 nats per token, 1.749 to 1.196 bits per byte; the English loss rises by 6%, from 3.240
# to 3.445 nats, 1.087 to 1.155 bits per byte. So Spanish gains about eight times what English loses (0.55 against
# 0.07 bits per byte), and the gap between the languages shrinks from 0.66 bits per byte to 0.04. (At T = 5 the two
# losses per token agree to three decimals by chance; per byte Spanish is still a little behind, its tokens being a
# little shorter.) That asymmetry is why multilingual models raise the temperature at all: a language that starts
# with little data gains more from extra tokens than the large one loses. The repeats are what limits it: repeated
# data is worth less each time, and 6.5 copies is more than the about 4 passes that Muennighoff et al. (2023) found
# nearly as good as new data; these short runs read only part of their mixture, so they do not reach that cost.
# Each model is small and trained once, for 300 steps, so the sizes of the moves are rough; their directions
# and their asymmetry are the lesson.

# %% [markdown]
# ## 9. What the layers learn
#
# Articles about language models say that their layers capture different levels of meaning, low layers the words
# and high layers the sense. Our stage-4 model is small enough to check. Each block reads the **residual stream**
# (notebook 03, section 5: one vector per position, to which every block adds its result) and the head reads the
# stream only at the very end, after the final norm. So we stop the stream after each block and ask it two things,
# with the three functions of `minilm.interpret`:
#
# * **the logit lens** (nostalgebraist, 2020): decode the stream after block *i* as if it were the last one, through
#   the final norm and the tied output head (`decode`), and score its next-token predictions (`logit_lens`). The
#   last layer's decoding *is* the model's output, bit for bit (a test checks it); the earlier ones show how far
#   each block has brought the prediction.
# * **linear probes** (Alain and Bengio, 2016): fit a logistic regression that reads one fact about a story from
#   the stream at one position, on some stories, and score it on others (`linear_probe`). If it beats the baseline,
#   always guessing the most frequent answer, the fact is written in the stream in a form a straight line can read.
#
# `residual_streams` records the stream after the embedding and after each block with forward hooks during one
# ordinary forward pass, so it reads exactly what `model(tokens)` computes. First the lens, on windows of the
# validation split:

# %%
from minilm.interpret import decode, linear_probe, logit_lens, residual_streams
from minilm.world import split_stories

lens_model = pretrained.eval()
lens_device = next(lens_model.parameters()).device
lens_context = lens_model.config.context
lens_starts = np.linspace(0, len(val_shards) - lens_context - 2, max(1, 8192 // lens_context)).astype(int)
lens_windows = np.stack([val_shards.read(int(s), int(s) + lens_context + 1) for s in lens_starts])
lens_windows = torch.from_numpy(lens_windows.astype(np.int64)).to(lens_device)
lens_inputs, lens_targets = lens_windows[:, :-1], lens_windows[:, 1:]
lens = logit_lens(lens_model, lens_inputs, lens_targets)
with torch.no_grad():
    lens_streams = residual_streams(lens_model, lens_inputs)
    lens_exact = torch.equal(decode(lens_model, lens_streams[-1]), lens_model(lens_inputs)[0])
    for row, stream in zip(lens, lens_streams):
        row["itself"] = (decode(lens_model, stream).argmax(-1) == lens_inputs).float().mean().item()
        row["size"] = stream.norm(dim=-1).mean().item()
print(f"{lens_targets.numel():,} next-token predictions; the last layer, decoded, equals the model's logits: "
      f"{lens_exact}")
show_table([{"layer": r["layer"], "the stream after": "the embedding" if r["layer"] == 0 else f"block {r['layer'] - 1}",
             "next-token accuracy": f"{r['accuracy']:.1%}", "loss (nats)": f"{r['loss']:.2f}",
             "predicts the token it reads": f"{r['itself']:.1%}", "size of the stream": f"{r['size']:.1f}"}
            for r in lens])

lens_layers = [r["layer"] for r in lens]
fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 2.8))
ax_acc.plot(lens_layers, [r["accuracy"] for r in lens], "o-")
ax_acc.set(xlabel="layer (0 = the embedding)", ylabel="next-token accuracy", title="logit lens: accuracy",
           xticks=lens_layers)
ax_loss.plot(lens_layers, [r["loss"] for r in lens], "o-", color="#d62728", label="the layer, decoded")
ax_loss.axhline(math.log(lens_model.config.vocab_size), ls=":", color="grey", label="a uniform guess: ln(vocabulary)")
ax_loss.set(xlabel="layer (0 = the embedding)", ylabel="loss (nats, log scale)", yscale="log", title="logit lens: loss",
            xticks=lens_layers)
ax_loss.set_yticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
ax_loss.minorticks_off()
ax_loss.legend(fontsize=8)
show(fig)


# %% [markdown]
# With the `cpu` preset (4 blocks, 128 wide) the embedding decoded directly is useless: its accuracy is near zero
# and its loss about 23 nats, far above a uniform guess's ln(4,096) ≈ 8.3 (the dotted line). The head shares its
# matrix with the embedding, so the embedding of a token scores highest against that very token: the lens at layer 0
# "predicts" the token it is reading (over 99% of the time, in the table), and the next token is rarely the same.
# **The first block does most of the work**: after it the lens already gets 41% of next tokens right, at 3.5 nats;
# each later block adds less (49%, then 55%, then the model's own 58% and 2.1 nats). Each block also writes more into
# the stream: its size grows from about 1 after the embedding to 23 at the top, which is one reason the final norm must
# come before the head. (The `ci` preset's model has 2 blocks and has barely learned: its lens is poor at every
# layer.)
#
# Next-token accuracy says how well each layer *predicts*, not what it *knows*. For that we probe it with facts we
# know for certain: the stories come from a generator, which knows each hero's gender and job. We write 1,500
# stories from the held-out `test` split, which no training stage reads, with the job-gender stereotype turned off
# (`bias=0.0`: in the training stories most nurses are women, and a probe could then read the gender off the job).
# From each we take the first sentence alone ("Once upon a time, there was a doctor named Finn."), run the model on
# it after `<|endoftext|>`, as stories start in training, and keep the stream at its last token, the full stop, at
# every layer. The full stop is the same token in every story: whatever the stream holds there about the story, the
# blocks have brought from the words before it. Three facts:
#
# * the hero's **job**, a word of the sentence;
# * the hero's **gender**, which no word of this sentence states: only the name tells it, and the model must have
#   learned which names are whose from the pronouns that follow them in its training stories;
# * the story's **event** (a storm, a race, a lost pet, ...), which the first sentence does not tell at all: a
#   control. A probe that beat the baseline here would be reading noise, or something we did not mean to leave in.

# %%
@torch.no_grad()
def first_sentence_streams(model: GPT, texts: list[str]) -> tuple[list[torch.Tensor], bool]:
    # The stream at the last token of each story's first sentence, read after <|endoftext|> as in training: one
    # (stories, n_embd) tensor per layer; and whether every first sentence ends on the same token, ".".
    eot = tokenizer.special_id("<|endoftext|>")
    ids = [[eot] + tokenizer.encode_ordinary(story_sentences(text)[0]) for text in texts]
    longest = max(map(len, ids))
    # Padding on the right changes nothing before it: a position sees only the tokens up to itself.
    on = next(model.parameters()).device
    batch = torch.tensor([row + [eot] * (longest - len(row)) for row in ids], device=on)
    last = torch.tensor([len(row) - 1 for row in ids], device=on)
    rows = torch.arange(len(ids), device=on)
    return [stream[rows, last] for stream in residual_streams(model, batch)], all(row[-1] == ids[0][-1] for row in ids)


probe_stories = split_stories("test", 1500, bias=0.0)  # (text, facts) pairs
probe_features, same_last_token = first_sentence_streams(lens_model, [text for text, _ in probe_stories])
probes = {name: [linear_probe(layer, [facts[key] for _, facts in probe_stories], seed=0) for layer in probe_features]
          for name, key in (("job", "job"), ("gender", "gender"), ("event (control)", "event"))}
print(f"{len(probe_stories):,} first sentences, all ending on the same token: {same_last_token}; each probe is "
      f"fitted on {probes['job'][0]['n_train']} stories and scored on the other {probes['job'][0]['n_test']}")
show_table([{"layer": layer, **{f"{name}: accuracy (baseline {results[0]['baseline']:.0%})":
                                f"{results[layer]['accuracy']:.1%}" for name, results in probes.items()}}
            for layer in lens_layers])

fig, ax = plt.subplots(figsize=(6, 3))
for (name, results), colour in zip(probes.items(), ("#1f77b4", "#ff7f0e", "#7f7f7f")):
    ax.plot(lens_layers, [r["accuracy"] for r in results], "o-", color=colour, label=name)
    ax.plot(lens_layers, [r["baseline"] for r in results], ":", color=colour)
ax.set(xlabel="layer (0 = the embedding)", ylabel="held-out accuracy", ylim=(0, 1.05), xticks=lens_layers,
       title="what a linear probe reads at the full stop (dotted: baselines)")
ax.legend(fontsize=8, loc="center right")
show(fig)


# %% [markdown]
# With the `cpu` preset the three facts arrive at three different depths. At layer 0 the stream is only the full
# stop's embedding plus its position, so the probes are close to their baselines: gender 52% against 50%, the event
# 12% against 14%; the job a little above its 5% (10%), since the position of the full stop depends on the sentence's
# template and on the job ("police officer" is two tokens). **The job is there from the first block on** (90% of 18
# jobs after it, 99% at the top): one attention layer can copy a word of the sentence to the full stop. After the
# second block it dips to 76% before coming back to 99% after the third: a fact written into the stream can be harder
# for a straight line to read at one layer than at the next, as the blocks add more to the same 128 numbers (and 900
# stories are few to fit a probe of 18 answers on). **The gender takes longer**: above chance but far from sure after
# the first block (69%), and 100% from the second block on. It is not a word to copy but a property of the name that
# the model has to work out, and it pays the model to work it out: the next sentence often begins "She ..." or "Every
# morning he ...". **The event stays near its baseline at every layer** (12% to 15% against 14%), as it must: the
# control shows that the probes find what is in the stream, not what they can fit on 900 stories.
#
# So in this small model the layers do hold different things: the words of the context are gathered early, and facts
# that have to be computed from them appear higher up. Two cautions. A probe shows that a fact can be *read* from a
# layer, not that the model *uses* it there; to show use, one changes the stream and watches the output (activation
# patching). And the "levels of meaning" of models a thousand times larger are looked for the same way, layer by
# layer with lenses and probes; there the layers are many more and the facts far subtler. (The `ci` preset's model
# is trained for seconds: its probes read far less, and the numbers above are not its numbers.)

# %% [markdown]
# ## 10. Exercises
#
# Each exercise is code for you to write, followed by a check cell that runs it on fresh random inputs against a
# reference (the package's own version, or PyTorch's) and prints a pass, or shows the input where they differ with a
# hint. The checks of unsolved exercises show a red error: that is expected. They rise in difficulty: the loss of a
# batch, the masking that makes an encoder's targets, gradient accumulation, the optimizer, and last the training
# loop, which puts them together. Section 11, after them, shows the package's versions. Solutions are in
# `solutions/04_pretraining.ipynb` (try first!).
#
# ### Exercise 1: the cross-entropy of a batch
#
# You will have built the loss that every language model minimises. Write `cross_entropy(logits, targets)`: `logits`
# has shape (batch, T, vocabulary), `targets` (batch, T) holds token ids, or −100 where there is nothing to predict.
# Return the mean, over the positions whose target is not −100, of minus the log-probability that the softmax of the
# logits gives the target: a 0-dimensional tensor, equal to `F.cross_entropy` (which you may not call; `log_softmax`
# and `logsumexp` neither). The check uses large logits too: compute the log-softmax in a way that cannot overflow.

# %%
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    counted = targets != -100
    top = logits.max(dim=-1, keepdim=True).values  # subtract the largest logit: exp() cannot overflow
    log_probs = logits - top - (logits - top).exp().sum(dim=-1, keepdim=True).log()
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -picked[counted].mean()
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.pretraining import check_cross_entropy

check_cross_entropy(cross_entropy)


# %% [markdown]
# ### Exercise 2: BERT's masking rule
#
# You will have built the batches an encoder learns from (section 1 showed the package's). Write
# `mask(ids, mask_id, vocab_size, generator, rate=0.15)`, for a (batch, T) tensor of token ids. Choose each position
# independently with probability `rate`. Return `(inputs, targets)`: `targets` holds the original id at the chosen
# positions and −100 elsewhere; in `inputs` the positions that were not chosen keep their id, and of the chosen ones
# 80% become `mask_id`, 10% a random token drawn uniformly from `0 .. vocab_size − 1`, and 10% keep their id. Draw
# every random number from `generator` (a `torch.Generator`), and leave `ids` unchanged. The check runs it on half a
# million tokens and tests the proportions statistically.

# %%
def mask(ids: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
         rate: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    chosen = torch.rand(ids.shape, generator=generator) < rate
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    kind = torch.rand(ids.shape, generator=generator)  # among the chosen: < 0.8 mask, < 0.9 random, else keep
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (kind < 0.8)] = mask_id
    swap = chosen & (kind >= 0.8) & (kind < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, targets
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.pretraining import check_masking

check_masking(mask)


# %% [markdown]
# ### Exercise 3: gradient accumulation
#
# You will have built what lets a small machine train on a big batch. A batch too big for memory is split into
# micro-batches whose gradients add up in `.grad`. Write `accumulate(model, inputs, targets, k)`: split `inputs` and
# `targets` (batch, T) into `k` micro-batches along the batch dimension with `torch.chunk` (the last ones may be
# smaller), run `model(x, y)` on each (it returns `(logits, loss)`, the loss being the mean over that micro-batch's
# targets that are not −100) and call `backward`, so that afterwards every parameter's `.grad` equals the gradient of
# the **whole batch's** loss: the mean over all its counted targets. Return that loss as a float. Do not zero the
# gradients or step an optimizer. Careful: the micro-batches may differ in size and in how many targets they count
# (masked language modelling), so dividing each loss by k is not enough. (Every micro-batch counts at least one
# target.)

# %%
def accumulate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    ### BEGIN SOLUTION
    total = int((targets != -100).sum())
    whole = 0.0
    for x, y in zip(inputs.chunk(k), targets.chunk(k)):
        _, loss = model(x, y)  # the mean over this micro-batch's counted targets
        share = int((y != -100).sum()) / total  # its part of the whole batch's mean
        (loss * share).backward()
        whole += loss.item() * share
    return whole
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.pretraining import check_gradient_accumulation

check_gradient_accumulation(accumulate)


# %% [markdown]
# ### Exercise 4: AdamW, as a PyTorch optimizer
#
# You will have built the optimizer that trains nearly every language model, as a drop-in replacement for
# `torch.optim.AdamW`. Section 4 said what it does; here are the conventions of a `torch.optim.Optimizer` that you
# need. The constructor below is written: `super().__init__` stores the parameters in `self.param_groups`, a list of
# dicts, each with its `"params"` (a list of tensors) and its own `"lr"`, `"betas"` (β₁, β₂), `"eps"` and
# `"weight_decay"` (a group's own value wins over the constructor's, as in `make_optimizer`'s group of biases and
# gains, whose weight decay is 0). Write `step()`, which moves every parameter once:
#
# * read each group's settings at every step, not once: a schedule changes `group["lr"]` before each step;
# * keep each parameter's state in `self.state[p]`, a dict that is empty before its first step: its moments m and v
#   (zeros at first, of the parameter's shape) and its own step count t;
# * skip a parameter whose `.grad` is None (it got no gradient this step), without counting a step for it;
# * the update is section 4's: m and v are running averages of g and g² (β₁ and β₂ the weights of their old
#   values), each divided by 1 − βᵗ at the parameter's step t (from 1) for its start at 0, and the move is
#   lr · m̂ / (√v̂ + ε) against the gradient, ε added to the root, not under it; the weight decay is decoupled: the
#   weight is multiplied by (1 − lr · weight_decay) before that move, and the decay never enters m or v;
# * change the parameters in place (`p.mul_`, `p.sub_`, ...): `@torch.no_grad()` keeps autograd out of it.
#
# The check runs your optimizer and `torch.optim.AdamW` side by side for 6 to 10 steps on random float64 parameters
# and gradients, with random hyperparameters, two groups (with and without weight decay), a new learning rate before
# every step and a parameter left without a gradient at one step, and compares every parameter after every step to
# a relative 10⁻⁹.

# %%
class AdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self) -> None:
        ### BEGIN SOLUTION
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # the first step of this parameter: the moments start at 0
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad
                m.mul_(beta1).add_(g, alpha=1 - beta1)  # the mean gradient
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # the mean squared gradient
                m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # undo the start at 0
                p.mul_(1 - lr * decay)  # decoupled weight decay
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
        ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.pretraining import check_adamw

check_adamw(AdamW)


# %% [markdown]
# ### Exercise 5: the training loop
#
# You will have built the loop that trains the model: what `minilm.train.train` does at every step, without its
# bookkeeping (logs, evaluation, checkpoints, mixed precision, several processes). Write
# `train_loop(model, optimizer, steps, lr, warmup_steps, min_lr, grad_clip)`, which returns the list of the steps'
# losses (floats). `steps` holds one entry per optimizer step, each a list of micro-batches `(inputs, targets)` (what
# `micro_batches` gives for one step; their sizes and counted targets may differ). `model(x, y)` returns
# `(logits, loss)`; `optimizer` is AdamW from `make_optimizer` (yours from exercise 4 would do too). At step s,
# counted from 0:
#
# * set every param group's `"lr"` to `learning_rate(s, lr, warmup_steps, len(steps), min_lr)` (the package's
#   schedule of section 4, imported at the top: the run ends after `len(steps)` steps);
# * accumulate the gradient of the step's loss over its micro-batches as in exercise 3: the step's loss is the mean
#   over all its counted targets (the one to return for that step);
# * once all micro-batches are done, clip the norm of all the gradients together to `grad_clip`
#   (`torch.nn.utils.clip_grad_norm_`), then `optimizer.step()`, then `optimizer.zero_grad()`.
#
# The check trains three tiny models (decoders and an encoder with masked targets, one run clipping every step) with
# your loop and, from the same initial weights on the same batches, with the package's `train_step`, and compares
# the losses of every step and the final weights.

# %%
def train_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               steps: list[list[tuple[torch.Tensor, torch.Tensor]]], lr: float, warmup_steps: int, min_lr: float,
               grad_clip: float) -> list[float]:
    ### BEGIN SOLUTION
    losses = []
    for step, batches in enumerate(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup_steps, len(steps), min_lr)
        total = sum(int((y != -100).sum()) for _, y in batches)  # the targets the whole step counts
        step_loss = 0.0
        for x, y in batches:
            _, loss = model(x, y)
            loss = loss * int((y != -100).sum()) / total  # its share of the step's mean
            loss.backward()
            step_loss += loss.item()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)  # after the last micro-batch: the step's whole gradient
        optimizer.step()
        optimizer.zero_grad()
        losses.append(step_loss)
    return losses
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.pretraining import check_training_loop

check_training_loop(train_loop)

# %% [markdown]
# ## 11. Behind the exercises: the package's versions, by hand
#
# Now that you have written them, here are the pieces of sections 2 to 4 written out, each checked against what the
# package uses. **The loss**, on the batch of section 2: the log-softmax as logits minus their logsumexp (which
# PyTorch computes stably, as exercise 1 did by hand), then minus the mean log-probability of the true next tokens:

# %%
log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)  # log softmax: stable even for large logits
picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # the log-probability of each true next token
by_hand = -picked.mean()
print(f"loss by hand {by_hand:.6f}, the model's {loss_fresh:.6f}")

# %%
# NBVAL_CHECK_OUTPUT
print(torch.allclose(by_hand, loss_fresh, atol=1e-5))

# %% [markdown]
# **One AdamW step**, the step of section 4 again, by hand: after one step the moments hold (1 − β) times the
# gradient and its square, and bias correction makes them exactly g and g², so m̂/√v̂ is the sign of g:

# %%
lr, wd, (beta1, beta2), eps, t = 1e-2, 0.1, (0.9, 0.95), 1e-8, 1
m = (1 - beta1) * g  # the moments start at 0: after one step they hold (1 - beta) times the gradient
v = (1 - beta2) * g**2
m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # bias correction: both become exactly g and g²
adamw_by_hand = weight_before * (1 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps)
print("AdamW by hand equals torch's step:", torch.allclose(adamw_by_hand, weight.detach(), atol=1e-7))


# %% [markdown]
# **The loop**, written out for the run of section 3: the same windows (seeded by the step), the same initial weights
# and the same schedule, so it must give the losses that `train` logged there. With one micro-batch per step there is
# nothing to weight; the package's `train_step` (printed after) also weights micro-batches, scales the loss for
# 16-bit training and lets several processes average their gradients.

# %%
def train_by_hand(config: TrainConfig, steps: int) -> tuple[GPT, list[float]]:
    model = GPT(config.model_config(tokenizer.vocab_size), seed=config.seed)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    losses = []
    for step in range(steps):
        x, y = step_windows(train_shards, config, step)  # this step's windows, seeded by (seed, step)
        inputs, targets = make_batch(x, y, "causal")
        _, loss = model(inputs, targets)
        loss.backward()  # the gradient of the loss with respect to every weight
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.lr, config.warmup_steps, config.max_steps, config.min_lr)
        optimizer.step()  # AdamW: move every weight a little against its gradient
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return model, losses


hand_model, hand_losses = train_by_hand(small, small.max_steps)
print("our losses:          ", " ".join(f"{l:.2f}" for l in hand_losses))
print("the package's losses:", " ".join(f"{l:.2f}" for l in package_losses))
print("the same:", np.allclose(hand_losses, package_losses, rtol=1e-4))

# %%
import inspect

print(inspect.getsource(train_step))

# %%
print(f"this notebook has run for {time.perf_counter() - notebook_started:.0f} s with preset {PRESET!r}")

# %% [markdown]
# **Next:** notebook 05 looks at what this notebook took for granted: the number formats (the run above used the one
# its summary names), compilation, and several processes. The pretrained model of this notebook, cached in
# `data/runs/<preset>/pretrain/`, is where the later stages start, beginning with fine-tuning (notebook 06):
# `load_pretrained(run_pretrain_stage())` gives it back in one line.
