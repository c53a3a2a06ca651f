"""The book's last chapter (notebooks/11_summary.ipynb): every chapter's results side by side.

    docs = book_results("cpu")                  # results/cpu/*.json, less the summary's own file
    measured_table(docs)                        # one row per method; a missing chapter says so
    claim_ledger(docs), ledger_totals(...)      # every claim of the book, and how many held
    provenance(docs), provenance_warnings(...)  # what made the numbers; mixed builds are named
    seed_comparison(measured_table(docs))       # the source's qualitative columns vs this build

Nothing here types a measured number: every value is read from the results files. Which run
and metric stand for a chapter is the chapter's own declaration (`Results.headline`); a chapter
that declares none gets "no headline declared", never a guess.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .results import load_results

SUMMARY_CHAPTER = "11_summary"

# ---- the seed: the table and rule of thumb this lab's source material ends with ---------------
# Qualitative wording only (no measured numbers). Levels are read as sets: "Low–Medium" agrees
# with a derived Low or Medium.
LEVELS = ["None", "Low", "Medium", "High", "Very high"]


@dataclass(frozen=True)
class SeedRow:
    key: str  # row id used by the chooser and the decision flow
    chapter: str  # the notebook stem that measures it
    method: str  # as the seed names it
    compute_cost: str
    data_need: str
    purpose: str
    impact: str
    example: str
    context: bool = False  # a context row (base model, real model), not a tuning method


SEED = [
    SeedRow(
        "base",
        "00_base_model",
        "Base model (context)",
        "—",
        "—",
        "the model every chapter starts from",
        "—",
        "labworld-base",
        context=True,
    ),
    SeedRow(
        "prompting",
        "01_prompt_engineering",
        "Prompt engineering",
        "None",
        "None",
        "guide the output through the input",
        "temporary, task-specific",
        "few-shot prompting",
    ),
    SeedRow(
        "prompt_tuning",
        "02_prompt_tuning",
        "Prompt / prefix tuning",
        "Low",
        "Low",
        "learn soft prompts",
        "lightweight task adaptation",
        "customer-support tone",
    ),
    SeedRow(
        "lora",
        "03_lora",
        "LoRA / PEFT",
        "Low–Medium",
        "Medium",
        "efficient fine-tuning",
        "domain- or task-specific",
        "finance, healthcare, legal adapters",
    ),
    SeedRow(
        "full_ft",
        "04_full_finetuning",
        "Full fine-tuning",
        "Very high",
        "High",
        "adapt the whole model",
        "deep specialisation",
        "a legal or medical model",
    ),
    SeedRow(
        "instruction_tuning",
        "05_instruction_tuning",
        "Instruction tuning",
        "High",
        "High",
        "follow instructions",
        "general usability",
        "Alpaca, FLAN",
    ),
    SeedRow(
        "rlhf",
        "06_rlhf",
        "RLHF",
        "Very high",
        "High",
        "align with human preferences",
        "safer, more helpful replies",
        "ChatGPT's alignment",
    ),
    SeedRow(
        "domain_adaptation",
        "07_domain_adaptation",
        "Domain adaptation",
        "Medium–High",
        "Medium–High",
        "add domain knowledge",
        "domain expertise",
        "BioBERT, FinBERT",
    ),
    SeedRow(
        "distillation",
        "08_distillation",
        "Distillation",
        "Medium",
        "Medium",
        "compress a model",
        "smaller and faster",
        "DistilBERT",
    ),
    SeedRow(
        "adapters",
        "09_adapters",
        "Adapters",
        "Low",
        "Medium",
        "modular task learning",
        "multi-task, swappable",
        "AdapterHub",
    ),
    SeedRow(
        "real_model",
        "10_real_model",
        "A real open model (context)",
        "—",
        "—",
        "the same recipes on SmolLM2-135M",
        "—",
        "SmolLM2-135M-Instruct",
        context=True,
    ),
]
SEED_BY_CHAPTER = {row.chapter: row for row in SEED}

# The kind of data a run's method consumes (the run's own `method` field, see the schema).
DATA_KIND = {
    "prompting": "none",
    "baseline": "none",
    "dpo": "preference pairs",
    "reward_model": "preference pairs",
    "rloo": "prompts + reward model",
    "grpo": "prompts + reward model",
    "continued_pretraining": "unlabeled tokens",
    "dapt": "unlabeled tokens",
    "pretraining": "unlabeled tokens",
    "distillation": "teacher outputs",
}


def seed_levels(wording: str) -> set[str]:
    """ "Low–Medium" -> {"Low", "Medium"}; "Very high" -> {"Very high"}; "—" -> set()."""
    parts = [p.strip() for p in wording.replace("–", "-").split("-")]
    out = set()
    for part in parts:
        for level in LEVELS:
            if part.lower() == level.lower():
                out.add(level)
    return out


# ---- loading --------------------------------------------------------------------------------
def is_summary(doc: dict) -> bool:
    """The summary's own results file (it records the files it read under `inputs`)."""
    return doc.get("chapter") == SUMMARY_CHAPTER or "inputs" in doc


