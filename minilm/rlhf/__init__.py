"""Stage 7: aligning the chat model with preferences (RLHF)."""
