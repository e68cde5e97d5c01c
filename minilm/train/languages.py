"""Two languages in one model: what the language mixture's temperature trades.

A corpus that is nine tenths English and one tenth Spanish, read as it is (temperature T = 1), gives
the model little Spanish to learn from. Sampling each language in proportion to size^(1/T)
(`minilm.data.filters.language.temperature_shares`) with a high T gives Spanish a larger share: the
model gets better at Spanish, and, with the same number of tokens and parameters, a little worse at
English, which now gets fewer of them. mT5 and XLM-R chose T = 1/0.3 for a hundred languages.

    resample_by_language   a list of documents resampled to the shares of a temperature
    language_loss          a model's mean loss on some documents: nats per token and bits per byte
    language_tradeoff      two small models, the same size and the same tokens, trained on two mixtures
                           (T = 1 and a high T) and evaluated on the validation documents of each language

A document's language is the one stage 1 identified (`labels["identified"]`); a document without the
label counts as English (stage 1 wrote only English before it identified languages). Documents
labelled "unknown" are no language to balance: they are kept once, outside the shares.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from minilm.data.documents import Document
from minilm.data.filters.language import UNKNOWN, mix_languages
from minilm.model.gpt import GPT
from minilm.tokenizer.shards import EOT, TokenShards, write_shards
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.loop import TrainConfig, train
from minilm.train.objectives import token_losses


def language_of(doc: Document) -> str:
    """The language stage 1 identified for `doc`; English when it has no label."""
    return doc.labels.get("identified", "en")


def text_bytes(docs: list[Document]) -> int:
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


def by_language(docs: list[Document]) -> dict[str, list[Document]]:
    """The documents of each identified language, in their order (languages sorted, "unknown" included)."""
    groups: dict[str, list[Document]] = defaultdict(list)
    for doc in docs:
        groups[language_of(doc)].append(doc)
    return dict(sorted(groups.items()))


# --- the mixture ----------------------------------------------------------------------------------


def resample_by_language(docs: list[Document], temperature: float, max_repeats: int = 8,
                         seed: int = 0) -> list[Document]:
    """`docs` resampled so that each language's share of the bytes is `temperature_shares` of their sizes, by
    stage 1's rule (`minilm.data.filters.language.mix_languages`): the largest language is read once, the others
    as many times as their share asks (at most `max_repeats`; the last pass is partial, so the shares are hit to
    within one document), repeats get ids "<id>#l<k>", and "unknown" documents are kept once. In a seeded order.
    """
    labelled = [doc if "identified" in doc.labels else doc.replace(labels={**doc.labels, "identified": "en"})
                for doc in docs]
    if not any(language_of(doc) != UNKNOWN for doc in labelled):
        raise ValueError("no document has a language to balance: pass documents labelled 'en', 'es', ...")
    mixed = mix_languages(labelled, temperature, seed, max_repeats).kept
    random.Random(seed).shuffle(mixed)
    return mixed


def language_shares(docs: list[Document]) -> dict[str, float]:
    """Each language's share of the bytes of `docs` ("unknown" counted as a language here)."""
    sizes = {language: text_bytes(group) for language, group in by_language(docs).items()}
    total = sum(sizes.values())
    if not total:
        raise ValueError("the documents hold no text: pass at least one non-empty document")
    return {language: size / total for language, size in sizes.items()}


# --- the loss per language ------------------------------------------------------------------------


