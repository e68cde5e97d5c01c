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
# # 07 · RLHF: learning from preferences, judged by a reward that training never sees
#
# Notebook 06 taught the model to imitate demonstrations, flaws and all. This notebook is stage 7: it trains the
# SFT model on what people *prefer*. People compare two answers more reliably than they write a perfect one, so the
# data are comparisons; a **reward model** learns to score answers from them, and a policy is trained to earn that
# score without straying far from the SFT model (**PPO** with a KL penalty, as InstructGPT did, and **GRPO**); or
# the policy learns from the comparisons directly (**DPO**).
#
# Real RLHF is hard to judge: nobody knows the true reward, so nobody can say whether a model got better or only
# learned to please its reward model. Our world is written by the course, so we can write the true reward down: a
# **gold reward**, hidden from training, that scores any answer exactly. It lets us measure what each method really
# achieves, and watch a policy fool its own reward model.
#
# **You will build** the gold reward's view of the SFT model, simulated annotators and their preference pairs, the
# reward model's accuracy beside the ceiling the annotators' noise allows, one PPO step computed by hand (rewards, KL
# penalty, advantages, clipping) and shown equal to the package, DPO derived from the closed form of the optimum,
# GRPO's group advantages, and the stage's table of win rates.
#
# **You will learn**
# * why imitation is not enough, and what preferences add;
# * the Bradley-Terry model, the reward model, and the ceiling that noisy labels put on its accuracy;
# * PPO for language models: rollouts, the per-token KL penalty, the value model, GAE, the clipped objective;
# * the closed form of the KL-regularised optimum, and how DPO follows from it;
# * GRPO: advantages from a group of answers instead of a value model;
# * reward hacking: a reward model's score rising while the true reward falls.
#
# | preset | the real run (stage 7) | the rest of this notebook (2 CPU cores) |
# |---|---|---|
# | `ci` | stage 6's tiny model: a few steps of each method, seconds | seconds |
# | `cpu` | the SFT model of notebook 06: pairs from 6 answers to each of 1,500 prompts, a reward model, DPO, PPO, GRPO twice and a reward-hacking run; 8 to 15 minutes the first time depending on the machine (section 6 prints how long), then cached | under a minute (the end of section 7 prints it, with the stage's build when it ran here) |
# | `gpu` | stage 6's `gpu` model, longer runs, minutes | under a minute |
#
# The run of stage 7 is cached in `data/runs/<preset>/rlhf/`. It starts from stage 6's SFT model; if that is not
# built yet (notebook 06), the notebook builds it first.

# %%
import json, random, time

import matplotlib.pyplot as plt
import torch

from minilm import presets
from minilm.data.stage import DataConfig
from minilm.display import short, show, show_table
from minilm.finetune.chat import END, PAD
from minilm.finetune.stage import FinetuneConfig, instruction_data, load_finetuned, run_finetune_stage
from minilm.rlhf import bandit, gold, objectives, preferences
from minilm.rlhf.dpo import all_answer_logprobs
from minilm.rlhf.report import plot_rlhf, results, reward_kind_rows, score_rows
from minilm.rlhf.reward_model import encode_pairs, scores as reward_scores
from minilm.rlhf.rollout import ValueModel, completion_logprobs, completion_values
from minilm.rlhf.stage import (HACKING, METHODS, PAIRS, SAMPLES, RLHFConfig, fitting_prompts, gold_ordered, load_policy,
                               load_reward_model, reward_model_scorer, run_rlhf_stage, sample_answers)
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
notebook_started = time.perf_counter()
PRESET = presets.preset_name()
config = RLHFConfig.from_preset(PRESET)
print(f"preset {PRESET!r}, torch {torch.__version__}")

# %% [markdown]
# ## 1. Why SFT is not enough
#
# We load notebook 06's SFT model and ask it questions about stories no stage trained on. Greedy decoding (T = 0)
# writes its single most likely answer; a chat model in use *samples* (T = 1 here), and the samples show what it
# learnt from its demonstrations, flaws included.

# %%
tokenizer_artifact = run_tokenizer_stage()
tokenizer = load_tokenizer(tokenizer_artifact)
finetuned = run_finetune_stage(tokenizer=tokenizer_artifact)
sft = load_finetuned(finetuned).eval()
context = sft.config.context
test = instruction_data(FinetuneConfig.from_preset(PRESET), tokenizer, context, DataConfig.from_preset(PRESET).n_stories)["test"]
judged = [e for e in test if e.family in gold.JUDGED_FAMILIES]  # as the stage: translation is stage 6's to score
test_prompts = fitting_prompts(judged, tokenizer, config.prompt_tokens)
print(f"{len(test_prompts)} of stage 6's {len(test)} test questions (those of the {len(gold.JUDGED_FAMILIES)} "
      f"families the gold rubric judges) fit in {config.prompt_tokens} tokens with room for a "
      f"{config.max_new_tokens}-token answer")