def is_bench(doc_or_stem) -> bool:
    """`python -m labkit bench`'s file (results/<profile>/bench.json, bench-<model>.json): in the
    results contract, but not a chapter of the book."""
    stem = doc_or_stem.get("chapter", "") if isinstance(doc_or_stem, dict) else str(doc_or_stem)
    return stem == "bench" or stem.startswith("bench-")


def book_results(profile, results_dir: str | Path | None = None) -> dict[str, dict]:
    """Every chapter's results of `profile`, by chapter stem, without the summary's own file and
    the bench's."""
    return {stem: doc for stem, doc in load_results(profile, results_dir).items()
            if not is_summary(doc) and not is_bench(doc)}


def input_digests(profile: str, results_dir: str | Path | None = None) -> dict[str, str]:
    """{file name: SHA-256} of each chapter results file of `profile` (what the summary read)."""
    folder = Path(results_dir or paths.RESULTS_DIR) / profile
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("*.json"))
        if p.stem != SUMMARY_CHAPTER and not is_bench(p.stem)
    }


# ---- one chapter's headline -------------------------------------------------------------------
def _run(doc: dict, name: str) -> dict | None:
    return next((r for r in doc.get("runs", []) if r.get("name") == name), None)


def headline(doc: dict) -> dict | None:
    """The chapter's declared headline, resolved against its own runs and claims:
    {run, metric, after, before, before_run, interval, claim, higher_is_better} or None.
    The values are read from the runs, so they can't disagree with them."""
    decl = doc.get("headline")
    if not decl:
        return None
    run = _run(doc, decl["run"])
    after = (run or {}).get("metrics", {}).get(decl["metric"])
    before_decl = decl.get("before") or {}
    before, before_label = None, None
    if "value" in before_decl:  # measured in the notebook, e.g. the base model on the same items
        before, before_label = before_decl["value"], before_decl.get("label", "declared value")
    elif before_decl:  # another metric of another run (default: the headline run itself)
        before_run = _run(doc, before_decl.get("run", decl["run"]))
        before_metric = before_decl.get("metric", decl["metric"])
        before = (before_run or {}).get("metrics", {}).get(before_metric)
        before_label = f"{before_decl.get('run', decl['run'])}: {before_metric}"
    claim = next((c for c in doc.get("claims", []) if c["id"] == decl.get("claim")), None)
    return {
        "run": run,
        "metric": decl["metric"],
        "after": after,
        "before": before,
        "before_label": before_label,
        "interval": (claim or {}).get("interval"),
        "claim": claim,
        "higher_is_better": decl.get("higher_is_better", True),
    }


# ---- the measured table -----------------------------------------------------------------------
COLUMNS = [
    "chapter",
    "method",
    "status",
    "run",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "peak_memory_mb",
    "memory_kind",
    "wall_time_s",
    "train_examples",
    "train_tokens",
    "artifact_mb",
    "data_kind",
    "metric",
    "before",
    "after",
    "gain",
    "interval",
    "claims_held",
    "claims_total",
]


def _chapter_order(docs: dict[str, dict]) -> list[str]:
    """The seed's chapters first, in book order, then any other chapter found (a new one)."""
    seen = [row.chapter for row in SEED]
    return seen + sorted(stem for stem in docs if stem not in seen)


