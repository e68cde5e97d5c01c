"""Stage 1 end to end: gather the sources, prepare them step by step, split, and write.

    gather:  web (crawl the local site) + books (stories) + docs (pydoc) + code (stdlib),
             then plant the defects the filters will be scored on
    prepare: clean -> quality -> toxicity -> pii -> exact dedup -> near dedup -> counterfactual
    score:   every step against the planted truth
    split:   train / validation by a hash of each document's id, then the domain mixture on train
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
from minilm.data.filters import balance, bias, clean, dedup, pii, quality, toxicity
from minilm.data.sources import code, crawl, extract, techdocs
from minilm.data.sources.site import pages, server
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
    # output
    val_fraction: float = 0.05
    mixture: dict[str, float] = field(default_factory=lambda: {"books": 0.7, "web": 0.1, "docs": 0.1, "code": 0.1})
    mixture_temperature: float | None = None  # when set, temperature sampling replaces `mixture`

    def __post_init__(self):
        counts = {"n_stories": self.n_stories, "n_web_pages": self.n_web_pages, "n_doc_topics": self.n_doc_topics,
                  "n_code_files": self.n_code_files}
        if any(n < 0 for n in counts.values()):
            raise ValueError(f"source sizes must be >= 0, got {counts}")
        for name in ("book_share", "questions_share", "bias", "defect_rate", "near_dup_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not isinstance(self.questions_per_story, int) or self.questions_per_story < 1:
            raise ValueError(f"questions_per_story must be a positive integer, got {self.questions_per_story!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be between 0 and 0.5, got {self.val_fraction}")
        if self.debias not in ("substitute", "augment", "none"):
            raise ValueError(f"debias must be 'substitute', 'augment' or 'none', got {self.debias!r}")
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
    books = timed("books", lambda: gather_books(config))
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
    steps = [
        lambda d: clean.clean(d),
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


def debias(docs: list[Document], config: DataConfig) -> StepResult:
    """Counterfactual balance of the job-gender association in the prose domains."""
    prose = [d for d in docs if d.domain in ("web", "books")]
    others = [d for d in docs if d.domain not in ("web", "books")]
    result = balance.counterfactual_balance(prose, bias.job_gender, NAME_SWAPS, config.seed, config.debias)
    return StepResult(result.name, result.kept + others, result.removed, result.edits)


# --- split and mix ------------------------------------------------------------------------------------


def is_validation(doc_id: str, fraction: float) -> bool:
    """A stable split: the same document lands on the same side whatever else is in the corpus."""
    base = doc_id.split("#")[0]
    bucket = int.from_bytes(hashlib.blake2b(base.encode(), digest_size=8).digest(), "big") % 10_000
    return bucket < fraction * 10_000


def split_and_mix(docs: list[Document], config: DataConfig) -> tuple[list[Document], list[Document], StepResult]:
    """Validation keeps the natural mixture (it measures); train gets the chosen mixture (it teaches)."""
    val = [d for d in docs if is_validation(d.id, config.val_fraction)]
    train = [d for d in docs if not is_validation(d.id, config.val_fraction)]
    if config.mixture_temperature is not None:
        weights = balance.temperature_weights(balance.domain_bytes(train), config.mixture_temperature)
    else:
        weights = config.mixture
    mixed = balance.mix_domains(train, weights, config.seed)
    return mixed.kept, val, mixed


# --- the stage ----------------------------------------------------------------------------------------


def build(config: DataConfig, folder: Path) -> dict:
    """Gather, prepare, split, write; returns the summary that goes into the manifest."""
    started = time.perf_counter()
    gathered = gather(config)
    seconds = dict(gathered.seconds)
    steps = prepare(gathered.docs, config, seconds)
    prepared = steps[-1].kept
    train, val, mixture = split_and_mix(prepared, config)
    scores = [s.row() for s in score_pipeline(gathered.docs, steps)]
    audit_before = bias.bias_audit([d for d in gathered.docs if d.domain == "books"])
    audit_after = bias.bias_audit([d for d in prepared if d.domain == "books"])

    n_train = write_jsonl(folder / "train.jsonl", train)
    n_val = write_jsonl(folder / "val.jsonl", val)
    stats = {
        "steps": [s.summary() for s in steps] + [mixture.summary()],
        "scores": scores,
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


def _shares(sizes: dict[str, int]) -> dict[str, float]:
    total = sum(sizes.values()) or 1
    return {domain: round(sizes.get(domain, 0) / total, 3) for domain in DOMAINS}


# --- describing -----------------------------------------------------------------------------------------
