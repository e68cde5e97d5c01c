"""The command line: ``python -m minilm <stage>`` runs one stage, ``python -m minilm speedrun`` runs them all.

Every command calls the same functions the notebooks call, and reuses what earlier runs cached.

A mistake (an unknown preset, a --set value of the wrong type or out of range, a MINILM_HOME that cannot be
written, a checkpoint that cannot be resumed) ends the command with one line on stderr, ``error: ...``, that
says what is wrong and how to fix it, and a non-zero exit status. Those found before any stage starts leave
nothing on disk. A traceback means a bug in the course.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import sys
import tempfile
import time
import types
import typing

STAGES = [
    ("data", "stage 1: gather web pages, stories, docs and code; clean, filter, deduplicate, balance; write splits"),
    ("tokenizer", "stage 2: train a byte-level BPE tokenizer on the train split; write token shards"),
    ("pretrain", "stage 4: pretrain a GPT on the token shards; stage 5: the same on several processes "
                 "(torchrun --nproc_per_node=N -m minilm pretrain)"),
    ("finetune", "stage 6: fine-tune the pretrained model into a chat model (in full and with LoRA) and a "
                 "classifier; score them on exact answers about unseen stories"),
    ("rlhf", "stage 7: align the chat model with preferences (reward model, PPO, DPO, GRPO), judged by a gold "
             "reward that training never sees"),
    ("evaluate", "stage 8: score every model (base, SFT, LoRA, each RLHF method) on benchmarks from unseen stories "
                 "and documents, with intervals: the report card"),
    ("inference", "stage 9: time generation (KV cache, batching), train a draft for speculative decoding, quantize "
                  "to int8, export the chat model for Hugging Face, vLLM and llama.cpp"),
]

SERVING = [
    ("chat", "talk with the best chat model of the cache in this terminal (stage 9)"),
    ("serve", "serve the best chat model of the cache: an OpenAI-compatible API at /v1 and a chat page at / (stage 9)"),
]

EPILOG = """pipeline:
  sources -> clean/filter/dedup/balance -> tokenizer -> token shards -> pretrained model
          -> SFT model -> RLHF model -> evaluation report -> chat / serving

presets: ci (seconds, for tests), cpu (minutes on a laptop), gpu (one CUDA GPU).
The default is gpu when CUDA is found and cpu otherwise; MINILM_PRESET or --preset overrides it.
Outputs go to data/runs/<preset>/<stage>/ (MINILM_HOME overrides data/)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, telling a misspelt command or option in one line (without the usage above it)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    for name, help_text in SERVING:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--preset", choices=["ci", "cpu", "gpu"], help="whose cached models (default: automatic)")
        sub.add_argument("--checkpoint", metavar="PATH", help="serve this checkpoint folder instead (with the "
                                                               "preset's tokenizer)")
        if name == "chat":
            sub.add_argument("--temperature", type=temperature, default=0.7, help="0 is greedy (default: 0.7)")
            sub.add_argument("--max-tokens", type=positive, default=64, help="the longest answer (default: 64)")
        else:
            sub.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (the default) answers this machine "
                                                                  "only; 0.0.0.0 the network, without authentication")
            sub.add_argument("--port", type=port, default=8000, help="default: 8000")
            sub.add_argument("--max-batch-size", type=positive, default=8,
                             help="requests decoded together (default: 8)")
    return parser


def positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: choose a whole number from 1 to 65535")
    return int(text)


def temperature(text: str) -> float:
    """A sampling temperature: a finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a temperature: choose a number of at least 0 (0 is greedy)")
    return value


def setting(text: str) -> tuple[str, str]:
    """'batch_size=8' -> ('batch_size', '8'); `train_config` converts the value by the field's type."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. batch_size=8")
    return name.strip(), value


BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def field_value(kind, text: str):
    """`text`, a --set value, as a value of `kind`: the type hint of a TrainConfig field.

    int takes whole numbers only ('8'; not '1.5' or 'True'); float takes any finite number ('3e-4', '1');
    bool takes true/false, yes/no or 1/0, in any case; str takes the text as it is; ``X | None`` takes
    'none' as well. Anything else raises ValueError saying what the field takes.
    """
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    optional = type(None) in options
    if optional and text.lower() == "none":
        return None
    kind = next(option for option in options if option is not type(None))
    if kind is str:
        return text
    if kind is bool and text.lower() in BOOLEANS:
        return BOOLEANS[text.lower()]
    try:
        if kind is int:
            return int(text)
        if kind is float and math.isfinite(number := float(text)):
            return number
    except ValueError:
        pass
    expected = {int: "an integer", float: "a finite number", bool: "true or false"}[kind]
    raise ValueError(f"expected {expected}{' or none' if optional else ''}, got {text!r}")


