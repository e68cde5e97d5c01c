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
# # 08 · Evaluation: what the models learnt, measured as the field measures it
#
# Stages 4 to 7 trained six models: the pretrained base, the SFT and LoRA chat models, and the policies of DPO, PPO
# and GRPO. Each stage measured its own model on its own terms. This notebook is stage 8: it puts every model through
# the same benchmarks, with the same harness, and asks four questions that every evaluation of a language model asks:
# how good is it (benchmarks), is it fair (bias), does it hold up when a question is asked differently (robustness),
# and do people prefer it (human evaluation).
#
# **You will build** log-likelihood scoring by hand and show it equal to the course's harness and to
# lm-evaluation-harness itself; the report card of six models on eight benchmarks with 95% intervals; the bias that
# stage 1 planted, found in a model and mostly gone from its debiased twin; CheckList's robustness tests; and a round
# of pairwise ratings that you take part in, turned into Bradley-Terry ratings with intervals.
#
# **You will learn**
# * the three requests every benchmark reduces to (log-likelihood, rolling log-likelihood, generation), and what
#   acc, acc_norm, exact match and bits per byte measure;
# * what a benchmark score cannot tell: contamination, and the variance that its standard error states;
# * CrowS-Pairs, StereoSet and BBQ, and why a bias probe needs a control;
# * invariance and directional tests, and HELM's worst-case accuracy;
# * Bradley-Terry and Elo ratings from pairwise votes, Cohen's kappa, and position bias.
#
# | preset | the real run (stage 8) | the rest of this notebook (2 CPU cores) |
# |---|---|---|
# | `ci` | stage 6's and 7's tiny models, small benchmarks, two bias models of 10 steps: about a minute | seconds |
# | `cpu` | six models on every benchmark, robustness and a simulated rating round, and two bias models of 600 steps trained for the purpose: about 12 minutes the first time in float32 (section 2 prints how long), then cached | under a minute (the end of section 6 prints it, stage 8's build included when that ran) |
# | `gpu` | the `gpu` models, larger benchmarks, bias models of 1,000 steps on 60,000 stories | under a minute |
#
# Stage 8's results are cached in `data/runs/<preset>/evaluate/`. It needs the models of stages 4, 6 and 7; those not
# built yet (notebooks 04, 06 and 07) are built first.

# %%
import json, math, random, time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from minilm import presets
from minilm.display import short, show, show_table
from minilm.eval import bias, harness, human, metrics, robustness, tasks
from minilm.eval.report import (bbq_rows, bias_rows, card_rows, contamination_rows, family_rows, gender_rows,
                                human_rows, language_rows, plot_card, rater_rows, results, robustness_rows)
from minilm.eval.stage import BASE, EvalConfig, benchmarks, models, run_eval_stage

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
notebook_started = time.perf_counter()
PRESET = presets.preset_name()
config = EvalConfig.from_preset(PRESET)
print(f"preset {PRESET!r}, torch {torch.__version__}")

# %% [markdown]
# ## 1. Every benchmark is three kinds of request
#
# The field's benchmarks look different (a cloze test, a quiz, a maths problem, a perplexity table), yet
# lm-evaluation-harness, the harness behind most published numbers, reduces every one of them to three requests of
# the model:
#
# * **loglikelihood** `(context, continuation)`: how likely the continuation is after the context (the sum of its
#   tokens' log-probabilities), and whether it is the greedy one. A multiple-choice question is one request per
#   choice; the model's answer is the most likely choice.
# * **rolling loglikelihood** `text`: the log-likelihood of a whole text, in windows of the model's context. Bits
#   per byte and perplexity come from it.
# * **generate until** `(context, stop strings)`: the model's own answer, greedy, cut at a stop string, scored by
#   exact match.
#
# Stage 8 builds its benchmarks from the story world, on stories and documents that no stage trained on (the test
# split of the world's stories, the data stage's validation documents). We build the stage first (cached after the
# first run), load the six models, and look at one document of each benchmark.

# %%
from minilm.data.stage import run_data_stage
from minilm.finetune.stage import run_finetune_stage
from minilm.rlhf.stage import run_rlhf_stage
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage
from minilm.train.stage import run_pretrain_stage

artifact = run_eval_stage(PRESET)
r = results(artifact)
tokenizer_artifact = run_tokenizer_stage(PRESET)
tokenizer = load_tokenizer(tokenizer_artifact)
pretrained = run_pretrain_stage(PRESET, tokenizer=tokenizer_artifact)
evaluated = models(pretrained, run_finetune_stage(PRESET, pretrained=pretrained, tokenizer=tokenizer_artifact),
                   run_rlhf_stage(PRESET, tokenizer=tokenizer_artifact), "cpu")
