"""minilm: the package behind the course that builds a small language model, stage by stage.

One module per stage, each the single source of truth that its notebook teaches from:
`minilm.data` (stage 1). Shared ground: `minilm.world` (the small world every source writes about),
`minilm.presets` (sizes, seeds), `minilm.hardware` (device, precision, peak FLOP/s), `minilm.cache` (run
folders that are built once and reused), `minilm.files` (atomic writes), `minilm.exercises`.
"""

__version__ = "0.1.0"
