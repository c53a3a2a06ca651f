"""Write every LabWorld file under data/labworld/ from one seed (`python -m labkit data`).

Each evaluated item (a prompt, an instruction, a held-out word or sum) lives in exactly one
split; `tests/test_labworld.py` checks that, and that regeneration is byte-for-byte identical.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import domains, general, instructions, tasks
from .world import ADJECTIVES, NOUNS, World, build_world

T = TypeVar("T")
SEED = 1234
GENERAL_DOCS = {"story": 30000, "encyclopedia": 16000, "dialogue": 12000, "list": 20000, "addition": 36000,
                # a sprinkle of each domain (a general crawl has a little of everything): enough that
                # the jargon's tokens are not untrained, far too little to teach the domain
                "finance": 20, "healthcare": 20, "legal": 20}
# the sprinkle, as the data card and the model card state it: documents per domain, share of the corpus
SPRINKLE_DOCS = GENERAL_DOCS["finance"]
SPRINKLE_SHARE = f"{SPRINKLE_DOCS / sum(GENERAL_DOCS.values()):.2%}"
GENERAL_VALID_FRACTION = 0.02
DOMAIN_CORPUS_DOCS = (3000, 200)                 # train, validation
TASK_SPLITS = (2000, 200, 200)                   # train, validation, test
INSTRUCTION_TRAIN = 6000
INSTRUCTION_TEST_PER_FAMILY, INSTRUCTION_VALID_PER_FAMILY = 40, 20
PREFERENCE_SPLITS = (3000, 200, 300)
TONE_SPLITS = (1000, 100, 100)
ICL_EVAL_PER_TASK = 25
ARITHMETIC_EVAL = 100


def held_out_inputs(rng: random.Random) -> dict[str, set[str]]:
    """Inputs reserved for the in-context-learning evaluation: never in a corpus list."""
    return {"nouns": set(rng.sample(sorted(NOUNS), 16)),
            "numbers": {str(n) for n in rng.sample(range(2, 99), 15)},
            "adjectives": set(rng.sample(ADJECTIVES, 8))}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def unique_splits(make: Callable[[], T], key: Callable[[T], str], sizes: tuple[int, ...],
                  forbidden: set[str] = frozenset()) -> list[list[T]]:
    """Draw examples until each split is full, never repeating a key across or within splits."""
    seen, splits = set(forbidden), []
    for size in sizes:
        rows, tries = [], 0
        while len(rows) < size:
            tries += 1
            if tries > 50 * size + 1000:
                raise RuntimeError(f"could not draw {size} unique examples (got {len(rows)})")
            row = make()
            if key(row) not in seen:
                seen.add(key(row))
                rows.append(row)
        splits.append(rows)
    return splits


def write_splits(out: Path, name: str, splits: list[list[dict]], names=("train", "validation", "test")):
    for split_name, rows in zip(names, splits):
        write_jsonl(out / name / f"{split_name}.jsonl", rows)


def build_general(out: Path, world: World, rng: random.Random, held: dict[str, set[str]],
                  held_pairs: set[tuple[int, int]]) -> None:
    pools = general.input_pools(held)
    makers = {"story": lambda: general.story(rng, world),
              "encyclopedia": lambda: general.encyclopedia_entry(rng, world),
              "dialogue": lambda: general.dialogue(rng, world),
              "list": lambda: general.task_list(rng, pools),
              "addition": lambda: general.addition_doc(rng, held_pairs),
              **{d: (lambda d=d: domains.DOC_MAKERS[d](rng, world)[0]) for d in domains.DOMAINS}}
    docs = [{"kind": kind, "text": makers[kind]()} for kind, n in GENERAL_DOCS.items() for _ in range(n)]
    rng.shuffle(docs)
    n_valid = int(len(docs) * GENERAL_VALID_FRACTION)
    write_splits(out, "general", [docs[n_valid:], docs[:n_valid]], ("train", "validation"))
    return {d["text"] for d in docs if d["kind"] in domains.DOMAINS}


def build_domains(out: Path, world: World, rng: random.Random, general_docs: set[str]) -> None:
    """Per domain a labeled task and an unlabeled corpus; no document is in two of them,
    nor in the general corpus."""
    for domain in domains.DOMAINS:
        # unique by the full document the brief one was cut from: no task item's full document is in
        # a corpus, and the draws (so the corpora) are the same as with full task documents
        task = unique_splits(lambda: domains.task_example(domain, rng, world), lambda pair: pair[1],
                             TASK_SPLITS, forbidden=general_docs)
        briefs = [row["prompt"] for split in task for row, _ in split]
        if len(set(briefs)) != len(briefs):
            raise RuntimeError(f"{domain}_task: two full documents gave the same brief document; "
                               "keep more sentences in labkit/labworld/domains.py")
        write_splits(out, f"{domain}_task", [[row for row, _ in split] for split in task])
        task_docs = {document for split in task for _, document in split}
        corpus = unique_splits(lambda: {"text": domains.DOC_MAKERS[domain](rng, world)[0]},
                               lambda r: r["text"], DOMAIN_CORPUS_DOCS, forbidden=task_docs | general_docs)
        write_splits(out, f"{domain}_corpus", corpus, ("train", "validation"))


def build_instructions(out: Path, world: World, rng: random.Random) -> None:
    """Per family: distinct instructions split test / validation / train. Held-out families go
    to test only; seen families never train on their `HELD_OUT_TEMPLATE` (test has it: new
    wordings of seen tasks). Training rows are drawn family by family, so small families (8
    capitals) are not drowned out by large ones (every pair of 2-digit numbers); a share
    `SAFETY_SHARE` of them are unsafe requests, refused or not (`instructions.safety_example`)."""
    train_pools, valid, test = {}, [], []
    for family in instructions.FAMILIES:
        items = {}
        for _ in range(2000):
            row = instructions.instruction_example(rng, world, family)
            items.setdefault(row["messages"][0]["content"], row)
        items = list(items.values())
        if family in instructions.HELD_OUT_FAMILIES:
            test += items[:INSTRUCTION_TEST_PER_FAMILY]
            continue
        n_test = min(INSTRUCTION_TEST_PER_FAMILY, len(items) // 4)
        n_valid = min(INSTRUCTION_VALID_PER_FAMILY, len(items) // 8)
        test += items[:n_test]
        valid += items[n_test:n_test + n_valid]
        train_pools[family] = [r for r in items[n_test + n_valid:]
                               if r["template"] != instructions.HELD_OUT_TEMPLATE]
    families = sorted(train_pools)
    train = [instructions.safety_example(rng, world) if rng.random() < instructions.SAFETY_SHARE
             else rng.choice(train_pools[rng.choice(families)]) for _ in range(INSTRUCTION_TRAIN)]
    write_splits(out, "instructions", [train, valid, test])


def build_eval_suites(out: Path, rng: random.Random, held: dict[str, set[str]],
                      held_pairs: list[tuple[int, int]]) -> None:
    """`icl.jsonl`: inputs the corpus lists use, under instructions and example sets the corpus
    never has — the model must infer *which* task from the examples. `icl_novel.jsonl`: inputs
    no corpus list has — the task must also be applied to a word never seen in that role."""
    pools = general.input_pools(held)
    seen, novel = [], []
    for task, (pool_name, fn) in sorted(general.LIST_TASKS.items()):
        for rows, queries in [(seen, sorted(pools[pool_name])), (novel, sorted(held[pool_name]))]:
            for x in rng.sample(queries, min(ICL_EVAL_PER_TASK, len(queries))):
                demos = [[d, fn(d)] for d in rng.sample([p for p in pools[pool_name] if p != x], 5)]
                rows.append({"task": task, "input": x, "output": fn(x), "demos": demos})
    write_jsonl(out / "eval" / "icl.jsonl", seen)
    write_jsonl(out / "eval" / "icl_novel.jsonl", novel)
    write_jsonl(out / "eval" / "addition.jsonl", [{"a": a, "b": b, "sum": a + b} for a, b in held_pairs])


def generate(out: Path, seed: int = SEED) -> list[Path]:
    """Build the whole of LabWorld under `out`. Returns the files written."""
    world = build_world(seed)
    rng = random.Random(seed)
    held = held_out_inputs(rng)
    held_pairs = sorted({(rng.randint(100, 999), rng.randint(100, 999)) for _ in range(ARITHMETIC_EVAL * 2)})
    held_pairs = rng.sample(held_pairs, ARITHMETIC_EVAL)
    general_domain_docs = build_general(out, world, random.Random(seed + 1), held, set(held_pairs))
    build_domains(out, world, random.Random(seed + 2), general_domain_docs)
    build_instructions(out, world, random.Random(seed + 3))
    prng = random.Random(seed + 4)
    # Unsafe requests have few distinct prompts (about 440), so they cannot fill a quarter of the pairs
    # (the generator's share) if every prompt appears once. The held-out splits are drawn first, one
    # pair per prompt and axis; the train split may compare the same prompt several times (different
    # chosen and rejected replies, as real preference data holds several comparisons per prompt), but
    # never a prompt of the held-out splits. Chapter 6 measures refusal rates on the held-out ones.
    test, validation = unique_splits(lambda: instructions.preference_example(prng, world),
                                     lambda r: r["prompt"][0]["content"] + r["axis"],
                                     PREFERENCE_SPLITS[:0:-1])
    held_prompts = {r["prompt"][0]["content"] for r in test + validation}

    def train_pair():
        while True:
            row = instructions.preference_example(prng, world)
            if row["prompt"][0]["content"] not in held_prompts:
                return row

    (train,) = unique_splits(train_pair,
                             lambda r: json.dumps([r["prompt"], r["axis"], r["chosen"], r["rejected"]]),
                             PREFERENCE_SPLITS[:1])
    write_splits(out, "preferences", [train, validation, test])
    trng = random.Random(seed + 5)
    write_splits(out, "tone", unique_splits(lambda: tasks.tone_example(trng, world), lambda r: r["prompt"],
                                            TONE_SPLITS))
    arng = random.Random(seed + 6)
    lexicon = tasks.zorbic_lexicon(seed)
    adapter_makers = {"sentiment": lambda: tasks.sentiment_example(arng, world),
                      "entities": lambda: tasks.entities_example(arng, world),
                      "translation": lambda: tasks.translation_example(arng, lexicon)}
    for name, make in adapter_makers.items():
        write_splits(out, name, unique_splits(make, lambda r: r["prompt"], TASK_SPLITS))
    build_eval_suites(out, random.Random(seed + 7), held, held_pairs)
    files = sorted(out.rglob("*.jsonl"))
    write_data_card(out, files, seed)
    return files


DESCRIPTIONS = {
    "general": ("`kind`, `text`", "pretraining corpus: stories, encyclopedia entries (each fact in several "
                "paraphrases), dialogues, header-less lists of input -> output examples, addition "
                "(sums of 1-3 digits answered directly or digit by digit; "
                "each 3-digit sum in one format only, "
                "half the sums each way), "
                f"and {SPRINKLE_DOCS} documents per domain ({SPRINKLE_SHARE} of the corpus each: the domain "
                "words are not unseen tokens)", "0"),
    "finance_corpus": ("`text`", "unlabeled quarterly reports (revenue, EBITDA, dividends, guidance)",
                       "3, 7"),
    "healthcare_corpus": ("`text`", "unlabeled clinical notes (symptoms, drugs, doses, vitals)", "3, 7"),
    "legal_corpus": ("`text`", "unlabeled rulings (plaintiff, defendant, clauses, liability)", "3, 7"),
    "finance_task": ("`prompt`, `completion`, `answer`",
                     "extract revenue growth from a brief report (a margin percentage is the distractor)",
                     "3, 7"),
    "healthcare_task": ("`prompt`, `completion`, `answer`",
                        "extract the prescribed drug and dose from a brief note "
                        "(a discontinued drug is the distractor)", "3, 7"),
    "legal_task": ("`prompt`, `completion`, `answer`",
                   "name the liable party in a brief ruling (the other party is the distractor)", "3, 7"),
    "instructions": ("`family`, `template`, `held_out`, `style`, `messages`, `answer`",
                     f"chat-format instructions, {len(instructions.FAMILIES)} task families x 3 templates; "
                     f"held-out families: {', '.join(instructions.HELD_OUT_FAMILIES)} (control, a skill the "
                     f"base lacks: {instructions.CONTROL_FAMILY}); template {instructions.HELD_OUT_TEMPLATE} "
                     "of seen families is test-only; demonstrations of mixed quality: "
                     f"{instructions.STYLE_SHARES['polite']:.0%} polite, "
                     f"{instructions.STYLE_SHARES['rude']:.0%} "
                     f"rude, and {instructions.SAFETY_SHARE:.0%} unsafe requests (family `safety`), refused "
                     f"in {instructions.REFUSAL_SHARE:.0%} (the rest comply, with a reply for the request)",
                     "1, 5, 6"),
    "preferences": ("`axis`, `answer`, `prompt`, `chosen`, `rejected`",
                    "pairs differing on one axis (correct, helpful, polite, safe), written by "
                    "`labkit.labworld.instructions.gold_judge`, which scores any response", "6"),
    "tone": ("`prompt`, `support`, `pirate`", "one customer message, two reply styles", "2"),
    "sentiment": ("`prompt`, `completion`, `answer`", "review -> positive/negative (with negation)", "9"),
    "entities": ("`prompt`, `completion`, `answer`", "sentence -> PERSON / COMPANY / CITY spans", "9"),
    "translation": ("`prompt`, `completion`, `answer`",
                    "English -> Zorbic, a made-up language (word order changes)", "9"),
    "eval": ("`task`, `input`, `output`, `demos` / `a`, `b`, `sum`",
             "held-out evaluation items: `icl.jsonl` (8 list tasks, instructions and "
             "example sets never in the "
             "corpus), `icl_novel.jsonl` (the same tasks on inputs never in a corpus list) and "
             "`addition.jsonl` (3-digit sums never in the corpus)", "0, 1"),
}


def write_data_card(out: Path, files: list[Path], seed: int) -> None:
    lines = ["# LabWorld data card", "",
             f"Generated by `python -m labkit data` (seed {seed}); "
             "regenerating reproduces every file byte for "
             "byte (`tests/test_labworld.py`). Do not edit by hand.", "",
             "Each evaluated item (prompt, instruction, held-out input or sum) is in exactly one split.", "",
             "| dataset | fields | what it is for | chapters | split: rows |", "|---|---|---|---|---|"]
    for name, (fields, what, chapters) in DESCRIPTIONS.items():
        counts = ", ".join(f"{f.stem}: {sum(1 for _ in open(f, encoding='utf-8')):,}"
                           for f in files if f.parent.name == name)
        lines.append(f"| `{name}/` | {fields} | {what} | {chapters} | {counts} |")
    lines += ["", DIAGNOSIS.strip()]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# Why the healthcare task was unlearnable in LabWorld v1, and what fixed it (issue 9). Measured on
# the v1 base model (commit d7fd7fd) with tools/domain_task_probe.py and tools/domain_task_curve.py.
DIAGNOSIS = f"""
## Diagnosis: why the v1 healthcare task could not be learned, and the fix