def measured_table(docs: dict[str, dict]):
    """One row per method (the seed's, then any new chapter's), as a pandas DataFrame.

    A chapter without a results file: status "missing", every number NaN (never 0). A chapter
    without a headline declaration: status "no headline declared", its claim counts only.
    `gain` is after − before of the headline metric (sign flipped when lower is better);
    `interval` is the interval of the claim the headline names."""
    import pandas as pd

    rows = []
    for stem in _chapter_order(docs):
        seed = SEED_BY_CHAPTER.get(stem)
        doc = docs.get(stem)
        row = dict.fromkeys(COLUMNS, math.nan)
        row.update(
            chapter=stem,
            method=seed.method if seed else (doc or {}).get("method", stem),
            run=None,
            memory_kind=None,
            data_kind=None,
            metric=None,
            interval=None,
        )
        if doc is None:
            row["status"] = "missing: no results file"
            rows.append(row)
            continue
        claims = doc.get("claims", [])
        row["claims_held"] = sum(c["holds"] for c in claims)
        row["claims_total"] = len(claims)
        head = headline(doc)
        if head is None:
            row["status"] = f"no headline declared ({len(doc.get('runs', []))} runs in file)"
            rows.append(row)
            continue
        run = head["run"]
        if run is None:
            row["status"] = f"headline names run {doc['headline']['run']!r}, which the file lacks"
            rows.append(row)
            continue
        row.update(
            status="measured",
            run=run["name"],
            trainable_params=run["trainable_params"],
            total_params=run["total_params"],
            trainable_pct=100 * run["trainable_params"] / run["total_params"],
            peak_memory_mb=run["peak_memory_mb"],
            memory_kind=run["memory_kind"],
            wall_time_s=run["wall_time_s"],
            train_examples=run["train_examples"],
            train_tokens=run.get("train_tokens", math.nan),
            artifact_mb=run.get("artifact_mb", math.nan),
            data_kind=DATA_KIND.get(run["method"], "labeled examples") if run["train_examples"] else "none",
            metric=head["metric"],
            interval=head["interval"],
        )
        after = head["after"]
        before = head["before"]
        row["after"] = math.nan if after is None else after
        row["before"] = math.nan if before is None else before
        if after is not None and before is not None:
            row["gain"] = (after - before) * (1 if head["higher_is_better"] else -1)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def every_run(docs: dict[str, dict]):
    """Every run of every chapter (no headline needed): chapter, run, method and its costs."""
    import pandas as pd

    keys = [
        "name",
        "method",
        "base_model",
        "trainable_params",
        "total_params",
        "peak_memory_mb",
        "memory_kind",
        "wall_time_s",
        "train_examples",
        "train_tokens",
        "artifact_mb",
    ]
    rows = [
        {"chapter": stem, **{k: run.get(k, math.nan) for k in keys}}
        for stem in _chapter_order(docs)
        if stem in docs
        for run in docs[stem]["runs"]
    ]
    return pd.DataFrame(rows, columns=["chapter", *keys])


# ---- derived qualitative columns --------------------------------------------------------------
COST_RULE = (
    "compute cost = wall time × peak memory of the chapter's headline run, relative to full "
    "fine-tuning's headline run (the reference, Very high by definition): no trained parameters "
    "→ None; under 0.2 → Low; 0.2 to 0.5 → Medium; 0.5 to 0.9 → High; 0.9 or more → Very high"
)
DATA_RULE = (
    "data need = training examples of the headline run relative to full fine-tuning's (the "
    "reference, High by definition): none → None; under 0.2 → Low; 0.2 to 0.6 → Medium; 0.6 or "
    "more → High; beside it the kind of data the run's method consumes (labeled examples, "
    "unlabeled tokens, preference pairs, teacher outputs)"
)
REFERENCE_CHAPTER = "04_full_finetuning"


def _bin(ratio: float, edges: list[tuple[float, str]], top: str) -> str:
    for edge, level in edges:
        if ratio < edge:
            return level
    return top


