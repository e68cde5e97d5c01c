"""Stage 2: a byte-level BPE tokenizer that a learner can read in one sitting, and that is exact and fast.

- `minilm.tokenizer.naive`: the naive trainer, O(merges x corpus), for teaching;
- `minilm.tokenizer.bpe`: the same merges, fast (distinct chunks, incremental pair counts, a heap);
- `minilm.tokenizer.tokenizer`: `Tokenizer` (encode, decode, special tokens, files, tiktoken) and
  GPT-4's `cl100k_base` loaded into it (tiktoken's ids, but for the 4,657 letters and digits new in
  Unicode 17.0: see that module);
- `minilm.tokenizer.shards`: the corpus as memory-mapped token arrays, and random training windows;
- `minilm.tokenizer.stage`: the cached stage (train on stage 1's split, write shards, measure);
- `minilm.tokenizer.report`: what the stage shows (terminal lines, the report's section and figure).

    tok = Tokenizer.train(texts, vocab_size=4096)
    ids = tok.encode("Once upon a time")      # readable Python
    enc = tok.to_tiktoken()                   # the same ids, from Rust
"""

from minilm.tokenizer.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, count_chunks, learn_merges, train
from minilm.tokenizer.naive import train_naive
from minilm.tokenizer.tokenizer import SPECIAL_TOKENS, Tokenizer, cl100k_base, recover_merges

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "SPECIAL_TOKENS",
    "Tokenizer",
    "cl100k_base",
    "count_chunks",
    "learn_merges",
    "recover_merges",
    "train",
    "train_naive",
]
