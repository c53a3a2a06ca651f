"""Which tuning method? The seed's rule of thumb as a plain function (chapter 11's chooser).

    recommend(Answers(weights=True, labeled_examples=2000, gpu_memory_gb=24, model_params_b=8))
    -> Recommendation(method="lora", chapter="03_lora", reason="...")

The rules are checked in order; the first that applies decides. The widget in chapter 11 and
its decision-flow diagram (`FLOW`) are drawn from the same rules, and tests/test_summary.py
checks the seed's five cases (`SEED_CASES`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Full fine-tuning with AdamW in mixed precision keeps about 18 bytes per parameter (weights,
# gradients, fp32 master copy and two moments; the transformers guide "Model training anatomy"),
# before activations. LoRA keeps the frozen weights at 2 bytes (bf16) plus a small adapter.
FULL_FT_BYTES_PER_PARAM = 18
LORA_BYTES_PER_PARAM = 2
FEW_LABELED = 100  # below this, show the examples in the prompt instead of training on them
MANY_LABELED = 10_000  # from here on, a full fine-tune has enough data to use its capacity


@dataclass(frozen=True)
class Answers:
    weights: bool = True  # can you change (and host) the model's weights?
    labeled_examples: int = 0  # input -> output examples of the task
    unlabeled_domain_text: bool = False  # a corpus of the domain's text, without labels
    preference_data: bool = False  # pairs of replies with the better one marked
    smaller_or_faster: bool = False  # a latency or size target the model misses today
    gpu_memory_gb: float = 0.0  # memory of the accelerator you train on
    model_params_b: float = 1.0  # size of the model to tune, in billions of parameters


@dataclass(frozen=True)
class Recommendation:
    method: str  # a key of labkit.summary.SEED
    chapter: str  # the notebook stem that runs it
    title: str
    reason: str


_CHAPTER = {
    "prompting": ("01_prompt_engineering", "Prompt engineering"),
    "lora": ("03_lora", "LoRA / PEFT"),
    "full_ft": ("04_full_finetuning", "Full fine-tuning"),
    "rlhf": ("06_rlhf", "RLHF (after instruction tuning)"),
    "domain_adaptation": ("07_domain_adaptation", "Domain adaptation"),
    "distillation": ("08_distillation", "Distillation"),
}


def _rec(method: str, reason: str) -> Recommendation:
    chapter, title = _CHAPTER[method]
    return Recommendation(method, chapter, title, reason)


def full_ft_fits(a: Answers) -> bool:
    """Full fine-tuning's weights, gradients and optimizer state fit in the GPU's memory."""
    return a.gpu_memory_gb * 1e9 >= FULL_FT_BYTES_PER_PARAM * a.model_params_b * 1e9


def recommend(a: Answers) -> Recommendation:
    """The seed's rule of thumb, first matching rule wins (see FLOW for the same rules drawn)."""
    if not a.weights:
        return _rec("prompting", "without access to the weights, only the input can change")
    if a.smaller_or_faster:
        return _rec(
            "distillation", "a latency or size target: train a smaller student on the model's outputs"
        )
    if a.preference_data:
        return _rec(
            "rlhf",
            "preference pairs teach which reply is better: DPO or a reward model + RL, "
            "on an instruction-tuned model",
        )
    if a.labeled_examples < FEW_LABELED:
        if a.unlabeled_domain_text:
            return _rec("domain_adaptation", "few labels but domain text: continue pretraining on it first")
        return _rec("prompting", f"under {FEW_LABELED} labeled examples: put them in the prompt (few-shot)")
    if a.labeled_examples >= MANY_LABELED and full_ft_fits(a):
        return _rec(
            "full_ft",
            f"{a.labeled_examples:,} examples and memory for all "
            f"{FULL_FT_BYTES_PER_PARAM} bytes per parameter: train every weight",
        )
    return _rec(
        "lora",
        "labeled examples but limited compute (or data): train a low-rank update, keep the base frozen",
    )


# The seed's five rule-of-thumb cases, each with the answer the chapter documents.
SEED_CASES = [
    ("quick results, no training (an API model)", Answers(weights=False, labeled_examples=20), "prompting"),
    (
        "task adaptation on limited compute",
        Answers(labeled_examples=2_000, gpu_memory_gb=24, model_params_b=8),
        "lora",
    ),
    (
        "deep specialisation, lots of data and compute",
        Answers(labeled_examples=100_000, gpu_memory_gb=640, model_params_b=8),
        "full_ft",
    ),
    (
        "aligning with human preferences",
        Answers(labeled_examples=5_000, preference_data=True, gpu_memory_gb=80, model_params_b=8),
        "rlhf",
    ),
    (
        "a smaller, faster model",
        Answers(labeled_examples=5_000, smaller_or_faster=True, gpu_memory_gb=80, model_params_b=8),
        "distillation",
    ),
]

# The decision flow, as (node, question or None, [(edge label, next node)]); leaves are methods.
FLOW = [
    ("weights", "Can you change the model's weights?", [("no", "prompting"), ("yes", "target")]),
    ("target", "A latency or size target?", [("yes", "distillation"), ("no", "prefs")]),
    ("prefs", "Preference pairs?", [("yes", "rlhf"), ("no", "labels")]),
    ("labels", f"{FEW_LABELED}+ labeled examples?", [("no", "domain"), ("yes", "scale")]),
    ("domain", "Unlabeled domain text?", [("yes", "domain_adaptation"), ("no", "prompting")]),
    (
        "scale",
        f"{MANY_LABELED:,}+ examples and {FULL_FT_BYTES_PER_PARAM} B/param of GPU memory?",
        [("yes", "full_ft"), ("no", "lora")],
    ),
]


def flow_dot(costs: dict[str, str] | None = None, links: dict[str, str] | None = None) -> str:
    """The decision flow as Graphviz DOT source; each leaf shows `costs[method]` (a measured cost
    from the summary table) and links to `links[method]` (its chapter's page)."""
    costs, links = costs or {}, links or {}
    lines = ["digraph flow {", '  rankdir=TB; node [fontname="Helvetica", fontsize=11];']
    leaves = {target for _, _, edges in FLOW for _, target in edges} - {n for n, _, _ in FLOW}
    for node, question, _ in FLOW:
        lines.append(f'  {node} [shape=box, style="rounded", label="{question}"];')
    for leaf in sorted(leaves):
        label = _CHAPTER[leaf][1] + (f"\\n{costs[leaf]}" if leaf in costs else "")
        url = f', URL="{links[leaf]}", target="_top"' if leaf in links else ""
        lines.append(f'  {leaf} [shape=box, style="filled", fillcolor="#E8F1FA", label="{label}"{url}];')
    for node, _, edges in FLOW:
        for label, target in edges:
            lines.append(f'  {node} -> {target} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)