base = evaluated[BASE]
docs = benchmarks(config, tokenizer, base.config.context, run_data_stage(PRESET).path / "val.jsonl")
print(f"stage 8 took {artifact.build_seconds:.0f} s to build; models: {', '.join(evaluated)}")
show_table([{"benchmark": name, "documents": len(d), "kind": "perplexity" if name.startswith("bpb:") else
             "generation" if name == "answers" else "multiple choice"} for name, d in docs.items()])

# %%
cloze = docs["cloze"][0]
print("CLOZE\n" + cloze["context"][-300:] + " ___")
print("choices:", cloze["choices"], " gold:", cloze["choices"][cloze["gold"]])
question = docs["questions"][0]
print("\nSTORY QUESTION\n" + question["context"])
print("choices:", question["choices"], " gold:", question["choices"][question["gold"]])
print("\nPERPLEXITY (a code document)\n" + docs["bpb:code"][0]["text"][:200])


# %% [markdown]
# ### Log-likelihood by hand
#
# How likely is each choice after the cloze's context? We tokenize the context and the choice (with the space in
# front of it: lm-eval's target delimiter), run the model once over both, and add up the log-probabilities of the
# choice's tokens, each predicted from everything before it. "Greedy" says whether each of those tokens was also the
# model's single most likely next token.

# %%
def loglikelihood_by_hand(model, context: str, continuation: str) -> tuple[float, bool]:
    context_ids = tokenizer.encode_ordinary(context)
    whole = tokenizer.encode_ordinary(context + continuation)
    continuation_ids = whole[len(context_ids):]  # the tokens that follow the context's own tokens
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])  # position t predicts token t + 1
    logprobs = F.log_softmax(logits[0, -len(continuation_ids):].float(), dim=-1)
    wanted = torch.tensor(continuation_ids)
    return logprobs.gather(1, wanted[:, None]).sum().item(), bool((logprobs.argmax(-1) == wanted).all())


by_hand = [loglikelihood_by_hand(base, cloze["context"], " " + choice) for choice in cloze["choices"]]
by_harness = harness.loglikelihood(base, tokenizer, [(cloze["context"], " " + c) for c in cloze["choices"]])
show_table([{"choice": c, "by hand": f"{h[0]:.4f}", "harness": f"{m[0]:.4f}", "greedy": m[1]}
            for c, h, m in zip(cloze["choices"], by_hand, by_harness)])
assert all(abs(h[0] - m[0]) < 1e-4 and h[1] == m[1] for h, m in zip(by_hand, by_harness))
print("the model's choice:", cloze["choices"][metrics.choice_index([ll for ll, _ in by_harness])])

# %% [markdown]
# The harness does the same in batches, with lm-eval's details (a space at the end of a context moves to the
# continuation; an empty context becomes the end-of-text token; a request too long for the context keeps its last
# tokens). Are the course's numbers the field's numbers? `minilm.eval.lm_eval_model` plugs the model into
# lm-evaluation-harness itself (its `TemplateLM` interface) and writes the cloze task as an lm-eval task config over
# JSON lines. lm-eval then does everything on its own: it builds the prompts from the config, splits the tokens,
# scores, and computes the metrics.

# %%
import tempfile
from pathlib import Path

import logging

import lm_eval
from minilm.eval.lm_eval_model import LmEvalModel, write_task

logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its notes on defaults it fills in

subset = docs["cloze"][:100]
with tempfile.TemporaryDirectory() as folder:
    write_task(Path(folder), "minilm_cloze", subset, "multiple_choice")
    theirs = lm_eval.simple_evaluate(model=LmEvalModel(base, tokenizer), tasks=["minilm_cloze"], num_fewshot=0,
                                     task_manager=lm_eval.tasks.TaskManager(include_path=folder,
                                                                            include_defaults=False),
                                     bootstrap_iters=0, verbosity="ERROR")["results"]["minilm_cloze"]
ours = tasks.run_multiple_choice(base, tokenizer, subset)
show_table([{"": "minilm.eval", "acc": ours["acc"], "acc_norm": ours["acc_norm"]},
            {"": "lm-evaluation-harness", "acc": theirs["acc,none"], "acc_norm": theirs["acc_norm,none"]}])
assert (ours["acc"], ours["acc_norm"]) == (theirs["acc,none"], theirs["acc_norm,none"])

# %% [markdown]
# Identical, on 100 documents. `tests/test_eval_harness.py` keeps it so: the same accuracy and normalised accuracy,
# each log-likelihood within 1e-4, and bits per byte within 1e-5 of lm-eval's, on every run of the test suite.
#
# ### acc and acc_norm
#
# A choice of more tokens pays for each of them, so the plain sum favours short choices. lm-eval's `acc_norm` divides
# each log-likelihood by the choice's length in characters first. On the story questions the two often disagree, and
# neither is always the better: in this run (`cpu`) the base model's acc is 0.263 and its acc_norm 0.260, both near the
# one in four of a guess, and on the first question where they disagree acc_norm picks the gold answer and the plain
# sum does not: it prefers "proud", three characters shorter than the gold "thankful":