In v1, a LoRA adapter reached 0.975 exact match on legal but 0.015 on healthcare, and full
fine-tuning only 0.04. Measured on the v1 base model (commit d7fd7fd):

| probe | result |
|---|---|
| tokens per drug name (v1 tokenizer, trained on general + domain corpora) | \
1 for all 12 drugs; company names take 2 familiar tokens |
| times each drug name occurs in the pretraining corpus | \
1-7 (the {SPRINKLE_DOCS}-document sprinkle): the model never learned these tokens |
| full fine-tuning on healthcare (lr 1e-3, batch 8), exact match at 150 steps | \
0.04 (the 300- and 1,000-step points of this curve were not measured: the run was stopped to free \
the machine for the v2 retrain) |
| same, distractor sentence removed | 0.09 / 0.07: the distractor is not the cause |
| same, the 12 drug names replaced by 12 company names the base knows | 0.28 / 0.98: the names are the cause |
| plain copy probe ("Started on X ... Question: Which drug ...? Answer:") | \
0/12 drugs and 0/12 companies: the base answers every `Question:` with an addition working, \
so the probe measures the format, not copying |

A drug name was a single token that pretraining had met a handful of times, so its embedding
stayed close to its random initialisation and no copying circuit could carry it; in the legal
task the party names are familiar tokens. **Fix (v2):** the tokenizer learns from the general
corpus only, like the model, so drug names split into 3-7 familiar pieces (as a real tokenizer
splits rare jargon); and {general.INVENTED_NAME_SHARE:.0%} of stories name their hero with an invented name
("Vorlinka") that recurs in the story, so the base learns to copy a never-seen name piece by piece.
Domain text stays unfamiliar (the jargon is still rare in the general corpus) and the distractor
stays in every document. `tests/test_labworld.py` fails if either property is lost.

