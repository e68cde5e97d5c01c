"""Stages 4 and 5: pretraining, on one CPU or on several GPUs. Read in this order:

- `objectives`: next-token prediction (a decoder) and masked language modelling (an encoder);
- `schedule`: the learning rate, warmup then cosine;
- `loop`: `TrainConfig` and `train`: batches, AdamW, gradient accumulation and clipping, evaluation
  (loss, perplexity, bits per byte), samples, logs;
- `checkpoint`: safetensors weights and a weights-only state file, written atomically, resumed exactly;
- `distributed`: several processes as one under torchrun: the process group, DistributedDataParallel
  (the device, bf16/fp16 autocast and the peak for MFU are `minilm.hardware`'s, as for one process);
- `quality`: how much of the generated text the story world's vocabulary and grammar accept;
- `stage`: `run_pretrain_stage`, cached, for the command line, the speedrun and the notebooks;
- `report`: what stages 4 and 5 show (terminal lines, the training curves, the report's sections).
"""

from minilm.train.checkpoint import CheckpointError, latest_checkpoint, load_model, read_checkpoint, save_checkpoint
from minilm.train.distributed import World, processes
from minilm.train.loop import BatchTooLargeError, TrainConfig, evaluate, read_log, train, train_step
from minilm.train.objectives import make_batch, token_losses
from minilm.train.quality import text_quality
from minilm.train.schedule import learning_rate

__all__ = [
    "BatchTooLargeError",
    "CheckpointError",
    "TrainConfig",
    "World",
    "evaluate",
    "latest_checkpoint",
    "learning_rate",
    "load_model",
    "make_batch",
    "processes",
    "read_checkpoint",
    "read_log",
    "save_checkpoint",
    "text_quality",
    "token_losses",
    "train",
    "train_step",
]
