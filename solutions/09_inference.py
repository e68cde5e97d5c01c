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
# # 09 · Inference and deployment: the chat model made fast, small, and served
#
# Stages 1 to 8 built a chat model and measured it. This notebook is stage 9, the last: it makes the model answer
# quickly, makes it smaller, and serves it the way the ecosystem expects, to a browser, to the `openai` client, and
# to the engines (vLLM, llama.cpp) that a user moves to when the course's server is not enough.
#
# **You will build** the sampling rules by hand (temperature, top-k, top-p, min-p, repetition penalty); the KV
# cache's saving, measured; a batch that requests join and leave between steps (dynamic batching); one round of
# speculative decoding by hand, with a draft model trained here on the chat model's own answers; int8 weights by
# hand and what they cost in bits per byte; the export to a Hugging Face folder, loaded back by `transformers`; and
# an OpenAI-compatible server, started from this notebook and called with the `openai` client.
#
# **You will learn**
# * how each sampling rule reshapes the next-token distribution, and in which order they apply;
# * why generation is slow one token at a time, and what the KV cache, batching and speculative decoding each buy;
# * why speculative decoding returns exactly the big model's tokens, greedy or sampled;
# * how int8 quantization works, and why it saves memory first and time only with the right kernel;
# * what a serving API looks like: streaming, limits, errors, and requests that share one model.
#
# | preset | the real run (stage 9) | the rest of this notebook (2 CPU cores) |
# |---|---|---|
# | `ci` | stage 6's and 7's tiny models, a draft of 10 steps, a few prompts: seconds | seconds |
# | `cpu` | speed runs, a draft of 300 steps, speculative decoding on 60 test prompts, four precisions, the export: about 2 minutes the first time (section 1 prints how long), then cached | under a minute |
# | `gpu` | the `gpu` chat model, a larger draft and more prompts | under a minute |
#
# Stage 9's results are cached in `data/runs/<preset>/inference/`. It needs the models of stages 6 and 7 and stage
# 8's ratings; those not built yet (notebooks 06 to 08) are built first.

# %%
import json, statistics, threading, time

import matplotlib.pyplot as plt
import torch

from minilm import presets
from minilm.display import show, show_table
from minilm.finetune.chat import END, PAD, encode_chat
from minilm.finetune.tasks import build_examples
from minilm.infer import quantize, sampling, speculative
from minilm.infer.engine import Engine
from minilm.infer.report import export_rows, plot, quantization_rows, results, speculative_rows, speed_rows
from minilm.infer.sampling import SamplingParams
from minilm.infer.stage import InferenceConfig, load_chat_model, load_draft, prompt_ids, run_inference_stage
from minilm.model.generate import generate

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
notebook_started = time.perf_counter()
PRESET = presets.preset_name()
config = InferenceConfig.from_preset(PRESET)
print(f"preset {PRESET!r}, torch {torch.__version__}")

# %% [markdown]
# ## 1. The stage, and the model it serves
#
# Stage 9 serves the chat model that stage 8's raters rated best. We build the stage (cached after the first run)
# and load that model, its tokenizer and the draft model the stage trained.

# %%
from minilm.finetune.stage import run_finetune_stage
from minilm.rlhf.stage import run_rlhf_stage
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage

artifact = run_inference_stage(PRESET)
r = results(artifact)
tokenizer_artifact = run_tokenizer_stage(PRESET)
tokenizer = load_tokenizer(tokenizer_artifact)
model = load_chat_model(r["model"], run_finetune_stage(PRESET, tokenizer=tokenizer_artifact),
                        run_rlhf_stage(PRESET, tokenizer=tokenizer_artifact))
draft = load_draft(artifact)
end, pad = tokenizer.special_id(END), tokenizer.special_id(PAD)
context = model.config.context
print(f"stage 9 took {artifact.build_seconds:.0f} s to build; it serves the {r['model']} model, "
      f"{r['parameters']:,} parameters, context {context}; the draft has {r['draft']['parameters']:,}")