_, sampled = sample_answers(sft, test_prompts, tokenizer, config.max_new_tokens, seed=0)
rows = []
for example, answer in list(zip(test_prompts.examples, sampled))[:8]:
    rows.append({"family": example.family, "question": short(example.prompt[-1]["content"][-70:], 70),
                 "expected": example.answers[0], "SFT samples": short(answer, 70)})
show_table(rows)


# %% [markdown]
# In this table three of eight samples are right and clean; three are right and then go on (a remark, "I hope this
# helps!", one cut off, "That is what the", and a repeat, "calm. calm."); one names the wrong thing (a black Bubbles
# for a purple car), and one starts right and breaks off into a name and a rude remark. Over all the prompts some are
# chatty, rude, cut off or looped (the three worst below: a refusal where a yes was asked for, a wrong answer with a
# rude remark, and a retelling with the wrong colour that goes on: at T = 1 sampling now and then picks an unlikely
# token, and the model carries on from it). The model learnt the flaws from the demonstrations of notebook 06 (a share of
# them were flawed, as real ones are), and sampling brings them out.
# More demonstrations would not remove them: imitation copies the flaws with the rest. What the model lacks is a
# signal that one answer is *better* than another.
#
# **The gold reward.** The world's people value answers that are correct, complete, concise, polite, grammatical,
# free of toxic words and of personal data. `minilm.rlhf.gold` writes that down as a rubric, one term per value,
# computed exactly from the facts of the story (its docstring has the table). A clean, right answer scores
# `gold.BEST` = 1.5, the most any answer can. Training never calls it; we use it to judge. The SFT model's samples,
# scored: the three worst (wrong, and rude or garbled), two of the best, and the mean over all the test prompts.
# The prompts are stage 6's test questions of five of its six families: translation, which has one right answer,
# is scored there by exact match and chrF, and the rubric reads English prose (`gold.JUDGED_FAMILIES`). Over all of
# them more are clean and right than in the table of eight, whose reading questions are the hardest family (the line
# under the tables gives the share). The
# refusal, 32 tokens with this tokenizer, fits in the `max_new_tokens` = 36 an answer gets, so no answer is cut off
# by the budget: the flaws are the model's own.

# %%
def gold_table(examples, answers, limit=6):
    rows = []
    for example, answer in list(zip(examples, answers))[:limit]:
        terms = gold.gold_breakdown(example, answer)
        rows.append({"answer": short(answer, 60), "expected": example.answers[0],
                     **{term: f"{value:+.2f}" for term, value in terms.items()}, "gold reward": sum(terms.values())})
    show_table(rows)


flawed_first = sorted(zip(test_prompts.examples, sampled), key=lambda pair: gold.gold_reward(*pair))
gold_table(*zip(*flawed_first[:3]), limit=3)
gold_table(*zip(*flawed_first[-2:]), limit=2)
rewards = [gold.gold_reward(e, a) for e, a in zip(test_prompts.examples, sampled)]
print(f"the SFT model's sampled answers: gold reward {sum(rewards) / len(rewards):.3f} on average; "
      f"{sum(r == gold.BEST for r in rewards) / len(rewards):.0%} are clean and right (score {gold.BEST})")

# %% [markdown]
# ## 2. Preferences and Bradley-Terry
#
# People label comparisons: for a prompt, two answers, and which one they prefer. The **Bradley-Terry** model
# says how such labels relate to a reward r: the probability that answer a is preferred to b is
# σ(r(a) − r(b)), the logistic sigmoid of the reward gap. Two answers of close reward are a coin toss; far apart, a
# sure call.
#
# Our annotators are simulated (`minilm.rlhf.preferences`): each pair is labelled by Bradley-Terry on the gold reward,
# at a `temperature` that sets how sharp they are; a share `disagree_share` of them prefer longer answers; and with
# probability `noise` a label is flipped, as people slip. The stage samples `responses_per_prompt` answers per training
# prompt from the SFT model and labels every pair of them. The training prompts come from five of stage 6's six families
# (`gold.JUDGED_FAMILIES`): translation is left out, since the rubric judges English prose and a translation, which has
# one right answer, is scored by exact match and chrF in stage 6. The pairs are stored in TRL's preference format, with
# the gold rewards beside them (for evaluation only; TRL ignores the extra keys):

# %%
aligned = run_rlhf_stage(finetuned=finetuned, tokenizer=tokenizer_artifact)
r = results(aligned)
train_pairs = preferences.load_pairs(aligned.path / PAIRS)
heldout_pairs = preferences.load_pairs(aligned.path / f"heldout_{PAIRS}")
pair = next(p for p in train_pairs if p["gold_chosen"] != p["gold_rejected"])
print(json.dumps({key: pair[key] for key in ("prompt", "chosen", "rejected")}, indent=1)[-600:])
print({key: pair[key] for key in (*preferences.REWARD_KEYS, "right_chosen", "right_rejected", "annotator")})
print(f"{r['reward_model']['train_pairs']:,} pairs to train on, {r['reward_model']['heldout_pairs']:,} held out "
      f"(from the answers to {r['prompts']['train']} and {r['prompts']['heldout']} prompts); skipped: "
      f"{r['reward_model']['skipped']}")