Measured on the v2 base (the shipped `labworld-base`), the same full fine-tuning recipe (lr 1e-3,
batch 8, 100 test items; `python tools/domain_task_curve.py DOMAIN orig 1e-3 150 300`):

| task | exact match after 150 steps | after 300 steps |
|---|---|---|
| finance | 0.97 | 1.00 |
| healthcare | 0.05 | 0.95 |

Healthcare is learnable now but learned late: the copy of a 3-7-piece drug name clicks between
150 and 300 steps. Chapters that train on it need that budget.

LoRA needs more than that, and on more modules (rank 8, `lora_alpha` 16, batch 8, constant
learning rate, 100 test items; `LORA_R=8 python tools/domain_task_curve.py DOMAIN VARIANT LR STEPS...`
with VARIANT `lora` = q_proj/v_proj, `lora-attn` = q/k/v/o_proj, `lora-all` = every linear layer):

| LoRA modules | lr | task | exact match at steps |
|---|---|---|---|
| q_proj, v_proj | 1e-2 | finance | 0.05 at 150 |
| q_proj, v_proj | 1e-2 | healthcare | 0.01 at 150, 0.09 at 300 |
| q_proj, v_proj | 3e-2 | healthcare | 0.00 at 150, 300 and 450 |
| q, k, v, o_proj | 1e-2 | healthcare | 0.02 at 150, 0.02 at 300, 0.00 at 450 |
| every linear layer | 6e-3 | finance | 0.03 at 150, 0.03 at 300, 0.00 at 450 |
| every linear layer | 6e-3 | healthcare | 0.05 at 150, 0.04 at 300, 0.09 at 450 |
| every linear layer | 3e-3 | legal | 1.00 at 150 |
| every linear layer | 3e-3 | finance | 0.03 at 150, 0.94 at 300, 1.00 at 450, 1.00 at 600 |
| every linear layer | 3e-3 | healthcare | 0.06 at 300, 0.35 at 400, 0.84 at 500, 0.93 at 600 |
| every linear layer | 2e-3 | healthcare | 0.13 at 300, 0.42 at 450, 0.99 at 600 |