test = build_examples("test", 4, config.seed, tokenizer, context)
question = test[0].prompt
prompt = encode_chat(tokenizer, question, add_generation_prompt=True)[0]
print(f"\n{question[-1]['content']}\n-> {tokenizer.decode(generate(model, [prompt], 24, temperature=0, stop_token=end)[0])!r}")

# %% [markdown]
# ## 2. Sampling: how the next token is chosen
#
# The model gives a score (logit) to every token of the vocabulary; softmax turns the scores into probabilities.
# Greedy decoding takes the most likely token every time. Sampling draws from the distribution, after reshaping it:
#
# * **temperature** T divides the logits: below 1 sharpens the distribution, above 1 flattens it;
# * **top-k** keeps the k most likely tokens;
# * **top-p** (nucleus) keeps the fewest most likely tokens whose probabilities add up to p;
# * **min-p** keeps the tokens at least min_p times as likely as the best one;
# * **repetition penalty** lowers the score of every token already in the text (divides a positive logit by the
#   penalty, multiplies a negative one).
#
# They apply in that order (repetition penalty first), as Hugging Face's `generate` applies them, and the package's
# functions are tested equal to HF's logits processors. Here is the model's distribution of the next token after a
# line of plain text (no chat format), under three temperatures.

# %%
story = [tokenizer.special_id("<|endoftext|>")] + tokenizer.encode_ordinary("Tom had a red ball. Tom")
with torch.no_grad():
    logits = model(torch.tensor([story]))[0][0, -1].double()
best = logits.argsort(descending=True)[:12]
labels = [repr(tokenizer.decode([int(t)])) for t in best]
fig, ax = plt.subplots(figsize=(10, 3))
for offset, temperature in zip((-0.27, 0, 0.27), (0.5, 1.0, 2.0)):
    probs = torch.softmax(logits / temperature, dim=-1)[best]
    ax.bar([i + offset for i in range(12)], probs, width=0.27, label=f"T = {temperature}")
ax.set_xticks(range(12), labels, rotation=45, fontsize=8)
ax.set_ylabel("probability")
ax.set_title("the 12 most likely tokens after 'Tom had a red ball. Tom', at three temperatures")
ax.legend()
show(fig)
probs = torch.softmax(logits, dim=-1)
print(f"at T = 1 the best token has {probs.max():.1%} of the mass; the 12 shown hold {probs[best].sum():.1%}")

# %% [markdown]
# How many tokens each rule keeps, at temperature 1:

# %%
kept = {"top-k, k = 5": sampling.top_k_filter(logits[None], 5), "top-p, p = 0.9": sampling.top_p_filter(logits[None], 0.9),
        "top-p, p = 0.5": sampling.top_p_filter(logits[None], 0.5), "min-p, 0.1": sampling.min_p_filter(logits[None], 0.1)}
show_table([{"rule": name, "tokens kept": int(torch.isfinite(f).sum()),
             "mass kept": f"{probs[torch.isfinite(f[0])].sum():.1%}"} for name, f in kept.items()])

# %% [markdown]
# Sampling with a seed is repeatable, and in the engine each request has its own random generator, so a seeded
# request gets the same tokens whatever other requests share its batch. `sampling.choose` is the whole chain
# followed by a draw; by hand, for top-p 0.9 at temperature 0.8:

# %%
params = SamplingParams(temperature=0.8, top_p=0.9)
by_hand = torch.multinomial(torch.softmax(sampling.top_p_filter(logits[None].float() / 0.8, 0.9), dim=-1), 1,
                            generator=torch.Generator().manual_seed(7))
package = sampling.choose(logits[None].float(), params, generators=[torch.Generator().manual_seed(7)])
print(f"by hand {int(by_hand)}, package {int(package)}: the same draw")


# %% [markdown]
# The repetition penalty, on the same line of text. Greedy decoding takes the most likely token every time, and a
# small model given text it was not fine-tuned on (plain text, not a conversation) can fall into a loop. Without
# and with a penalty of 1.3 (every token already in the text, the prompt's included, is made less likely):

# %%
def continuation(penalty: float) -> str:
    engine = Engine(model, tokenizer, max_batch_size=1)
    params = SamplingParams(max_tokens=60, temperature=0, repetition_penalty=penalty)
    return engine.run([story], params)[0].text