def cost_level(row, reference) -> str | None:
    """The compute-cost level of one measured row (see COST_RULE); None if it can't be derived."""
    if row["status"] != "measured":
        return None
    if row["trainable_params"] == 0:
        return "None"
    if reference is None or reference["status"] != "measured":
        return None
    ref = reference["wall_time_s"] * reference["peak_memory_mb"]
    if not ref > 0:
        return None
    ratio = row["wall_time_s"] * row["peak_memory_mb"] / ref
    return _bin(ratio, [(0.2, "Low"), (0.5, "Medium"), (0.9, "High")], "Very high")


def data_level(row, reference) -> str | None:
    """The data-need level of one measured row (see DATA_RULE); None if it can't be derived."""
    if row["status"] != "measured":
        return None
    if row["train_examples"] == 0 or row["data_kind"] == "none":
        return "None"
    if reference is None or reference["status"] != "measured" or not reference["train_examples"] > 0:
        return None
    ratio = row["train_examples"] / reference["train_examples"]
    return _bin(ratio, [(0.2, "Low"), (0.6, "Medium")], "High")


def seed_comparison(table):
    """The seed's compute cost and data need beside the levels derived from this build, with
    "agree" / "disagree" per cell ("n/a" when the row or the reference is not measured)."""
    import pandas as pd

    ref_rows = table[table["chapter"] == REFERENCE_CHAPTER]
    reference = ref_rows.iloc[0] if len(ref_rows) else None
    rows = []
    for _, row in table.iterrows():
        seed = SEED_BY_CHAPTER.get(row["chapter"])
        if seed is not None and seed.context:
            continue
        out = {"chapter": row["chapter"], "method": row["method"]}
        for column, derive, seed_text in (
            ("compute_cost", cost_level, seed.compute_cost if seed else "—"),
            ("data_need", data_level, seed.data_need if seed else "—"),
        ):
            derived = derive(row, reference)
            out[f"{column}_seed"] = seed_text
            out[f"{column}_measured"] = derived or "n/a"
            levels = seed_levels(seed_text)
            out[f"{column}_agrees"] = (
                "n/a (the reference)"
                if row["chapter"] == REFERENCE_CHAPTER
                else "n/a"
                if derived is None or not levels
                else "agree"
                if derived in levels
                else "disagree"
            )
        out["data_kind"] = row["data_kind"]
        rows.append(out)
    return pd.DataFrame(rows)


# ---- the claims ledger ------------------------------------------------------------------------
def claim_ledger(docs: dict[str, dict]):
    """Every claim of every chapter: chapter, id, text, measured, interval, threshold, verdict."""
    import pandas as pd

    rows = []
    for stem in _chapter_order(docs):
        for c in docs.get(stem, {}).get("claims", []):
            measured = c["measured"] if c["measured"] is not None else c.get("measured_nonfinite")
            rows.append(
                {
                    "chapter": stem,
                    "id": c["id"],
                    "text": c["text"],
                    "measured": measured,
                    "interval": c.get("interval"),
                    "comparison": c.get("comparison", ">="),
                    "threshold": c["threshold"],
                    "holds": c["holds"],
                }
            )
    return pd.DataFrame(
        rows, columns=["chapter", "id", "text", "measured", "interval", "comparison", "threshold", "holds"]
    )


def ledger_totals(ledger):
    """Claims held / total per chapter, and a last row "book" for all of them."""
    import pandas as pd

    grouped = ledger.groupby("chapter", sort=False)["holds"]
    totals = pd.DataFrame({"held": grouped.sum().astype(int), "total": grouped.size()})
    totals.loc["book"] = [int(ledger["holds"].sum()), len(ledger)]
    totals["not_held"] = totals["total"] - totals["held"]
    return totals


# ---- provenance -------------------------------------------------------------------------------
def provenance(docs: dict[str, dict]):
    """Per results file: profile, device, library versions, commit, timestamp, base models."""
    import pandas as pd

    rows = []
    for stem in _chapter_order(docs):
        if stem not in docs:
            continue
        doc = docs[stem]
        env = doc["environment"]
        rows.append(
            {
                "chapter": stem,
                "profile": doc["profile"],
                "device": env["device"],
                "device_name": env["device_name"],
                "torch": env["torch"],
                "transformers": env["transformers"],
                "peft": env.get("peft"),
                "trl": env.get("trl"),
                "commit": (env.get("git_commit") or "unknown")[:10],
                "timestamp": env["timestamp"],
                "base_models": ", ".join(sorted({r["base_model"] for r in doc["runs"]})),
            }
        )
    return pd.DataFrame(rows)


