"""Small labeled tasks: tone replies (chapter 2) and the three adapter tasks (chapter 9):
sentiment, entity tagging and translation into Zorbic, a made-up language."""
from __future__ import annotations

import random

from .world import ADJECTIVES, NOUN_CATEGORIES, NOUNS, World

# ---- tone: the same customer message answered in two styles ------------------------------
PROBLEMS = ["is broken", "did not arrive", "is the wrong color", "is too small", "stopped working"]
FIXES = ["send you a new one", "fix it for you", "give you your money back", "check your order"]
TONE_MARKERS = {
    "support": ("thank you for", "sorry to hear", "anything else i can help", "right away"),
    "pirate": ("arr", "matey", "savvy", "shiver me timbers", "ye "),
}


def tone_example(rng: random.Random, world: World) -> dict:
    thing, company = rng.choice(NOUNS), rng.choice(world.companies).name
    problem, fix = rng.choice(PROBLEMS), rng.choice(FIXES)
    message = rng.choice([f"Hello, my {thing} from {company} {problem}.",
                          f"The {thing} I bought from {company} {problem}.",
                          f"Hi. My order from {company} {problem}. It was a {thing}."])
    return {
        "prompt": f"Message: {message}\nReply:",
        "support": f" Thank you for telling me! I am sorry to hear that your {thing} {problem}. "
                   f"I will {fix} right away. Is there anything else I can help you with?",
        "pirate": f" Arr, matey! Yer {thing} {problem}? Shiver me timbers! I will {fix}, savvy?",
    }


def tone_of(text: str, style: str) -> bool:
    """True when a reply carries at least two of the style's markers."""
    lowered = text.lower()
    return sum(m in lowered for m in TONE_MARKERS[style]) >= 2


# ---- adapter tasks ----------------------------------------------------------------------
POSITIVE = ["delicious", "lovely", "great", "wonderful", "fresh", "friendly", "clean", "cheap"]
NEGATIVE = ["awful", "stale", "rude", "terrible", "dirty", "boring", "noisy", "pricey"]


def sentiment_example(rng: random.Random, world: World) -> dict:
    label = rng.choice(["positive", "negative"])
    negate = rng.random() < 0.25  # "not great" is negative: a bag of words is not enough
    words = NEGATIVE if (label == "positive") == negate else POSITIVE
    w1, w2 = rng.sample(words, 2)
    thing = rng.choice(NOUN_CATEGORIES["food"] + NOUN_CATEGORIES["toy"])
    c = rng.choice(world.companies).name
    body = f"was not {w1} or {w2}" if negate else f"was {w1} and {w2}"
    return {"prompt": f"Review: The {thing} from {c} {body}.\nSentiment:", "completion": f" {label}",
            "answer": label}


def entities_example(rng: random.Random, world: World) -> dict:
    p, c = rng.choice(world.people), rng.choice(world.companies)
    city = rng.choice(list(world.city_country))
    parts = rng.choice([
        (f"{p.name} visited {c.name} in {city}.", [(p.name, "PERSON"), (c.name, "COMPANY"), (city, "CITY")]),
        (f"In {city}, {c.name} hired {p.name}.", [(city, "CITY"), (c.name, "COMPANY"), (p.name, "PERSON")]),
        (f"{c.name} opened a shop in {city}.", [(c.name, "COMPANY"), (city, "CITY")]),
        (f"{p.name} moved to {city}.", [(p.name, "PERSON"), (city, "CITY")]),
    ])
    tags = "; ".join(f"{span} = {tag}" for span, tag in parts[1])
    return {"prompt": f"Sentence: {parts[0]}\nEntities:", "completion": f" {tags}", "answer": tags}


VERBS = ["sees", "likes", "finds", "chases", "helps", "pulls"]
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "zo", "va", "ni", "pe", "su", "do", "ga", "fi", "bu", "xe", "yo"]


def zorbic_lexicon(seed: int) -> dict[str, str]:
    """A made-up word for every noun, adjective and verb the sentences use."""
    rng = random.Random(seed)
    lexicon, used = {}, set()
    for word in NOUNS + ADJECTIVES + VERBS:
        while True:
            made_up = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
            if made_up not in used:
                used.add(made_up)
                lexicon[word] = made_up
                break
    return lexicon


def translation_example(rng: random.Random, lexicon: dict[str, str]) -> dict:
    """English 'the ADJ NOUN VERB the ADJ NOUN' -> Zorbic 'NOUN ADJ NOUN ADJ VERB':
    no articles, adjectives after nouns, the verb last."""
    n1, n2 = rng.sample(NOUN_CATEGORIES["animal"] + NOUN_CATEGORIES["toy"], 2)
    a1, a2, v = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES), rng.choice(VERBS)
    english = f"the {a1} {n1} {v} the {a2} {n2}"
    zorbic = " ".join(lexicon[w] for w in (n1, a1, n2, a2, v))
    return {"prompt": f"English: {english}\nZorbic:", "completion": f" {zorbic}", "answer": zorbic}