for penalty in (1.0, 1.3):
    text = continuation(penalty)
    words = text.split()
    print(f"penalty {penalty}: {len(set(words))} different words of {len(words)}\n  {text!r}\n")

# %% [markdown]
# This model does not loop here. Without the penalty it writes " laugh." and an end token, and stops (its first token,
# " laugh", is the likeliest with only 18% of the mass: the plot above). With it, "." (already in the prompt) is made
# less likely, another word wins after " laugh", and the model goes on with a phrase of the stories, " that he loved
# very much.", before it stops: this chat model, fine-tuned to answer briefly and end its turn, ends the plain text
# soon either way. On a model that does loop (greedy, it repeats
# one phrase until the 60 tokens run out), the penalty breaks the loop by making each repeated token less likely. It is
# blunt, though: it punishes every token already seen, including those that should come back (a character's name,
# "the"), which is why it is kept near 1 and left off by default.
#
# ## 3. The KV cache: what one token at a time costs
#
# Generating a token runs the whole model on the whole sequence, to use only the last position's logits. Without a
# cache, token t costs a forward pass over t positions: the work grows with the square of the length. A token's keys
# and values never change once computed, so the KV cache keeps them, and each step runs the model on the one new
# token, reading the others from the cache. The saving, checked: the logits of the last position are the same.

# %%
ids = torch.tensor([prompt])
with torch.no_grad():
    whole, _ = model(ids)
    from minilm.model.attention import KVCache

    cache = KVCache(model.config, 1, len(prompt) + 1)
    model(ids[:, :-1], cache=cache)  # the prompt but its last token, into the cache
    step, _ = model(ids[:, -1:], cache=cache)  # then one token, reading the rest from the cache
print(f"largest difference in the last position's logits: {(whole[0, -1] - step[0, -1]).abs().max():.2e}")
c = model.config
per_token = 2 * c.n_layer * c.kv_heads * c.head_dim * 4
print(f"the cache holds {per_token:,} bytes per token (keys and values, {c.n_layer} layers, float32): "
      f"{per_token * context / 1024:,.0f} KiB for a full context of {context}")

# %% [markdown]
# Stage 9 timed greedy generation each way, on the same prompt and the same number of new tokens (every way gives
# the same tokens, checked). The engine (section 4) adds to the cache a loop with less work per step than stage 3's
# `generate`, and a batch of 8 prompts:

# %%
show_table(speed_rows(artifact))
print(f"time to the first token (the prompt's forward pass and one draw): {r['speed']['time_to_first_token_ms']:.1f} ms; "
      f"same tokens every way: {r['speed']['same_tokens']}")

# %% [markdown]
# ## 4. Batching, and requests that join between steps
#
# At batch 1 each step multiplies every weight matrix by one vector: the machine waits on memory and on Python, not
# on arithmetic. A batch of 8 does that waiting once for 8 tokens, which is why the engine's batch of 8 makes several
# times the tokens per second of batch 1 above. A server does not get its requests together, though: they arrive one by one,
# and finish at different times. The engine (`minilm.infer.engine`) batches them *dynamically*: between two steps,
# finished requests leave the batch and waiting ones join it (a prefill of their prompts, merged into the running
# batch's KV cache). Here 8 requests arrive one per step into an engine that runs at most 4 at once:

# %%
questions = [prompt_ids(tokenizer, [e])[0] for e in build_examples("test", 2, config.seed + 1, tokenizer, context)][:8]
engine = Engine(model, tokenizer, max_batch_size=4)
timeline, finished, step = {}, {}, 0
pending = list(enumerate(questions))
ids_of = {}
while pending or engine.has_work:
    if pending:
        index, ids_ = pending.pop(0)
        ids_of[engine.add(ids_, SamplingParams(max_tokens=min(24, context - len(ids_)), temperature=0))] = index
    for event in engine.step():
        timeline.setdefault(ids_of[event.request_id], []).append(step)
        if event.finish_reason:
            finished[ids_of[event.request_id]] = event.finish_reason
    step += 1