def provenance_warnings(docs: dict[str, dict]) -> list[str]:
    """A sentence for each way the files were not made by one build: different profiles, devices,
    library versions, commits (or an unknown commit), or the book's model (base model of the
    chapters that are not context rows) differing between chapters."""
    if not docs:
        return ["no results files: run the chapters first (make book)"]
    out = []

    def spread(label, value_of, only=None):
        values = {}
        for stem, doc in docs.items():
            if only and not only(stem):
                continue
            values.setdefault(value_of(doc), []).append(stem)
        if len(values) > 1:
            parts = "; ".join(f"{v}: {', '.join(sorted(s))}" for v, s in sorted(values.items(), key=str))
            out.append(f"mixed {label}: {parts}")

    spread("profiles", lambda d: d["profile"])
    spread("devices", lambda d: d["environment"]["device"])
    for lib in ("torch", "transformers", "peft", "trl"):
        spread(f"{lib} versions", lambda d, lib=lib: d["environment"].get(lib))
    spread(
        "commits (a partial rebuild mixing code versions)",
        lambda d: (d["environment"].get("git_commit") or "unknown")[:10],
    )
    unknown = sorted(s for s, d in docs.items() if not d["environment"].get("git_commit"))
    if unknown:
        out.append(f"unknown commit (not built from a git checkout): {', '.join(unknown)}")

    # The same model name with different weights in different chapters: e.g. labworld-base
    # retrained between two chapters' runs. Different names (chapter 10's real model, chapter 6's
    # SFT policy) are different models by design.
    weights: dict[str, dict[str, list[str]]] = {}
    for stem, doc in docs.items():
        for run in doc["runs"]:
            if run.get("base_model_sha256"):
                stems = weights.setdefault(run["base_model"], {}).setdefault(
                    run["base_model_sha256"][:10], []
                )
                if stem not in stems:
                    stems.append(stem)
    for name, by_sha in sorted(weights.items()):
        if len(by_sha) > 1:
            parts = "; ".join(f"{sha}: {', '.join(sorted(s))}" for sha, s in sorted(by_sha.items()))
            out.append(
                f"mixed base models: {name} has different weights (SHA-256) in different chapters: {parts}"
            )
    return out


# ---- at real scale: the lab's memory estimate on published model configurations -------------
CONFIG_DIR = paths.DATA_DIR / "model_configs"
REAL_MODELS = {"135M": "smollm2-135m.json", "1.7B": "smollm2-1.7b.json", "8B": "llama-3.1-8b.json"}
# What each method trains at real scale (a recipe, not a measurement; chapter 11 prints it).
RECIPES = {
    "prompt_tuning": "20 virtual tokens (a 20 × hidden soft prompt)",
    "lora": "LoRA rank 16 on all 7 projections of every layer",
    "qlora": "QLoRA: the same LoRA over a 4-bit NF4 base (Dettmers et al. 2023)",
    "full_ft": "every weight",
    "instruction_tuning": "every weight (full supervised fine-tuning)",
    "rlhf": "every weight of the policy, plus a frozen reference copy (DPO)",
    "domain_adaptation": "every weight (continued pretraining)",
    "distillation": "a student with half the layers, every weight, plus the frozen teacher",
    "adapters": "bottleneck adapters of width 64 after attention and MLP in every layer",
}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load_model_config(name: str, config_dir: str | Path | None = None):
    """A transformers config from data/model_configs/<name> (published sizes, no weights)."""
    from transformers import AutoConfig

    data = json.loads((Path(config_dir or CONFIG_DIR) / name).read_text())
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    return AutoConfig.for_model(data.pop("model_type"), **data)