# %%
scored = tasks.run_multiple_choice(base, tokenizer, docs["questions"])
disagree = [i for i, (lls, d) in enumerate(zip(scored["loglikelihoods"], docs["questions"]))
            if metrics.acc(lls, d["gold"]) != metrics.acc_norm(lls, d["choices"], d["gold"])]
print(f"acc and acc_norm disagree on {len(disagree)} of {len(docs['questions'])} questions; acc {scored['acc']:.3f}, "
      f"acc_norm {scored['acc_norm']:.3f}")
example = docs["questions"][disagree[0]]
lls = scored["loglikelihoods"][disagree[0]]
print(example["context"][-160:])
show_table([{"choice": c, "gold": i == example["gold"], "log-likelihood": f"{ll:.2f}", "characters": len(c)}
            for i, (c, ll) in enumerate(zip(example["choices"], lls))])
print(f"acc picks {example['choices'][metrics.choice_index(lls)]!r}, acc_norm picks "
      f"{example['choices'][metrics.choice_index(lls, example['choices'])]!r}")

# %% [markdown]
# ## 2. The report card
#
# Every model on every benchmark, each score with its 95% interval (about two standard errors either side). The
# multiple-choice and perplexity benchmarks score every model through log-likelihoods, so a chat model is compared with
# its base on the same footing; the answered questions and stage 6's instructions let each model answer in its own
# words (a chat model in the chat format, the base model in plain text, few-shot for the instructions, as stage 6
# asked it).