fig, ax = plt.subplots(figsize=(9, 2.6))
for index, steps in timeline.items():
    ax.broken_barh([(s, 1) for s in steps], (index - 0.4, 0.8), color=f"C{index}")
ax.set_xlabel("engine step")
ax.set_ylabel("request")
ax.set_title("dynamic batching: at most 4 requests decode together; each joins as a slot frees")
show(fig)
alone = [Engine(model, tokenizer, max_batch_size=1).run([q], SamplingParams(max_tokens=min(24, context - len(q)),
                                                                            temperature=0))[0].token_ids for q in questions]
together = Engine(model, tokenizer, max_batch_size=4).run(
    questions, [SamplingParams(max_tokens=min(24, context - len(q)), temperature=0) for q in questions])
print(f"{step} steps for {len(questions)} requests; each request's tokens equal its tokens alone: "
      f"{[c.token_ids for c in together] == alone}")

# %% [markdown]
# ## 5. Speculative decoding: a small model guesses, the big one checks
#
# The big model's forward pass over 5 new positions costs about as much as over 1 (it reads the weights once either
# way). So a cheap draft model guesses the next k tokens, one at a time, and the big (target) model scores all k
# guesses in one pass. It keeps the guesses as long as they are what it would have said, and at the first
# disagreement it says its own token instead. Greedy, that is exact: the tokens are the target's own.
#
# The draft here is the chat model's own first block: the same embedding, the same final norm and head, and one of its
# blocks instead of all of them (an *early exit*, the way LayerSkip makes its drafts). Stage 9 trained it briefly on
# the chat model's greedy answers to stage 6's training prompts (sequence-level distillation: it learns to say what
# the chat model says). One round by hand:

# %%
k = 4
with torch.no_grad():
    guesses, so_far = [], list(prompt)
    for _ in range(k):  # the draft guesses k tokens, one forward pass each (without a cache, for clarity)
        guesses.append(int(draft(torch.tensor([so_far]))[0][0, -1].argmax()))
        so_far.append(guesses[-1])
    target_logits = model(torch.tensor([prompt + guesses]))[0][0]  # ONE pass of the target over all the guesses
wanted = target_logits[len(prompt) - 1:].argmax(dim=-1).tolist()  # what the target says at each position
kept = 0
while kept < k and guesses[kept] == wanted[kept]:
    kept += 1
new = guesses[:kept] + [wanted[kept]]  # the kept guesses, then the target's own token (a bonus if all were kept)
print(f"draft guesses:  {[tokenizer.decode([t]) for t in guesses]}")
print(f"target's picks: {[tokenizer.decode([t]) for t in wanted]}")
print(f"kept {kept} of {k} guesses: this round adds {len(new)} tokens for one pass of the target")
reference = generate(model, [prompt], len(new), temperature=0)[0]
print(f"the same as the target's greedy tokens: {new == reference}")

# %% [markdown]
# With sampling, "what the target would have said" is a distribution p, and the draft's guess was drawn from its own
# distribution q. Speculative sampling keeps a guess with some probability and, at the first rejection, draws a
# replacement from a distribution built from p and q, chosen so that every token comes out distributed exactly as p,
# whatever the draft: a poor draft costs speed, never quality. Exercise 2 works out that step. The package's
# `speculative_generate` runs whole answers with both models' KV caches; stage 9 measured it on its test prompts,
# greedy:

# %%
result = speculative.speculative_generate(model, draft, prompt, 24, lookahead=4, end_tokens=(end,))
print(f"one answer: {result.accepted} of {result.proposed} guesses kept, {len(result.tokens) + 1} tokens in "
      f"{result.target_calls} passes of the target; equal to greedy: "
      f"{result.tokens == generate(model, [prompt], 24, temperature=0, stop_token=end)[0]}")
show_table(speculative_rows(artifact))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
plot(r, axes=axes)
show(fig)

