"""The command line: ``python -m minilm <stage>`` runs one stage, ``python -m minilm speedrun`` runs them all.

Every command calls the same functions the notebooks call, and reuses what earlier runs cached.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import time

STAGES = [
    ("data", "stage 1: gather web pages, stories, docs and code; clean, filter, deduplicate, balance; write splits"),
    ("tokenizer", "stage 2: train a byte-level BPE tokenizer on the train split; write token shards"),
    ("pretrain", "stage 4: pretrain a GPT on the token shards; stage 5: the same on several processes "
                 "(torchrun --nproc_per_node=N -m minilm pretrain)"),
]

EPILOG = """pipeline:
  sources -> clean/filter/dedup/balance -> tokenizer -> token shards -> pretrained model
          -> SFT model -> RLHF model -> evaluation report -> chat / serving

presets: ci (seconds, for tests), cpu (minutes on a laptop), gpu (one CUDA GPU).
The default is gpu when CUDA is found and cpu otherwise; MINILM_PRESET or --preset overrides it.
Outputs go to data/runs/<preset>/<stage>/ (MINILM_HOME overrides data/)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilm",
        description="Build a small language model, stage by stage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>")
    for name, help_text in STAGES + [("speedrun", "run every stage in order and write report.md")]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--preset", choices=["ci", "cpu", "gpu"], help="sizes to run at (default: automatic)")
        sub.add_argument("--force", action="store_true", help="rebuild even when a cached result matches")
        if name in ("pretrain", "speedrun"):
            sub.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=setting,
                             help="change one field of the preset's TrainConfig, e.g. --set batch_size=8 --set grad_accum=4")
    return parser


def setting(text: str) -> tuple[str, object]:
    """'batch_size=8' -> ('batch_size', 8); a value that is not a Python literal stays a string ('precision=bf16')."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. batch_size=8")
    try:
        return name.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.strip(), value


def train_config(preset: str, settings: list[tuple[str, object]]):
    """The preset's TrainConfig with the --set changes; an unknown name fails with the list of known ones."""
    from minilm.train import TrainConfig

    try:
        return TrainConfig.from_preset(preset, **dict(settings))
    except TypeError as error:
        raise SystemExit(f"--set: {error}") from None


def show_progress() -> None:
    """Print each stage's start and end lines (the `minilm` logger) on stdout, from rank 0 only under torchrun.

    In a terminal a progress bar redraws one line in place. In a file or a pipe every redraw would
    be a line of its own, so there each bar writes only its first and its final line (tqdm reads its
    defaults from TQDM_* variables when it is imported, which it has not been yet).
    """
    if os.environ.get("RANK", "0") == "0":
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "inf")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0

    show_progress()
    from minilm.presets import preset_name

    preset = preset_name(args.preset)
    started = time.perf_counter()
    if args.command == "speedrun":
        from minilm.speedrun import speedrun

        report = speedrun(preset, force=args.force, train=train_config(preset, args.set))
        print(f"report: {report}")
    elif args.command == "data":
        from minilm.data.report import describe
        from minilm.data.stage import run_data_stage

        artifact = run_data_stage(preset, force=args.force)
        print(describe(artifact))
    elif args.command == "tokenizer":
        from minilm.tokenizer.report import describe
        from minilm.tokenizer.stage import run_tokenizer_stage

        artifact = run_tokenizer_stage(preset, force=args.force)
        print(describe(artifact))
    elif args.command == "pretrain":
        from minilm.train.report import describe
        from minilm.train.stage import run_pretrain_stage

        artifact = run_pretrain_stage(preset, force=args.force, config=train_config(preset, args.set))
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for every process
            return 0
        print(describe(artifact))
    print(f"done in {time.perf_counter() - started:.1f} s (preset {preset})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
