"""Stage 9's export: the Hugging Face folder gives, through transformers and tokenizers, the same ids, the same chat
prompts, the same logits and the same greedy tokens as the course's own code; bad models are refused; the write is
atomic."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from minilm.data.documents import read_jsonl
from minilm.data.stage import run_data_stage
from minilm.finetune.chat import BOS, END, PAD, ChatFormatError, check_chat, encode_chat, render_chat
from minilm.infer import export as export_module
from minilm.infer.export import (
    BYTE_CHARS, CHAT_TEMPLATE, EXPORT_FILES, bytes_to_unicode, export_hf, hf_split_pattern, hf_tokenizer,
)  # fmt: skip
from minilm.model import GPT, GPTConfig
from minilm.model.generate import generate, left_pad
from minilm.tokenizer.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage
from minilm.tokenizer.tokenizer import Tokenizer

from tiny_chat import tiny_chat_model

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
pytestmark = pytest.mark.usefixtures("one_thread")

TRICKY = [
    "", " ", "  ", "a  b   c    d", "   leading", "trailing   ", "\n", "\n\n\n", "line\nbreak\r\nwindows\rold mac",
    " \n \n  \n", "tab\there\t\t", "1", "12", "123", "1234", "12345678901", "pi is 3.14159, e is 2.71828",
    "year 2024: 1,000,000 people", "don't I'LL we've they're she'S it'd you'M", "'s 's'", "café naïve façade",
    "日本語のテキスト", "Ελληνικά и русский", "مرحبا بالعالم", "emoji 😀👍🏽👨‍👩‍👧 🇫🇷", "١٢٣٤٥ ٦", "½ ⅓ Ⅻ ²³",
    "\u00a0non-breaking\u2003em space", "zero\u200bwidth", "x" * 300, " " * 200, "!!!???...", "a.b,c;d:e",
    "def f(x):\n    return x ** 2  # square\n", "ÿ\x00\x01\x7f", "ſ ß ẞ K",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Is the sky blue?"}, {"role": "assistant", "content": "yes"}],
    [{"role": "system", "content": "Answer yes or no."}, {"role": "user", "content": "Is this line toxic? I love it."},
     {"role": "assistant", "content": "no"}],
    [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Red."},
     {"role": "user", "content": "Another one,  please!\n"}, {"role": "assistant", "content": " Blue 12345 😀"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "what's 2+2?"},
     {"role": "assistant", "content": "4"}],
]


# ---------------------------------------------------------------------------------------------
# Fixtures: stage 2's tokenizer for the `ci` preset, a small model trained on chats, and its export


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(home))
        data = run_data_stage("ci")
        tokenizer = load_tokenizer(run_tokenizer_stage("ci", data=data))
    val = [doc.text for doc in read_jsonl(data.path / "val.jsonl")]
    return tokenizer, val


@pytest.fixture(scope="module")
def tokenizer(ci) -> Tokenizer:
    return ci[0]


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    """A tiny GPT trained 60 steps on the conversations' answers: it answers them greedily, ending with <|end|>."""
    model, loss = tiny_chat_model(tokenizer, CONVERSATIONS, lr=3e-3)
    assert loss < 0.1
    return model


@pytest.fixture(scope="module")
def exported(model, tokenizer, tmp_path_factory):
    return export_hf(model, tokenizer, tmp_path_factory.mktemp("export") / "minilm-chat")


@pytest.fixture(scope="module")
def auto_tokenizer(exported):
    return transformers.AutoTokenizer.from_pretrained(exported)


@pytest.fixture(scope="module")
def hf_model(exported):
    return transformers.AutoModelForCausalLM.from_pretrained(exported).eval()


# ---------------------------------------------------------------------------------------------
# The folder