# %% [markdown]
# The tokens are the chat model's own at every lookahead. The further ahead the draft guesses, the smaller the share of
# its guesses kept (a guess counts only if every guess before it was right), but the fewer passes of the chat model each
# token takes: from 0.58 at a lookahead of 1 to about a third at 4 and 6. The wall clock does not follow on this CPU:
# the last column is under 1 at every lookahead, from 0.57x to 0.84x (it moves from run to run; in this run it is best
# at a lookahead of 1 and worst at 6: the more passes saved, the slower). A pass of a model this small costs mostly
# fixed overhead (Python, kernel launches), so the draft's pass costs nearly as much as the chat model's, and its guesses eat what the
# saved passes give back. Speculative decoding pays when the target's pass is expensive and the draft's cheap: a large
# model on a GPU, where a pass is bound by reading billions of weights, and a draft a tenth of its size.

# %% [markdown]
# ## 6. int8 weights
#
# Each weight of the chat model is a 4-byte float. Int8 stores it as a 1-byte integer from -127 to 127 and keeps one
# float scale per row of the matrix: a weight stands for its integer times its row's scale, so each row has 255
# evenly spaced levels, spread to cover that row's weights, and each weight is stored as the level nearest to it
# (exercise 3 writes it). The package's `quantize_int8` on the first block's MLP matrix:

# %%
w = model.transformer.h[0].mlp.c_fc.weight.detach()
q, scale = quantize.quantize_int8(w)
back = quantize.dequantize_int8(q, scale)
error = (back - w).abs()
print(f"a {tuple(w.shape)} matrix: {w.numel() * 4:,} bytes in float32, {q.numel() + scale.numel() * 4:,} in int8 "
      f"({q.dtype}, values {int(q.min())} to {int(q.max())}; {scale.numel()} scales)")
print(f"largest error {error.max():.2e} (half a step is at most {scale.max() / 2:.2e}); "
      f"mean error {error.mean():.2e} against a mean |w| of {w.abs().mean():.2e}")
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.hist((error / scale[:, None]).flatten().numpy(), bins=40)
ax.set_xlabel("rounding error, in steps of the row's scale")
ax.set_title("every weight lands within half a step")
show(fig)

# %% [markdown]
# Stage 9 quantized every matrix of the blocks (the embedding, shared with the output head, stays in float: it is a
# table lookup, and the head's logits are where a small error shows most) and measured the model four ways: float32,
# bfloat16, int8 weights multiplying float32 activations, and int8 weights multiplying bfloat16 activations (PyTorch's
# `_weight_int8pack_mm` kernel, which gpt-fast and torchao use):

# %%
show_table(quantization_rows(artifact))
print(f"this machine computes bfloat16 in hardware: {r['quantization']['bf16_native']}")

# %% [markdown]
# The bits per byte move by at most 0.0033 (in the third decimal, on figures of 1.17 to 4.76), and the answers to
# the 240 test prompts stay the same but for one with bfloat16 (a right answer turned wrong: exact match moves by
# under half a point, far inside its interval) and two with int8 weights (exact match unchanged): int8 costs this
# model nothing measurable. The whole model shrinks to about 56% of its float32 bytes, not 25% (question 2 asks
# why). Speed is another matter: int8 weights save time only where a kernel multiplies them without first turning
# them back into floats. PyTorch's int8 kernel is slower with float32 activations (609 tokens/s) than with bfloat16
# activations (762) on a CPU with bfloat16 in hardware, as this one has; in this run both stay behind float32's
# 943, and so does bfloat16 (598): at this size a step costs mostly fixed
# overhead (Python, kernel launches) rather than reading weights, and these timings move from run to run. On a laptop
# without bfloat16 in hardware, int8 saves memory and not time.

# %% [markdown]
# ## 7. Export: the model in the format the engines read
#
# vLLM, llama.cpp and Ollama serve models at a scale this course's server does not. They read Hugging Face model
# folders: the weights as safetensors, a config naming an architecture they know (the course's model has GPT-2's
# shape, so it is exported as `GPT2LMHeadModel`), a `tokenizer.json` for the `tokenizers` library, and the chat
# template in the tokenizer's config. Stage 9 exported the model and loaded it back with `transformers`:

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()

