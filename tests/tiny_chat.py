"""A tiny chat model for the stage-9 tests (the export and the server): a GPT of 2 layers, 64 wide, trained in a
couple of seconds on a few conversations, as SFT trains (the answers and their <|end|> only), so that it answers
them in words and stops, which a random model does not."""

import torch

from minilm.finetune.chat import SFTData
from minilm.model import GPT, GPTConfig


def tiny_chat_model(tokenizer, conversations: list[list[dict]], lr: float, width: int = 128,
                    steps: int = 60) -> tuple[GPT, float]:
    """The model trained `steps` full-batch AdamW steps at `lr` on `conversations` (each padded to `width` tokens),
    in eval mode, and its last training loss."""
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context=128, n_layer=2, n_head=2, n_embd=64), seed=0)
    x, y = (torch.tensor(a) for a in SFTData(tokenizer, conversations, "train").eval_batch(width))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), loss.item()