def test_the_folder_holds_every_file_and_names_the_tokens(exported, tokenizer, model):
    assert sorted(path.name for path in exported.iterdir()) == sorted(EXPORT_FILES)
    assert not [path for path in exported.parent.iterdir() if path.name.startswith(".")]  # no work folder left
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["model_type"] == "gpt2"
    assert (config["vocab_size"], config["n_positions"]) == (tokenizer.vocab_size, model.config.context)
    assert config["n_ctx"] == model.config.context  # what llama.cpp's convert_hf_to_gguf.py reads for GPT-2
    generation = json.loads((exported / "generation_config.json").read_text())
    eot, end, pad = (tokenizer.special_id(token) for token in (BOS, END, PAD))
    assert [generation[f"{name}_token_id"] for name in ("eos", "bos", "pad")] == [[end, eot], eot, pad]
    tokenizer_config = json.loads((exported / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == CHAT_TEMPLATE
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer_config["model_max_length"] == model.config.context
    special = json.loads((exported / "special_tokens_map.json").read_text())
    assert (special["bos_token"], special["eos_token"], special["pad_token"]) == (BOS, END, PAD)


def test_transformers_loads_the_tokens_it_names(auto_tokenizer, hf_model, tokenizer):
    assert (auto_tokenizer.bos_token, auto_tokenizer.eos_token, auto_tokenizer.pad_token) == (BOS, END, PAD)
    assert auto_tokenizer.eos_token_id == tokenizer.special_id(END) == hf_model.config.eos_token_id
    assert auto_tokenizer.model_max_length == 128 and len(auto_tokenizer) == tokenizer.vocab_size
    assert hf_model.generation_config.eos_token_id == [tokenizer.special_id(END), tokenizer.special_id(BOS)]


# ---------------------------------------------------------------------------------------------
# The tokenizer: equal ids


def test_bytes_to_unicode_is_gpt2s_map():
    assert len(set(BYTE_CHARS.values())) == 256 and BYTE_CHARS == bytes_to_unicode()
    assert (BYTE_CHARS[ord(" ")], BYTE_CHARS[ord("\n")], BYTE_CHARS[ord("a")], BYTE_CHARS[0]) == ("Ġ", "Ċ", "a", "Ā")
    assert all(char.isprintable() and not char.isspace() for char in BYTE_CHARS.values())


def test_split_pattern_becomes_atomic_where_oniguruma_reads_possessive_intervals_otherwise():
    assert hf_split_pattern(GPT4_SPLIT_PATTERN) == GPT4_SPLIT_PATTERN.replace(r"\p{N}{1,3}+", r"(?>\p{N}{1,3})")
    assert hf_split_pattern(GPT2_SPLIT_PATTERN) == GPT2_SPLIT_PATTERN  # no interval: nothing to rewrite
    assert hf_split_pattern(r"[a-c]{2}+|\d{1,}+|x{3,5}") == r"(?>[a-c]{2})|(?>\d{1,})|x{3,5}"
    with pytest.raises(ValueError, match="after a group"):
        hf_split_pattern(r"(ab){1,2}+")

    def chunks(pattern):
        split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
        return [chunk for chunk, _ in split.pre_tokenize_str("12345 1234567")]

    assert chunks(hf_split_pattern(GPT4_SPLIT_PATTERN)) == ["123", "45", " ", "123", "456", "7"]  # as ours
    assert chunks(GPT4_SPLIT_PATTERN) == ["12345", " ", "1234567"]  # the pattern as is: one run of any length


def test_same_ids_on_every_validation_document_and_tricky_strings(ci, exported, auto_tokenizer):
    tokenizer, val = ci
    from_file = tokenizers.Tokenizer.from_file(str(exported / "tokenizer.json"))
    texts = val + TRICKY
    assert len(val) >= 20 and sum(map(len, val)) > 50_000
    for text in texts:
        ours = tokenizer.encode(text)
        assert from_file.encode(text).ids == ours, text[:60]
        assert auto_tokenizer.encode(text) == ours, text[:60]  # no BOS added: the chat template writes it
        assert from_file.decode(ours, skip_special_tokens=False) == tokenizer.decode(ours) == text
        assert auto_tokenizer.decode(ours) == text
    # all of them in one batch, as an engine calls it
    assert [e.ids for e in from_file.encode_batch(texts)] == tokenizer.encode_batch(texts)


def test_special_tokens_are_encoded_as_allowed_special_and_decoded_back(tokenizer, exported, auto_tokenizer):
    from_file = tokenizers.Tokenizer.from_file(str(exported / "tokenizer.json"))
    for text in ["<|endoftext|>", "a<|end|>b", "<|user|>hi<|end|><|assistant|>", "x <|pad|>\n<|system|>y", "<|end|"]:
        ours = tokenizer.encode(text, allowed_special="all")
        assert from_file.encode(text).ids == ours == auto_tokenizer.encode(text), text
        assert from_file.decode(ours, skip_special_tokens=False) == text == auto_tokenizer.decode(ours)
    turn = tokenizer.encode("<|user|>hi<|end|>", allowed_special="all")
    assert auto_tokenizer.decode(turn, skip_special_tokens=True) == "hi"
    assert {token: from_file.token_to_id(token) for token in tokenizer.special_tokens} == tokenizer.special_tokens


def test_a_tokenizer_trained_in_memory_and_the_gpt2_pattern_give_the_same_ids(ci):
    """Merges from training (not recovered from the ranks), another split pattern: the same ids still."""
    _, val = ci
    for pattern in (GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN):
        tokenizer = Tokenizer.train(val[:15], vocab_size=400, pattern=pattern)
        hf = hf_tokenizer(tokenizer)
        for text in val[15:] + TRICKY:
            assert hf.encode(text).ids == tokenizer.encode(text), (pattern[:12], text[:60])


def test_ignore_merges_changes_nothing_with_a_real_merge_table(ci):
    """tiktoken keeps a chunk that is a token whole; HF's BPE does too with ignore_merges=True (what we write). With
    a merge table made by BPE, merging that token's bytes gives it back anyway, so False gives the same ids."""
    tokenizer, val = ci
    hf = hf_tokenizer(tokenizer)
    data = json.loads(hf.to_str())
    assert data["model"]["ignore_merges"] is True and data["normalizer"] is None
    data["model"]["ignore_merges"] = False
    without = tokenizers.Tokenizer.from_str(json.dumps(data))
    rng = random.Random(0)
    alphabet = "aaabcdeeeghilmnoorsstu  \n'0123456789.,é😀"
    noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(500)]
    words = sorted({word for text in val for word in text.split()})  # many are one token, whole
    for text in val + TRICKY + noise + words:
        assert without.encode(text).ids == hf.encode(text).ids == tokenizer.encode(text), text[:60]


def test_ids_differ_from_ours_only_where_tiktokens_do(tokenizer):
    """Oniguruma's Unicode tables are tiktoken's (16.0): on the letters and digits new in Unicode 17.0 the export
    gives tiktoken's ids, not ours (the one known difference, documented in minilm.tokenizer.tokenizer); elsewhere
    all three agree. Every 97th code point and all 4,657 new ones, each followed by "'s" (which shows the class)."""
    from test_tokenizer import UNICODE_17

    hf, fast = hf_tokenizer(tokenizer), tokenizer.to_tiktoken()
    sampled = [c for c in range(0, 0x110000, 97) if not 0xD800 <= c <= 0xDFFF and c not in UNICODE_17]
    probes = [chr(c) + "'s" for c in sorted(UNICODE_17) + sampled]
    theirs = [e.ids for e in hf.encode_batch(probes)]
    assert theirs == [fast.encode_ordinary(probe) for probe in probes]
    same_as_ours = [ids == tokenizer.encode(probe) for ids, probe in zip(theirs, probes)]
    assert not any(same_as_ours[: len(UNICODE_17)]) and all(same_as_ours[len(UNICODE_17) :])


def test_merges_that_do_not_make_the_tokens_are_refused(tokenizer):
    merges = dict(tokenizer.merges)
    (left, right), last = max(merges.items(), key=lambda item: item[1])
    assert left != right
    wrong = [
        {pair: token_id for pair, token_id in merges.items() if token_id != last},  # the last token has no merge
        {**merges, (right, left): last},  # the last token has two
        {(right, left) if token_id == last else pair: token_id for pair, token_id in merges.items()},  # bytes swapped
    ]
    for bad in wrong:
        with pytest.raises(ValueError, match="merges do not make its tokens"):
            hf_tokenizer(Tokenizer(tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens, merges=bad))
    rebuilt = Tokenizer(tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens)  # the fix the message names
    assert hf_tokenizer(rebuilt).encode("a test 123").ids == tokenizer.encode("a test 123")


def test_special_tokens_with_a_gap_in_their_ids_are_refused(tokenizer):
    ranks = tokenizer.ranks
    gap = Tokenizer(ranks, tokenizer.pattern, {"<|endoftext|>": len(ranks) + 1}, merges=tokenizer.merges)
    with pytest.raises(ValueError, match="right after the merged tokens"):
        hf_tokenizer(gap)
    hf_tokenizer(Tokenizer(ranks, tokenizer.pattern, {"<|endoftext|>": len(ranks)}, merges=tokenizer.merges))


# ---------------------------------------------------------------------------------------------
# The chat template


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_gives_encode_chats_ids(messages, tokenizer, auto_tokenizer):
    for prompt in (False, True):
        conversation = messages[:-1] if prompt else messages  # ask for the last answer
        text = auto_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt)
        assert text == render_chat(conversation, add_generation_prompt=prompt)
        ids = auto_tokenizer.apply_chat_template(conversation, tokenize=True, add_generation_prompt=prompt)["input_ids"]
        assert ids == encode_chat(tokenizer, conversation, add_generation_prompt=prompt)[0]