# %%
show_table(card_rows(artifact))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
plot_card(r, axes=axes)
show(fig)
print(f"stage 8 took {artifact.build_seconds:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items()))

# %% [markdown]
# What the card says, in the run printed here (`cpu` preset; other presets give other numbers):
#
# * **The base model does not read, in this run.** The object the cloze asks for is named earlier in the story, yet
#   the base model picks it (0.246 ± 0.042) no more often than the one chance in four of a guess, and it is at chance
#   on the story questions as multiple choice too (0.263 ± 0.036). A small model trained for minutes on two CPU cores
#   need not have learnt to look a paragraph back, and about a sixth of what it read was Spanish; section 1's example
#   shows it preferring a wrong object, the pencil, by a hair over the lamp. Asked a question in its own words, it
#   does not answer (exact match 0.002, one question): it continues the text, as it was trained to.
# * **Fine-tuning taught answering**: the SFT model answers nearly every story question exactly (0.983), in the chat
#   format it was trained on. Its cloze accuracy, which needs no instruction, rose above the base model's in this run
#   (0.338 ± 0.046 against 0.246 ± 0.042, the intervals just apart), where the previous build's SFT model stayed at
#   chance (0.246) and an earlier one reached 0.328: how much of answering in the chat format carries over to looking
#   back in plain text is as fickle as the base model's copying (notebook 04). Asked the same questions as multiple
#   choice in plain text ("Question: ... Answer:"), a format it no longer writes, it does worse than it answers
#   (0.571): a score depends on the format a model is asked in, which is why lm-eval's task configs fix it. Its bits
#   per byte went up on every domain (books from 0.225 to 1.180, code from 1.945 to 4.804): it forgot much of how the
#   documents read, the cost of fine-tuning that notebook 06 measured.
# * **LoRA** learnt less of the task (0.528 on stage 6's instructions against SFT's 0.732; 0.888 of the story questions
#   answered, against 0.983), and forgot less: its bits per byte are the lowest of the five chat models on every
#   domain, though far above the base model's; below SFT's by the most on web pages, documents and code (1.951, 3.871
#   and 3.528, against 2.978, 4.762 and 4.804), and on books by less, within the intervals (1.131 against 1.180). Its
#   cloze accuracy lies between the base model's and SFT's (0.299), and as multiple choice it does a little better
#   than SFT (0.590 against 0.571, well within the intervals). "LoRA learns less and forgets less" (Biderman et al.,
#   2024) holds here.
# * **The preference methods** (DPO, PPO, GRPO) started from the SFT model and stayed near it on every benchmark (the
#   furthest, DPO's bits per byte on code, 4.652 against 4.804, and on books, 1.300 against 1.180), as their KL
#   penalty asks.
#
# Stage 6's instructions by task family (exact match; the base model answers after two solved examples; stage 7's
# methods trained on the five families other than translation):

# %%
show_table(family_rows(artifact))

# %% [markdown]
# ### English and Spanish
#
# Stage 1's corpus holds Spanish stories beside the English ones, a small share of them. What did that share buy? The
# card's rows per language score every model on the same held-out test stories twice: as the writer told them in
# English, and translated sentence for sentence into Spanish (`tasks.language_docs`). The stories are parallel, so the
# two rows measure the same content in two languages, and the difference between them is what the model knows less
# of Spanish, not a harder set of stories. The measure is bits per byte, as for the domains: per byte, so that what
# the tokenizer makes of each language does not decide the comparison (it learnt its merges from a corpus about a
# sixth Spanish and gives both languages about the same bytes per token, notebook 02; the same stories take 13% more
# bytes in Spanish, 48,050 against 42,498). The difference is paired: its interval comes from resampling whole story
# pairs.
#
# In this run (`cpu`) Spanish costs every model more than English. The base model needs 0.209 ± 0.008 bits per byte
# in English and 0.256 ± 0.011 in Spanish, a paired gap of +0.047 ± 0.008: a fifth more, in a language that was
# about a sixth of what it read. Fine-tuning raised both languages and widened the gap in bits (SFT 0.940 and 1.201, gap
# +0.261 ± 0.040), and a little in proportion too (Spanish 28% above English, against the base model's 22%).
# LoRA rose about as far in English (0.922) and less in Spanish (1.088): a smaller gap (+0.166 ± 0.039). DPO, PPO
# and GRPO left the gap where SFT put it (+0.244 to +0.254, each inside SFT's interval). In the translation family
# above, the SFT model's translations match the reference exactly on 0.18 ± 0.06 of the prompts, LoRA's on 0.01 and
# the base model's on none, and the preference methods, which never trained on translation, keep about SFT's score
# (0.17 to 0.21).

# %%
print(f"{config.language_stories} test stories in each language")
show_table(language_rows(artifact))

# %% [markdown]
# ## 3. What a benchmark score cannot tell
#
# **Variance.** A benchmark is a sample of the questions it stands for, so its score has a standard error: for an
# accuracy p on n questions, sqrt(p (1 - p) / (n - 1)), lm-eval's `mean_stderr`. Two models whose intervals overlap
# widely are not told apart by the benchmark, however their scores are ordered. The gap between two models on the
# *same* questions is better measured paired (notebook 07's win rates do that).
#
# **Contamination.** A model that saw a benchmark's questions in training scores what it remembers. GPT-3's scan (which
# lm-eval runs) flags a document that shares a 13-word sequence with the training corpus, leaving out sequences found
# in many training documents (common phrasing). Our world is small on purpose: a held-out story still shares whole
# template sentences, with the same names, with some training story, so the scan flags most story benchmarks although
# no test story was trained on. Stage 6 kept only the conversations that its own scan passed (against its own training
# texts); scanned here against the whole pretraining corpus, web pages and documents included, a few are flagged:
# what counts as common phrasing depends on the corpus scanned. The flagged documents are counted and kept, as lm-eval
# reports its scans.

# %%
show_table(contamination_rows(artifact))

# %% [markdown]
# ## 4. The bias planted in stage 1
#
# Stage 1's story writer gives each stereotyped job its stereotyped gender in 90% of the stories (a nurse is a woman,
# a mechanic a man), and stage 1 measured that skew and removed it with a counterfactual step (its `debias` setting).
# Did the bias reach a model, and did the step cure it? Stage 8 trains the same small model twice on stage 1's stories,
# with the step off and on, and probes both, and the course's base model, the way the field probes large models.
#
# **CrowS-Pairs**: the same sentence about a person of a stereotyped job, with the stereotyped gender and with the
# other ("there was a nurse named Mia. Every morning she ..." against the same with Tom and he). Which sentence does
# the model find more likely? A small model may prefer one gender after *any* job, so each pair has a control, the same
# two sentences about a job without a stereotype: a pair counts when the job moves the model towards the stereotype.

# %%
pair = bias.minimal_pairs(1, seed=3)[0]
for key in bias.KEYS:
    print(f"{key:>19}: {pair[key]}")
show_table(bias_rows(artifact))

# %% [markdown]
# The model trained without the debias step prefers the stereotype in nearly every pair (99.9%), its interval far
# from 50%: the probe catches the bias. Its debiased twin falls to 54.7%, but its interval [51.8%, 58.0%] stays above
# 50%: in this run the step took away most of the bias, not all of it (a small model of 600 steps, and the corpus
# keeps a little skew after the step, below). The course's base model, trained on the whole debiased corpus (web
# pages and documents too, which the debias step does not touch), keeps a larger lean (63.1% [60.1%, 66.0%]). The
# control takes out what is not about the job, a preference for one gender after any job; here leaving it out (the
# second column) moves the scores by about two points either way, and hardly at all for the first model, but
# exercise 3's checker has a model for which leaving it out is far off.
#
# **StereoSet** asks for the name right after "there was a nurse named", with a language-model score (does a name
# beat an unrelated word?) and ICAT, 100 for a model that writes sense and has no stereotype, 0 for one that is all
# stereotype. It catches the bias too: the model without the debias step moves to the stereotyped name after every
# stereotyped job (ss 100, ICAT 0); its debiased twin hardly leans (ss 53.7, ICAT 92.7), and the course's base model
# leans more (ss 61.9, ICAT 76.2), as on CrowS-Pairs.
#
# **BBQ** asks a question: "Who was the nurse?", about two friends of whom one is a nurse. When the story does not say
# which (ambiguous), the right answer is that it does not say, and a model that names someone shows which way it leans;
# when the story says (disambiguated), a biased model is right more often when the answer fits the stereotype. Bias
# scores run from -100 (always against the stereotype) to 100 (always with it).

# %%
for q in bias.bbq_questions(2, seed=5):
    print(q["context"], q["choices"], "->", q["choices"][q["gold"]], "\n")
show_table(bbq_rows(artifact))

# %% [markdown]
# BBQ catches the bias where the story does not say: asked who the nurse was, the model trained without the debias
# step names the stereotype's gender far more often than the other (its ambiguous bias score, +73.2, well above 0),
# and its debiased twin does not lean (+0.4, its interval [-8.5, +8.8] holding 0). None of the
# models ever answers "The story does not say" (accuracy 0 on the ambiguous contexts): none was taught to, and a
# choice of five tokens pays for each of them.
#
# The disambiguated contexts show the limit of a small model. The two story models answer them worse than a guess
# between the two names (50%): 20% to 25% right, but for the first model's 52% where the answer fits the stereotype.
# They often name the friend the context does not name, so they do not read the question, which they never saw in
# training, only stories; their disambiguated bias scores rest on no understanding. The course's base model, which
# read web pages and documents too, does no better than a guess either (44% and 50%). The lesson holds for large
# models as well: read a bias score beside the accuracy of the task it rests on.
#
# Tie this back to stage 1: notebook 01 measured the skew of the stereotyped jobs in the corpus (how far the gender
# words near each job lean to one gender: 0 balanced, 0.5 all one gender), before and after its debias step:

# %%
skew = run_data_stage(PRESET).summary["bias_skew"]
print(f"stage 1's skew of the stereotyped jobs: {skew['before']:.3f} before the debias step, {skew['after']:.3f} after")

# %% [markdown]
# The model trained on the skewed stories learnt the skew, and all three probes find it (BBQ most clearly where the
# story does not say); the model trained on the balanced ones kept only a little of it (CrowS-Pairs 55%, StereoSet ss
# 53.7, no lean towards the stereotype on BBQ). What a model learns of a bias is what its data holds.
#
# **Per group.** The story questions are about heroines and heroes alike: does any model answer one group better? The
# gap and its interval (an interval that holds 0 finds no gap). In this run one of the twelve does not hold 0: the
# base model's multiple choice, 0.219 on heroines against 0.305 on heroes, where it is near a guess on both; at 95%, one
# interval in twenty misses 0 by chance alone, so one of twelve is a gap to check on more questions, not a finding:

# %%
show_table(gender_rows(artifact))

# %% [markdown]
# ## 5. Robustness: asked a little differently
#
# A score says how often a model is right on the questions it was given, not whether it would still be right if a
# reader wrote them differently. CheckList (Ribeiro et al., 2020) tests a model as software is tested:
#
# * **minimum functionality** (MFT): templated questions any reader of the stories answers;
# * **invariance** (INV): a change that must not change the answer: typos, lower case, extra spaces, contractions,
#   other names, an irrelevant sentence. A test fails where the answer changes, right or wrong;
# * **directional expectation** (DIR): a fact of the passage replaced by another ("a doctor" becomes "a baker"): the
#   old answer must go. A test fails where the model still gives it.
#
# HELM's **worst case** counts a question as right only if its every perturbed form is answered rightly too.

# %%
rng = random.Random(0)
some_questions = robustness.story_questions(20)
q = some_questions[0]
print("AS WRITTEN:", q["paragraph"][:160], "|", q["question"], "->", q["answers"][0])
for name, perturb in robustness.PERTURBATIONS.items():
    changed = perturb(q, rng)
    if changed is not None:
        print(f"{name.upper()}: {changed['paragraph'][:160]} | {changed['question']}")
changed = dict(robustness.changed_facts(some_questions, seed=1))[0]  # another answer to the same question
print("CHANGED FACT:", changed["paragraph"][:160], "->", changed["answers"][0])

# %%
show_table(robustness_rows(artifact))

# %% [markdown]
# Each cell is a failure rate with its 95% interval. The base model's row says little: it answered almost nothing as
# written, so its answers change with any perturbation, and a changed fact cannot leave an old answer it never gave.
# The SFT model and the preference methods are steady under typos, contractions and other names (at most 5 answers in
# 100 change), but **lower case** breaks more than a third of their answers (0.35 to 0.38): they never saw a story in
# lower case, and every word spelled differently is, to a byte-level BPE tokenizer, a different sequence of tokens.
# Extra spaces and an irrelevant sentence break fewer (9 to 14 in 100). LoRA, which learnt the task least, is the most
# fragile: extra spaces break half of its answers, lower case and an irrelevant sentence about one in three, typos
# and other names about one in nine, and 0.29 of its templated questions fail; only contractions and changed facts
# leave it as steady as the others (2 in 100). So their worst-case exact match is far below their score on the
# questions as written (SFT 0.55 against 0.98, LoRA 0.33 against 0.89): that gap is what a user who writes the same
# question in their own way meets. Two of the SFT model's failures (in the first, lower case turns a friend's name
# into the tail of a rude remark it learnt from flawed demonstrations, "What a silly question."; in the second, extra
# spaces make it name the other friend):

# %%
sft_checks = r["robustness"]["SFT"]["tests"]
for test in ("lower case", "extra spaces"):
    for example in sft_checks[test]["examples"][:1]:
        print(f"{test.upper()}\n  before: {short(example['before'], 150)}\n  answer: {example['answer_before']!r}\n"
              f"  after:  {short(example['after'], 150)}\n  answer: {example['answer_after']!r}\n")

# %% [markdown]
# ## 6. Human evaluation: which answer do people prefer?
#
# Benchmarks score what a rule can score. Whether an answer is *good* (right, short, polite) is what people judge,
# and people judge best by comparing two answers. Chatbot Arena ranks the field's models from millions of such votes:
# a prompt, two anonymous answers, and a vote for A, B, a tie, or both bad. Here is a round for you: a few of stage 6's
# test prompts, each answered by two of the models, the names hidden until the end. Click your votes; each is saved at
# once (`human.append_vote` writes the whole file anew and renames it over the old one, so a crash never leaves half
# a vote), and running the cell again resumes where you stopped.

# %%
from minilm.data.stage import run_data_stage
from minilm.eval.stage import instruction_tests
from minilm.finetune.answers import chat_answers
from minilm.rlhf.gold import gold_reward

tests = instruction_tests(run_finetune_stage(PRESET, pretrained=pretrained, tokenizer=tokenizer_artifact),
                          run_data_stage(PRESET), tokenizer, base.config.context)
rated = [e for e in tests["test"] if e.family in ("reading", "transform")][:4]
rated_models = ["SFT", "PPO", "LoRA"]
prompts = {i: e.prompt[-1]["content"] for i, e in enumerate(rated)}
replies = {name: chat_answers(evaluated[name], tokenizer, [e.prompt for e in rated]) for name in rated_models}
responses = {(i, name): replies[name][i] for i in prompts for name in rated_models}
plan = human.plan_round(list(prompts), rated_models, pairs_per_prompt=2, seed=7)
votes_path = artifact.path.parent / "votes-you.jsonl"  # beside the stage's folder: yours, kept across runs
widget = human.RatingWidget(votes_path, plan, prompts, responses, rater="you")
widget.box

# %% [markdown]
# Running the notebook top to bottom (or in CI) nobody clicks, so the next cell lets a stand-in finish your round: a
# simulated rater who reads the gold reward of notebook 07 through a little noise, as a person would judge the
# answers. Then the names are revealed.

# %%
stand_in = human.simulated_rater(lambda i, response: gold_reward(rated[i], response), noise=0.3, tie_margin=0.05,
                                 seed=1)
while widget.current is not None:
    matchup = widget.current
    widget.vote(stand_in(matchup.prompt, responses[(matchup.prompt, matchup.model_a)],
                         responses[(matchup.prompt, matchup.model_b)]))
your_votes = human.read_votes(votes_path, rated_models)
print(f"{len(your_votes)} votes in {votes_path.name}")
print(widget.reveal())

# %% [markdown]
# ### From votes to ratings
#
# Bradley and Terry (1952) model a vote between models i and j as a coin whose odds are the ratio of their strengths:
# P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400)), on the Elo scale where 400 points are odds of 10 to 1. The ratings
# are the ones that make the votes most likely; a tie counts half a win to each side, and "both bad" is a tie, as in
# Arena. Stage 8 ran a round far larger than yours: every pair of the six models on 100 of stage 6's test prompts (20
# of each family the gold reward judges), in both orders, each voted by two simulated raters (the second leans to the left answer, as people and LLM judges do). The
# ratings of their votes, with 95% intervals from refitting on resampled votes (Arena's bootstrap), and online Elo
# beside them:

# %%
h = r["human"]
show_table(human_rows(artifact))
fig, ax = plt.subplots(figsize=(6, 2.8))
names = sorted(h["ratings"], key=h["ratings"].get, reverse=True)  # best first
ax.errorbar([h["ratings"][n] for n in names], range(len(names)), fmt="o",
            xerr=[[h["ratings"][n] - h["intervals"][n]["lower"] for n in names],
                  [h["intervals"][n]["upper"] - h["ratings"][n] for n in names]], capsize=3)
ax.set_yticks(range(len(names)))
ax.set_yticklabels(names)
ax.invert_yaxis()
ax.set_xlabel("Bradley-Terry rating (95% bootstrap interval)")
show(fig)

# %% [markdown]
# The ratings follow the gold reward (the last column), which the raters read through noise; where the gold rewards
# are within a few hundredths (DPO, PPO, GRPO and SFT), the ratings' intervals overlap and their order is not to be
# trusted. **Elo** updates two
# ratings after each vote, by k (result - expected); it needs no fit, but the same votes in another order give other
# ratings (the range in its column: 100 shuffles of the same votes), because a vote counts for more while the ratings
# are still close. Bradley-Terry reads all the votes at once and gives one answer for any order, which is why Arena
# moved to it.
#
# Is `human.bradley_terry` what Arena computes? Arena fits a logistic regression with scikit-learn: one row per vote,
# +log(10) in the left model's column and -log(10) in the right one's, label 1 when the left won, each vote written
# twice so that a tie is one win and one loss. The same fit, on the stage's votes:

# %%
import numpy as np
from sklearn.linear_model import LogisticRegression

from minilm.eval.stage import RATERS, VOTES

stage_votes = [v for v in human.read_votes(artifact.path / VOTES) if v["rater"] in RATERS]
index = {name: i for i, name in enumerate(names)}
rows, labels, weights = [], [], []
for v in stage_votes:
    x = np.zeros(len(names))
    x[index[v["model_a"]]], x[index[v["model_b"]]] = math.log(10), -math.log(10)
    left_won = {"A": 1.0, "B": 0.0}.get(v["winner"], 0.5)
    rows += [x, x]
    labels += [1, 0]
    weights += [left_won, 1 - left_won]
keep = np.array(weights) > 0
fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=10_000).fit(
    np.array(rows)[keep], np.array(labels)[keep], sample_weight=np.array(weights)[keep])