# %% [markdown]
# Pairs of identical answers compare nothing and are skipped; so is a pair whose answer encodes longer than the
# context. How often do the labels agree with the gold order? Not always: noise flips some, Bradley-Terry makes
# close calls coin tosses, and the disagreeing annotators prefer the longer answer. The **ceiling** is the accuracy
# the gold reward itself would expect to score against these labels: no scorer can expect to do better.

# %%
annotators = config.annotators()
show_table([{"gold gap r(a) − r(b)": gap,
             "P(a chosen) by Bradley-Terry": preferences.sigmoid(gap / annotators.temperature),
             "with noise and the disagreeing annotators": preferences.label_probability(gap, 0.0, gap, 0.0, annotators)}
            for gap in (0.04, 0.2, 0.5, 1.0, 2.0)])
print(f"held-out labels that agree with the gold order: {preferences.label_agreement(heldout_pairs):.3f}; "
      f"the expected agreement (the ceiling): {preferences.ceiling_accuracy(heldout_pairs, annotators):.3f}")

# %% [markdown]
# ## 3. The reward model
#
# The reward model is the SFT model with a linear head that reads the final hidden state of the last token (the
# `<|end|>` that closes the answer) and gives one number, r(x, y). It is trained with the negative log-likelihood of
# the labels under Bradley-Terry, −log σ(r(chosen) − r(rejected)) (exercise 1), exactly the loss of TRL's
# `RewardTrainer` (a test checks it on the same model and pairs). Its batches are InstructGPT's rather than TRL's: a
# step draws ten prompts and takes every pair of their answers, and the model scores each distinct answer once,
# however many pairs it is in. The SFT model's six answers to a prompt, where they differ at all, hold three or four
# distinct ones, so ten prompts bring about 37 conversations and 104 pairs, where 32 random pairs cost 64
# conversations; measured on the pairs of a build beside this one, float32, seeds 1337 and 1, the held-out accuracy
# against the labels was the same (0.683 and 0.694, against 0.682 and 0.692 for 32 random pairs a step) in a third to
# a half of the time. Its held-out accuracy, on the pairs that have a gold order, beside two scorers it does not train
# (the second row is explained below):

# %%
rm = r["reward_model"]
show_table([{"scorer, on the held-out pairs": "the reward model", "against the labels": rm["accuracy"],
             "against the gold order": rm["gold_order_accuracy"]},
            {"scorer, on the held-out pairs": "the SFT model's log π(y | x), untrained",
             "against the labels": rm["likelihood"]["accuracy"], "against the gold order": rm["likelihood"]["gold_order_accuracy"]},
            {"scorer, on the held-out pairs": "the gold reward (the ceiling)", "against the labels": rm["ceiling"],
             "against the gold order": 1.0}])
reward_model = load_reward_model(aligned).eval()
example = test_prompts.examples[0]
score = reward_model_scorer(reward_model, tokenizer.special_id(END))
candidates = [example.answers[0]] + [gold.flawed_response(example, random.Random(k), kind)[0]
                                     for k, kind in enumerate(("chatter", "rude", "repeated", "truncated"))]
scores = score([test_prompts.ids[0]] * len(candidates), [tokenizer.encode_ordinary(c) for c in candidates])
show_table([{"answer": short(c, 70), "reward model": s, "gold reward": gold.gold_reward(example, c)}
            for c, s in zip(candidates, scores.tolist())])

# %% [markdown]
# Against the labels, the reward model is measured on the same footing as the ceiling; against the gold order it could
# do better than the labels themselves, since it learns from many noisy labels at once. Here it falls short of the
# ceiling: it learns the common flaws (chatter, rudeness, a remark cut off) from pairs where they are the whole
# difference, but most pairs differ by little, and many labels are coin tosses, so it needs many of them: on the SFT
# model of an earlier build (drawing 32 random pairs a step), 150 prompts per family with 4 answers each (1,708 pairs)
# gave 0.574 against the labels and 0.695 against the gold order, and 300 per family with 6 answers (8,490 pairs)
# 0.645 and 0.786; this build, with the latter settings, has 9,196 pairs and gives 0.684 and 0.804 (above). Twice the
# prompts again, measured beside this build, gave 0.693 against labels whose ceiling was 0.771: past a few thousand
# pairs, more of them buy little. The table above shows it on one prompt: it puts the clean answer first and the
# chatty one second, as the gold reward does, but then the one cut off, the rude one and the looped one last, where
# the gold reward puts the looped one third and the rude one last; and it scores on a scale of its own
# (Bradley-Terry fixes only the differences between rewards). Over the held-out pairs it orders about one in five the
# wrong way round. Wherever a reward model is wrong, a policy trained on it can learn the wrong
# lesson (section 7).
#
# The second row is a scorer with no training at all: the SFT model's own log-probability of each answer, summed over
# its tokens (`likelihood_accuracy`). It orders the held-out pairs better than the reward model: 0.714 against the
# labels and 0.848 against the gold order, against 0.684 and 0.804. The SFT model has read the passage, so the right
# name is likely and a wrong one is not; and every word of chatter, of a looped phrase or of padding costs
# probability, so the short, clean answer wins, as the gold rubric wants. The reward model starts from the same model,
# but what it learns from about 9,000 labels, a tenth of them flipped and many close calls, is worse than what it
# starts with: measured beside an earlier build, a reward model whose score was the head's plus a learnt multiple of
# log π(y|x), and which therefore started at the likelihood's accuracy, fell to between 0.68 and 0.70 against the
# labels once trained on them (six variants: the whole model or the head alone, at learning rates from 1e-4 to 3e-3).
# Averaging several reward models, a common cure for a reward model's noise, helps a little and not enough: on this
# build's pairs, four trained from four seeds (float32) scored 0.674 to 0.694 alone and 0.694 together (their scores
# standardised and averaged), 0.829 against the gold order: still below the untrained likelihood.
#
# Where does it fall short? One accuracy hides it. The stage splits the held-out pairs by what separates their two
# answers (`preferences.accuracy_by_kind`, from each answer's `right_chosen` and `right_rejected`, whether it earned the
# rubric's `correct` term): a right answer against a wrong one, where the facts decide and the labels mostly agree
# with the gold order; two right answers, where only style decides (chatter, a rude remark, a sentence cut off) and
# many labels are close calls; and two wrong answers, ranked by partial credit and style. Each kind has its own ceiling:

