"""Stage 8: evaluation. A harness with lm-evaluation-harness's semantics (`harness`), its metrics
(`metrics`), benchmarks from the story world (`tasks`), and an adapter that lets lm-eval itself
evaluate minilm models (`lm_eval_model`)."""
