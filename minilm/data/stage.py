"""Stage 1 end to end: gather the sources, prepare them step by step, split, and write.

    gather:  web (crawl the local site) + books (stories, in English and fewer in Spanish) + docs (pydoc)
             + code (stdlib), then plant the defects the filters will be scored on
    prepare: clean -> language -> quality -> toxicity -> pii -> exact dedup -> near dedup -> counterfactual
    score:   every step against the planted truth, and every language label against the generator's
    split:   train / validation by a hash of each document's id, then on train the languages (temperature
             sampling) and the domain mixture
    write:   train.jsonl, val.jsonl and stats.json in data/runs/<preset>/data/

Each part lives in its folder: the sources in `sources/`, the planted defects and the scoring in
`truth/`, the preparation steps in `filters/`. `run_data_stage` is what the command line, the
speedrun and the notebook call; it returns the cached result when config and code are unchanged.
The stage's figures and its section of the speedrun report are in `report.py`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from minilm.cache import Artifact, cached_stage
from minilm.data.documents import DOMAINS, Document, StepResult, write_jsonl
from minilm.data.filters import balance, bias, clean, dedup, language, pii, quality, toxicity
from minilm.data.sources import code, crawl, extract, techdocs
from minilm.data.sources.site import content, pages, server
from minilm.data.sources.stories import books, writer
from minilm.data.truth import defects
from minilm.data.truth.scoring import score_pipeline
from minilm.files import atomic_write_json
from minilm.presets import config_for, preset_name
from minilm.world import NAME_SWAPS

# The stage's code, for its fingerprint: every module of minilm/data/ and the world, but not report.py (it describes
# a built stage) nor real/ (the rules measured on real text, beside the pipeline: they change nothing the stage makes).
_HERE = Path(__file__).parent
CODE = [*sorted(path for path in _HERE.rglob("*.py") if path != _HERE / "report.py" and not path.is_relative_to(_HERE / "real")),
        _HERE.parent / "world.py"]


@dataclass
class DataConfig:
    """Everything stage 1 depends on. Sizes come from the preset; the rest are the published or measured defaults."""

    seed: int = 1337
    # sources
    n_stories: int = 12_000
    book_share: float = 0.5  # share of stories wrapped as e-books, with front matter and licence to strip
    questions_share: float = 0.5  # share of stories printed as graded readers, with reading questions after them
    questions_per_story: int = 3  # each with its answer, drawn from the story's facts
    bias: float = 0.8  # job-gender skew of the stories: 0 none, 1 always the stereotype
    spanish_share: float = 0.1  # Spanish stories, as a share of the English ones: a second language is always smaller
    spanish_seed: int = 7_001  # their own stream (world.STORY_SPLITS["pretrain_es"]): no story is told in both
    n_web_pages: int = 400
    n_doc_topics: int = 300
    n_code_files: int = 300
    defect_rate: float = 0.08
    crawl_seconds: float = 120.0
    # preparation
    near_dup_threshold: float = 0.55
    num_perm: int = 128
    shingle_words: int = 5
    debias: str = "substitute"  # "substitute", "augment" or "none"
    language_confidence: float = 0.9  # a language label below this posterior is "unknown" (and kept)
    language_temperature: float | None = 1.5  # languages sampled by size^(1/T) (our choice); None keeps them as found
    # output
    val_fraction: float = 0.05
    mixture: dict[str, float] = field(default_factory=lambda: {"books": 0.7, "web": 0.1, "docs": 0.1, "code": 0.1})
    mixture_temperature: float | None = None  # when set, temperature sampling replaces `mixture`

    def __post_init__(self):
        counts = {"n_stories": self.n_stories, "n_web_pages": self.n_web_pages, "n_doc_topics": self.n_doc_topics,
                  "n_code_files": self.n_code_files}
        if any(n < 0 for n in counts.values()):
            raise ValueError(f"source sizes must be >= 0, got {counts}")
        for name in ("book_share", "questions_share", "bias", "spanish_share", "defect_rate", "near_dup_threshold",
                     "language_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not isinstance(self.questions_per_story, int) or self.questions_per_story < 1:
            raise ValueError(f"questions_per_story must be a positive integer, got {self.questions_per_story!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be between 0 and 0.5, got {self.val_fraction}")
        if self.debias not in ("substitute", "augment", "none"):
            raise ValueError(f"debias must be 'substitute', 'augment' or 'none', got {self.debias!r}")
        if self.language_temperature is not None and not self.language_temperature > 0:
            raise ValueError(f"language_temperature must be > 0 (1 keeps the natural shares) or None, "
                             f"got {self.language_temperature}")
        if unknown := set(self.mixture) - set(DOMAINS):
            raise ValueError(f"mixture names unknown domain(s) {sorted(unknown)}; the domains are {DOMAINS}")

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "DataConfig":
        return config_for(cls, "data", preset, **overrides)


# --- gather -------------------------------------------------------------------------------------------


@dataclass
class Gathered:
    """The raw corpus, with what each source skipped and how the crawl went."""

    docs: list[Document]
    skipped: dict[str, Counter]
    crawl: dict
    seconds: dict[str, float]


def gather_web(config: DataConfig) -> tuple[list[Document], dict]:
    """Serve the generated website on 127.0.0.1, crawl it politely, and extract each page's main text."""
    the_site = pages.build_site(config.n_web_pages, config.seed)
    with server.serve(the_site) as base_url:
        result = crawl.crawl(crawl.CrawlConfig(
            start_urls=[base_url + "/"], max_pages=config.n_web_pages, delay=0.0, timeout=1.0,
            max_seconds=config.crawl_seconds,
        ))
    return extract.pages_to_documents(result, the_site), result.summary()


