"""Stage 7: aligning the chat model with preferences: a reward model, PPO with a KL penalty, DPO and GRPO."""
