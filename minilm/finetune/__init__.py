"""Stage 6: fine-tuning the pretrained model into a chat model (instruction tuning) and a classifier,
in full and with LoRA, scored on exact answers from the story world."""