def gather_books(config: DataConfig) -> list[Document]:
    """Generate stories; give a share reading questions, and wrap a share as e-books whose front matter and licence must be stripped."""
    rng, questions_rng = random.Random(config.seed), random.Random(config.seed + 1)
    docs = []
    for doc in writer.iter_stories(config.n_stories, config.seed, config.bias):
        if questions_rng.random() < config.questions_share:
            doc = books.with_questions(doc, questions_rng, config.questions_per_story)
        docs.append(books.as_book(doc, rng) if rng.random() < config.book_share else doc)
    return docs


def gather_spanish_stories(config: DataConfig) -> list[Document]:
    """Stories told in Spanish, from their own stream: `spanish_share` times as many as the English ones.

    Each has its language in labels["language"] (the truth the language step is scored on). They are
    plain stories: no questions after them and no e-book wrapping, whose words are English.
    """
    n = round(config.n_stories * config.spanish_share)
    return [Document(id=f"books-es-{i:06d}", domain="books", text=doc.labels["spanish"],
                     source=f"stories-es:seed={config.spanish_seed}", labels={"language": "es", "facts": doc.labels["facts"]})
            for i, doc in enumerate(writer.iter_stories(n, config.spanish_seed, config.bias, spanish=True))]


def gather(config: DataConfig, progress: bool = True) -> Gathered:
    """All four sources, then the planted defects."""
    seconds: dict[str, float] = {}
    skipped = {"docs": Counter(), "code": Counter()}
    bar = tqdm(total=5, desc="gather", unit="source", disable=not progress)

    def timed(name, make):
        bar.set_postfix_str(name, refresh=False)
        start = time.perf_counter()
        out = make()
        seconds[name] = round(time.perf_counter() - start, 3)
        bar.update()
        return out

    web_docs, crawl_summary = timed("web", lambda: gather_web(config)) if config.n_web_pages else ([], {})
    books = timed("books", lambda: gather_books(config) + gather_spanish_stories(config))
    docs = timed("docs", lambda: list(techdocs.iter_tech_docs(config.n_doc_topics, config.seed, skipped=skipped["docs"])))
    code_docs = timed("code", lambda: list(code.iter_code_files(config.n_code_files, config.seed, skipped=skipped["code"])))
    sources = web_docs + books + docs + code_docs
    if not sources:
        raise ValueError("no documents were gathered: every source size in the DataConfig is 0 (or every source was skipped)")
    planted = timed("plant_defects", lambda: defects.plant_defects(sources, config.seed, config.defect_rate))
    bar.close()
    return Gathered(planted, skipped, crawl_summary, seconds)


# --- prepare ------------------------------------------------------------------------------------------

def prepare(docs: list[Document], config: DataConfig, seconds: dict[str, float] | None = None,
            progress: bool = True) -> list[StepResult]:
    """Run every preparation step in order, each on what the previous one kept."""
    identifier = language.train_identifier(language_samples(config.seed + 2, 30))
    steps = [
        lambda d: clean.clean(d),
        lambda d: language.language_filter(d, identifier, min_confidence=config.language_confidence),
        lambda d: quality.quality_filter(d),
        lambda d: toxicity.toxicity_filter(d),
        lambda d: pii.pii_filter(d),
        lambda d: dedup.exact_dedup(d),
        lambda d: dedup.near_dedup(d, threshold=config.near_dup_threshold, num_perm=config.num_perm,
                                   ngram=config.shingle_words, seed=config.seed),
        lambda d: debias(d, config),
    ]
    results = []
    for step in tqdm(steps, desc="prepare", unit="step", disable=not progress):
        start = time.perf_counter()
        result = step(docs)
        if seconds is not None:
            seconds[result.name] = round(time.perf_counter() - start, 3)
        results.append(result)
        docs = result.kept
    return results


