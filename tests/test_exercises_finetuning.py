"""The checkers of notebook 06's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import math
import string

import pytest
import torch
from torch import nn

from minilm.exercises import finetuning as checks
from minilm.finetune.chat import encode_chat
from minilm.finetune.lora import LoRALinear
from minilm.finetune.tasks import exact_match

from exercise_checks import assert_fails, assert_passes, nudge, table_tests, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- Exercise 1: exact match ---------------------------------------------------------------------------------


def written_exact_match(prediction, answers):
    def normalize(text):
        text = "".join(ch for ch in text.lower() if ch not in string.punctuation + "’‘“”")
        return " ".join(word for word in text.split() if word not in ("a", "an", "the"))
    return any(normalize(prediction) == normalize(answer) for answer in answers)


def case_sensitive(prediction, answers):  # "Cook" is not "cook"
    def normalize(text):
        text = "".join(ch for ch in text if ch not in string.punctuation + "’‘“”")
        return " ".join(word for word in text.split() if word.lower() not in ("a", "an", "the"))
    return any(normalize(prediction) == normalize(answer) for answer in answers)


def articles_as_substrings(prediction, answers):  # "theatre" loses its "the"
    def normalize(text):
        text = "".join(ch for ch in text.lower() if ch not in string.punctuation + "’‘“”")
        for article in ("the", "an", "a"):
            text = text.replace(article, "")
        return " ".join(text.split())
    return any(normalize(prediction) == normalize(answer) for answer in answers)


def keeps_punctuation(prediction, answers):
    def normalize(text):
        return " ".join(word for word in text.lower().split() if word not in ("a", "an", "the"))
    return any(normalize(prediction) == normalize(answer) for answer in answers)


def contains_the_answer(prediction, answers):  # "cook today" would count as "cook"
    def normalize(text):
        text = "".join(ch for ch in text.lower() if ch not in string.punctuation + "’‘“”")
        return " ".join(word for word in text.split() if word not in ("a", "an", "the"))
    return any(normalize(answer) in normalize(prediction) for answer in answers)


def first_answer_only(prediction, answers):
    return exact_match(prediction, answers[:1])


def single_spaces_only(prediction, answers):  # split(" ") keeps empty words for double spaces and line breaks
    def normalize(text):
        text = "".join(ch for ch in text.lower() if ch not in string.punctuation + "’‘“”")
        return " ".join(word for word in text.split(" ") if word not in ("a", "an", "the"))
    return any(normalize(prediction) == normalize(answer) for answer in answers)


# --- Exercise 2: the loss mask ---------------------------------------------------------------------------------

ROLES = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


def package_chat_targets(tokenizer, messages):
    ids, trained = encode_chat(tokenizer, messages)
    return ids, [ids[t + 1] if trained[t + 1] else -100 for t in range(len(ids) - 1)] + [-100]


def written_chat_targets(tokenizer, messages, train_end=True, train_role=False, last_turn_only=False,
                         train_user=False, shift=1, trailing=True, bos=True):
    end = tokenizer.special_id("<|end|>")
    ids, trained = ([tokenizer.special_id("<|endoftext|>")], [False]) if bos else ([], [])
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    for i, message in enumerate(messages):
        answer = message["role"] == "assistant" and (i == last or not last_turn_only)
        answer = answer or (train_user and message["role"] == "user")
        content = tokenizer.encode_ordinary(message["content"])
        ids += [tokenizer.special_id(ROLES[message["role"]]), *content, end]
        trained += [answer and train_role] + [answer] * len(content) + [answer and train_end]
    if shift == 1:
        targets = [ids[t + 1] if trained[t + 1] else -100 for t in range(len(ids) - 1)]
    else:  # the mask applied where the token is, not where it is predicted
        targets = [ids[t] if trained[t] else -100 for t in range(len(ids) - 1)]
    return ids, targets + [-100] if trailing else targets


def rendered_and_encoded(tokenizer, messages):  # another right way: the rendered text, special tokens allowed
    from minilm.finetune.chat import render_chat
    ids = tokenizer.encode(render_chat(messages), allowed_special="all")
    _, targets = written_chat_targets(tokenizer, messages)
    return ids, targets


def end_not_trained(tokenizer, messages):  # the model never learns to stop
    return written_chat_targets(tokenizer, messages, train_end=False)


def role_token_trained(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, train_role=True)


def last_turn_only(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, last_turn_only=True)


def user_trained_too(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, train_user=True)


def mask_not_shifted(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, shift=0)


def one_target_short(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, trailing=False)


def without_bos(tokenizer, messages):
    return written_chat_targets(tokenizer, messages, bos=False)


# --- Exercise 3: LoRA ------------------------------------------------------------------------------------------


class WrittenLoRA(nn.Module):
    def __init__(self, base, rank, alpha, scaling=None, freeze=True, b_init=0.0, a_zero=False, merge_scaled=True,
                 forget_merged=False):
        super().__init__()
        self.base = base.requires_grad_(not freeze) if freeze else base
        self.scaling = alpha / rank if scaling is None else scaling
        self.lora_A = nn.Parameter(torch.zeros(rank, base.in_features) if a_zero else
                                   nn.init.kaiming_uniform_(torch.empty(rank, base.in_features), a=math.sqrt(5)))
        self.lora_B = nn.Parameter(torch.full((base.out_features, rank), b_init))
        self.merged, self.merge_scaled, self.forget_merged = False, merge_scaled, forget_merged

    def forward(self, x):
        if self.merged and not self.forget_merged:
            return self.base(x)
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self):
        self.base.weight += self.lora_B @ self.lora_A * (self.scaling if self.merge_scaled else 1.0)
        self.merged = True


def PackageLoRA(base, rank, alpha):
    return LoRALinear(base, rank, alpha)


def scaled_by_alpha(base, rank, alpha):  # alpha, not alpha / rank
    return WrittenLoRA(base, rank, alpha, scaling=alpha)


def base_not_frozen(base, rank, alpha):
    return WrittenLoRA(base, rank, alpha, freeze=False)


def b_not_zero(base, rank, alpha):  # the start is not the pretrained model
    return WrittenLoRA(base, rank, alpha, b_init=0.01)


def a_zero_too(base, rank, alpha):  # no gradient ever reaches B
    return WrittenLoRA(base, rank, alpha, a_zero=True)


def merge_unscaled(base, rank, alpha):
    return WrittenLoRA(base, rank, alpha, merge_scaled=False)


def added_twice_after_merge(base, rank, alpha):
    return WrittenLoRA(base, rank, alpha, forget_merged=True)


def LoRANudged(rel, abs_):  # right, but every output off by rel * |y| + abs_
    class Nudged(LoRALinear):
        def __init__(self, base, rank, alpha):
            super().__init__(base, rank, alpha)

        def forward(self, x):
            y = super().forward(x)
            return y + (nudge(y, rel, abs_) - y.detach())  # still differentiable
    return Nudged


# --- Exercise 4: pooling ---------------------------------------------------------------------------------------


def written_pool(hidden, ids, pad_id):
    lengths = (ids != pad_id).sum(dim=1)
    return hidden[torch.arange(hidden.size(0)), lengths - 1]


def gather_pool(hidden, ids, pad_id):  # another right way: gather along the time axis
    last = ((ids != pad_id).sum(dim=1) - 1).view(-1, 1, 1).expand(-1, 1, hidden.size(-1))
    return hidden.gather(1, last).squeeze(1)


def last_position(hidden, ids, pad_id):  # reads padding in every padded row
    return hidden[:, -1]


def first_pad(hidden, ids, pad_id):  # one past the last real token
    lengths = (ids != pad_id).sum(dim=1)
    return hidden[torch.arange(hidden.size(0)), lengths.clamp(max=hidden.size(1) - 1)]


def mean_of_real(hidden, ids, pad_id):
    real = (ids != pad_id).unsqueeze(-1).float()
    return (hidden * real).sum(1) / real.sum(1)


def every_row_at_every_length(hidden, ids, pad_id):  # hidden[:, lengths - 1]: (B, B, C)
    return hidden[:, (ids != pad_id).sum(dim=1) - 1]


CHECKS = [
    (checks.check_exact_match, [exact_match, written_exact_match],
     [case_sensitive, articles_as_substrings, keeps_punctuation, contains_the_answer, first_answer_only,
      single_spaces_only]),
    (checks.check_chat_targets, [package_chat_targets, written_chat_targets, rendered_and_encoded],
     [end_not_trained, role_token_trained, last_turn_only, user_trained_too, mask_not_shifted, one_target_short,
      without_bos]),
    (checks.check_lora, [PackageLoRA, WrittenLoRA],
     [scaled_by_alpha, base_not_frozen, b_not_zero, a_zero_too, merge_unscaled, added_twice_after_merge]),
    (checks.check_last_token_pooling, [written_pool, gather_pool],
     [last_position, first_pad, mean_of_real, every_row_at_every_length]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=3))

TOLERANCES = [(checks.check_lora, LoRANudged, 1e-5, 1e-6)]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


@pytest.mark.parametrize("check, wrong, words", [
    (checks.check_exact_match, articles_as_substrings, "expected"),
    (checks.check_chat_targets, end_not_trained, "is trained"),
    (checks.check_chat_targets, mask_not_shifted, "targets["),
    (checks.check_lora, scaled_by_alpha, "times the expected one"),
    (checks.check_lora, added_twice_after_merge, "a second time"),
    (checks.check_last_token_pooling, last_position, "expected the state at position"),
])
def test_failures_say_what_is_wrong(check, wrong, words):
    message = assert_fails(check, wrong)
    assert words in message and "seed 0" in message, message


def test_the_same_seed_draws_the_same_inputs():
    messages = [assert_fails(checks.check_last_token_pooling, first_pad, seed=5) for _ in range(2)]
    assert messages[0] == messages[1]
    assert assert_fails(checks.check_last_token_pooling, first_pad, seed=6) != messages[0]


def test_the_checkers_cases_cover_matches_and_mismatches():
    import random
    cases = list(checks._exact_match_cases(random.Random(0)))
    hits = sum(exact_match(prediction, answers) for prediction, answers in cases)
    assert 0.3 * len(cases) < hits < 0.8 * len(cases)
    conversations = checks._conversations(random.Random(0))
    assert any(sum(m["role"] == "assistant" for m in c) > 1 for c in conversations)
    assert any(c[0]["role"] == "system" for c in conversations)
