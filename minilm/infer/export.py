r"""Export: the chat model as a Hugging Face folder, the format the serving engines start from.

The course's server is for learning; a user who needs more throughput moves to an engine such as
vLLM, llama.cpp or Ollama. They start from a *Hugging Face model folder*: the weights and their
shape (``model.safetensors``, ``config.json``), how to stop and pad (``generation_config.json``),
the tokenizer (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``) and,
inside ``tokenizer_config.json``, the chat template that turns a list of messages into the prompt
text. `export_hf(model, tokenizer, folder)` writes them all.

vLLM serves such a folder directly (``vllm serve FOLDER``: GPT2LMHeadModel is among its
architectures). llama.cpp's ``convert_hf_to_gguf.py`` converts GPT2LMHeadModel to a GGUF file (it
reads the context from ``n_ctx`` in config.json, GPT-2's old name, so we write it), and Ollama
imports GGUF files (``FROM model.gguf`` in a Modelfile; its import from safetensors does not list
GPT-2). One step is left to the user there: the script recognises a BPE tokenizer by a hash of the
ids it gives a test text, and refuses one it has not seen ("BPE pre-tokenizer was not recognized"),
as ours is; the hash must be added to its table first, with the pre-tokenizer it stands for.

**The weights.** Our GPT-2-shaped model converts to transformers' `GPT2LMHeadModel`
(`minilm.model.hf.to_hf`: a renaming plus four transposed matrices per block); engines read
that architecture by its name in config.json. A model of another shape (rotary positions, RMSNorm,
SwiGLU, grouped-query attention) is refused with the list of what differs: it would need a Llama
export, which this module does not write.

**The tokenizer** is the same byte-level BPE in the `tokenizers` library's terms, and the tests
show equal ids on the course's text. Four things had to be translated:

- *Bytes as characters.* HF's byte-level BPE works on strings, with each byte written as one
  printable character (GPT-2's `bytes_to_unicode`: "Ġ" for the space, "Ċ" for the newline), so
  every token's bytes become a string of those characters in the vocabulary.
- *Merges instead of ranks.* We merge the adjacent pair whose merged *bytes* have the lowest rank
  (tiktoken's rule); HF merges the pair that comes first in a *list of merges*. The two agree when
  the list is our merges in rank order (each token's own pair, as `recover_merges` finds it): a
  part that ever appears in our merging was made by its own merge, so the pair we pick is always
  in the list, at the same rank. `ignore_merges=True` adds tiktoken's shortcut (a chunk that is a
  token stays whole); with a real merge table it changes nothing, since a token's bytes merge back
  into that token anyway, and the tests check both settings give the same ids.
- *The split pattern's dialect.* HF runs the pattern with Oniguruma in Ruby syntax, where
  ``\p{N}{1,3}+`` is not possessive (as in Python's `regex` and tiktoken) but means "one or more
  runs of 1 to 3 digits", so "12345" would be one chunk instead of "123", "45". `hf_split_pattern`
  rewrites each possessive interval ``X{n,m}+`` as the atomic group ``(?>X{n,m})``, which means
  the same in every dialect. Oniguruma's Unicode tables are tiktoken's (16.0): the exported
  tokenizer shares the one known difference of `minilm.tokenizer.tokenizer` with tiktoken, the
  4,657 letters and digits new in Unicode 17.0, and gives tiktoken's ids on them.
- *Special tokens* are added tokens with our ids (they must follow the merged tokens, as ours do).
  HF always turns special-token text into the special token, like `encode(allowed_special="all")`:
  an engine gets its control tokens from the chat template, so the user's text must not contain them.

**The chat template** (`CHAT_TEMPLATE`, Jinja) renders exactly `minilm.finetune.chat.render_chat`,
and refuses what `check_chat` refuses (with `raise_exception`), so an engine builds the prompts the
model was fine-tuned on. Its ``<|end|>`` closes an assistant turn, so generation stops at it:
``generation_config.json`` lists ``<|end|>`` and ``<|endoftext|>`` as end tokens.

**Atomic.** The files go to a temporary folder beside the target, which is renamed into place once
complete: a crash or an error leaves no half-written export, and an older export stays until the
new one is whole.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from minilm.files import atomic_write_json
from minilm.finetune.chat import BOS, END, PAD, ROLE_TOKENS
from minilm.model.gpt import GPT
from minilm.model.hf import check_gpt2_shape, to_hf
from minilm.tokenizer.tokenizer import SPECIAL_TOKENS, Tokenizer

MODEL_FILES = ("config.json", "model.safetensors", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
EXPORT_FILES = MODEL_FILES + TOKENIZER_FILES


# ---------------------------------------------------------------------------------------------
# 1. The tokenizer for HF `tokenizers`


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to one printable character: HF's byte-level BPE works on strings of these.

    The 188 bytes that are printable, non-space Latin-1 characters stand for themselves; the other 68
    (control bytes, the space, 0x7F-0xA0, 0xAD) get the characters from U+0100 on, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    mapping = {byte: chr(byte) for byte in printable}
    mapping.update({byte: chr(256 + i) for i, byte in enumerate(others)})
    return mapping


BYTE_CHARS = bytes_to_unicode()

# A possessive interval: an atom (\p{..} or \P{..}, another escape, a character class without nested brackets,
# or one plain character) followed by {n}, {n,} or {n,m} and a "+".
_POSSESSIVE_INTERVAL = re.compile(r"(\\[pP]\{\w+\}|\\.|\[(?:\\.|[^\]\\])*\]|[^\\()\[\]|])(\{\d+(?:,\d*)?\})\+")
_GROUP_INTERVAL = re.compile(r"\)\{\d+(?:,\d*)?\}\+")


def hf_split_pattern(pattern: str) -> str:
    r"""`pattern` in Oniguruma's Ruby syntax, which HF `tokenizers` runs: possessive intervals become atomic groups.

    ``\p{N}{1,3}+`` -> ``(?>\p{N}{1,3})``: "at most 3 digits, and no giving back", as Python's `regex` and
    tiktoken read it (Oniguruma would read "one or more runs of 1 to 3 digits"). Other syntax (``?+``,
    ``++``, ``(?i:...)``, lookahead) means the same in both and is kept.
    """
    if _GROUP_INTERVAL.search(pattern):
        raise ValueError(
            f"the split pattern {pattern!r} has a possessive interval after a group, '){{n,m}}+', which this "
            "export cannot rewrite for HF tokenizers; write it as an atomic group '(?>(...){n,m})'"
        )
    return _POSSESSIVE_INTERVAL.sub(r"(?>\1\2)", pattern)


def _chars(token: bytes) -> str:
    return "".join(BYTE_CHARS[byte] for byte in token)


def hf_tokenizer(tokenizer: Tokenizer):
    """The same tokenizer as a `tokenizers.Tokenizer`: same ids for the same text, same text for the same ids.

    A BPE model whose vocabulary is every token's bytes (as `bytes_to_unicode` characters) -> its id and
    whose merges are ours in rank order; the split pattern (`hf_split_pattern`) then the byte-level map as
    pre-tokenizer; no normalizer; a byte-level decoder; the special tokens as added special tokens.
    """
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {_chars(token): token_id for token, token_id in tokenizer.ranks.items()}
    ordered = sorted(tokenizer.merges.items(), key=lambda item: item[1])
    merged = sorted(token_id for token, token_id in tokenizer.ranks.items() if len(token) > 1)
    bytes_of = tokenizer.vocab
    if [token_id for _, token_id in ordered] != merged or any(
        bytes_of[left] + bytes_of[right] != bytes_of[token_id] for (left, right), token_id in ordered
    ):
        raise ValueError(
            "the tokenizer's merges do not make its tokens (each token beyond the 256 bytes, once, from the two "
            "tokens it joins): make it from its ranks alone, Tokenizer(tokenizer.ranks, tokenizer.pattern, "
            "tokenizer.special_tokens), which recovers the merges"
        )
    merges = [(_chars(bytes_of[left]), _chars(bytes_of[right])) for (left, right), _ in ordered]
    hf = HFTokenizer(models.BPE(vocab, merges, ignore_merges=True))
    hf.normalizer = None
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(hf_split_pattern(tokenizer.pattern)), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    hf.decoder = decoders.ByteLevel()
    specials = sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get)
    hf.add_special_tokens(specials)  # HF numbers them from the end of the vocabulary, in this order
    got = {token: hf.token_to_id(token) for token in specials}
    if got != tokenizer.special_tokens:
        raise ValueError(
            f"HF tokenizers numbers added tokens {len(vocab)}, {len(vocab) + 1}, ... in order, but this tokenizer's "
            f"special tokens have the ids {tokenizer.special_tokens}: give them the ids right after the merged tokens"
        )
    return hf


# ---------------------------------------------------------------------------------------------
# 2. The chat template

# render_chat, in Jinja: <|endoftext|>, then each turn as role token + content + <|end|>, then <|assistant|> to ask
# for an answer. Each check_chat rule is here too, with the same words, so a bad conversation fails in an engine
# as it fails in the course (other keys of a message, which engines may add, are ignored).
CHAT_TEMPLATE = (
    "{%- set roles = {'system': '<|system|>', 'user': '<|user|>', 'assistant': '<|assistant|>'} -%}"
    "{%- set specials = ['" + "', '".join(SPECIAL_TOKENS) + "'] -%}"
    "{%- if messages is string or messages | length == 0 -%}"
    "{{- raise_exception('a conversation is a non-empty list of {role, content} messages') -}}"
    "{%- endif -%}"
    "{%- set first = 1 if messages[0]['role'] == 'system' else 0 -%}"
    "{{- '<|endoftext|>' -}}"
    "{%- for message in messages -%}"
    "{%- set i = loop.index0 -%}"
    "{%- if message['role'] not in roles -%}"
    "{{- raise_exception('message ' ~ i ~ ' has the unknown role ' ~ message['role'] ~ '; "
    "the roles are system, user, assistant') -}}"
    "{%- endif -%}"
    "{%- if message['content'] is not string or message['content'] | trim == '' -%}"
    "{{- raise_exception('message ' ~ i ~ ' (' ~ message['role'] ~ ') has empty or missing content: "
    "every turn needs text') -}}"
    "{%- endif -%}"
    "{%- for token in specials if token in message['content'] -%}"
    "{{- raise_exception('message ' ~ i ~ ' (' ~ message['role'] ~ ') contains the special-token text ' ~ token ~ ': "
    "special tokens are control signals the format writes itself; remove that text from the message') -}}"
    "{%- endfor -%}"
    "{%- if message['role'] == 'system' and i != 0 -%}"
    "{{- raise_exception('message ' ~ i ~ ' is a system message: only the first message may be the system\\'s') -}}"
    "{%- endif -%}"
    "{%- set expected = 'user' if (i - first) % 2 == 0 else 'assistant' -%}"
    "{%- if message['role'] != 'system' and message['role'] != expected -%}"
    "{{- raise_exception('message ' ~ i ~ ' is the ' ~ message['role'] ~ '\\'s turn but the ' ~ expected ~ '\\'s "
    "was expected: after an optional system message, user and assistant turns alternate, starting with the user') -}}"
    "{%- endif -%}"
    "{{- roles[message['role']] ~ message['content'] ~ '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- set last = messages[-1]['role'] -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if last != 'user' -%}"
    "{{- raise_exception('the conversation ends with a ' ~ last ~ ' turn: to ask for the assistant\\'s answer, "
    "end with the user\\'s turn') -}}"
    "{%- endif -%}"
    "{{- '<|assistant|>' -}}"
    "{%- elif last != 'assistant' -%}"
    "{{- raise_exception('the conversation ends with a ' ~ last ~ ' turn, but a conversation to train on ends with "
    "the assistant\\'s answer: add it, or pass add_generation_prompt=True to ask the model for it') -}}"
    "{%- endif -%}"
)


# ---------------------------------------------------------------------------------------------
# 3. The folder


def check_exportable(model: GPT, tokenizer: Tokenizer) -> None:
    """Raise ValueError unless `model` is GPT-2-shaped and `tokenizer` is the one it was trained with."""
    check_gpt2_shape(model.config)  # names every field that differs from GPT-2's
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"the model has {model.config.vocab_size} token ids but the tokenizer {tokenizer.vocab_size}: export the "
            "model with the tokenizer it was trained with (stage 2's, as the stage that trained it loads it)"
        )
    missing = [token for token in (BOS, PAD, END, *ROLE_TOKENS.values()) if token not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer lacks the chat format's special tokens {missing}: use stage 2's tokenizer")


def _write_export(model: GPT, tokenizer: Tokenizer, folder: Path) -> None:
    """Every file of the export into `folder` (an empty folder)."""
    from transformers import GenerationConfig

    eot, end, pad = (tokenizer.special_id(token) for token in (BOS, END, PAD))
    hf = to_hf(model)
    hf.config.bos_token_id, hf.config.eos_token_id, hf.config.pad_token_id = eot, end, pad
    hf.config.n_ctx = model.config.context  # GPT-2's old name for n_positions: llama.cpp's converter reads it
    hf.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[end, eot], pad_token_id=pad)
    hf.save_pretrained(folder, safe_serialization=True)

    hf_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": END, "pad_token": PAD}
    roles = list(ROLE_TOKENS.values())
    atomic_write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": model.config.context,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,  # decoding gives the text back as it was, " ," included
        "additional_special_tokens": roles,  # the name transformers 4 reads (5 reads it too)
    })  # fmt: skip
    atomic_write_json(folder / "special_tokens_map.json", {**special, "additional_special_tokens": roles})
    missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"the export to {folder} lacks {missing}: transformers wrote other files than expected")


def export_hf(model: GPT, tokenizer: Tokenizer, folder: str | os.PathLike) -> Path:
    """Write `model` and `tokenizer` as a Hugging Face folder for the serving engines; return the folder.

    The folder holds config.json, model.safetensors, generation_config.json, tokenizer.json,
    tokenizer_config.json (with the chat template) and special_tokens_map.json. It is written beside
    `folder`, then renamed into place: an existing export there is replaced only by a complete new one.
    A folder that exists and is not an export is refused, so nothing else is ever deleted.
    """
    check_exportable(model, tokenizer)
    folder = Path(folder)
    if folder.exists() and not _is_export_or_empty(folder):
        raise FileExistsError(
            f"{folder} exists and is not a model export (no config.json): export to a new or empty folder"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        _write_export(model, tokenizer, work)
        _replace_folder(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone already once renamed
    return folder


def _is_export_or_empty(folder: Path) -> bool:
    return folder.is_dir() and (not any(folder.iterdir()) or (folder / "config.json").is_file())


def _replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`. An existing `target` is moved aside first, put back if the rename fails, and
    deleted only once `new` is in its place (between the two renames, for an instant, there is no `target`)."""
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    try:
        os.replace(target, aside / target.name)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(aside / target.name, target)
            raise
    finally:
        if target.exists():  # the new export, or the old one put back: what is aside is no longer needed
            shutil.rmtree(aside, ignore_errors=True)
