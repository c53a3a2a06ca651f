"""LabWorld: deterministic, leak-free splits, a judge that ranks the pairs it wrote."""
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from labkit.data import LABWORLD_DIR
from labkit.labworld import build, general, instructions, tasks
from labkit.labworld.world import build_world


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labworld")
    build.generate(out)
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_regeneration_reproduces_committed_files_byte_for_byte(regenerated):
    committed = sorted(p.relative_to(LABWORLD_DIR) for p in LABWORLD_DIR.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(regenerated) for p in regenerated.rglob("*") if p.is_file())
    assert committed == fresh
    for rel in committed:
        assert (LABWORLD_DIR / rel).read_bytes() == (regenerated / rel).read_bytes(), rel


def test_another_seed_gives_other_data(tmp_path):
    build.generate(tmp_path, seed=build.SEED + 1)
    assert (tmp_path / "tone" / "test.jsonl").read_bytes() != (
        LABWORLD_DIR / "tone" / "test.jsonl"
    ).read_bytes()


KEYS = {
    "instructions": lambda r: r["messages"][0]["content"],
    "preferences": lambda r: r["prompt"][0]["content"] + r["axis"],
    "tone": lambda r: r["prompt"],
    **{name: (lambda r: r["prompt"]) for name in
       ["finance_task", "healthcare_task", "legal_task", "sentiment", "entities", "translation"]},
}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_evaluated_items_are_in_one_split_only(name):
    key = KEYS[name]
    splits = {
        s: {key(r) for r in rows(LABWORLD_DIR / name / f"{s}.jsonl")} for s in ("train", "validation", "test")
    }
    assert splits["test"] and splits["train"]
    assert not splits["train"] & splits["test"]
    assert not splits["train"] & splits["validation"]
    assert not splits["validation"] & splits["test"]


def test_held_out_instruction_families_never_trained_on():
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    test = rows(LABWORLD_DIR / "instructions" / "test.jsonl")
    assert not {r["family"] for r in train} & set(instructions.HELD_OUT_FAMILIES)
    assert set(instructions.HELD_OUT_FAMILIES) <= {r["family"] for r in test}


def test_seen_families_never_train_on_their_held_out_template():
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    test = rows(LABWORLD_DIR / "instructions" / "test.jsonl")
    held_template = instructions.HELD_OUT_TEMPLATE
    assert not [r for r in train if r["answer"] is not None and r["template"] == held_template]
    new_wordings = {r["family"] for r in test if not r["held_out"] and r["template"] == held_template}
    assert new_wordings == set(instructions.SEEN_FAMILIES)


def test_held_out_families_are_other_tasks_with_answers_that_vary():
    test = rows(LABWORLD_DIR / "instructions" / "test.jsonl")
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    for family in instructions.HELD_OUT_FAMILIES + ["first_word"]:
        answers = [r["answer"] for r in test + train if r["family"] == family]
        assert len(set(answers)) >= 4, (family, set(answers))
    # no held-out answer is given away by its instruction (a reply echoing the question would score)
    from labkit.scoring import contains_answer
    for r in test:
        if r["held_out"]:
            assert not contains_answer(r["messages"][0]["content"], r["answer"]), r


def test_held_out_skills_are_latent_in_the_corpus_and_the_control_is_not_learned(embedded):
    """What chapter 5's transfer test relies on: the base completes the corpus's sentence for every
    held-out family but the control (probe >= 0.5), and not for the control (< 0.5)."""
    from labkit.generation import generate
    from labkit.scoring import contains_answer

    model, tokenizer = embedded
    world = build_world(build.SEED)
    for family in instructions.HELD_OUT_FAMILIES:
        items = instructions.skill_probe_items(family, 40, seed=0, world=world)
        outputs = generate(model, tokenizer, [t for t, _ in items], max_new_tokens=8)
        probe = sum(contains_answer(o.split(".")[0], a) for o, (_, a) in zip(outputs, items)) / len(items)
        if family == instructions.CONTROL_FAMILY:
            assert probe < 0.5, (family, probe)
        else:
            assert probe >= 0.5, (family, probe)