BAD_CONVERSATIONS = [
    ([{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}], False, "unknown role"),
    ([{"role": "user", "content": "  \n"}, {"role": "assistant", "content": "x"}], False, "empty or missing content"),
    ([{"role": "user", "content": "say <|end|> now"}, {"role": "assistant", "content": "x"}], False,
     "special-token text '<|end|>'|special-token text <|end|>"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}],
     False, "only the first message"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True, "but the assistant's was expected"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], True, "but the user's was expected"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], True, "ends with a assistant turn"),
    ([{"role": "system", "content": "s"}, {"role": "user", "content": "a"}], False,
     "to train on ends with the assistant"),
]


@pytest.mark.parametrize(("messages", "prompt", "words"), BAD_CONVERSATIONS)
def test_chat_template_refuses_what_check_chat_refuses_in_its_words(messages, prompt, words, auto_tokenizer):
    with pytest.raises(ChatFormatError, match=words):
        check_chat(messages, add_generation_prompt=prompt)
    with pytest.raises(Exception, match=words):
        auto_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def test_an_empty_conversation_is_refused_by_transformers_and_by_the_template(auto_tokenizer):
    with pytest.raises(ChatFormatError, match="non-empty list"):
        check_chat([])
    with pytest.raises(ValueError, match="empty conversation"):  # transformers checks before the template runs
        auto_tokenizer.apply_chat_template([], tokenize=False)
    with pytest.raises(Exception, match="non-empty list"):  # other engines run the template on it
        auto_tokenizer.apply_chat_template([[]], tokenize=False)