# %%
show_table(reward_kind_rows(r))

# %% [markdown]
# The reward model has learnt style, not facts. On pairs of two right answers, which differ only in style, it scores
# 0.767 against the labels, at their ceiling (0.746; a little above it, by the luck of these labels) and above the
# likelihood (0.744), and it ranks 92% of them as the gold reward does. On a right answer against a wrong one it
# scores 0.567 against a ceiling of 0.896: it picks the right answer in 59% of those pairs, little better than a coin,
# where the likelihood picks it in 87%. Those 480 pairs are most of its shortfall: (0.896 − 0.567) × 480 / 2,092 is
# 7.6 of the 8.4 points between it and the ceiling; the pairs of two wrong answers cost 1.9 more, and the style pairs
# give 1.1 back.
#
# Why facts and not style? To tell a right answer from a wrong one, a scorer must check the answer against the
# passage. The SFT model does that reading when it writes an answer, token by token, and the likelihood reads the
# result straight out: how probable each of the answer's own tokens was. The reward model's head sees one state, the
# last token's, and the check has to be built into that state from the labels: fewer than a quarter of the pairs (480
# of the 2,092 held out) compare a right answer with a wrong one, while style, which every kind of pair shows, is
# cheaper to learn. On pairs of two wrong answers both scorers fall short of the ceiling (0.617 and 0.580 against
# 0.692): which of two wrong retellings is less wrong is a question the SFT model cannot answer either (it gets a
# third of the retellings wrong itself, notebook 06).
#
# Would a reward model that also knew what the likelihood knows come near the ceiling? Add w times the likelihood to
# the reward model's score and measure the sum on the same pairs (w is picked here by looking at the held-out pairs
# themselves, so the best row is an upper bound for this blend, not a fair score):

# %%
ordered = gold_ordered(heldout_pairs)  # the pairs the accuracies above count: gold rewards not tied
encoded = encode_pairs(tokenizer, ordered, context)
reward_of, likelihood_of = reward_scores(reward_model, encoded), all_answer_logprobs(sft, encoded, "fp32").cpu()
blends = []
for w in (0.0, 0.03, 0.1, 0.3, 1.0, 3.0):
    blended = reward_of + w * likelihood_of
    rows = {row["kind"]: row for row in preferences.accuracy_by_kind(ordered, blended[:, 0].tolist(),
                                                                      blended[:, 1].tolist(), annotators)}
    blends.append({"score": f"reward model + {w} × log π(y|x)", "all pairs": rows["all"]["accuracy"],
                   **{kind: rows[kind]["accuracy"] for kind in preferences.PAIR_KINDS if kind in rows}})
show_table(blends)