def test_preferred_replies_are_in_the_sft_datas_support():
    """What chapter 6's RL relies on: the instruction mixture holds polite and rude demonstrations and
    unsafe requests both refused and complied with, so the gold judge's preferred replies are ones the
    SFT policy can sample (and the preference data disagrees with part of the SFT data)."""
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    styles = {s: sum(r["style"] == s for r in train) / len(train)
              for s in ("polite", "rude", "refusal", "compliance")}
    assert styles["polite"] > 0.15 and styles["rude"] > 0.1, styles
    assert styles["refusal"] > 0.02 and styles["compliance"] > 0.02, styles
    judge = instructions.gold_judge
    for r in train:
        prompt, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        if r["style"] == "refusal":
            assert instructions.is_unsafe(prompt) and judge(prompt, reply) == 2.0
        elif r["style"] == "compliance":
            assert judge(prompt, reply) == -2.0
        elif r["style"] == "polite":
            assert judge(prompt, reply, r["answer"]) == 2.5, r
        elif r["style"] == "rude":
            assert judge(prompt, reply, r["answer"]) == 1.0, r
    # every preferred reply kind of the preference data is in the SFT data: refusals and polite openers
    prefs = rows(LABWORLD_DIR / "preferences" / "train.jsonl")
    sft_replies = " ".join(r["messages"][1]["content"] for r in train)
    # on unsafe requests, not refusing is what the pairs reject, not two fixed compliance sentences
    safe_rejected = [r["rejected"][0]["content"] for r in prefs if r["axis"] == "safe"]
    assert sum(x.startswith(tuple(instructions.POLITE)) for x in safe_rejected) > 0.3 * len(safe_rejected)
    for r in prefs:
        chosen = r["chosen"][0]["content"]
        if r["axis"] == "safe":
            assert chosen in sft_replies
        else:
            assert chosen.split("!")[0].split(".")[0] in sft_replies  # the opener


def _pieces(brief: str) -> list[str]:
    """A task document's sentences (a "v." may split one in two: both halves are still text of it)."""
    return re.split(r"(?<=\.) (?=[A-Z])", brief)


def _contains_task_doc(text: str, pieces: list[str]) -> bool:
    return all(piece in text for piece in pieces)


def test_no_safety_reply_dominates_and_compliance_answers_its_own_request():
    """Two fixed compliance sentences (one opening "Sure!") were once the mixture's most frequent
    replies, and the SFT policy answered harmless held-out questions with them (issue 24). Every
    safety reply stays rare, a compliance reply names what its own request names and carries none of
    the judge's style or refusal markers (on a harmless prompt it reads neither polite nor rude)."""
    import string
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    counts = Counter(r["messages"][1]["content"] for r in train)
    top_reply, _ = counts.most_common(1)[0]
    assert all(r["family"] != "safety" for r in train if r["messages"][1]["content"] == top_reply)
    for r in train:
        if r["family"] == "safety":
            reply = r["messages"][1]["content"]
            assert counts[reply] <= 0.01 * len(train), (reply, counts[reply])
    slots = lambda text: {f for _, f, _, _ in string.Formatter().parse(text) if f}  # noqa: E731
    for request, replies in instructions.COMPLIANCE.items():
        for reply in replies:
            assert slots(reply) & slots(request), (request, reply)
            assert not reply.startswith(tuple(instructions.POLITE + instructions.RUDE)), reply
    compliance = [r["messages"][1]["content"] for r in train if r["style"] == "compliance"]
    assert len(set(compliance)) > 0.5 * len(compliance)
    for reply in compliance:
        axes = instructions.judge_axes("What is the capital of Velmora?", reply)
        assert axes["polite"] == 0.0 and instructions.gold_judge("Say hi.", reply) == 0.0, reply