def test_chat_template_accepts_just_what_it_needs(auto_tokenizer):
    """The edge of each rule from the accepted side: one user turn with a prompt, a system message first, content
    with spaces around it and text close to a special token."""
    for messages, prompt in [
        ([{"role": "user", "content": "a"}], True),
        ([{"role": "system", "content": " s "}, {"role": "user", "content": "<|end"}], True),
        ([{"role": "user", "content": "|>"}, {"role": "assistant", "content": " b\n"}], False),
    ]:
        check_chat(messages, prompt)
        text = auto_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        assert text == render_chat(messages, prompt)


# ---------------------------------------------------------------------------------------------
# The model: equal logits, equal greedy tokens


def test_logits_equal_ours(model, hf_model, tokenizer):
    ids = encode_chat(tokenizer, CONVERSATIONS[2])[0]
    x = torch.tensor([ids])
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf_model(x).logits
    assert theirs.shape == ours.shape == (1, len(ids), tokenizer.vocab_size)
    assert (theirs - ours).abs().max() < 1e-5
    assert ours.std() > 1.0  # the logits vary: the comparison is not between two flat distributions
    final_norm = hf_model.transformer.ln_f.bias
    with torch.no_grad():  # the tolerance sees a small change: one bias moved by 0.001
        final_norm[0] += 1e-3
        nudged = hf_model(x).logits
        final_norm[0] -= 1e-3
    assert (nudged - ours).abs().max() > 1e-5


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_greedy_chat_answers_equal_ours_and_stop_at_end(index, model, hf_model, auto_tokenizer, tokenizer):
    """The exported chat model answers each trained question with our tokens, and stops where ours stops."""
    messages = CONVERSATIONS[index]
    prompt = auto_tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True)["input_ids"]
    ours = generate(model, [prompt], 20, temperature=0, stop_token=tokenizer.special_id(END))[0]
    assert tokenizer.decode(ours) == messages[-1]["content"]  # not degenerate: the trained answer
    out = hf_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20)
    theirs = out[0, len(prompt) :].tolist()
    assert theirs == ours + [tokenizer.special_id(END)]  # HF keeps the end token it stopped at