# %% [markdown]
# Adding the likelihood gives the reward model what it lacks: at w = 0.3 the pairs of a right and a wrong answer rise
# from 0.567 to 0.762, while the style pairs keep most of their gain (0.752), and the sum scores 0.718, 4.9 points
# below the ceiling. But no w does much better than the likelihood alone (0.714; the best, 0.718, at w = 0.3 and 3):
# what the reward model adds on style it gives back on the pairs of two wrong answers. Training the blend, rather than
# adding it afterwards, did worse: measured on this build's pairs (float32, one thread), a reward model trained with
# 0.1 or 0.3 times the frozen SFT model's log π(y|x) added to its score reached 0.703 and 0.688. Fit to noisy labels,
# the network learns to undo part of what the likelihood adds. A reward model that must learn facts from labels needs
# far more of the pairs that teach them, or a base model that checks facts well on its own; with this SFT model, a
# reward model trained on these labels stays a few points short of the ceiling.
#
# A reward model still earns its place over the likelihood: the likelihood knows only what the demonstrations showed
# (the labels could ask for anything else), and the answer that maximises it is the SFT model's single most probable
# one, whatever that is worth.
#
# ## 4. PPO, one step by hand
#
# PPO trains the policy π on answers it samples itself, to maximise the reward model's score while staying near
# the reference π_ref (the SFT model): InstructGPT's objective, E[r(x, y)] − β KL(π ‖ π_ref). One iteration:
#
# 1. **Roll out**: sample an answer to each prompt of a batch (with the KV cache), and score it with the reward model.
# 2. **Per-token rewards**: at each answer token t, −β (log π(y_t) − log π_ref(y_t)), the KL penalty, and at the last
#    token the reward model's score on top.
# 3. **Values and advantages**: a value model V (a copy of the reward model, read at every position) predicts the
#    reward still to come; GAE turns rewards and values into advantages A_t, how much better token t did than
#    expected (exercise 2), and returns, the value model's targets.
# 4. **Update**, several passes over the batch: the clipped objective, with the probability ratio
#    ρ_t = π(y_t) / π_old(y_t), takes the *pessimistic* of ρ_t A_t and clip(ρ_t, 1 − ε, 1 + ε) A_t, so one batch
#    cannot push the policy far (exercise 3).
#
# We compute each piece by hand on eight prompts and check it against `minilm.rlhf.objectives`, which
# `minilm.rlhf.ppo` uses:

# %%
beta, prompts = config.ppo_beta, fitting_prompts(test_prompts.examples[:8], tokenizer, config.prompt_tokens)
rollout, answers = sample_answers(sft, prompts, tokenizer, config.max_new_tokens, seed=1)
completions = [ids[real].tolist() for ids, real in zip(rollout.completion_ids, rollout.completion_mask)]
scores = score(prompts.ids, completions)
mask = rollout.completion_mask.float()
policy = load_policy(aligned, "PPO").eval()  # a policy that has moved: the ratio is no longer 1
with torch.no_grad():
    old_logprobs = completion_logprobs(sft, rollout)  # π_old: the policy that sampled (here the SFT model)
    ref_logprobs = completion_logprobs(sft, rollout)  # π_ref: the SFT model
    new_logprobs = completion_logprobs(policy, rollout)
    values = completion_values(ValueModel.from_reward_model(reward_model), rollout)

# 2. per-token rewards: the KL penalty everywhere, the score at each answer's last token
rewards = -beta * (old_logprobs - ref_logprobs) * mask
last = mask.sum(1).long() - 1
rewards[torch.arange(len(last)), last] += scores
assert torch.allclose(rewards, objectives.kl_penalized_rewards(old_logprobs, ref_logprobs, scores, mask, beta))

# 3. GAE, right to left: δ_t = r_t + γ V_{t+1} − V_t, A_t = δ_t + γ λ A_{t+1}, with V = 0 after the answer
gamma, lam = 1.0, 0.95
advantages = torch.zeros_like(rewards)
for row in range(len(rewards)):
    following = 0.0
    for t in reversed(range(int(last[row]) + 1)):
        next_value = values[row, t + 1] if t < last[row] else 0.0
        delta = rewards[row, t] + gamma * next_value - values[row, t]
        following = delta + gamma * lam * following
        advantages[row, t] = following
package_advantages, returns = objectives.gae(rewards, values, mask, gamma, lam)
assert torch.allclose(advantages, package_advantages, atol=1e-6)

# 4. the clipped objective, on whitened advantages, with the moved policy's probabilities
whitened = objectives.whiten(advantages, mask)
ratio = torch.exp(new_logprobs - old_logprobs)
eps = 0.2
losses = torch.maximum(-whitened * ratio, -whitened * ratio.clamp(1 - eps, 1 + eps))
by_hand = (losses * mask).sum() / mask.sum()
package_loss, clipfrac, approxkl = objectives.ppo_policy_loss(new_logprobs, old_logprobs, whitened, mask, eps)
assert torch.allclose(by_hand, package_loss)
print(f"scores {[round(s, 2) for s in scores.tolist()]}")
print(f"the clipped loss {by_hand:.4f} = the package's {package_loss:.4f}; ratios from {ratio[mask.bool()].min():.2f} "
      f"to {ratio[mask.bool()].max():.2f}, {clipfrac:.0%} of the tokens clipped")