folder = artifact.path / "hf"
print(sorted(p.name for p in folder.iterdir()))
hf_tokenizer = AutoTokenizer.from_pretrained(folder)
hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
rendered = hf_tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
print(f"\nthe chat template renders: {rendered[-120:]!r}")
ids_hf = hf_tokenizer.apply_chat_template(question, tokenize=True, add_generation_prompt=True)
ids_hf = list(ids_hf["input_ids"] if hasattr(ids_hf, "keys") else ids_hf)
with torch.no_grad():
    out = hf_model.generate(torch.tensor([ids_hf]), max_new_tokens=24, do_sample=False, eos_token_id=end,
                            pad_token_id=pad)[0, len(ids_hf):].tolist()
print(f"same prompt ids as encode_chat: {ids_hf == prompt}; transformers' greedy answer: "
      f"{hf_tokenizer.decode(out, skip_special_tokens=True)!r}")
show_table(export_rows(artifact))

# %% [markdown]
# ## 8. Serving: an OpenAI-compatible server
#
# `python -m minilm serve` starts an HTTP server (FastAPI on uvicorn) with the routes of OpenAI's API:
# `/v1/chat/completions`, `/v1/completions`, `/v1/models`, and a chat page at `/`. Every client written for OpenAI's
# API can talk to it: here the official `openai` Python client. Requests share the model through the engine's dynamic
# batching, in one background thread; a bad request gets a 4xx answer in OpenAI's error format, and an overloaded
# server answers 429 rather than falling over. We start it on 127.0.0.1 from the notebook:

# %%
import openai

from minilm.infer.server import create_app, running_server

app = create_app(model, tokenizer, model_name="minilm-chat")
with running_server(app) as url:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    print("models:", [m.id for m in client.models.list().data])
    reply = client.chat.completions.create(model="minilm-chat", messages=question, max_tokens=24, temperature=0)
    print(f"chat: {reply.choices[0].message.content!r} ({reply.usage.completion_tokens} tokens, "
          f"finish_reason {reply.choices[0].finish_reason})")
    pieces = []
    for chunk in client.chat.completions.create(model="minilm-chat", messages=question, max_tokens=24, temperature=0,
                                                stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    print(f"streamed in {len(pieces)} pieces: {pieces}")
    try:
        client.chat.completions.create(model="minilm-chat", messages=question, max_tokens=10_000)
    except openai.BadRequestError as error:
        print(f"a bad request: {error.status_code} {error.body['message']}")
    conversations = [e.prompt for e in build_examples("test", 2, config.seed + 1, tokenizer, context)][:8]
    answers_together = [None] * 8

    def ask(i: int) -> None:
        answers_together[i] = client.chat.completions.create(model="minilm-chat", messages=conversations[i],
                                                             max_tokens=24, temperature=0).choices[0].message.content

    started = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"8 concurrent requests answered in {time.perf_counter() - started:.2f} s, batched by the engine; "
          f"steps that ran more than one request: {sum(n for size, n in app.state.batcher.batch_sizes.items() if size > 1)}")
    print(f"the same answers as the engine alone: {answers_together == [c.text for c in together]}")

# %% [markdown]
# In a terminal, `python -m minilm serve` then http://127.0.0.1:8000 in a browser opens the chat page (the tests
# drive it in a real headless Chromium), and `python -m minilm chat` talks to the same model without a server.
# `benchmarks/bench_serve.py` loads the server with concurrent clients and compares it with one-at-a-time serving.

# %% [markdown]
# ## 9. The speedrun's report card
#
# `python -m minilm speedrun` runs stages 1 to 9 and writes one report: each stage's time, every model's scores with
# intervals, the bias before and after, and this stage's figures. With every stage cached, writing it takes seconds:

# %%
from minilm.speedrun import speedrun

report = speedrun(PRESET)
text = report.read_text(encoding="utf-8")
print(text[: text.index("## Summary")])

# %%
print(f"this notebook has run for {time.perf_counter() - notebook_started:.0f} s with preset {PRESET!r}")