def train_config(preset: str, settings: list[tuple[str, str]]):
    """The preset's TrainConfig with the --set changes, each value converted by its field's type.

    A mistake ends the command with one line: an unknown field (with the closest name), a value of the
    wrong type (with the preset's value as an example), a value out of range (with what is allowed).
    """
    from minilm.train import TrainConfig

    kinds = typing.get_type_hints(TrainConfig)
    changes = {}
    for name, text in settings:
        if name not in kinds:
            close = difflib.get_close_matches(name, kinds, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise SystemExit(f"error: --set {name}: TrainConfig has no such field; {guess}"
                             f"known fields: {', '.join(sorted(kinds))}")
        try:
            changes[name] = field_value(kinds[name], text)
        except ValueError as error:
            example = getattr(TrainConfig.from_preset(preset), name)
            raise SystemExit(f"error: --set {name}={text}: {error} (the {preset} preset has {name}={example})") from None
    try:
        return TrainConfig.from_preset(preset, **changes)
    except ValueError as error:  # a value out of range, or fields that do not fit together
        raise SystemExit(f"error: --set: {error}") from None


def check_home() -> None:
    """Stop with one line unless the data folder (MINILM_HOME, else data/) is a folder this user can write in.

    Checked before any stage starts, so the mistake costs nothing; a folder that does not exist yet is created.
    """
    from minilm.cache import home

    folder = home()
    named = f"MINILM_HOME={folder}" if os.environ.get("MINILM_HOME") else f"the data folder {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        if folder.is_file():
            raise SystemExit(f"error: {named} is a file, not a folder: set MINILM_HOME to a folder") from None
        permissions = ", or fix this one's permissions" if isinstance(error, PermissionError) else ""
        raise SystemExit(f"error: {named} cannot be written ({error.strerror}): "
                         f"set MINILM_HOME to a folder you can write in{permissions}") from None


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

    from minilm.presets import preset_name

    try:
        preset = preset_name(args.preset)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    show_progress()  # before anything imports tqdm, which reads its TQDM_* defaults once
    train = train_config(preset, args.set) if args.command in ("pretrain", "speedrun") else None
    serving = args.command in dict(SERVING)
    if not serving:  # chat and serve only read the cache
        check_home()
    mistakes = ()  # what a stage raises for a mistake of the user's, with a message that names the fix
    if train is not None:
        from minilm.train import BatchTooLargeError, CheckpointError

        mistakes = (BatchTooLargeError, CheckpointError)
    if serving:  # a model not cached, a checkpoint that cannot be read, a setting the model cannot take, a busy port
        from minilm.infer.models import ModelNotFoundError
        from minilm.train import CheckpointError

        mistakes = (ModelNotFoundError, CheckpointError, ValueError, OSError)
    started = time.perf_counter()
    try:
        shown = run_command(args.command, preset, getattr(args, "force", False), train, args)
    except mistakes as error:
        raise SystemExit(f"error: {' '.join(str(error).splitlines())}") from None
    if shown is None:  # under torchrun, rank 0 speaks for every process
        return 0
    print(shown)
    print(f"done in {time.perf_counter() - started:.1f} s (preset {preset})")
    return 0


def run_command(command: str, preset: str, force: bool, train,
                options: argparse.Namespace | None = None) -> str | None:
    """Run one command; returns what it shows of its result (None on the other processes under torchrun).
    `options`: the parsed command line, which chat and serve read their settings from."""
    if command == "chat":
        from minilm.infer.terminal import run_chat

        return run_chat(preset, options.checkpoint, options.temperature, options.max_tokens)
    if command == "serve":
        from minilm import hardware
        from minilm.infer.models import chat_model
        from minilm.infer.server import ServerLimits, check_address, serve

        check_address(options.host, options.port)  # before loading the model
        model, tokenizer, which = chat_model(preset, options.checkpoint, hardware.pick_device())
        print(f"serving {which}\nchat page: http://{options.host}:{options.port}/   API: "
              f"http://{options.host}:{options.port}/v1 (model minilm-chat); Ctrl-C stops", flush=True)
        serve(model, tokenizer, options.host, options.port, limits=ServerLimits(max_batch_size=options.max_batch_size))
        return "server stopped"
    if command == "speedrun":
        from minilm.speedrun import speedrun

        return f"report: {speedrun(preset, force=force, train=train)}"
    if command == "data":
        from minilm.data.report import describe
        from minilm.data.stage import run_data_stage

        return describe(run_data_stage(preset, force=force))
    if command == "tokenizer":
        from minilm.tokenizer.report import describe
        from minilm.tokenizer.stage import run_tokenizer_stage

        return describe(run_tokenizer_stage(preset, force=force))
    if command == "inference":
        from minilm.infer.report import describe
        from minilm.infer.stage import run_inference_stage

        return describe(run_inference_stage(preset, force=force))
    if command == "evaluate":
        from minilm.eval.report import describe
        from minilm.eval.stage import run_eval_stage

        return describe(run_eval_stage(preset, force=force))
    if command == "rlhf":
        from minilm.rlhf.report import describe
        from minilm.rlhf.stage import run_rlhf_stage

        return describe(run_rlhf_stage(preset, force=force))
    if command == "finetune":
        from minilm.finetune.report import describe
        from minilm.finetune.stage import run_finetune_stage

        artifact = run_finetune_stage(preset, force=force)
        return describe(artifact) if os.environ.get("RANK", "0") == "0" else None
    from minilm.train.report import describe
    from minilm.train.stage import run_pretrain_stage

    artifact = run_pretrain_stage(preset, force=force, config=train)
    return describe(artifact) if os.environ.get("RANK", "0") == "0" else None


if __name__ == "__main__":
    sys.exit(main())