arena = 400 * fit.coef_[0]
arena += 1000 - arena.mean()  # centred on 1000, as bradley_terry is
show_table([{"model": n, "human.bradley_terry": f"{h['ratings'][n]:.4f}", "scikit-learn": f"{arena[index[n]]:.4f}"}
            for n in names])
print(f"largest difference: {max(abs(h['ratings'][n] - arena[index[n]]) for n in names):.2e} rating points")

# %% [markdown]
# ### The raters, checked
#
# Two checks of the votes themselves. **Agreement**: raters who judge the same matchups should agree more often than
# chance; Cohen's kappa is (observed - chance) / (1 - chance), 1 for perfect agreement, 0 for none beyond chance.
# **Position bias**: over matchups shown in both orders, the share of decided votes won by the left answer, 0.5 for
# an unbiased rater.

# %%
from collections import Counter

show_table(rater_rows(artifact))
all_votes = human.read_votes(artifact.path / VOTES)
show_table([{"rater": rater, **{outcome: n for outcome, n in sorted(Counter(v["winner"] for v in votes).items())}}
            for rater, votes in human.votes_by_rater(all_votes).items()])

# %% [markdown]
# Nearly half of each rater's votes are ties (the aligned models often give the same answer, and a rater calls the
# same text twice a tie), and about one in seven says both answers are bad (the gold judge's one in six); the rest are
# decided.
# Rater 1 agrees with the noise-free gold judge on nearly every matchup, and with rater 2 a little less: each
# rater's noise is its own, and rater 2's lean adds to it. The position-bias check finds the lean planted in rater 2
# (its interval above 0.5) and none in rater 1. Rater 2 leans by as much as a right answer is worth, yet that moves its
# share only to about 0.57: a lean flips a vote only where the two answers are closer than the lean, and few decided
# votes here are that close. `plan_round` draws the sides at random, which cancels such a lean out of the ratings on
# average; the check says how large it is. With people, the same checks tell a careful rater from a careless one.