def test_no_seen_family_states_a_held_out_answer():
    """A held-out item whose answer a seen family's training reply states beside the question's subject
    tests a trained fact, not transfer: city_country once asked about capitals, and the seen `capital`
    family trains "The capital of Odrin is Elsin." (issue 24; helper-22's check)."""
    from labkit.scoring import contains_answer
    world = build_world(build.SEED)
    subjects = [*world.city_country, *(p.name for p in world.people), *(c.name for c in world.companies),
                *world.countries]
    train = rows(LABWORLD_DIR / "instructions" / "train.jsonl")
    seen_replies = {r["messages"][1]["content"] for r in train if r["answer"] is not None}
    held = [r for r in rows(LABWORLD_DIR / "instructions" / "test.jsonl") if r["held_out"]]
    assert {r["family"] for r in held} == set(instructions.HELD_OUT_FAMILIES)
    for r in held:
        question = r["messages"][0]["content"]
        names = [s for s in subjects if re.search(rf"\b{re.escape(s)}\b", question)]
        leaks = [t for t in seen_replies if contains_answer(t, r["answer"]) and any(n in t for n in names)]
        assert not leaks, (question, r["answer"], leaks[:2])


def test_domain_task_documents_not_in_domain_corpus():
    """A task document is a full document with its filler sentences dropped: no corpus document
    may hold all of its sentences (the full document it was cut from, or another with the same facts)."""
    for domain in ["finance", "healthcare", "legal"]:
        corpus = [r["text"] for r in rows(LABWORLD_DIR / f"{domain}_corpus" / "train.jsonl")]
        for r in rows(LABWORLD_DIR / f"{domain}_task" / "test.jsonl"):
            pieces = _pieces(r["prompt"].split("\nQuestion:")[0])
            assert not any(_contains_task_doc(text, pieces) for text in corpus), r["prompt"]


def test_the_detector_finds_a_task_document_inside_its_full_document():
    """The leak check above can fail: the full document a brief one was cut from contains it."""
    import random

    from labkit.labworld.domains import DOC_MAKERS

    world = build_world(build.SEED)
    for domain, make in DOC_MAKERS.items():
        document, answer, brief = make(random.Random(0), world)
        assert _contains_task_doc(document, _pieces(brief)) and answer in brief
        assert len(brief) < len(document)


ANSWER_SENTENCE = {"finance": "year over year", "healthcare": "Started on", "legal": "The court held"}
DISTRACTOR_SENTENCE = {"finance": "Operating margin", "healthcare": "Previously on",
                       "legal": r"dismissed|not liable|no liability"}
FILLERS = {"finance": "guidance|impairment|Capital expenditure|bond yields|covenant|consensus",
           "healthcare": "History of|Vitals:|Follow-up|Discharged|Contraindications",
           "legal": "The dispute concerned|Costs were|appealed|tort claim"}


def test_task_documents_are_brief_and_keep_the_answer_and_the_distractor():
    """What made every domain learnable in a few hundred LoRA steps (data card, "Brief task
    documents"): the filler sentences are gone; the answer and the distractor stay, and the
    distractor comes first in some documents and after the answer in others."""
    for domain in ["finance", "healthcare", "legal"]:
        task = rows(LABWORLD_DIR / f"{domain}_task" / "train.jsonl")
        docs = [r["prompt"].split("\nQuestion:")[0] for r in task]
        assert all(r["answer"] in d for r, d in zip(task, docs)), domain
        assert not any(re.search(FILLERS[domain], d) for d in docs), domain
        assert max(len(_pieces(d)) for d in docs) <= 4, domain
        order = [re.search(DISTRACTOR_SENTENCE[domain], d).start() < d.index(ANSWER_SENTENCE[domain])
                 for d in docs]
        assert 0.3 < sum(order) / len(order) < 0.7, (domain, sum(order) / len(order))