def meta_model(config, trainable_all: bool, extra_trainable: int = 0, layers: int | None = None):
    """The model on the meta device (no memory, no weights) in bf16; `extra_trainable` adds that
    many trainable parameters (an adapter, a soft prompt) to a frozen model."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    if layers is not None:
        config = copy.deepcopy(config)
        config.num_hidden_layers = layers
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.requires_grad_(trainable_all)
        if extra_trainable:
            model.extra = torch.nn.Parameter(torch.empty(extra_trainable, dtype=torch.bfloat16))
    return model


def real_scale_memory(
    batch_size: int = 4,
    seq_len: int = 1024,
    config_dir: str | Path | None = None,
    models: dict[str, str] | None = None,
):
    """Estimated peak training memory (GB, 1e9 bytes) per method (RECIPES) and model size
    (REAL_MODELS), from `labkit.measure.estimate_training_memory_mb` on the published configs:
    weights, gradients and two Adam moments at bf16, the activations autograd saves and the logits (TRL's
    chunked loss; the full logits where the chapter's trainer builds them: domain adaptation and
    distillation), on a GPU (where models of these sizes train). The estimator is checked against
    measured peaks at 135M parameters in fp32 on a CPU (tests/test_memory_estimate.py), not at these
    sizes, in bf16 or on a GPU."""
    import copy

    import pandas as pd

    from .measure import estimate_training_memory_mb

    mb = 2**20 / 1e9
    table = {}
    for size, file in (models or REAL_MODELS).items():
        config = load_model_config(file, config_dir)

        def est(method, cfg=config, batch=batch_size, **kw):  # at bf16: weights, gradients, Adam in 16 bits
            return estimate_training_memory_mb(cfg, batch, seq_len, method=method, precision="bf16",
                                               device="cuda", **kw)

        weights_gb = est("frozen")["weights"] * mb
        full_gb = est("full_ft")["total"] * mb
        student = copy.deepcopy(config)
        student.num_hidden_layers = max(1, config.num_hidden_layers // 2)
        table[size] = {
            "prompt_tuning": est("prompt_tuning", virtual_tokens=20)["total"] * mb,
            "lora": est("lora", lora_r=16, lora_targets=LINEARS)["total"] * mb,
            "qlora": est("qlora", lora_r=16, lora_targets=LINEARS)["total"] * mb,
            "full_ft": full_gb,
            "instruction_tuning": full_gb,
            # DPO stacks each pair's chosen and rejected replies: 2 x batch_size sequences, + the reference
            "rlhf": est("full_ft", batch=2 * batch_size)["total"] * mb + weights_gb,
            # chapter 7 pretrains with a plain Trainer and chapter 8's loss reads the logits: both build
            # the full logits (distillation: the student's, trained, and the frozen teacher's, at bf16)
            "domain_adaptation": est("full_ft", logits="full")["total"] * mb,
            "distillation": (est("full_ft", cfg=student, logits="full")["total"] * mb + weights_gb
                             + batch_size * seq_len * config.vocab_size * 2 / 1e9),
            "adapters": est("adapters", bottleneck_size=64, adapter_targets=2)["total"] * mb,
        }
    return pd.DataFrame(table)


# ---- display and the summary's own results file ---------------------------------------------
def _human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def display_table(table, estimates=None):
    """The measured table as the chapter shows it: units in the cells, "—" where nothing was
    measured, the status where a row has no numbers; `estimates` (real_scale_memory) adds one
    column per model size."""
    import pandas as pd

    def fmt(value, template):
        return (
            "—"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else template.format(value)
        )

    rows = []
    for _, r in table.iterrows():
        interval = r["interval"]
        gain = fmt(r["gain"], "{:+.3g}")
        if isinstance(interval, list):
            gain += f" [{interval[0]:+.3g}, {interval[1]:+.3g}]"
        pct = r["trainable_pct"]
        trainable = (
            "—"
            if math.isnan(r["trainable_params"])
            else (
                f"{_human(r['trainable_params'])} ({pct:.2g}%)"
                if pct < 10
                else f"{_human(r['trainable_params'])} ({pct:.0f}%)"
            )
        )
        examples = (
            "—"
            if math.isnan(r["train_examples"])
            else (
                f"{r['train_examples']:,.0f} / "
                + ("—" if math.isnan(r["train_tokens"]) else _human(r["train_tokens"]))
            )
        )
        headline = (
            "—"
            if r["metric"] is None
            else f"{r['metric']}: {fmt(r['before'], '{:.3g}')} → {fmt(r['after'], '{:.3g}')}"
        )
        claims = "—" if math.isnan(r["claims_total"]) else f"{r['claims_held']:.0f} / {r['claims_total']:.0f}"
        row = {
            "method": r["method"],
            "status": r["status"],
            "trainable": trainable,
            "peak memory": fmt(r["peak_memory_mb"], "{:,.0f} MB " + str(r["memory_kind"])),
            "wall time": fmt(r["wall_time_s"], "{:,.1f} s"),
            "examples / tokens": examples,
            "artifact": fmt(r["artifact_mb"], "{:.3g} MB"),
            "headline": headline,
            "gain [95% interval]": gain,
            "claims held": claims,
        }
        seed = SEED_BY_CHAPTER.get(r["chapter"])
        if estimates is not None:
            key = seed.key if seed else None
            for size in estimates.columns:
                value = estimates[size].get(key) if key in estimates.index else None
                row[f"est. {size}"] = "—" if value is None else f"{value:,.1f} GB"
        rows.append(row)
    return pd.DataFrame(rows, index=table["chapter"])


def write_summary_results(results, results_dir: str | Path | None = None) -> Path:
    """Write the summary's results file with `inputs`: the SHA-256 of every chapter file it read,
    so a reader can tell which build a summary describes."""
    from .results import validate, write_json_atomic

    doc = results.to_dict()
    doc["inputs"] = input_digests(results.profile, results_dir)
    target = Path(results_dir or paths.RESULTS_DIR) / results.profile / f"{results.chapter}.json"
    validate(doc, target)
    write_json_atomic(target, doc)
    return target


# ---- never stale: `make book` runs the summary again whenever a results file changed ----------
def is_fresh(profile: str, results_dir: str | Path | None = None) -> bool:
    """True when the summary's results file records exactly the chapter files that exist now
    (same names, same SHA-256): its page shows the current results."""
    own = Path(results_dir or paths.RESULTS_DIR) / profile / f"{SUMMARY_CHAPTER}.json"
    try:
        recorded = json.loads(own.read_text()).get("inputs")
    except (OSError, ValueError):
        return False
    return recorded == input_digests(profile, results_dir)


def forget_executed(notebook: str | Path, build_dir: str | Path, root: str | Path = ".") -> bool:
    """Remove `notebook`'s current code from the book's jupyter cache and delete its doctree, so
    the next `jupyter-book build` reads the page and executes it again. True if a cached run
    was removed."""
    import nbformat
    from jupyter_cache import get_cache

    notebook, build_dir = Path(notebook), Path(build_dir)
    doctree = (
        build_dir / ".doctrees" / notebook.resolve().relative_to(Path(root).resolve()).with_suffix(".doctree")
    )
    doctree.unlink(missing_ok=True)
    cache_dir = build_dir / ".jupyter_cache"
    if not cache_dir.exists():
        return False
    cache = get_cache(str(cache_dir))
    try:
        record = cache.match_cache_notebook(nbformat.read(notebook, as_version=4))
    except KeyError:
        return False
    cache.remove_cache(record.pk)
    return True


def refresh(
    build_dir: str | Path = "_build",
    notebook: str | Path = f"notebooks/{SUMMARY_CHAPTER}.ipynb",
    profile: str | None = None,
    results_dir: str | Path | None = None,
    root: str | Path = ".",
) -> bool:
    """`make book`'s rule for the summary, before and after `jupyter-book build`: if the chapter
    results differ from those the summary last read, forget its executed copy (it runs again in
    the next build) and return False; True when it is fresh."""
    if profile is None:
        from .profiles import get_profile

        profile = get_profile().name
    if is_fresh(profile, results_dir):
        return True
    forget_executed(notebook, build_dir, root)
    return False


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        description="python -m labkit.summary refresh: exit 0 when the "
        "summary chapter read the current results, else forget its cached "
        "run (it executes in the next jupyter-book build) and exit 1"
    )
    parser.add_argument("command", choices=["refresh"])
    parser.add_argument("--build-dir", default="_build")
    parser.add_argument("--notebook", default=f"notebooks/{SUMMARY_CHAPTER}.ipynb")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    fresh = refresh(args.build_dir, args.notebook, args.profile)
    if not fresh:
        print(f"summary: the results changed since {args.notebook} last ran; it runs again in this build")
    sys.exit(0 if fresh else 1)