# %% [markdown]
# Every piece agrees with the package. The ratios spread around 1 because the trained PPO policy gives the SFT
# model's samples other probabilities; the clipped tokens are those where it moved more than ε = 0.2 and in the
# direction the advantage rewards: their gradient is cut, so a batch cannot push the policy far from the one that
# sampled it. The stage's PPO (`minilm.rlhf.ppo.train_ppo`) runs this loop with the course's one training step
# (AdamW, clipping, precision, checkpoints and exact resume), and logs under TRL's names (`objective/kl`,
# `objective/rlhf_reward`, `policy/clipfrac_avg`...).
#
# ## 5. DPO, from the closed form
#
# The objective E[r] − β KL(π ‖ π_ref) has a known optimum, prompt by prompt:
# π*(y|x) = π_ref(y|x) exp(r(x, y)/β) / Z(x). Turn it around: r(x, y) = β log(π*(y|x) / π_ref(y|x)) + β log Z(x).
# Put that into Bradley-Terry: Z(x) cancels in the gap between two answers to the same prompt, and the probability of
# a label depends on the policy alone. **DPO** (Rafailov et al., 2023) fits the policy to the labels by that
# likelihood: loss −log σ(β [log π(y_c)/π_ref(y_c) − log π(y_r)/π_ref(y_r)]) (exercise 4). No reward model, no
# sampling. Its *implicit reward* β log(π/π_ref) is the reward it has learnt.
#
# On a problem small enough to solve exactly (`minilm.rlhf.bandit`: 4 prompts, 6 one-token answers each), we can
# watch it reach π*:

# %%
toy = bandit.toy_bandit()
data = bandit.sample_preferences(toy, 4000, torch.Generator().manual_seed(0))
dpo_policy, dpo_history = bandit.train_dpo(toy, data, bandit.BanditDPOConfig())
ppo_policy, _ = bandit.train_ppo(toy, bandit.BanditPPOConfig(), torch.Generator().manual_seed(0))
implicit = toy.beta * torch.log(dpo_policy / toy.ref_probs)
shift = (toy.rewards - implicit).mean(1, keepdim=True)  # the constant β log Z(x) of each prompt
show_table([{"answer": y, "π_ref": toy.ref_probs[0, y].item(), "π*": toy.optimal[0, y].item(),
             "PPO": ppo_policy[0, y].item(), "DPO": dpo_policy[0, y].item(), "true r": toy.rewards[0, y].item(),
             "DPO's implicit reward + constant": (implicit + shift)[0, y].item()} for y in range(6)])
print(f"total variation to π* (mean over the 4 prompts): PPO {bandit.mean_tv(ppo_policy, toy.optimal):.3f}, "
      f"DPO {bandit.mean_tv(dpo_policy, toy.optimal):.3f}, the reference {bandit.mean_tv(toy.ref_probs, toy.optimal):.3f}")

# %% [markdown]
# Both methods land on π* (the first prompt is shown): PPO by sampling and the reward, DPO from the comparisons
# alone, and DPO's implicit reward recovers the true reward up to each prompt's constant (tests/test_rlhf_objectives.py
# checks this for every prompt, with thresholds). On the language model, the stage's DPO
# (`minilm.rlhf.dpo.train_dpo`) sums the log-probabilities of each answer's tokens and logs TRL's
# `rewards/chosen`, `rewards/rejected`, `rewards/accuracies` and `rewards/margins` (a test checks them against TRL's
# `DPOTrainer`).
#
# ## 6. GRPO, and the stage's results
#
# **GRPO** (DeepSeekMath, 2024) drops the value model: it samples a *group* of G answers to each prompt, and each
# answer's advantage is its reward minus the group's mean, divided by the group's standard deviation. The update is
# PPO's clipped objective with a KL term (the "k3" estimator) in the loss instead of the reward. One group:

# %%
for asked, example in enumerate(test_prompts.examples):  # the first test prompt whose group holds 3 answers or more
    group = fitting_prompts([example] * config.grpo_generations, tokenizer, config.prompt_tokens)
    grollout, ganswers = sample_answers(sft, group, tokenizer, config.max_new_tokens, seed=3)
    if len(set(ganswers)) >= 3:
        break
print(f"test prompt {asked + 1} ({example.family}): {len(set(ganswers))} different answers among {len(ganswers)}")
gscores = score(group.ids, [ids[real].tolist() for ids, real in zip(grollout.completion_ids, grollout.completion_mask)])
by_hand = (gscores - gscores.mean()) / (gscores.std() + 1e-4)
assert torch.allclose(by_hand, objectives.group_advantages(gscores, config.grpo_generations))
show_table([{"answer": short(a, 60), "reward model": s, "advantage": adv, "gold": gold.gold_reward(group.examples[0], a)}
            for a, s, adv in zip(ganswers, gscores.tolist(), by_hand.tolist())])