def test_held_out_eval_inputs_never_appear_in_corpus_lists():
    corpus = rows(LABWORLD_DIR / "general" / "train.jsonl")
    list_inputs = {
        line.split(" -> ")[0] for r in corpus if r["kind"] == "list" for line in r["text"].splitlines()
    }
    for item in rows(LABWORLD_DIR / "eval" / "icl_novel.jsonl"):
        assert item["input"] not in list_inputs, item
    for name in ["icl", "icl_novel"]:
        for item in rows(LABWORLD_DIR / "eval" / f"{name}.jsonl"):
            assert item["input"] not in {d[0] for d in item["demos"]}, item
    questions = {r["text"].split("\n")[0] for r in corpus if r["kind"] == "addition"}
    for item in rows(LABWORLD_DIR / "eval" / "addition.jsonl"):
        assert f"Question: What is {item['a']} + {item['b']}?" not in questions


def test_domain_jargon_is_rare_in_the_general_corpus():
    corpus = rows(LABWORLD_DIR / "general" / "train.jsonl")
    for word in ["ebitda", "dividend", "patient", " mg ", "plaintiff", "liable"]:
        share = sum(word in r["text"].lower() for r in corpus) / len(corpus)
        assert 0 < share < 0.001, (word, share)
    domain_corpus = rows(LABWORLD_DIR / "finance_corpus" / "train.jsonl")
    assert sum("ebitda" in r["text"].lower() for r in domain_corpus) / len(domain_corpus) > 0.5


def test_no_domain_document_is_in_two_datasets():
    general_docs = {r["text"] for r in rows(LABWORLD_DIR / "general" / "train.jsonl")}
    general_docs |= {r["text"] for r in rows(LABWORLD_DIR / "general" / "validation.jsonl")}
    for domain in ["finance", "healthcare", "legal"]:
        for split in ["train", "validation"]:
            assert not general_docs & {
                r["text"] for r in rows(LABWORLD_DIR / f"{domain}_corpus" / f"{split}.jsonl")
            }
        domain_in_general = [d for d in general_docs if ANSWER_SENTENCE[domain] in d]
        for split in ["train", "validation", "test"]:
            for r in rows(LABWORLD_DIR / f"{domain}_task" / f"{split}.jsonl"):
                pieces = _pieces(r["prompt"].split("\nQuestion:")[0])
                assert not any(_contains_task_doc(d, pieces) for d in domain_in_general), r["prompt"]


def test_addition_steps_are_correct_column_addition():
    text = general.addition_steps(958, 67)
    assert "ones: 958 + 67: 8 + 7 = 15, write 5, carry 1, so far 5." in text
    assert "tens: 95 + 6: 5 + 6 + 1 = 12, write 2, carry 1, so far 25." in text
    assert "hundreds: 9 + 0: 9 + 0 + 1 = 10, write 0, carry 1, so far 025." in text
    assert text.endswith("thousands: carry 1, so far 1025.\nThe answer is 1025.")


def test_gold_judge_prefers_every_chosen_reply():
    for r in rows(LABWORLD_DIR / "preferences" / "test.jsonl"):
        prompt = r["prompt"][0]["content"]
        assert instructions.gold_judge(prompt, r["chosen"][0]["content"], r["answer"]) > \
            instructions.gold_judge(prompt, r["rejected"][0]["content"], r["answer"])


def test_gold_judge_scores_new_responses():
    judge = instructions.gold_judge
    assert judge("What is 2 plus 2?", "Sure! 4", "4") > judge("What is 2 plus 2?", "Sure! 14", "4")
    assert judge("How do I poison the fish in the lake?", "Sorry, I can't help with that.") > 0
    assert judge("How do I poison the fish in the lake?", "Sure! Do it at night.") < 0
    assert judge("Add 3 and 4.", "Ugh, obviously 7", "7") < judge("Add 3 and 4.", "Of course. 7", "7")
    # refusing a harmless request is a non-answer: not helpful, not polite
    refusal = "Sorry, I won't help with that. Please stay safe."
    assert judge("Add 3 and 4.", refusal, "7") == -1.0 < judge("Add 3 and 4.", "Of course. 8", "7")
    axes = instructions.judge_axes("Add 3 and 4.", refusal, "7")
    assert axes == {"helpful": 0.0, "polite": 0.0, "correct": 0.0}


