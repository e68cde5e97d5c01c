"""Stage 1 end to end: the cached stage, its outputs, its scores, the speedrun and the command line."""

import json
import subprocess
import sys

import pytest

from minilm.data import stage
from minilm.data.documents import Document, read_jsonl
from minilm.data.filters import balance
from minilm.data.report import SHARED_MARK, filter_rows, report_section
from minilm.data.truth.scoring import Score, score_pipeline


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def ci_stage(home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILM_HOME", str(home))
        return stage.run_data_stage("ci")


def test_stage_writes_splits_stats_and_manifest(ci_stage, home):
    folder = home / "runs" / "ci" / "data"
    assert ci_stage.path == folder
    assert sorted(ci_stage.manifest["files"]) == ["stats.json", "train.jsonl", "val.jsonl"]
    train = list(read_jsonl(folder / "train.jsonl"))
    val = list(read_jsonl(folder / "val.jsonl"))
    assert len(train) == ci_stage.summary["documents"]["train"] > 200
    assert len(val) == ci_stage.summary["documents"]["val"] > 5
    assert {d.domain for d in train} == {"web", "books", "docs", "code"}
    # no validation document (or its repeat) leaks into train
    assert not {d.id.split("#")[0] for d in train} & {d.id for d in val}
    # what the filters promise holds in the output
    text = "\n".join(d.text for d in train + val)
    assert "\x00" not in text and "â€™" not in text
    for doc in train + val:
        for item in doc.labels.get("pii", []):
            assert item["text"] not in doc.text
        for line in doc.labels.get("toxic_lines", []):
            assert line not in doc.text.splitlines()
    stats = json.loads((folder / "stats.json").read_text())
    assert [s["step"] for s in stats["steps"]] == [
        "clean", "language", "quality", "toxicity", "pii", "exact_dedup", "near_dedup", "counterfactual", "languages",
        "mixture"]


def test_reading_questions_survive_the_filters(ci_stage, home):
    books = [d for d in read_jsonl(home / "runs" / "ci" / "data" / "train.jsonl") if d.domain == "books"]
    with_questions = [d for d in books if "\nQuestion: " in d.text]
    # about questions_share (0.5) of the stories carry them, and the cleaner does not cut them as boilerplate
    assert 0.3 < len(with_questions) / len(books) < 0.7
    for doc in with_questions:
        asked = [line for line in doc.text.splitlines() if line.startswith("Question: ")]
        assert 1 <= len(asked) <= 3 and all(" Answer: " in line for line in asked)


def test_train_follows_the_mixture(ci_stage):
    shares = ci_stage.summary["train_shares"]
    for domain, weight in stage.DataConfig().mixture.items():
        assert shares[domain] == pytest.approx(weight, abs=0.03)


def test_counterfactual_balance_removes_the_planted_skew(ci_stage):
    skew = ci_stage.summary["bias_skew"]
    assert skew["before"] > 0.25  # the generator's bias knob (0.8) is visible to the audit
    assert skew["after"] < 0.1


def test_second_call_is_cached_and_config_change_rebuilds(ci_stage, home, monkeypatch):
    monkeypatch.setenv("MINILM_HOME", str(home))
    again = stage.run_data_stage("ci")
    assert again.key == ci_stage.key and again.manifest["created"] == ci_stage.manifest["created"]
    config = stage.DataConfig.from_preset("ci", n_stories=100, n_web_pages=50, n_doc_topics=10, n_code_files=10)
    other = stage.run_data_stage("ci", config=config)
    assert other.key != ci_stage.key and other.summary["documents"]["gathered"] < ci_stage.summary["documents"]["gathered"]


def test_every_filter_reaches_the_goal_on_the_cpu_corpus():
    """The issue's bar: precision and recall >= 0.95 for each defect kind on the cpu preset corpus."""
    config = stage.DataConfig.from_preset("cpu")
    gathered = stage.gather(config)
    steps = stage.prepare(gathered.docs, config)
    scores = {s.defect: s for s in score_pipeline(gathered.docs, steps)}
    assert set(scores) == {"boilerplate", "noise", "low_quality", "foreign", "generated_code", "toxic", "pii",
                           "exact_dup", "near_dup"}
    for defect, score in scores.items():
        assert score.planted >= 15, defect
        assert score.precision >= 0.95 and score.recall >= 0.95, score.row()


def test_scores_count_hits_misses_and_unlabelled_flags():
    story = Document("books-1", "books", "A story.\nYou are a stupid idiot.\nThe end.", labels={
        "defects": ["toxic"], "toxic_lines": ["You are a stupid idiot."]})
    clean_story = Document("books-2", "books", "Another story.\nShe told him never to call anyone stupid.")
    real_module = Document("docs-1", "docs", "Kill the child process.\nYou idiot, kill -9 it.")
    from minilm.data.documents import Edit, StepResult

    step = StepResult("toxicity", kept=[story, clean_story, real_module], edits=[
        Edit("books-1", "toxic", "You are a stupid idiot."),
        Edit("books-2", "toxic", "She told him never to call anyone stupid."),  # a false alarm in known text
        Edit("docs-1", "toxic", "You idiot, kill -9 it."),  # in real text: truth unknown
    ])
    (score,) = score_pipeline([story, clean_story, real_module], [step])
    assert isinstance(score, Score)
    assert (score.planted, score.found, score.flagged, score.hits, score.unlabelled) == (1, 1, 2, 1, 1)
    assert score.precision == 0.5 and score.recall == 1.0


def test_report_section_adds_up_and_prints_no_raw_dict(ci_stage, tmp_path):
    rows = filter_rows(stage.load_stats(ci_stage)["scores"])
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    for row in rows:
        assert number(row["flagged"]) == number(row["true"]) + number(row["false"]) + number(row["unlabelled"])
        assert number(row["found"]) <= number(row["planted"])
    quality_rows = [row for row in rows if row["step"].startswith("quality")]
    assert len(quality_rows) == 2 and all(row["step"] == "quality" + SHARED_MARK for row in quality_rows)
    assert all(not row["step"].endswith(SHARED_MARK) for row in rows if row not in quality_rows)
    section = report_section(ci_stage, tmp_path / "report")
    assert "| planted | found | recall | flagged | true | false | unlabelled | precision |" in section.body
    assert "flagged: everything the step removed" in section.body and "share one figure" in section.body
    assert "{" not in section.body and "}" not in section.body  # every dict is formatted, none printed raw
    assert section.figures[0].stat().st_size > 5_000


def test_temperature_weights_and_mixing():
    assert balance.temperature_weights({"a": 900, "b": 100}, 1.0) == {"a": 0.9, "b": 0.1}
    flat = balance.temperature_weights({"a": 900, "b": 100}, 1000.0)
    assert flat["a"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="positive"):
        balance.temperature_weights({"a": 1}, 0)
    docs = [Document(f"a{i}", "books", "x" * 100) for i in range(90)] + [Document(f"b{i}", "code", "y" * 100) for i in range(10)]
    mixed = balance.mix_domains(docs, {"books": 0.5, "code": 0.5}, seed=0)
    sizes = balance.domain_bytes(mixed.kept)
    assert sizes["books"] == pytest.approx(sizes["code"], rel=0.05)
    assert any("#r" in d.id for d in mixed.kept)  # the small domain was repeated
    with pytest.raises(ValueError, match="has none"):
        balance.mix_domains(docs, {"books": 0.5, "web": 0.5}, seed=0)


def test_gender_swap_keeps_case_and_grammar():
    names = {"Mia": "Tom", "Tom": "Mia"}
    text = "Mia was a pilot. She gave her ball to Tom, and he thanked her. His dog liked her."
    assert balance.swap_gender(text, names) == "Tom was a pilot. He gave his ball to Mia, and she thanked him. Her dog liked him."


def test_bad_config_gets_a_clear_error():
    with pytest.raises(ValueError, match="bias must be between 0 and 1"):
        stage.DataConfig(bias=1.5)
    with pytest.raises(ValueError, match="debias"):
        stage.DataConfig(debias="magic")
    with pytest.raises(ValueError, match="questions_share must be between 0 and 1"):
        stage.DataConfig(questions_share=2)
    with pytest.raises(ValueError, match="questions_per_story must be a positive integer, got 0"):
        stage.DataConfig(questions_per_story=0)
    with pytest.raises(ValueError, match="unknown domain"):
        stage.DataConfig(mixture={"books": 0.5, "poems": 0.5})
    empty = stage.DataConfig(n_stories=0, n_web_pages=0, n_doc_topics=0, n_code_files=0)
    with pytest.raises(ValueError, match="no documents were gathered"):
        stage.gather(empty)


def test_speedrun_and_command_line(ci_stage, home):
    env = {"MINILM_HOME": str(home), "MINILM_PRESET": "ci", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-m", "minilm", "--help"], capture_output=True, text=True, env=env, check=True)
    assert "data" in out.stdout and "speedrun" in out.stdout
    out = subprocess.run([sys.executable, "-m", "minilm", "speedrun"], capture_output=True, text=True, env=env, check=True)
    report = home / "runs" / "ci" / "report" / "report.md"
    assert f"report: {report}" in out.stdout
    text = report.read_text()
    assert "## Stage 1: data" in text and "| near_dup |" in text and "data_overview.png" in text
    assert "## Stage 6: fine-tuning" in text and "finetune_curves.png" in text
    assert (report.parent / "data_overview.png").stat().st_size > 5_000
    bad = subprocess.run([sys.executable, "-m", "minilm", "data", "--preset", "tpu"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


# --- Boundaries of the balance step -----------------------------------------------------------


def gendered_docs(female: int, male: int) -> list[Document]:
    return [Document(f"f{i}", "books", "she") for i in range(female)] + [
        Document(f"m{i}", "books", "he") for i in range(male)]


def read_gender(text: str):
    return ("pilot", "female" if text == "she" else "male")


@pytest.mark.parametrize("female, male, substituted, added", [
    (3, 3, 0, 0),  # balanced: nothing to do
    (4, 3, 0, 1),  # a gap of 1: half of it rounds down to nothing to swap, one copy to add
    (5, 3, 1, 2),  # a gap of 2: one swapped evens it out
    (6, 3, 1, 3),
])
def test_boundary_counterfactual_swaps_half_the_gap(female, male, substituted, added):
    names = {}
    swapped = balance.counterfactual_balance(gendered_docs(female, male), read_gender, names, seed=0)
    assert len(swapped.edits) == substituted and all(e.before == "she" for e in swapped.edits)
    assert [d.text for d in swapped.kept].count("he") == male + substituted
    augmented = balance.counterfactual_balance(gendered_docs(female, male), read_gender, names, seed=0,
                                               method="augment")
    assert len(augmented.kept) == female + male + added
    assert [d.text for d in augmented.kept].count("he") == male + added


def test_swapped_labels_flip_every_gender_and_rename_the_people():
    names = {"Mia": "Tom", "Tom": "Mia"}
    labels = {"facts": {"hero": "Mia", "gender": "female", "job": "pilot", "friend_gender": "male",
                        "events": [{"who": "Tom", "gender": "male"}], "age": 7}, "source": "stories"}
    swapped = balance.swapped_labels(labels, names)
    assert swapped == {"facts": {"hero": "Tom", "gender": "male", "job": "pilot", "friend_gender": "female",
                                 "events": [{"who": "Mia", "gender": "female"}], "age": 7},
                       "source": "stories", "counterfactual": True}
    assert labels["facts"]["gender"] == "female"  # the input is not changed in place
    assert balance.swapped_labels({"source": "web"}, names) == {"source": "web"}  # no facts: nothing to keep true


def test_boundary_mixture_budget_is_reached_exactly():
    # 6 books and 2 code files of 100 bytes, half and half: 400 bytes each. The books stop when the
    # budget is reached (4 of them), the code files are repeated once to reach it.
    docs = [Document(f"a{i}", "books", "x" * 100) for i in range(6)] + [
        Document(f"b{i}", "code", "y" * 100) for i in range(2)]
    mixed = balance.mix_domains(docs, {"books": 0.5, "code": 0.5}, seed=0)
    assert balance.domain_bytes(mixed.kept) == {"books": 400, "code": 400}
    assert len(mixed.removed) == 2


@pytest.mark.parametrize("max_repeats", [3, 4])
def test_boundary_mixture_repeats_a_domain_at_most_max_repeats_times(max_repeats):
    docs = [Document(f"a{i}", "books", "x" * 100) for i in range(20)] + [Document("b0", "code", "y" * 100)]
    mixed = balance.mix_domains(docs, {"books": 0.5, "code": 0.5}, seed=0, max_repeats=max_repeats)
    code = sorted(d.id for d in mixed.kept if d.domain == "code")
    assert code == ["b0"] + [f"b0#r{k}" for k in range(1, max_repeats)]
    assert balance.domain_bytes(mixed.kept) == {"books": 100 * max_repeats, "code": 100 * max_repeats}


@pytest.mark.parametrize("total, ok", [(1 - 2e-6, False), (1 - 5e-7, True), (1 + 5e-7, True), (1 + 2e-6, False)])
def test_boundary_mixture_weights_sum_to_1(total, ok):
    docs = [Document("a", "books", "x" * 100), Document("b", "code", "y" * 100)]
    weights = {"books": 0.5, "code": total - 0.5}
    if ok:
        balance.mix_domains(docs, weights, seed=0)
    else:
        with pytest.raises(ValueError, match="sum to 1"):
            balance.mix_domains(docs, weights, seed=0)


def test_mixture_weight_0_drops_a_domain_the_data_has():
    # A weight of 0 asks for none of a domain: its documents all go, and the others fill the total
    # (the 400 bytes of the data, so one book is repeated).
    docs = [Document(f"a{i}", "books", "x" * 100) for i in range(3)] + [Document("b0", "code", "y" * 100)]
    mixed = balance.mix_domains(docs, {"books": 1.0, "code": 0.0}, seed=0)
    assert balance.domain_bytes(mixed.kept) == {"books": 400}
    assert [(r.doc.id, r.reason) for r in mixed.removed] == [("b0", "mixture:downsample")]