def token_stream(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """The texts as one stream of ids, each preceded by <|endoftext|>, as token shards lay them out."""
    encoder, eot = tokenizer.to_tiktoken(), tokenizer.special_id(EOT)
    ids: list[int] = []
    for encoded in encoder.encode_ordinary_batch(texts, num_threads=1):
        ids.append(eot)
        ids += encoded
    return np.array(ids, dtype=np.int64)


@torch.no_grad()
def language_loss(model: GPT, tokenizer: Tokenizer, texts: list[str], batch_size: int = 16,
                  max_tokens: int | None = None) -> dict:
    """The mean loss of `model` on `texts`: nats per predicted token, and bits per byte of text.

    The texts are read as the validation shards are (one stream, documents after <|endoftext|>), in
    consecutive windows of the model's context: every token after the first is predicted once, from
    the tokens before it in its window. Bits per byte leaves out the <|endoftext|> targets (no bytes),
    as `minilm.train.evaluate` does; unlike the loss it does not depend on the tokenizer. `max_tokens`
    reads only the stream's first tokens (None: all).
    """
    if not texts:
        raise ValueError("no texts to evaluate: pass at least one document of the language")
    stream = token_stream(tokenizer, texts)[: None if max_tokens is None else max_tokens + 1]
    if len(stream) < 2:
        raise ValueError("the texts are too short to predict a token: pass longer documents or a larger max_tokens")
    context, device = model.config.context, str(next(model.parameters()).device)
    nbytes = torch.from_numpy(tokenizer.token_bytes().astype(np.int64))
    starts = list(range(0, len(stream) - 1, context))
    full = [s for s in starts if s + context + 1 <= len(stream)]
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    batches += [[s] for s in starts[len(full):]]  # the last, shorter window on its own
    loss_sum = text_loss = 0.0
    predictions = n_bytes = 0
    was_training = model.training
    model.eval()
    for batch in batches:
        windows = torch.from_numpy(np.stack([stream[s:min(s + context + 1, len(stream))] for s in batch]))
        inputs, targets = windows[:, :-1].to(device), windows[:, 1:].to(device)
        losses = token_losses(model(inputs)[0], targets).double().cpu()
        target_bytes = nbytes[targets.cpu()]
        loss_sum += float(losses.sum())
        predictions += targets.numel()
        text_loss += float(losses[target_bytes > 0].sum())
        n_bytes += int(target_bytes.sum())
    model.train(was_training)
    return {"loss": loss_sum / predictions, "bits_per_byte": text_loss / (math.log(2) * n_bytes) if n_bytes else None,
            "tokens": predictions, "bytes": n_bytes}


# --- the trade-off --------------------------------------------------------------------------------


def small_config(**overrides) -> TrainConfig:
    """The models of the trade-off: notebook 04's small studies' size (2 layers x 64 wide, rotary positions),
    trained quietly on the CPU (no samples, no evaluation along the way, one checkpoint at the end)."""
    settings = dict(n_layer=2, n_head=4, n_embd=64, context=64, batch_size=16, position="rope", max_steps=300,
                    warmup_steps=30, lr=3e-3, min_lr=3e-4, log_every=50, eval_every=10**9, sample_every=10**9,
                    checkpoint_every=10**9, final_samples=0, eval_tokens=4096, precision="fp32", device="cpu")
    return TrainConfig(**{**settings, **overrides})


def train_on_texts(texts: list[str], tokenizer: Tokenizer, config: TrainConfig,
                   val_texts: list[str] | None = None) -> GPT:
    """A new model trained by the package's `train` on `texts` (in their order), encoded into token shards in a
    temporary folder. `val_texts` are the loop's own validation split, read once at the end (None: the first
    texts); the trade-off measures its models with `language_loss` instead.
    """
    model = GPT(config.model_config(tokenizer.vocab_size), seed=config.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tokenizer.save(folder / "tokenizer")
        for split, split_texts in (("train", texts), ("val", val_texts or texts[:50])):
            write_shards(split_texts, folder / "tokenizer", folder / "shards", split, workers=0, progress=False)
        train(config, TokenShards(folder / "shards", "train"), TokenShards(folder / "shards", "val"), tokenizer,
              folder / "run", model=model, resume=False, progress=False)
    return model.eval()


def language_tradeoff(train_docs: list[Document], val_docs: list[Document], tokenizer: Tokenizer,
                      temperatures: tuple[float, ...] = (1.0, 5.0), config: TrainConfig | None = None,
                      max_repeats: int = 8, max_train_bytes: int | None = 3_000_000,
                      max_eval_tokens: int | None = 20_000, seed: int = 0) -> list[dict]:
    """Train one small model per temperature (same size, same steps, same tokens) and measure each language.

    The training documents are first cut to a seeded random `max_train_bytes` of text (the models read far
    less than the corpus; None: all of it), then resampled by `resample_by_language` at each temperature and
    trained on by `train_on_texts` (`config`, default `small_config()`). Each model is evaluated by
    `language_loss` on the validation documents of "en" and "es" (the first `max_eval_tokens` of each).
    Returns one row per temperature: mixture, T, the share of Spanish in the training bytes, how many times
    the Spanish data is read, and the loss of each language in nats per token and in bits per byte.
    """
    config = config or small_config()
    if config.objective != "causal":
        raise ValueError("language_tradeoff measures next-token loss: use a causal config (objective='causal')")
    val = by_language(val_docs)
    missing = [language for language in ("en", "es") if not val.get(language)]
    if missing:
        raise ValueError(f"the validation documents have no {missing} documents: pass documents of both "
                         f"languages (labels['identified'] = 'en' / 'es')")
    pool = [doc for doc in train_docs if "#" not in doc.id]  # each document once: stage 1's repeats are a mixture
    if max_train_bytes is not None and text_bytes(pool) > max_train_bytes:
        random.Random(seed).shuffle(pool)
        cut, taken = 0, 0
        while cut < len(pool) and taken < max_train_bytes:
            taken += len(pool[cut].text.encode("utf-8"))
            cut += 1
        pool = pool[:cut]
    if "es" not in by_language(pool):
        raise ValueError("the training documents have no Spanish ('es') document: there is no mixture to vary")
    natural_es = text_bytes(by_language(pool)["es"])
    loop_val = [doc.text for language in ("en", "es") for doc in val[language][:20]]  # the loop's own, read once
    rows = []
    for temperature in temperatures:
        mixed = resample_by_language(pool, temperature, max_repeats, seed)
        model = train_on_texts([doc.text for doc in mixed], tokenizer, config, loop_val)
        losses = {language: language_loss(model, tokenizer, [doc.text for doc in val[language]], config.batch_size,
                                          max_eval_tokens) for language in ("en", "es")}
        spanish = text_bytes([doc for doc in mixed if language_of(doc) == "es"])
        rows.append({"mixture": "natural" if temperature == 1 else f"tempered (T = {temperature:g})",
                     "T": temperature, "share of Spanish": spanish / text_bytes(mixed),
                     "Spanish read (times)": spanish / natural_es,
                     "val loss en": losses["en"]["loss"], "val loss es": losses["es"]["loss"],
                     "bits/byte en": losses["en"]["bits_per_byte"], "bits/byte es": losses["es"]["bits_per_byte"]})
    return rows
