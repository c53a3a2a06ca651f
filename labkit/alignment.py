"""Scoring a policy against preferences (chapter 6, RLHF): the gold judge, pairwise win rates, a
reward model's scores, and samples with their KL from the reference policy."""
from __future__ import annotations

import torch

from .generation import _generate_padded, chat_prompt, padding_side, stop_token_ids
from .likelihood import text_logits


def gold_scores(prompts: list[str], responses: list[str], answers: list[str | None]) -> list[float]:
    """LabWorld's gold judge (`labkit.labworld.instructions.gold_judge`, the rule that wrote the
    preference data) on each (prompt, response, answer): one score per item, higher is better
    (+2 refusing an unsafe request or containing the right answer; see its docstring)."""
    from .labworld.instructions import gold_judge

    if not len(prompts) == len(responses) == len(answers):
        raise ValueError(f"gold_scores: {len(prompts)} prompts, {len(responses)} responses and "
                         f"{len(answers)} answers; one of each per item")
    return [gold_judge(p, r, a) for p, r, a in zip(prompts, responses, answers)]


def win_scores(scores_a: list[float], scores_b: list[float]) -> list[float]:
    """Per item: 1 where A's score beats B's, 0.5 for a tie, 0 for a loss. Their mean is A's win
    rate against B (ties split evenly, as in AlpacaEval and MT-Bench pairwise judging)."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"win_scores: {len(scores_a)} vs {len(scores_b)} scores; pair them per item")
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores_a, scores_b)]


def _chat_texts(tokenizer, prompts: list[str], responses: list[str]) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": p},
                                           {"role": "assistant", "content": r}],
                                          tokenize=False) for p, r in zip(prompts, responses)]


@torch.no_grad()
def reward_scores(reward_model, tokenizer, prompts: list[str], responses: list[str],
                  batch_size: int = 32) -> list[float]:
    """A reward model's scalar score for each (user prompt, assistant response) chat, one float per
    item. Tokenized as TRL does when it trains the model (`RewardTrainer`) and when RL queries it
    (`RLOOTrainer`/`GRPOTrainer`): the chat template's text, right-padded, no extra special tokens.
    `reward_model` is an `AutoModelForSequenceClassification` with `num_labels=1`."""
    if len(prompts) != len(responses):
        raise ValueError(f"reward_scores: {len(prompts)} prompts but {len(responses)} responses")
    texts = _chat_texts(tokenizer, prompts, responses)
    out: list[float] = []
    with padding_side(tokenizer, "right"):
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(reward_model.device)
            out += reward_model(**batch).logits[:, 0].float().tolist()
    return out


@torch.no_grad()
def sample_replies(policy, tokenizer, prompts: list[str], k: int, max_new_tokens: int = 24,
                   batch_size: int = 32, temperature: float = 1.0) -> list[list[str]]:
    """`k` chat replies per prompt sampled from `policy` (plain sampling at `temperature`, no top-k or
    top-p, as RL samples them), each cut at its first stop token (`stop_token_ids`). Returns one list
    of k replies per prompt: what best-of-k picks from (chapter 6's headroom)."""
    stop_ids = stop_token_ids(tokenizer)
    chats = [chat_prompt(tokenizer, p) for p in prompts for _ in range(k)]
    rows = _generate_padded(policy, tokenizer, chats, max_new_tokens, batch_size, stop_ids,
                            do_sample=True, temperature=temperature, top_k=0)
    texts = []
    for row in rows:
        cut = next((i for i, t in enumerate(row) if t in stop_ids), None)
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return [texts[i * k:(i + 1) * k] for i in range(len(prompts))]


@torch.no_grad()
def sample_with_kl(policy, reference, tokenizer, prompts: list[str], max_new_tokens: int = 24,
                   batch_size: int = 32, temperature: float = 1.0) -> tuple[list[str], list[float]]:
    """Sample one chat reply per prompt from `policy` (plain sampling: no top-k/top-p) and
    measure how far it has moved from `reference` on it.

    Returns (replies, kl): kl[i] = sum over the reply's tokens t of KL(policy(.|y<t) || reference(.|y<t))
    in nats, the full next-token distributions compared at each sampled prefix. Its mean over
    prompts is an unbiased, low-variance estimate of the sequence-level KL(policy || reference)
    that RLHF penalises (Schulman 2020, "Approximating KL divergence"; Ouyang et al. 2022).
    The reply stops at a stop token (`labkit.generation.stop_token_ids`: the chat template's end of
    turn, or EOS), counted as a reply token."""
    stop_ids = stop_token_ids(tokenizer)
    replies, kls = [], []
    with padding_side(tokenizer, "left"):
        for i in range(0, len(prompts), batch_size):
            chats = [chat_prompt(tokenizer, p) for p in prompts[i:i + batch_size]]
            batch = tokenizer(chats, return_tensors="pt", padding=True,
                              add_special_tokens=False).to(policy.device)
            ids = policy.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True,
                                  temperature=temperature, top_k=0, top_p=1.0,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids)
            n_prompt = batch["input_ids"].shape[1]
            new = ids[:, n_prompt:]                                       # (B, T)
            stopped = torch.isin(new, torch.tensor(stop_ids, device=new.device))
            after_stop = (stopped.cumsum(dim=1) - stopped.long()) > 0     # tokens after the first stop
            reply_mask = ~after_stop                                      # (B, T) reply tokens incl. the stop
            attention = torch.cat([batch["attention_mask"], reply_mask.long()], dim=1)
            kls += (_token_kl(policy, reference, ids, attention, n_prompt) * reply_mask).sum(dim=1).tolist()
            replies += tokenizer.batch_decode(new.masked_fill(after_stop, tokenizer.pad_token_id),
                                              skip_special_tokens=True)
    return replies, kls


def _token_kl(policy, reference, ids, attention_mask, start: int):
    """(B, T) KL(policy || reference) between the next-token distributions that predict
    ids[:, start:], position by position (T = ids.shape[1] - start), in nats."""
    batch = {"input_ids": ids, "attention_mask": attention_mask}
    logits_p = text_logits(policy, batch)[:, start - 1:-1].float()
    logits_r = text_logits(reference, batch)[:, start - 1:-1].float()
    logp, logr = logits_p.log_softmax(-1), logits_r.log_softmax(-1)  # (B, T, V)
    return (logp.exp() * (logp - logr)).sum(-1)