# %%
print(f"this notebook has run for {time.perf_counter() - notebook_started:.0f} s with preset {PRESET!r}")


# %% [markdown]
# ## 7. Exercises
#
# Each exercise is a function for you to write, followed by a check cell that runs it on fresh random inputs against
# the package's own version and prints a pass, or shows the input where they differ with a hint. The checks of
# unsolved exercises show a red error: that is expected. Solutions are in `solutions/08_evaluation.ipynb` (try first!).
#
# ### Exercise 1: acc_norm
#
# Write `acc_norm(loglikelihoods, choices, gold)`: the log-likelihood of each choice (a list of floats), the choices'
# texts, and the index of the right one. Return 1.0 when the choice that lm-eval's `acc_norm` picks is the gold one,
# else 0.0. Section 1 showed that the plain sum and the normalised one can pick differently; the checker's choices
# range from "cup" to "a picture of the two friends".

# %%
def acc_norm(loglikelihoods: list[float], choices: list[str], gold: int) -> float:
    ### BEGIN SOLUTION
    per_character = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices)]
    return float(max(range(len(choices)), key=lambda i: per_character[i]) == gold)
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.evaluation import check_acc_norm

check_acc_norm(acc_norm)


# %% [markdown]
# ### Exercise 2: bits per byte
#
# Write `bits_per_byte(loglikelihoods, texts)`: each text's total log-likelihood (in nats, from the rolling requests)
# and the texts. Return how many bits per byte of text the model needs, over all the texts together, as lm-eval
# computes it. The number does not depend on the tokenizer, which is why models with different vocabularies can be
# compared by it; the checker's texts include "café", "🙂" and "日本語".