# %% [markdown]
# Answers the reward model prefers get positive advantages, the others negative, and a group whose answers all score
# the same teaches nothing (every advantage 0): the first test prompt's eight samples were the same right answer, so
# the cell above moves on to the next prompt. In this group no answer is right: the question asks for Chloe's purple
# car, and the samples name a black car, a purple balloon, a black bike (twice), a yellow book, a park, and garbled
# words. The gold reward gives them all 0 or less; the reward model, which cannot check the passage as the rubric
# does, spreads them out ("her purple balloon" highest, "her black car" below the bikes and the book), so GRPO
# pushes toward some wrong answers and away from others, and learns nothing true from the difference. Only the
# chatty answer's place, last for both rewards, is a lesson they agree on. The stage trains GRPO twice: on
# the reward model, and on the gold reward itself, a **verifiable reward** (as for maths or code, where an answer can
# be checked): what the methods reach when the reward is right.
#
# The stage (`run_rlhf_stage`, above) trained DPO, PPO and GRPO from the SFT model, each against it as the reference,
# and measured every model on the test prompts: `eval_samples` answers per prompt at T = 1, judged by the gold
# reward. The test prompts are stage 6's test questions of the five families the rubric judges, like the training
# prompts: 690 of its 846 (translation is scored by stage 6). The **win rate** compares each answer with the SFT model's
# answer to the same prompt (the same seed for both). The exact judge ties whenever both answers score the same, as
# two clean, right answers do and as two identical answers do (a model that moved little, sampled with the same
# seed, often writes the very same answer); for the methods of this section that is most of the time, so the win rate
# counts the comparisons that have a winner, wins / (wins + losses); the tie share, and the rate with ties as half a
# win (AlpacaEval's rule), stand beside it. The interval is a bootstrap over prompts.

# %%
show_table(score_rows(r))
print(f"stage 7 built in {aligned.build_seconds:.0f} s: " +
      ", ".join(f"{part} {seconds:.0f} s" for part, seconds in r["timings"].items()))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plot_rlhf(r, axes=axes)
show(fig)

# %% [markdown]
# Read the table from the top: the SFT row is the baseline; each method's win rate says how often its answer beats SFT's
# when one of the two is better; the interval says how sure that is with this many prompts; the KL column is how far
# each method moved from the SFT model to get there (nats per answer). The left plot puts the gold reward against that
# distance. In this run DPO, PPO and GRPO each beat the SFT model, with intervals well above 0.5. They differ in how far
# they moved: DPO the most, while PPO gained a little more gold reward than DPO (+0.086 against +0.073) at about a
# third of DPO's KL (0.27 against 0.75); GRPO, whose 30 updates each learn only from the groups whose answers differ,
# moved the least (0.08) and gained about as much as DPO (+0.072), with most of its answers tied with SFT's; and GRPO
# on the gold reward did no better than GRPO on the reward model (0.83 against 0.85, the intervals overlapping), so at
# this distance the reward model was not what held it back. The last row, PPO without a KL penalty, is section 7's.
# The prompts where the aligned models answered differently (the last line of each is section 7's run): where the SFT
# model adds a remark ("I already told you that.", "Let me know if"), the aligned models drop it; a wrong retelling
# stays wrong ("a orangeina" for a pink pencil: preferences between the SFT model's own answers rarely teach a fact it
# lacks); PPO answers one yes/no question right where the SFT model, DPO and GRPO do not; and DPO, the method that
# moved furthest, once turns a right "no" into garbled words:

# %%
samples = json.loads((aligned.path / SAMPLES).read_text())["samples"]
differ = [s for s in samples if len({s[name] for name in r["order"] if name != HACKING}) > 1]  # answers differ
print(f"{len(differ)} of {len(samples)} prompts got different answers from the models (first sample of each); five:")
for s in differ[:5]:
    print(f"[{s['family']}] {short(s['messages'][-1]['content'][-120:], 120)}   expected: {s['expected']}")
    for name in r["order"]:
        print(f"   {name:>18}: {short(s[name], 90)}")

# %% [markdown]
# ## 7. Reward hacking
#
# The reward model is a learnt guess of the gold reward, right on the answers it was trained on (the SFT model's)
# and unchecked elsewhere. A policy trained hard on it finds where it is wrong. The stage ran PPO with a KL weight
# of `hacking_beta` for `hacking_iterations` iterations, measuring it every `hacking_eval_every` iterations on the
# test prompts by both rewards (the right plot above, and the table below):

# %%
show_table([{"iteration": p["iteration"], "reward model": p["rm_score"], "gold reward": p["gold"],
             "clean and right": p["best_share"], "KL to SFT": p["kl"], "a sample": short(p["sample"], 60)}
            for p in r["hacking"]])

# %% [markdown]
# The reward model's score keeps rising while the gold reward falls below the SFT model's: the policy is drifting (the
# KL column) toward answers the reward model overrates, as Gao et al. (2022) measured at scale. The samples column is
# the first test prompt's answer at each point; in the run printed here it is the right answer throughout (greedy
# decoding does not move on this easy prompt), so the damage is in other answers. The share of clean, right answers
# first rises (0.580 to 0.635), as the policy drops the flaws the reward model learnt to punish, and then falls
# (0.551), while the reward model's score creeps on up; the mean gold reward barely moves at first (0.971 to 0.962)
# and then falls (0.822) (in an earlier build, whose reward model ordered 0.85 of the held-out pairs as the gold
# reward does, against this one's 0.80, the mean first rose, 0.97 to 1.06, before it fell). Section 6's five examples
# show the run at its end: a feeling ("glad") for a yes/no question, a wrong retelling, and three right answers, one
# of them a "yes" that the SFT model got wrong. Its table gives the end of the run over all the prompts: a gold reward
# of 0.834 against SFT's 0.978, at about fourteen times PPO's KL (3.75 against 0.27). Its win rate, 0.54 [0.50, 0.59],
# is barely better than a coin toss, and its mean is well below SFT's: its losses cost more than its wins gain (the
# win rate counts only which answer is better, the mean also by how much). The KL penalty of the
# stage's PPO is what keeps a policy in the region where its reward model is right.