def language_samples(seed: int, n: int) -> dict[str, list[str]]:
    """Texts of known language to train the identifier on, written by the generators from `seed`.

    Per round: an English page of the town's paper, its French, German and Spanish pages, and a story
    in English; every third round the story in Spanish too. A real pipeline trains on a labelled corpus
    instead (fastText's lid.176 on Wikipedia, Tatoeba and SETimes); ours is small because the world is.
    """
    rng = random.Random(seed)
    texts: dict[str, list[str]] = {}
    for i in range(n):
        english_page = [content.write_news, content.write_blog, content.write_recipe, content.write_review][i % 4](rng)
        texts.setdefault("en", []).append("\n".join(content.block_lines(english_page.blocks)))
        for lang in ("fr", "de", "es"):
            texts.setdefault(lang, []).append("\n".join(content.block_lines(content.write_foreign(rng, lang).blocks)))
        en_story, es_story, _ = writer.generate_parallel_story(rng)
        texts["en"].append(en_story)
        if i % 3 == 0:
            texts["es"].append(es_story)
    return texts


def debias(docs: list[Document], config: DataConfig) -> StepResult:
    """Counterfactual balance of the job-gender association in the English prose.

    Only English: swapping "he" and "she" is not enough in Spanish, where the articles, the job and
    the adjectives agree with the person ("el panadero", "la panadera"), and the course's swap knows
    English words only. The Spanish stories keep their skew, and the notebook says so.
    """
    def english_prose(doc: Document) -> bool:
        return doc.domain in ("web", "books") and doc.labels.get("identified") != "es"

    prose = [d for d in docs if english_prose(d)]
    others = [d for d in docs if not english_prose(d)]
    result = balance.counterfactual_balance(prose, bias.job_gender, NAME_SWAPS, config.seed, config.debias)
    return StepResult(result.name, result.kept + others, result.removed, result.edits)


# --- split and mix ------------------------------------------------------------------------------------


def is_validation(doc_id: str, fraction: float) -> bool:
    """A stable split: the same document lands on the same side whatever else is in the corpus."""
    base = doc_id.split("#")[0]
    bucket = int.from_bytes(hashlib.blake2b(base.encode(), digest_size=8).digest(), "big") % 10_000
    return bucket < fraction * 10_000


def split_and_mix(docs: list[Document], config: DataConfig) -> tuple[list[Document], list[Document], StepResult,
                                                                     StepResult]:
    """Validation keeps the natural mixture (it measures); train gets the chosen mixture (it teaches):
    first the languages (temperature sampling), then the domains."""
    val = [d for d in docs if is_validation(d.id, config.val_fraction)]
    train = [d for d in docs if not is_validation(d.id, config.val_fraction)]
    if config.language_temperature is not None:
        languages = language.mix_languages(train, config.language_temperature, config.seed)
    else:
        languages = StepResult("languages", list(train))
    train = languages.kept
    if config.mixture_temperature is not None:
        weights = balance.temperature_weights(balance.domain_bytes(train), config.mixture_temperature)
    else:
        weights = config.mixture
    mixed = balance.mix_domains(train, weights, config.seed)
    return mixed.kept, val, languages, mixed


# --- the stage ----------------------------------------------------------------------------------------