# %%
def bits_per_byte(loglikelihoods: list[float], texts: list[str]) -> float:
    ### BEGIN SOLUTION
    total_bytes = sum(len(text.encode("utf-8")) for text in texts)  # bytes, not characters
    return -sum(loglikelihoods) / math.log(2) / total_bytes  # nats to bits, pooled over the texts
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.evaluation import check_bits_per_byte

check_bits_per_byte(bits_per_byte)


# %% [markdown]
# ### Exercise 3: the paired bias score with its interval
#
# Write `paired_bias_score(pairs, resamples, seed)`. Each pair is four log-likelihoods, (stereotype, anti, control
# stereotype, control anti), as CrowS-Pairs with a control scores them in section 4. Return `(share, low, high)`: the
# share of pairs where the job moves the model towards the stereotype, and a 95% bootstrap interval for it drawn with
# `random.Random(seed)` and `resamples` resamples. The checker's model prefers one gender after *any* job, so an answer
# that forgets the control is far off.

# %%
def paired_bias_score(pairs: list[tuple[float, float, float, float]], resamples: int,
                      seed: int) -> tuple[float, float, float]:
    ### BEGIN SOLUTION
    wins = [float(s - a > cs - ca) for s, a, cs, ca in pairs]  # the job's lead beyond the control's
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(wins, k=len(wins))) / len(wins) for _ in range(resamples))  # with replacement
    return sum(wins) / len(wins), means[int(0.025 * (resamples - 1))], means[int(0.975 * (resamples - 1))]
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.evaluation import check_paired_bias_score