# %% [markdown]
# ## 10. Exercises
#
# Each exercise is a function for you to write, followed by a check cell that runs it on fresh random inputs against
# the package's own version and prints a pass, or shows the input where they differ with a hint. The checks of
# unsolved exercises show a red error: that is expected. Solutions are in `solutions/09_inference.ipynb` (try first!).
#
# ### Exercise 1: top-p filtering
#
# Write `top_p_filter(logits, p)`: logits of shape (B, V) and p in (0, 1). Return the logits with every token outside
# each row's nucleus set to `float("-inf")`. The nucleus is the smallest set of most likely tokens whose
# probabilities (softmax of the row) add up to at least p. The checker's rows range from nearly flat to sharply
# peaked, and its p from 0.05 to 0.95.

# %%
def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    probs = torch.softmax(logits, dim=-1)
    order = probs.argsort(dim=-1, descending=True)
    sorted_probs = probs.gather(-1, order)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # the mass of the tokens more likely than each one
    drop_sorted = before >= p  # the more likely tokens already reach p: this one is not needed
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.inference import check_top_p

check_top_p(top_p_filter)


# %% [markdown]
# ### Exercise 2: one acceptance step of speculative decoding
#
# Write `accept_drafts(target_probs, draft_probs, draft_tokens, uniforms)`. The draft guessed `draft_tokens` (k of
# them), drawing guess i from `draft_probs[i]` (a (k, V) tensor); the target's distributions at the same positions,
# and one more after the last guess, are `target_probs` ((k + 1, V)). `uniforms` holds k random numbers in [0, 1),
# one per guess. Return `(kept, next_probs)`: how many guesses are kept, walking from the first and stopping at the
# first rejection, and the distribution the next token is drawn from: the replacement's after a rejection, or, when
# every guess is kept, the target's distribution after the last guess (a bonus token).
#
# Work out the rule so that each token comes out distributed as p. A token the draft proposes more often than the
# target wants (q(x) > p(x)) must be kept only part of the time; one the target wants at least as much (p(x) >= q(x))
# is always kept. Compare the uniform with the right ratio (keep when `u < ratio`). The replacement must then make up
# exactly what the target wants beyond what the kept guesses gave it. The checker says which part is off.

# %%
def accept_drafts(target_probs: torch.Tensor, draft_probs: torch.Tensor, draft_tokens: list[int],
                  uniforms: list[float]) -> tuple[int, torch.Tensor]:
    ### BEGIN SOLUTION
    for i, token in enumerate(draft_tokens):
        p, q = target_probs[i], draft_probs[i]
        if uniforms[i] < p[token] / q[token]:  # kept with probability min(1, p/q)
            continue
        residual = (p - q).clamp(min=0)  # rejected: draw from what the target wants beyond the draft
        return i, residual / residual.sum()
    return len(draft_tokens), target_probs[len(draft_tokens)]  # all kept: a bonus token from the target
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.inference import check_accept_drafts

check_accept_drafts(accept_drafts)


# %% [markdown]
# ### Exercise 3: int8 quantization of a weight matrix
#
# Write `quantize_int8(weight)` and `dequantize_int8(q, scale)`: symmetric int8 with one scale per output row (a row
# of the (out, in) matrix). Return `(q, scale)`, q an int8 tensor and scale a float tensor of shape (out,), such that
# `q * scale` is within half a step of each weight; and back, the float weights. The checker's rows differ in scale
# by four orders of magnitude, and some are all zeros.

# %%
def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    scale = weight.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a row of zeros: any scale, not 0
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale
    ### END SOLUTION


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return q.float() * scale[:, None]
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.inference import check_quantize_int8

check_quantize_int8((quantize_int8, dequantize_int8))

# %% [markdown]
# ### Questions
#
# 1. Show that your rule in exercise 2 gives each token x the probability p(x): add the chance that x is proposed and
#    kept to the chance that a guess is rejected and the replacement is x. What is the chance that a guess is kept,
#    in terms of p and q, and what does it say about the draft to train?
# 2. Int8 weights used a quarter of the bytes of float32 in the blocks, yet the table in section 6 shows the whole
#    model shrinking less. Where do the other bytes go, and what would int4 change?
#
# This is the last stage. The report card of section 9 lists what every stage built and measured; `python -m minilm
# speedrun` on a fresh machine builds it all again.