# %%
print(f"this notebook has run for {time.perf_counter() - notebook_started:.0f} s with preset {PRESET!r}")

# %% [markdown]
# ## 8. Exercises
#
# Each exercise is a function for you to write, followed by a check cell that runs it on fresh random inputs
# against the package's own version and prints a pass, or shows the input where they differ with a hint. The checks
# of unsolved exercises show a red error: that is expected. Solutions are in `solutions/07_rlhf.ipynb` (try first!).
#
# ### Exercise 1: the reward model's Bradley-Terry loss
#
# Write `bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None)`: the rewards are tensors of shape (B,),
# one number per pair, and `margin` is None or a tensor of shape (B,). Return a tensor holding one number: the mean
# over the pairs of the negative log-likelihood that the chosen answer wins under Bradley-Terry, where a margin (when
# given) is the extra gap a pair must clear. It must stay finite when a pair's rewards are hundreds apart in either
# direction, and agree with `minilm.rlhf.objectives.bradley_terry_loss` (which you may not call).

# %%
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    ### BEGIN SOLUTION
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin  # a strong preference asks for a wider gap
    return -F.logsigmoid(difference).mean()  # not torch.log(torch.sigmoid(...)): sigmoid rounds to 0 far below 0
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.rlhf import check_bradley_terry_loss

check_bradley_terry_loss(bradley_terry_loss)


# %% [markdown]
# ### Exercise 2: generalised advantage estimation
#
# Write `gae(rewards, values, mask, gamma, lam)`. Each input tensor has shape (B, T), one row per completion. `mask`
# is 1.0 on the real tokens and 0.0 on the padding, and the padding is on the right, at a different length in each
# row. Return `(advantages, returns)`, two tensors of shape (B, T), computed by GAE as in section 4 (but for a whole
# batch at once). A completion ends at its last real token, so nothing from after it counts. Whatever the padding
# holds must not reach the real tokens, and both outputs must be 0 there. The returns are the value model's targets.

# %%
def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    rewards, values = rewards * mask, values * mask  # the padding holds garbage: count it as 0
    advantages = torch.zeros_like(rewards)
    next_advantage = next_value = torch.zeros_like(rewards[:, 0])  # after the last position: 0
    for t in reversed(range(rewards.shape[1])):  # A_t needs A_{t+1}: right to left
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages * mask, (advantages + values) * mask
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.rlhf import check_gae

check_gae(gae)


# %% [markdown]
# ### Exercise 3: PPO's clipped policy loss
#
# Write `ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)`. Every tensor has shape (B, T) and
# holds per-token values: the current policy's log-probabilities, those of the policy that drew the samples, and the
# advantages. `mask` is 1.0 on the real tokens. Return PPO's clipped surrogate as a loss to minimise, a tensor holding
# one number, averaged over the real tokens only. Per token, keep the pessimistic choice between the unclipped and the
# clipped term, so that moving a ratio beyond 1 ± clip_range never pays, whichever sign the advantage has. It must
# agree with the loss that `minilm.rlhf.objectives.ppo_policy_loss` returns first.

# %%
def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = torch.max(unclipped, clipped)  # the pessimistic bound: no gain from moving past 1 ± clip_range
    return (loss * mask).sum() / mask.sum()  # a mean over the real tokens only
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.rlhf import check_ppo_policy_loss

check_ppo_policy_loss(ppo_policy_loss)


# %% [markdown]
# ### Exercise 4: DPO's loss and implicit rewards
#
# Write `dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)`. Each
# input is a tensor of shape (B,) holding log π(y|x) of the chosen or rejected answer under the policy or the
# reference model. Return `(losses, chosen_rewards, rejected_rewards)`, three tensors of shape (B,): each answer's
# implicit reward (section 5), and each pair's Bradley-Terry loss on those rewards (one per pair, not averaged). It
# must stay finite when the log-ratios are hundreds of nats apart, and agree with `minilm.rlhf.objectives.dpo_loss`.

# %%
def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)  # the implicit rewards
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)  # Bradley-Terry on the implicit rewards
    return losses, chosen_rewards.detach(), rejected_rewards.detach()  # the rewards are for logging only
    ### END SOLUTION


# %% tags=["check"]
from minilm.exercises.rlhf import check_dpo_loss

check_dpo_loss(dpo_loss)

# %% [markdown]
# In exercise 4, why can DPO do without the reward model's separate training and without sampling, and what does it
# give up for that? (The reward model of PPO is trained once and can score answers the SFT model never wrote; DPO
# only ever sees the pairs' answers, so it learns nothing about answers far from them: section 7 shows what a
# reward model does out there.)
#
# **Next:** notebook 08 evaluates the models of stages 4 to 7 on benchmarks, bias, robustness and human preference.