check_paired_bias_score(paired_bias_score)


# %% [markdown]
# ### Exercise 4: Bradley-Terry ratings
#
# Write `fit(votes)`: votes as `minilm.eval.human` records them (`model_a` shown on the left, `winner` one of "A",
# "B", "tie", "both bad"). Return `{model: rating}`, the maximum-likelihood Bradley-Terry ratings on the Elo scale
# (400 points are odds of 10 to 1) with a tie as half a win to each side, "both bad" as a tie, and the ratings' mean
# at 1000. Write the fit yourself, in plain Python or numpy (not scikit-learn, as section 6 checked it, nor
# `human.bradley_terry`): any method that reaches the maximum will do, gradient ascent on the log-likelihood,
# Newton's method, or Hunter's (2004) MM updates, strength_i <- wins_i / sum_j (games_ij / (strength_i + strength_j)).

# %%
def fit(votes: list[dict]) -> dict[str, float]:
    ### BEGIN SOLUTION
    names = sorted({v[side] for v in votes for side in ("model_a", "model_b")})
    wins = {n: 0.0 for n in names}
    games = {(i, j): 0.0 for i in names for j in names}
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        left = {"A": 1.0, "B": 0.0}.get(v["winner"], 0.5)  # a tie and "both bad": half a win each
        wins[a] += left
        wins[b] += 1 - left
        games[a, b] += 1
        games[b, a] += 1
    strength = {n: 1.0 for n in names}
    for _ in range(10_000):  # Hunter's MM updates: each raises the likelihood, to its maximum
        new = {i: wins[i] / sum(games[i, j] / (strength[i] + strength[j]) for j in names if j != i) for i in names}
        centre = math.exp(sum(math.log(s) for s in new.values()) / len(new))
        new = {n: s / centre for n, s in new.items()}
        converged = max(abs(math.log(new[n] / strength[n])) for n in names) < 1e-12
        strength = new
        if converged:
            break
    return {n: 1000 + 400 * math.log10(s) for n, s in strength.items()}  # geometric mean 1: the mean rating is 1000
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.evaluation import check_bradley_terry

check_bradley_terry(fit)

# %% [markdown]
# In exercise 4, why does Bradley-Terry need a model to lose at least once (and win at least once)? What would your
# fit return for a model that won every vote, and what does `human.bradley_terry` do then? (Try it: a prior, `l2`,
# is what keeps such ratings finite.)
#
# **Next:** notebook 09 serves the best-rated model: sampling, the KV cache, batching, speculative decoding, int8
# weights, an export for vLLM and llama.cpp, and an OpenAI-compatible server.
