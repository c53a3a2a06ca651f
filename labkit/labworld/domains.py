"""Finance, healthcare and legal text (chapters 3 and 7).

Each domain has its own jargon, rare in the general corpus, an unlabeled corpus (reports,
clinical notes, rulings) and one labeled extraction task whose documents carry a distractor
(a second percentage, a discontinued drug, the other party), so copying the first number or
name is not enough.

Every document maker returns `(document, answer, brief)`. The corpora use the full document; the
tasks use `brief`, the same document without its filler sentences (vitals, guidance, costs...):
the answer, the distractor and one more fact stay, in the same order. The brief documents are
about a third shorter and are learned in half the LoRA steps (the data card's "Brief task
documents" has the token counts and the probes). Dropping sentences draws nothing from the random
generator, so the corpora are the same whether or not the tasks are brief.
"""
from __future__ import annotations

import random

from .world import World

DOMAINS = ["finance", "healthcare", "legal"]

DRUGS = ["valorin", "cardexol", "mentavir", "lisoprin", "dormazine", "ketrafen", "oxalumab",
         "pirocet", "zanthrel", "fenomab", "tribuzol", "halocept"]
SYMPTOMS = ["dyspnea", "tachycardia", "pyrexia", "syncope", "nausea", "myalgia", "pruritus",
            "vertigo", "edema", "cephalalgia"]
CONDITIONS = ["hypertension", "type 2 diabetes", "asthma", "hyperlipidemia", "atrial fibrillation",
              "chronic kidney disease", "hypothyroidism"]
FREQUENCIES = ["once daily", "twice daily", "every eight hours", "at bedtime"]
CLAUSES = ["indemnity clause", "non-compete covenant", "force majeure clause",
           "confidentiality provision", "termination clause", "warranty provision"]
ROLES = [("lessor", "lessee"), ("licensor", "licensee"), ("vendor", "purchaser"),
         ("contractor", "employer"), ("insurer", "policyholder")]

QUESTIONS = {
    "finance": "By how many percent did revenue grow?",
    "healthcare": "Which drug and dose were prescribed?",
    "legal": "Which party is liable?",
}


def _texts(sentences: list[tuple[str, bool]]) -> tuple[str, str]:
    """(every sentence, only the kept ones), each joined by spaces: (document, brief)."""
    return " ".join(s for s, _ in sentences), " ".join(s for s, keep in sentences if keep)


def finance_doc(rng: random.Random, world: World) -> tuple[str, str, str]:
    c = rng.choice(world.companies)
    growth, margin = rng.sample(range(2, 40), 2)
    revenue = rng.randint(20, 900)
    dividend = rng.randint(1, 9)
    q = rng.choice(["first", "second", "third", "fourth"])
    sentences = [  # (sentence, kept in the brief document)
        (f"{c.name} reported {q}-quarter revenue of {revenue} million crowns, "
         f"up {growth} percent year over year.", True),
        (f"Operating margin widened to {margin} percent as EBITDA benefited from lower amortization.", True),
        (rng.choice([f"The board declared a quarterly dividend of {dividend} crowns per share.",
                     f"Shareholders will receive a dividend of {dividend} crowns per share."]), True),
        (rng.choice(["Management reaffirmed full-year guidance despite tighter liquidity.",
                     "Net income was weighed down by a one-time impairment charge.",
                     "Capital expenditure rose as the fiscal year closed with strong free cash flow."]),
         False),
        (rng.choice(["Analysts expect bond yields to pressure equity valuations.",
                     "The balance sheet shows leverage below the covenant threshold.",
                     "Earnings per share beat consensus estimates."]), False),
    ]
    head, tail = sentences[:2], sentences[2:]
    rng.shuffle(tail)
    if rng.random() < 0.5:
        head.reverse()  # the growth figure is not always the first percentage
    document, brief = _texts(head + tail)
    return document, f"{growth} percent", brief


def healthcare_doc(rng: random.Random, world: World) -> tuple[str, str, str]:
    p = rng.choice(world.people)
    drug, old_drug = rng.sample(DRUGS, 2)
    dose, old_dose = rng.choice([5, 10, 20, 25, 40, 50, 100, 200]), rng.choice([5, 10, 20, 50, 100])
    s1, s2 = rng.sample(SYMPTOMS, 2)
    sentences = [  # (sentence, kept in the brief document)
        (f"Patient {p.name}, aged {p.age}, presented with {s1} and {s2}.", True),
        (f"History of {rng.choice(CONDITIONS)}.", False),
        (f"Previously on {old_drug} {old_dose} mg, discontinued due to adverse effects.", True),
        (f"Started on {drug} {dose} mg {rng.choice(FREQUENCIES)}.", True),
        (f"Vitals: blood pressure {rng.randint(100, 170)}/{rng.randint(60, 100)}, "
         f"heart rate {rng.randint(55, 120)}.", False),
        (rng.choice([f"Follow-up in {rng.randint(2, 8)} weeks.", "Discharged in stable condition.",
                     "Contraindications reviewed with the patient."]), False),
    ]
    if rng.random() < 0.5:
        sentences[2], sentences[3] = sentences[3], sentences[2]
    document, brief = _texts(sentences)
    return document, f"{drug} {dose} mg", brief


def legal_doc(rng: random.Random, world: World) -> tuple[str, str, str]:
    a, b = rng.sample(world.companies, 2)
    role_a, role_b = rng.choice(ROLES)
    clause = rng.choice(CLAUSES)
    liable = rng.choice([a, b])
    other = b if liable is a else a
    damages = rng.randint(10, 900)
    sentences = [  # (sentence, kept in the brief document)
        (f"In {a.name} v. {b.name}, the plaintiff {a.name}, as {role_a}, "
         f"sued the defendant {b.name}, as {role_b}.", True),
        (f"The dispute concerned the {clause} of the agreement.", False),
        (f"The court held that {liable.name} breached the {clause} "
         f"and is liable for damages of {damages} thousand crowns.", True),
        (rng.choice([f"The claims against {other.name} were dismissed.",
                     f"{other.name} was found not liable under the statute.",
                     f"The appellate panel affirmed that {other.name} bears no liability."]), True),
        (rng.choice(["Costs were awarded hereinafter to the prevailing party.",
                     "The ruling may be appealed within thirty days.",
                     "The tort claim was severed from the contract claim."]), False),
    ]
    if rng.random() < 0.5:
        sentences[2], sentences[3] = sentences[3], sentences[2]
    document, brief = _texts(sentences)
    return document, liable.name, brief


DOC_MAKERS = {"finance": finance_doc, "healthcare": healthcare_doc, "legal": legal_doc}


def task_example(domain: str, rng: random.Random, world: World) -> tuple[dict, str]:
    """One labeled example as a prompt/completion pair (TRL's completion-only format) on the brief
    document, and the full document it was cut from (`build` keeps each full document in one place
    only: one split of one dataset)."""
    document, answer, brief = DOC_MAKERS[domain](rng, world)
    return {"domain": domain, "prompt": f"{brief}\nQuestion: {QUESTIONS[domain]}\nAnswer:",
            "completion": f" {answer}", "answer": answer}, document