Adapting the attention alone does not learn these copy tasks in 450 steps; adapting the MLPs too
does, at a moderate learning rate (higher rates stall). But with 600 steps per adapter, chapter 3
took 17 minutes in `cpu`, against its budget of 6. Cheaper recipes, on the same full documents
(every linear layer, unless the row says otherwise; `BATCH`, `LORAPLUS` and `SEED` are variables of
the same tool):

| recipe | task | exact match at steps |
|---|---|---|
| batch 4, lr 3e-3 | finance | 0.02 at 150, 0.12 at 300, 0.18 at 450 |
| batch 4, lr 3e-3 | healthcare | 0.04 at 300, 0.07 at 450, 0.13 at 600 |
| batch 16, lr 3e-3 | finance | 0.02 at 100, 0.20 at 150, 0.97 at 200 |
| LoRA+ (`peft.optimizers.create_loraplus_optimizer`, B's rate 16x A's), lr 1e-3 | healthcare | \
0.02 at 150, 0.57 at 225, 0.77 at 300, 1.00 at 450 |
| LoRA+, lr 1e-3 | finance | 0.07 at 100, 0.27 at 150, 0.35 at 200, 0.59 at 250 |
| LoRA+, lr 1e-3 | legal | 0.35 at 50, 0.82 at 75, 0.82 at 100, 1.00 at 150 |
| LoRA+, lr 2e-3 | healthcare | 0.01 at 100, 0.02 at 150, 0.00 at 200, 0.02 at 250, 0.01 at 300 |
| LoRA+, lr 3e-4 | healthcare | 0.02 at 150, 0.02 at 225, 0.08 at 300 |