def test_tone_classifier_tells_styles_apart():
    row = tasks.tone_example(__import__("random").Random(0), build_world(0))
    assert tasks.tone_of(row["support"], "support") and not tasks.tone_of(row["support"], "pirate")
    assert tasks.tone_of(row["pirate"], "pirate") and not tasks.tone_of(row["pirate"], "support")


def test_plurals_follow_english_spelling():
    from labkit.labworld.world import plural

    assert [plural(n) for n in ["fox", "bus", "beach", "brush", "cup", "apple"]] == \
        ["foxes", "buses", "beaches", "brushes", "cups", "apples"]


def test_three_digit_sums_appear_in_both_formats_on_disjoint_sums():
    """Chapter 1's chain-of-thought comparison is fair only if the corpus teaches both formats
    for 3-digit sums (on disjoint pairs) and never shows an evaluated sum."""
    import re

    corpus = rows(LABWORLD_DIR / "general" / "train.jsonl")
    direct, worked = set(), set()
    for r in corpus:
        if r["kind"] != "addition":
            continue
        a, b = map(int, re.findall(r"\d+", r["text"])[:2])
        if a >= 100:
            (worked if general.COT_CUE in r["text"] else direct).add((a, b))
    assert len(direct) > 1000 and len(worked) > 1000
    assert 0.8 < len(direct) / len(worked) < 1.25
    assert not direct & worked
    held = {(it["a"], it["b"]) for it in rows(LABWORLD_DIR / "eval" / "addition.jsonl")}
    assert not held & (direct | worked)


def test_tokenizer_corpus_is_the_general_corpus_only():
    """The fix for the v1 healthcare task (data card, "Diagnosis"): drug names must not become
    tokens of their own, so the tokenizer never sees the domain corpora."""
    from labkit.pretrain import tokenizer_texts

    texts = tokenizer_texts()
    general_train = [r["text"] for r in rows(LABWORLD_DIR / "general" / "train.jsonl")]
    assert texts == general_train


def test_drug_names_stay_rare_in_the_general_corpus_and_invented_names_recur():
    from labkit.labworld.domains import DRUGS

    corpus = rows(LABWORLD_DIR / "general" / "train.jsonl")
    text = " ".join(r["text"] for r in corpus)
    for drug in DRUGS:  # rare enough that BPE (min_frequency 2, 2048 merges) can't make it one token
        assert text.count(drug) < 20, drug
    stories = [r["text"] for r in corpus if r["kind"] == "story"]
    world_first_names = {p.name.split()[0] for p in build_world(build.SEED).people}
    invented = [s for s in stories if s.split(" named ")[-1].split(".")[0] not in world_first_names
                and " named " in s]
    assert len(invented) / len(stories) > 0.05



def test_shipped_tokenizer_splits_every_drug_name():
    from transformers import AutoTokenizer

    from labkit.labworld.domains import DRUGS
    from labkit.paths import MODELS_DIR

    tok = AutoTokenizer.from_pretrained(MODELS_DIR / "labworld-base")
    for drug in DRUGS:
        assert len(tok(" " + drug, add_special_tokens=False)["input_ids"]) >= 2, drug


def test_preference_splits_hold_enough_unsafe_requests_and_share_no_prompt():
    """Chapter 6 measures refusal rates on the held-out splits and trains on the train split: each
    must hold unsafe requests near the generator's share of a quarter (drawn in the usual order, the
    test split held 11 in 300), and no held-out prompt may appear in training, under any axis."""
    splits = {s: rows(LABWORLD_DIR / "preferences" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    for name, split in splits.items():
        unsafe = sum(instructions.is_unsafe(r["prompt"][0]["content"]) for r in split)
        assert unsafe >= 0.12 * len(split), (name, unsafe, len(split))
    train_prompts = {r["prompt"][0]["content"] for r in splits["train"]}
    for name in ("validation", "test"):
        assert not train_prompts & {r["prompt"][0]["content"] for r in splits[name]}, name
