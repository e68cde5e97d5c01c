"""Stage 1, data: from sources to the train and validation documents, in pipeline order:

- `sources`: the website, the crawler and extractor, stories, technical documents, code, downloads;
- `truth`: the defects planted into what was gathered, and the scores of the filters against them;
- `filters`: cleaning, quality, toxicity, personal data, dedup, bias audit, balance;
- `documents`: the `Document` every source yields and the `StepResult` every step returns;
- `stage`: `DataConfig` and `run_data_stage`, the stage end to end (gather, plant, prepare, split, write);
- `report`: the stage's figures and its section of the speedrun report.
"""