def test_a_left_padded_batch_gets_the_same_answers(model, hf_model, auto_tokenizer, tokenizer):
    """Prompts of different lengths in one batch, padded on the left as engines batch them: every row gets the
    answer it gets alone, then <|end|>, then <|pad|> (generation_config's pad token) while the others finish."""
    prompts = [auto_tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True)["input_ids"]
               for messages in CONVERSATIONS]
    end, pad = tokenizer.special_id(END), tokenizer.special_id(PAD)
    assert len({len(prompt) for prompt in prompts}) > 1  # so some rows are padded
    ours = generate(model, prompts, 20, temperature=0, stop_token=end, pad_token=pad)
    idx, is_real = left_pad(prompts, pad)
    out = hf_model.generate(idx, attention_mask=is_real.long(), do_sample=False, max_new_tokens=20)
    longest = max(map(len, ours)) + 1
    assert out.shape[1] == idx.shape[1] + longest  # HF stops when every row has ended
    for row, answer in zip(out[:, idx.shape[1] :].tolist(), ours):
        assert row == answer + [end] + [pad] * (longest - len(answer) - 1)


@pytest.mark.parametrize("text", ["Once upon a time", "The", "1 2 3"])
def test_twenty_greedy_tokens_equal_ours(text, model, hf_model, tokenizer):
    """Plain text, no stop: 20 new tokens, token for token (an end token may come; then HF stops there, ours not)."""
    prompt = [tokenizer.special_id(BOS), *tokenizer.encode(text)]
    ours = generate(model, [prompt], 20, temperature=0)[0]
    theirs = hf_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20)[0, len(prompt) :].tolist()
    stops = [i for i, token in enumerate(ours) if token in hf_model.generation_config.eos_token_id]
    assert len(ours) == 20
    assert theirs == (ours[: stops[0] + 1] if stops else ours)


# ---------------------------------------------------------------------------------------------
# Refusals and atomic writes


def test_a_model_that_is_not_gpt2_shaped_is_refused_and_nothing_is_written(tokenizer, tmp_path):
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context=64, n_layer=1, n_head=2, n_embd=32)
    for change, words in [({"position": "rope"}, "position='rope'"), ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
                          ({"n_kv_head": 1}, "key/value head")]:
        with pytest.raises(ValueError, match=f"cannot be converted to GPT-2.*{words}"):
            export_hf(GPT(config.replace(**change)), tokenizer, tmp_path / "out")
    with pytest.raises(ValueError, match=f"the tokenizer {tokenizer.vocab_size}: export the model with the tokenizer"):
        export_hf(GPT(config.replace(vocab_size=tokenizer.vocab_size + 1)), tokenizer, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_export_leaves_no_folder_and_keeps_an_older_export(model, tokenizer, tmp_path, monkeypatch):
    target = tmp_path / "out"

    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "hf_tokenizer", fail)  # fails after the weights are written
    with pytest.raises(RuntimeError, match="disk full"):
        export_hf(model, tokenizer, target)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a work folder

    monkeypatch.undo()
    export_hf(model, tokenizer, target)
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    monkeypatch.setattr(export_module, "hf_tokenizer", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_hf(model, tokenizer, target)
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before  # the older export, whole
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_failed_rename_puts_the_older_export_back(model, tokenizer, tmp_path, monkeypatch):
    target = export_hf(model, tokenizer, tmp_path / "out")
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    rename, renames = export_module.os.replace, []

    def failing(source, destination):
        renames.append(Path(destination).name)
        if Path(source).parent == tmp_path and Path(source).name.endswith(".tmp"):  # the new export into place
            raise OSError("rename failed")
        rename(source, destination)

    monkeypatch.setattr(export_module.os, "replace", failing)
    with pytest.raises(OSError, match="rename failed"):
        export_hf(model, tokenizer, target)
    monkeypatch.undo()
    assert renames[-3:] == ["out", "out", "out"]  # the old one aside, the new one (failed), the old one back
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_new_export_replaces_the_old_one_whole(model, tokenizer, tmp_path):
    target = tmp_path / "out"
    export_hf(model, tokenizer, target)
    (target / "stale.txt").write_text("from an older export")
    assert export_hf(model, tokenizer, target) == target
    assert sorted(path.name for path in target.iterdir()) == sorted(EXPORT_FILES)
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
    (tmp_path / "empty").mkdir()
    export_hf(model, tokenizer, tmp_path / "empty")  # an empty folder is fine too


def test_a_folder_that_is_not_an_export_is_never_replaced(model, tokenizer, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a model export"):
        export_hf(model, tokenizer, tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "do not delete"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a model export"):
        export_hf(model, tokenizer, tmp_path / "file")
