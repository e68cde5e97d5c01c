"""Tests of minilm.interpret: the residual streams are the model's own, the logit lens's last layer is the model's
output exactly (and a wrong decode is not), and a linear probe finds a planted feature but not a shuffled one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minilm.interpret import decode, linear_probe, logit_lens, residual_streams
from minilm.model.gpt import IGNORE_INDEX
from spread import small_gpt

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, CONTEXT = 64, 16


@pytest.fixture(scope="module")
def model():
    return small_gpt(VOCAB, CONTEXT, 0.2)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens (3, 12) and their next tokens, the last position of each row ignored."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(VOCAB, (3, 13), generator=generator)
    tokens, targets = rows[:, :-1], rows[:, 1:].clone()
    targets[:, -1] = IGNORE_INDEX
    return tokens, targets


# --- residual streams ----------------------------------------------------------------------------


def test_residual_streams_are_the_embedding_then_each_block_in_turn(model, batch):
    tokens, _ = batch
    streams = residual_streams(model, tokens)
    assert len(streams) == model.config.n_layer + 1
    assert all(s.shape == (*tokens.shape, model.config.n_embd) for s in streams)
    positions = torch.arange(tokens.size(1))
    assert torch.equal(streams[0], model.transformer.wte(tokens) + model.transformer.wpe(positions))
    with torch.no_grad():
        for layer, block in enumerate(model.transformer.h):
            assert torch.equal(streams[layer + 1], block(streams[layer])[0])
    # the same streams as the package's own Trace records (which takes the unfused attention path)
    trace = model.inspect(tokens)
    for layer, stream in enumerate(streams):
        torch.testing.assert_close(stream, trace.residual[layer])


def test_residual_streams_leave_no_hooks_behind(model, batch):
    tokens, _ = batch
    before = model(tokens)[0]
    residual_streams(model, tokens)
    blocks = model.transformer.h
    assert not blocks[0]._forward_pre_hooks and not any(block._forward_hooks for block in blocks)
    assert torch.equal(model(tokens)[0], before)


# --- logit lens -----------------------------------------------------------------------------------


def test_decoding_the_last_stream_gives_the_models_own_logits_exactly(model, batch):
    tokens, _ = batch
    streams = residual_streams(model, tokens)
    logits = model(tokens)[0]
    assert torch.equal(decode(model, streams[-1]), logits)
    assert not torch.allclose(decode(model, streams[-2]), logits, atol=1e-3)  # one block short


def test_a_decode_without_the_final_norm_fails_the_equality(model, batch):
    tokens, _ = batch
    last = residual_streams(model, tokens)[-1]
    logits = model(tokens)[0]
    without_norm = F.linear(last, model.output_weight())
    assert not torch.allclose(without_norm, logits, atol=1e-3)
    with_wrong_head = F.linear(model.transformer.ln_f(last), model.transformer.wte.weight.flip(0))
    assert not torch.allclose(with_wrong_head, logits, atol=1e-3)


def test_the_last_layer_of_the_lens_is_the_models_accuracy_and_loss(model, batch):
    tokens, targets = batch
    rows = logit_lens(model, tokens, targets)
    assert [row["layer"] for row in rows] == list(range(model.config.n_layer + 1))
    logits, loss = model(tokens, targets)
    assert rows[-1]["loss"] == loss.item()
    scored = targets != IGNORE_INDEX
    assert rows[-1]["accuracy"] == (logits.argmax(-1) == targets)[scored].float().mean().item()
    assert len({row["loss"] for row in rows}) == len(rows)  # each layer decodes to something else


def test_the_lens_scores_each_layer_only_where_there_is_a_target(model, batch):
    tokens, targets = batch
    rows = logit_lens(model, tokens, targets)
    streams = residual_streams(model, tokens)
    for row, stream in zip(rows, streams):
        logits = decode(model, stream)[:, :-1]  # the last position has no target
        kept = targets[:, :-1]
        assert row["accuracy"] == pytest.approx((logits.argmax(-1) == kept).float().mean().item(), abs=1e-7)
        assert row["loss"] == pytest.approx(F.cross_entropy(logits.reshape(-1, VOCAB), kept.reshape(-1)).item(), rel=1e-5)


def test_the_lens_says_when_targets_do_not_fit_the_tokens(model, batch):
    tokens, targets = batch
    with pytest.raises(ValueError, match="shape"):
        logit_lens(model, tokens, targets[:, :-1])


# --- linear probe ---------------------------------------------------------------------------------


def planted(n: int = 600, d: int = 20, classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Gaussian features whose label is the best of `classes` random linear scores: a linear feature, by design."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=generator)
    directions = torch.randn(d, classes, generator=generator)
    return features, (features @ directions).argmax(dim=1).tolist()


@pytest.mark.parametrize("classes", [2, 4])
def test_a_probe_finds_a_planted_linear_feature(classes):
    features, labels = planted(classes=classes)
    result = linear_probe(features, labels)
    assert result["accuracy"] > 0.85  # a line (or 4 regions) in 20 dimensions, fitted on 360 rows
    assert result["accuracy"] > result["baseline"] + 0.3
    assert (result["classes"], result["n_train"], result["n_test"]) == (classes, 360, 240)


def test_a_probe_scores_chance_on_shuffled_labels():
    features, labels = planted()
    shuffled = [labels[i] for i in torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    result = linear_probe(features, shuffled)
    assert abs(result["accuracy"] - 0.5) < 0.08  # 240 held-out rows: chance is 0.5 ± 0.03
    assert result["train_accuracy"] > result["accuracy"]  # it fits some noise on its own rows, and that does not carry


def test_a_probe_reads_labels_of_any_kind_and_ignores_the_scale_of_its_features():
    features, labels = planted()
    named = ["yes" if label else "no" for label in labels]
    assert linear_probe(features * 1000 + 5, named) == linear_probe(features, labels)


def test_the_baseline_is_the_fitting_rows_most_frequent_label_on_the_held_out_rows():
    # Labels laid out so that the fitting rows are mostly "a" and the held-out rows mostly "b": the baseline is
    # the guess one can make before seeing the held-out rows, "a", right on 1 of 5.
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    labels = [""] * 10
    for rank, row in enumerate(order):
        labels[row] = "ab"[rank in (4, 6, 7, 8, 9)]
    features = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    assert linear_probe(features, labels, train_fraction=0.5, seed=3)["baseline"] == pytest.approx(0.2)


def test_a_probe_penalised_to_nothing_guesses_the_majority():
    features, _ = planted()
    labels = (features[:, 0] > 0.7).long().tolist()  # a linear feature, about one row in four
    result = linear_probe(features, labels, l2=1e4)
    assert result["accuracy"] == result["baseline"]
    assert 0.65 < result["baseline"] < 0.85
    assert linear_probe(features, labels)["accuracy"] > 0.9


def test_a_probe_is_seeded_by_its_split():
    features, labels = planted()
    assert linear_probe(features, labels, seed=5) == linear_probe(features, labels, seed=5)
    assert linear_probe(features, labels, seed=5) != linear_probe(features, labels, seed=6)
    assert linear_probe(features, labels, train_fraction=0.75)["n_train"] == 450


def test_a_probe_says_what_is_wrong_with_its_input():
    features, labels = planted(n=10)
    with pytest.raises(ValueError, match="features"):
        linear_probe(features[:9], labels)
    with pytest.raises(ValueError, match="features"):
        linear_probe(features[:, 0], labels)
    with pytest.raises(ValueError, match="train_fraction"):
        linear_probe(features, labels, train_fraction=1.0)
    with pytest.raises(ValueError, match="train_fraction"):
        linear_probe(features, labels, train_fraction=0.01)