def build(config: DataConfig, folder: Path) -> dict:
    """Gather, prepare, split, write; returns the summary that goes into the manifest."""
    started = time.perf_counter()
    gathered = gather(config)
    seconds = dict(gathered.seconds)
    steps = prepare(gathered.docs, config, seconds)
    prepared = steps[-1].kept
    train, val, languages, mixture = split_and_mix(prepared, config)
    scores = [s.row() for s in score_pipeline(gathered.docs, steps)]
    audit_before = bias.bias_audit([d for d in gathered.docs if d.domain == "books" and is_english(d)])
    audit_after = bias.bias_audit([d for d in prepared if d.domain == "books" and is_english(d)])

    n_train = write_jsonl(folder / "train.jsonl", train)
    n_val = write_jsonl(folder / "val.jsonl", val)
    stats = {
        "steps": [s.summary() for s in steps] + [languages.summary(), mixture.summary()],
        "scores": scores,
        "languages": language_stats(gathered.docs, _step(steps, "language"), prepared, languages, train, val, config),
        "skipped": {k: dict(v) for k, v in gathered.skipped.items()},
        "crawl": gathered.crawl,
        "bytes": {
            "gathered": balance.domain_bytes(gathered.docs),
            "prepared": balance.domain_bytes(prepared),
            "train": balance.domain_bytes(train),
            "val": balance.domain_bytes(val),
        },
        "bias": {"before": audit_before.to_rows(), "after": audit_after.to_rows(),
                 "skew_before": audit_before.skew_stereotyped, "skew_after": audit_after.skew_stereotyped},
        "seconds": seconds,
    }
    atomic_write_json(folder / "stats.json", stats)
    return {
        "documents": {"gathered": len(gathered.docs), "train": n_train, "val": n_val},
        "train_bytes": sum(stats["bytes"]["train"].values()),
        "val_bytes": sum(stats["bytes"]["val"].values()),
        "train_shares": _shares(stats["bytes"]["train"]),
        "language_shares": stats["languages"]["train_shares"],
        "language_accuracy": round(stats["languages"]["identification"]["accuracy"], 4),
        "min_precision": min(s["precision"] for s in scores),
        "min_recall": min(s["recall"] for s in scores),
        "bias_skew": {"before": round(audit_before.skew_stereotyped, 3), "after": round(audit_after.skew_stereotyped, 3)},
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_data_stage(preset: str | None = None, force: bool = False, config: DataConfig | None = None) -> Artifact:
    """Stage 1, cached: returns the run folder with train.jsonl, val.jsonl and stats.json."""
    preset = preset_name(preset)
    config = config or DataConfig.from_preset(preset)
    from minilm.data.report import produced

    return cached_stage("data", config, lambda folder: build(config, folder), preset=preset, code=CODE, force=force,
                        produced=produced)


def load_stats(artifact: Artifact) -> dict:
    """The stage's stats.json: every step's counts, the scores, skips, bytes, bias tables and timings."""
    return json.loads((artifact.path / "stats.json").read_text(encoding="utf-8"))


def is_english(doc: Document) -> bool:
    """English by the generator's truth (labels["language"]; the English sources do not set it)."""
    return doc.labels.get("language", "en") == "en"


def language_stats(gathered: list[Document], step: StepResult, prepared: list[Document], languages: StepResult,
                   train: list[Document], val: list[Document], config: DataConfig) -> dict:
    """The language step scored against the generator's truth, and the bytes of each language along the way.

    Scored on the generated prose (web pages and stories), whose language is known; the real technical
    documents are English, but not ours to label, and code is not judged. "repeats" is how many times the
    language balance reads each language's training data (before the domain mixture, which repeats books).
    """
    labelled = step.kept + [removal.doc for removal in step.removed]
    generated = [d for d in labelled if d.domain in ("web", "books")]
    truth = [d.labels.get("language", "en") for d in generated]
    predicted = [d.labels["identified"] for d in generated]
    prepared_bytes = language.language_bytes(prepared)
    train_bytes = language.language_bytes(train)
    trained = {lang: n for lang, n in train_bytes.items() if lang != language.UNKNOWN}
    found = {lang: n for lang, n in prepared_bytes.items() if lang in trained}
    prepared_train = language.language_bytes([d for d in prepared if not is_validation(d.id, config.val_fraction)])
    balanced = language.language_bytes(languages.kept)
    return {
        "identification": language.identification_scores(predicted, truth),
        "removed": dict(step.removed_by_reason()),
        "gathered_truth": dict(Counter(d.labels.get("language", "en") for d in gathered if d.domain in ("web", "books"))),
        "bytes": {"prepared": prepared_bytes, "train": train_bytes, "val": language.language_bytes(val)},
        "temperature": config.language_temperature,
        "natural_shares": _fractions(found),
        "train_shares": _fractions(trained),
        "repeats": {lang: round(balanced[lang] / prepared_train[lang], 3) for lang in trained},
    }


def _fractions(sizes: dict[str, int]) -> dict[str, float]:
    total = sum(sizes.values()) or 1
    return {key: round(value / total, 4) for key, value in sorted(sizes.items())}


def _step(steps: list[StepResult], name: str) -> StepResult:
    return next(step for step in steps if step.name == name)


def _shares(sizes: dict[str, int]) -> dict[str, float]:
    total = sum(sizes.values()) or 1
    return {domain: round(sizes.get(domain, 0) / total, 3) for domain in DOMAINS}


# --- describing -----------------------------------------------------------------------------------------
