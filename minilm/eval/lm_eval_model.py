"""minilm models inside lm-evaluation-harness, and the world's tasks as lm-eval task configs.

`LmEvalModel` implements lm-eval's model interface (`lm_eval.api.model.TemplateLM`): lm-eval
splits each request into context and continuation tokens itself, cuts rolling windows with its
own `get_rolling_token_windows`, builds the prompts from its task configs and computes the metrics;
this class only runs the model, one request at a time, the plainest way. So when lm-eval and
`minilm.eval` give the same numbers on the same model (tests/test_eval_harness.py), the course's
batching, splitting, windows and metrics are lm-eval's.

`write_task` writes a task's documents as JSON lines and an lm-eval YAML config that reads them
with the `json` dataset loader, so lm-eval runs the course's benchmarks offline:

    model = LmEvalModel(gpt, tokenizer)
    write_task(folder, "minilm_cloze", docs, "multiple_choice")
    lm_eval.simple_evaluate(model=model, tasks=["minilm_cloze"],
                            task_manager=lm_eval.tasks.TaskManager(include_path=str(folder)))

`lm_eval` is imported only by this module: the package does not depend on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from minilm.eval.harness import END_OF_TEXT, cut_at_stops
from minilm.eval.tasks import TARGET_DELIMITER, check_docs
from minilm.files import atomic_write
from minilm.model.generate import generate
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer


class LmEvalModel(TemplateLM):
    """A minilm GPT and its tokenizer, as lm-eval's model interface wants them."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_gen_toks: int = 32):
        super().__init__()
        self.model, self.tokenizer, self.max_gen_toks = model.eval(), tokenizer, max_gen_toks
        self._device = model.transformer.wte.weight.device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.special_id(END_OF_TEXT)

    @property
    def max_length(self) -> int:
        return self.model.config.context

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode_ordinary(string)

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = []
        for _, context_ids, continuation_ids in requests:
            inputs = (context_ids + continuation_ids)[-(self.max_length + 1):][:-1]
            logits = self.model(torch.tensor([inputs], device=self._device))[0][0]
            logprobs = torch.log_softmax(logits.float(), dim=-1)[-len(continuation_ids):]
            target = torch.tensor(continuation_ids, device=self._device)
            results.append((float(logprobs.gather(1, target[:, None]).sum()),
                            bool((logprobs.argmax(-1) == target).all())))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for (text,) in [request.args for request in requests]:
            windows = get_rolling_token_windows(self.tok_encode(text), self.prefix_token_id, self.max_length, 1)
            pairs = [(None, *make_disjoint_window(window)) for window in windows]
            results.append(sum(ll for ll, _ in self._loglikelihood_tokens(pairs)))
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        answers = []
        for context, options in [request.args for request in requests]:
            if options.get("do_sample") and options.get("temperature", 1.0) > 0:
                raise ValueError("LmEvalModel generates greedily only: set do_sample: false in the task's "
                                 "generation_kwargs")
            until = options.get("until", [])
            until = [until] if isinstance(until, str) else list(until)
            max_new = options.get("max_gen_toks", self.max_gen_toks)
            prompt = (self.tok_encode(context) or [self.eot_token_id])[-(self.max_length - max_new):]
            new = generate(self.model, [prompt], max_new, temperature=0.0, stop_token=self.eot_token_id)[0]
            answers.append(cut_at_stops(self.tokenizer.decode(new), until))
        return answers


_METRICS = {
    "multiple_choice": ("acc", "acc_norm"),
    "perplexity": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
}


def write_task(folder: str | os.PathLike, name: str, docs: list[dict], kind: str) -> Path:
    """Write `docs` as `<name>.jsonl` and an lm-eval config `<name>.yaml` beside it; return the config's path.

    `kind` is "multiple_choice" (docs with context, choices, gold) or "perplexity" (docs with text),
    the same documents `minilm.eval.tasks` runs."""
    check_docs(docs, kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    atomic_write(data, "".join(json.dumps(doc) + "\n" for doc in docs))
    if kind == "multiple_choice":
        fields = ["output_type: multiple_choice", "doc_to_text: context", "doc_to_choice: choices",
                  "doc_to_target: gold", f'target_delimiter: "{TARGET_DELIMITER}"']
    else:
        fields = ["output_type: loglikelihood_rolling", 'doc_to_text: ""', "doc_to_target: text"]
    metric_lines = [f"  - metric: {metric}" for metric in _METRICS[kind]]
    config = "\n".join([f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
                        f"    test: {json.dumps(str(data.resolve()))}", "test_split: test", *fields,
                        "metric_list:", *metric_lines]) + "\n"
    path = folder / f"{name}.yaml"
    atomic_write(path, config)
    return path