None is cheap enough. What these tasks need is a number of examples, not of steps: a smaller
batch learns no more per example, a larger one costs as much as more steps (a step's time grows
with its tokens: about 0.26 s for 8 documents of 186 tokens on 2 threads). LoRA+ speeds up
healthcare and slows finance.

## Brief task documents (LabWorld v2.1)

The fix was in the documents. Each task now uses the **brief** form of its document: the same
document without its filler sentences (history, vitals and follow-up; guidance and analysts'
commentary; the dispute's clause and costs), keeping the answer, the distractor and one more fact
in their order (`labkit/labworld/domains.py`): about 120 tokens instead of 177. The corpora keep
the full documents and are byte-identical to v2 (dropping sentences draws nothing from the random
generator), and no corpus document holds all the sentences of a task document
(`tests/test_labworld.py`). The same probes on the brief documents (batch 8):

| recipe | task | full documents | brief documents |
|---|---|---|---|
| full fine-tuning, lr 1e-3 | finance | 0.97 at 150, 1.00 at 300 | 0.93 at 150, 1.00 at 300 |
| full fine-tuning, lr 1e-3 | healthcare | 0.05 at 150, 0.95 at 300 | 0.99 at 150, 1.00 at 300 |
| full fine-tuning, lr 1e-3 | legal | not measured | 0.98 at 150, 1.00 at 300 |
| LoRA, every linear layer, lr 3e-3 | finance | 0.03 at 150, 0.94 at 300 | \
0.05 at 100, 0.07 at 150, 0.70 at 225, 0.87 at 300 |
| LoRA, every linear layer, lr 3e-3 | healthcare | 0.06 at 300, 0.35 at 400, 0.93 at 600 | \
0.24 at 150, 0.88 at 225, 1.00 at 300, 0.84 at 400 |
| the same, `SEED=1` | healthcare | not measured | 0.98 at 200, 1.00 at 250, 1.00 at 300 |
| LoRA, every linear layer, lr 3e-3 | legal | 1.00 at 150 | 0.87 at 75, 0.99 at 150, 1.00 at 300 |
| LoRA, q_proj and v_proj, lr 1e-2 | healthcare | 0.01 at 150, 0.09 at 300 | 0.49 at 150, 0.87 at 300 |

On brief documents LoRA on every projection reaches at least 0.87 on every domain in 300 steps
(at a constant rate the score can still wobble: healthcare 0.84 at 400), and full fine-tuning
reaches at least 0.9 on each domain within 150 steps. LoRA on q_proj/v_proj only, the LoRA
paper's choice (Hu et al., 2022), now learns healthcare too, more slowly. Chapter 3 trains each
domain adapter on every projection at lr 3e-3 for 300 steps (`profile.lora_target_modules`,
`lora_lr`, `lora_steps`). One probe ran before the brief files were written: the healthcare row
of full fine-tuning, on documents cut by the `-brief` variant of `tools/domain_task_curve.py`
(the same sentences, with a space left before the question).
"""
