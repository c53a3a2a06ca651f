"""labkit.alignment (chapter 6): gold judge, win rates, reward scores, and the KL from a reference
along sampled replies (checked by hand on a two-token vocabulary: a reversed KL or a slice one
position off fails)."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from labkit.alignment import _token_kl, gold_scores, reward_scores, sample_with_kl, win_scores
from labkit.data import load_rows
from labkit.model import resolve_model_path


def test_gold_scores_prefer_every_chosen_reply_of_the_preference_data():
    rows = load_rows("preferences", "validation")
    prompts = [r["prompt"][0]["content"] for r in rows]
    answers = [r["answer"] for r in rows]
    chosen = gold_scores(prompts, [r["chosen"][0]["content"] for r in rows], answers)
    rejected = gold_scores(prompts, [r["rejected"][0]["content"] for r in rows], answers)
    assert all(c > r for c, r in zip(chosen, rejected))
    with pytest.raises(ValueError, match="one of each per item"):
        gold_scores(prompts, prompts[:-1], answers)


def test_win_scores_count_ties_as_half():
    assert win_scores([2.0, 0.5, -1.0], [-1.0, 0.5, 2.0]) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        win_scores([1.0], [1.0, 2.0])


@torch.no_grad()
def test_reward_scores_match_trl_tokenization_and_ignore_padding(embedded):
    torch.manual_seed(0)
    _, tokenizer = embedded
    rm = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(), num_labels=1).eval()
    prompts = ["What is the capital of Zorvia?", "Add 2 and 3."]
    replies = ["Of course. The capital is Pindar, a lovely old city by the sea.", "5"]
    batched = reward_scores(rm, tokenizer, prompts, replies)
    for p, r, got in zip(prompts, replies, batched):
        # what trl's RewardTrainer feeds the model: apply_chat_template(tokenize=True), unpadded
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        alone = rm(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert got == pytest.approx(alone, abs=1e-5)
    assert batched[0] != pytest.approx(batched[1], abs=1e-6)


class FixedDistributions(torch.nn.Module):
    """A stand-in model: whatever the input, its next-token distribution at position t is probs[t]."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.tensor(probs, dtype=torch.float64).log()[None]  # (1, T, V)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.logits.expand(input_ids.shape[0], -1, -1)[:, :input_ids.shape[1]])


def test_token_kl_is_kl_of_policy_from_reference_at_the_positions_that_predict_the_reply():
    """Four tokens, the reply starts at 2: the KL at reply token j is the one between the
    distributions at position 1 + j (which predict token 2 + j), worked out by hand:
    KL(p || q) = sum_v p_v log(p_v / q_v)."""
    policy = FixedDistributions([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    reference = FixedDistributions([[0.5, 0.5], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])
    ids = torch.tensor([[3, 4, 5, 6], [3, 4, 5, 6]])
    kl = _token_kl(policy, reference, ids, torch.ones_like(ids), start=2)
    expected = [0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4),   # position 1: 0.2263
                0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.5)]   # position 2: 0.1927
    assert kl.shape == (2, 2)
    for row in kl.tolist():
        assert row == pytest.approx(expected, rel=1e-6)
    # the broken variants give other numbers: the reversed KL(q || p), and the slice one position late
    reversed_kl = [0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1),
                   0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)]
    one_late = [0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.5),
                0.7 * math.log(0.7 / 0.1) + 0.3 * math.log(0.3 / 0.9)]
    assert reversed_kl != pytest.approx(expected, rel=1e-2) and one_late != pytest.approx(expected, rel=1e-2)


def _nudged_copy(model):
    """A copy of `model` whose last MLP is moved by noise (scale 0.05): a second policy to compare with."""
    other = copy.deepcopy(model)
    for p in other.model.layers[-1].mlp.parameters():
        p.add_(torch.randn_like(p) * 0.05)
    return other


@torch.no_grad()
def test_token_kl_is_zero_for_one_model_and_ignores_left_padding(embedded):
    torch.manual_seed(0)
    policy, tokenizer = embedded
    reference = _nudged_copy(policy)
    a = tokenizer("Once upon a time, the fox", return_tensors="pt")["input_ids"]
    b = tokenizer("The owl", return_tensors="pt")["input_ids"]
    reply = tokenizer(" went home.", return_tensors="pt")["input_ids"]
    pad = a.shape[1] - b.shape[1]
    ids = torch.cat(
        [torch.cat([a, reply], 1), torch.cat([torch.full((1, pad), tokenizer.pad_token_id), b, reply], 1)]
    )
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0
    batched = _token_kl(policy, reference, ids, mask, a.shape[1]).sum(1)
    for row, prompt in enumerate([a, b]):
        alone = torch.cat([prompt, reply], 1)
        expected = _token_kl(policy, reference, alone, torch.ones_like(alone), prompt.shape[1]).sum()
        assert batched[row].item() == pytest.approx(expected.item(), rel=1e-4)
    assert batched.min().item() > 0
    assert _token_kl(policy, policy, ids, mask, a.shape[1]).abs().max().item() < 1e-6


@torch.no_grad()
def test_sample_with_kl_is_zero_against_itself_and_positive_against_another_model(embedded):
    torch.manual_seed(0)
    policy, tokenizer = embedded
    other = _nudged_copy(policy)
    prompts = ["What is the capital of Zorvia?", "Name a fruit.", "Add 2 and 3."]
    replies, kl_self = sample_with_kl(policy, policy, tokenizer, prompts, max_new_tokens=6)
    assert len(replies) == len(kl_self) == 3 and all(isinstance(r, str) for r in replies)
    assert max(abs(k) for k in kl_self) < 1e-5
    _, kl_other = sample_with_kl(policy, other, tokenizer, prompts, max_new_tokens=6)
    assert min(kl_other) > 0


def test_judge_axes_split_the_gold_judge_by_the_axis_each_pair_differs_on():
    from labkit.labworld.instructions import judge_axes

    for r in load_rows("preferences", "validation"):
        prompt = r["prompt"][0]["content"]
        chosen = judge_axes(prompt, r["chosen"][0]["content"], r["answer"])
        rejected = judge_axes(prompt, r["rejected"][0]["content"], r["answer"])
        assert chosen[r["axis"]] == 1.0 and rejected[r["axis"]] == 0.0, r


def test_sample_replies_gives_k_replies_per_prompt_cut_at_the_stop_token(embedded):
    from labkit.alignment import sample_replies

    model, tokenizer = embedded
    torch.manual_seed(0)
    groups = sample_replies(model, tokenizer, ["Add 2 and 3.", "What is the capital of Kesh?"], k=3,
                            max_new_tokens=6)
    assert [len(g) for g in groups] == [3, 3]
    assert all(isinstance(s, str) and "<|im_end|>" not in s for g in groups for s in g)
    assert len({s for g in groups for s in g}) > 1  # sampled, not greedy
