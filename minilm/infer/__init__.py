"""Stage 9: inference and deployment, one idea per module, read in this order.

- `sampling`: how the next token is chosen (greedy, temperature, top-k, top-p, min-p, repetition
  penalty) and how text is streamed and cut at stop strings;
- `engine`: batched generation where requests join and leave the running batch between steps
  (dynamic batching), each with its own slice of the KV cache;
- `speculative`: a small draft model proposes, the big one checks: the same tokens, fewer big steps;
- `quantize`: int8 weights, a quarter of the memory, and what that costs in bits per byte;
- `export`: the chat model as a Hugging Face folder, for vLLM, llama.cpp or Ollama;
- `models`: which chat model to serve (stage 8's best-rated), loaded from the cache;
- `server`: an OpenAI-compatible HTTP server with a chat page; `terminal`: the same model in a terminal;
- `stage`: stage 9's cached measurements, and `report`: its section of the report card.
"""
