"""The base model's report card: every ability chapter 0 measures (also written into the model
card by `python -m labkit eval`)."""
from __future__ import annotations

from .data import balanced, load_rows
from .likelihood import perplexity
from .scoring import addition_scores, icl_scores, instruction_scores


def base_model_report(model, tokenizer, limit: int | None = None,
                      scores: dict | None = None) -> dict[str, float]:
    """Every ability chapter 0 measures, on the held-out evaluation items.
    `limit` caps items per evaluation (e.g. `profile.eval_examples`); None uses them all.
    Pass a dict as `scores` to receive each accuracy's per-item 0/1 scores (for intervals) and,
    under "coverage", (items used, items held out) per metric."""
    from .labworld.domains import DOMAINS

    scores = {} if scores is None else scores
    coverage = scores.setdefault("coverage", {})

    def take(rows, metric):
        used = rows[:limit] if limit else rows
        coverage[metric] = (len(used), len(rows))
        return used

    def take_per_task(items, metric):  # keep every task represented
        used = balanced(items, limit, "task") if limit else items
        coverage[metric] = (len(used), len(items))
        return used

    def per_task_mean(item_scores, items):  # the mean over tasks of each task's accuracy
        by_task: dict[str, list[float]] = {}
        for score, it in zip(item_scores, items):
            by_task.setdefault(it["task"], []).append(score)
        return sum(sum(v) / len(v) for v in by_task.values()) / len(by_task)

    additions = take(load_rows("eval", "addition"), "addition")
    icl_items = take_per_task(load_rows("eval", "icl"), "icl")
    novel_items = take_per_task(load_rows("eval", "icl_novel"), "icl_novel")
    for mode in ("direct", "cot"):
        scores[f"addition_{mode}"] = addition_scores(model, tokenizer, additions, mode)
    for name, items in (("icl", icl_items), ("icl_novel", novel_items)):
        for shots in (0, 3):
            scores[f"{name}_{shots}shot"] = icl_scores(model, tokenizer, items, shots)
    scores["instruction_zero_shot"] = instruction_scores(
        model, tokenizer, take(load_rows("instructions", "test"), "instruction_zero_shot"))
    report = {k: sum(v) / len(v) for k, v in scores.items() if k.startswith(("addition", "instruction"))}
    for name, items in (("icl", icl_items), ("icl_novel", novel_items)):
        for shots in (0, 3):
            report[f"{name}_{shots}shot"] = per_task_mean(scores[f"{name}_{shots}shot"], items)
    report["ppl_general"] = perplexity(model, tokenizer,
                                       [r["text"] for r in take(load_rows("general", "validation"),
                                                                "ppl_general")])
    for domain in DOMAINS:
        texts = [r["text"] for r in take(load_rows(f"{domain}_corpus", "validation"), f"ppl_{domain}")]
        report[f"ppl_{domain}"] = perplexity(model, tokenizer, texts)
    for metric in report:  # coverage by metric name: addition_cot is covered as "addition" is
        source = "icl_novel" if metric.startswith("icl_novel") else metric.split("_")[0] \
            if metric.startswith(("addition", "icl_")) else metric
        coverage[metric] = coverage[source]
    for source in ("addition", "icl", "icl_novel"):
        coverage.pop(source)
    return dict(sorted(report.items()))
