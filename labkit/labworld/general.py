"""The general pretraining corpus (chapter 0): stories, encyclopedia entries, dialogues,
lists of input -> output examples, and addition written two ways.

Every generator takes a seeded `random.Random` and the `World`, and returns one document.
No finance, healthcare or legal jargon appears here: domain adaptation (chapter 7) needs
something to teach.
"""
from __future__ import annotations

import random
import zlib

from .world import (
    ADJECTIVES,
    CATEGORY_OF,
    COLORS,
    COMPARATIVES,
    NOUN_CATEGORIES,
    NOUNS,
    OPPOSITES,
    World,
    article,
    plural,
)

FEELINGS = ["happy", "sad", "proud", "tired", "scared", "excited", "calm", "surprised"]
KINDS = ["girl", "boy", "cat", "dog", "rabbit", "fox", "bird", "bear"]


def _pick_name(rng: random.Random, world: World) -> tuple[str, str, str]:
    person = rng.choice(world.people)
    first = person.name.split()[0]
    return first, person.pronoun, ("her" if person.pronoun == "she" else "his")


SYLLABLES = ["ka", "zu", "mo", "ri", "ta", "lin", "vor", "pel", "ix", "ra", "no", "be", "sha", "dri",
             "qua", "tor", "mi", "fen", "gal", "os", "ur", "bek", "tri", "lo"]


def invented_name(rng: random.Random) -> str:
    """A name no list holds ("Vorlinka"): stories that use one teach the model to copy a name it
    has never seen, piece by piece, from earlier in the text — the skill an extraction task on
    unfamiliar jargon needs (see the diagnosis in the data card)."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


INVENTED_NAME_SHARE = 0.3  # of stories whose hero has an invented name


def story(rng: random.Random, world: World) -> str:
    name, pron, pos = _pick_name(rng, world)
    if rng.random() < INVENTED_NAME_SHARE:
        name = invented_name(rng)
    friend, _, _ = _pick_name(rng, world)
    kind = rng.choice(KINDS)
    city = rng.choice(list(world.city_country))
    place = rng.choice(NOUN_CATEGORIES["place"])
    toy = rng.choice(NOUN_CATEGORIES["toy"])
    food = rng.choice(NOUN_CATEGORIES["food"])
    thing = rng.choice(NOUNS)
    color, adj, feel = rng.choice(COLORS), rng.choice(ADJECTIVES), rng.choice(FEELINGS)
    other = rng.choice(NOUNS)
    P = pron.capitalize()
    opening = rng.choice([
        f"Once upon a time, there was a little {kind} named {name}.",
        f"{name} was a little {kind} who lived in {city}.",
        f"One sunny morning, {name} woke up early.",
        f"There once was a {adj} {kind} called {name}.",
    ])
    middle = [
        f"{P} went to the {place} with {pos} friend {friend}.",
        f"There, {pron} found a {color} {thing}.",
        f"The {thing} was very {adj}.",
        f"{name} wanted to play with the {toy}, but it was too {adj}.",
        f'{friend} said, "Let us share it!"',
        f"They ate {plural(food)} and laughed.",
        f"Suddenly, it started to rain. {name} and {friend} ran home.",
        f"The {thing} was {COMPARATIVES.get(adj, 'bigger')} than the {other}.",
        f"{P} felt {feel}.",
        f'"Look at the {thing}!" said {name}.',
        f"{P} gave the {toy} to {friend}.",
        f"{friend} was not {adj}. {friend} was {OPPOSITES[adj]}.",
    ]
    keep = sorted(rng.sample(range(len(middle)), rng.randint(3, 6)))  # a subset, in story order
    ending = rng.choice([
        f"In the end, {name} learned that sharing is good.",
        f"That night, {pron} slept well.",
        f"{name} and {friend} were best friends forever.",
        "The end.",
    ])
    return " ".join([opening, *(middle[i] for i in keep), ending])


def encyclopedia_entry(rng: random.Random, world: World) -> str:
    """A short entry about one person, city, country, company, noun or adjective.
    Each fact has several paraphrases so the model learns the fact, not one sentence."""
    kind = rng.choice(["person", "person", "person", "city", "country", "company", "noun", "adjective"])
    if kind == "person":
        p = rng.choice(world.people)
        P = p.pronoun.capitalize()
        facts = [
            rng.choice([f"{p.name} lives in {p.city}.", f"{p.city} is home to {p.name}.",
                        f"{p.name} lives in the city of {p.city}."]),
            rng.choice([f"{p.name} is a {p.job}.", f"{P} works as a {p.job}.",
                        f"By trade, {p.name} is a {p.job}."]),
            rng.choice([f"{P} works for {p.company}.", f"{p.name} is employed by {p.company}.",
                        f"{p.company} is where {p.name} works."]),
            rng.choice([f"{P} is {p.age} years old.", f"{p.name} is {p.age}."]),
            f"{p.city} is in {world.city_country[p.city]}.",
        ]
        head = p.name
    elif kind == "city":
        city = rng.choice(list(world.city_country))
        country = world.city_country[city]
        facts = [rng.choice([f"{city} is a city in {country}.", f"{city} lies in {country}.",
                             f"The city of {city} is in {country}."])]
        if world.countries[country]["capital"] == city:
            facts.append(f"{city} is the capital of {country}.")
        residents = [p for p in world.people if p.city == city]
        for p in rng.sample(residents, min(2, len(residents))):
            facts.append(f"{p.name} lives in {city}.")
        head = city
    elif kind == "country":
        country = rng.choice(list(world.countries))
        info = world.countries[country]
        facts = [
            rng.choice([f"The capital of {country} is {info['capital']}.",
                        f"{info['capital']} is the capital of {country}.",
                        f"{country} has its capital in {info['capital']}."]),
            f"People in {country} speak {info['language']}.",
            f"Cities in {country} include {', '.join(info['cities'])}.",
        ]
        head = country
    elif kind == "company":
        c = rng.choice(world.companies)
        facts = [
            rng.choice([f"{c.name} is a company based in {c.city}.", f"{c.name} is based in {c.city}."]),
            rng.choice([f"{c.name} makes {c.product}.", f"The company sells {c.product}."]),
            f"{c.name} was founded in {c.founded}.",
        ]
        head = c.name
    elif kind == "noun":
        n = rng.choice(NOUNS)
        cat = CATEGORY_OF[n]
        facts = [rng.choice([f"{article(n).capitalize()} is {article(cat)}.",
                             f"{article(n).capitalize()} is a kind of {cat}.",
                             f"The {n} is {article(cat)}."]),
                 f"Many {plural(n)} can be seen in LabWorld."]
        head = n.capitalize()
    else:
        a = rng.choice(ADJECTIVES)
        facts = [rng.choice([f"The opposite of {a} is {OPPOSITES[a]}.",
                             f"{a.capitalize()} and {OPPOSITES[a]} are opposites.",
                             f"{a.capitalize()} means the reverse of {OPPOSITES[a]}."]),
                 f"Something more {a} is {COMPARATIVES[a]}."]
        head = a.capitalize()
    rng.shuffle(facts)
    return head + "\n" + " ".join(facts)


def dialogue(rng: random.Random, world: World) -> str:
    """Everyday conversations. Some speakers have a style that chapter 2's soft prompts
    later select: a friendly shop helper and a pirate captain."""
    a, _, _ = _pick_name(rng, world)
    b, _, _ = _pick_name(rng, world)
    thing = rng.choice(NOUNS)
    n = rng.randint(2, 9)
    style = rng.choice(["shop", "friends", "helper", "pirate"])
    if style == "shop":
        lines = [f"{a}: Hello! Do you have any {plural(thing)}?",
                 f"{b}: Yes, we do. How many would you like?",
                 f"{a}: {n}, please.", f"{b}: Here you are. Have a nice day!"]
    elif style == "friends":
        place = rng.choice(NOUN_CATEGORIES["place"])
        lines = [f"{a}: Do you want to go to the {place}?",
                 f"{b}: Yes! Can we bring the {rng.choice(NOUN_CATEGORIES['toy'])}?",
                 f"{a}: Of course. Let us go now.", f"{b}: I am so {rng.choice(FEELINGS)}!"]
    elif style == "helper":
        problem = rng.choice(["is broken", "did not arrive", "is the wrong color", "is too small"])
        lines = [f"{a}: My {thing} {problem}.",
                 f"Helper: Thank you for telling me! I am sorry to hear that your {thing} {problem}.",
                 "Helper: I will "
                 f"{rng.choice(['send you a new one', 'fix it for you', 'give you your money back'])}"
                 " right away.",
                 f"{a}: Thank you.", "Helper: You are welcome! Is there anything else I can help you with?"]
    else:
        lines = [f"Captain: Arr, matey! Have ye seen my {thing}?",
                 f"{a}: No, captain. It is not on the ship.",
                 f"Captain: Shiver me timbers! That {thing} be lost at sea, savvy?",
                 f"{a}: We will find it, captain.", "Captain: Arr, ye be a good crew!"]
    return "\n".join(lines)


# ---- in-context learning lists -------------------------------------------------------------
# Tasks share input pools on purpose: "cat" can be pluralised, repeated, given an article or
# a category, so a bare "cat ->" is ambiguous and only examples say which task is meant.
LIST_TASKS = {
    "plural": ("nouns", plural),
    "repeat": ("nouns", lambda w: f"{w} {w}"),
    "article": ("nouns", article),
    "category": ("nouns", lambda w: CATEGORY_OF[w]),
    "next": ("numbers", lambda n: str(int(n) + 1)),
    "previous": ("numbers", lambda n: str(int(n) - 1)),
    "opposite": ("adjectives", lambda a: OPPOSITES[a]),
    "comparative": ("adjectives", lambda a: COMPARATIVES[a]),
}
LIST_HEADERS = {"plural": "Plurals:", "repeat": "Say it twice:", "article": "With an article:",
                "category": "Categories:", "next": "Add one:", "previous": "Take one away:",
                "opposite": "Opposites:", "comparative": "Comparatives:"}


def input_pools(held_out: dict[str, set[str]]) -> dict[str, list[str]]:
    """Inputs the corpus lists may use: everything except the held-out evaluation inputs."""
    pools = {"nouns": NOUNS, "numbers": [str(i) for i in range(2, 99)], "adjectives": ADJECTIVES}
    return {k: [x for x in v if x not in held_out[k]] for k, v in pools.items()}


def task_list(rng: random.Random, pools: dict[str, list[str]]) -> str:
    task = rng.choice(sorted(LIST_TASKS))
    pool_name, fn = LIST_TASKS[task]
    items = rng.sample(pools[pool_name], rng.randint(4, 9))
    lines = [f"{x} -> {fn(x)}" for x in items]
    if rng.random() < 0.15:  # most lists carry no header: the examples must say what the task is
        lines.insert(0, LIST_HEADERS[task])
    return "\n".join(lines)


# ---- arithmetic --------------------------------------------------------------------------------
PLACES = ["ones", "tens", "hundreds", "thousands"]


def addition_question(a: int, b: int) -> str:
    return f"Question: What is {a} + {b}?\nAnswer:"


COT_CUE = " Let us add digit by digit."
DIRECT_CUE = " The answer is"


def addition_steps(a: int, b: int) -> str:
    """Column addition, one line per column: the numbers still to add (each shorter by a digit
    per line, so the column's digits are the last ones just written), the carry, and the
    running partial result. Local lookups only — a 2M-parameter model can follow it."""
    da, db = str(a)[::-1], str(b)[::-1]
    carry, so_far, steps = 0, "", []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        rest_a, rest_b = a // 10**i, b // 10**i
        s = x + y + carry
        terms = f"{x} + {y}" + (f" + {carry}" if carry else "")
        so_far = str(s % 10) + so_far
        steps.append(f"{PLACES[i]}: {rest_a} + {rest_b}: {terms} = {s}, write {s % 10}, carry {s // 10}, "
                     f"so far {so_far}.")
        carry = s // 10
    if carry:
        so_far = "1" + so_far
        steps.append(f"{PLACES[len(steps)]}: carry 1, so far {so_far}.")
    return "\n".join(steps) + f"\nThe answer is {a + b}."


def worked_format(a: int, b: int) -> bool:
    """Whether the corpus shows the sum a + b worked digit by digit (True) or answered at once
    (False). A fixed hash of the pair, not of the sum, so every 3-digit sum has one format and
    the two formats cover disjoint, equally likely sets of sums (no parity or size cue)."""
    return zlib.crc32(f"{a}+{b}".encode()) % 2 == 0


def addition_doc(rng: random.Random, held_pairs: set[tuple[int, int]]) -> str:
    """Like a school book, sums of every size are answered either at once or digit by digit.
    For 3-digit sums the format is fixed per pair (`worked_format`): half the pairs are only
    ever answered directly, the other half only ever worked — so chapter 1 compares two formats
    the model has seen equally often, and a gap comes from the intermediate tokens."""
    while True:
        digits = rng.choice([1, 2, 2, 3, 3, 3, 3])
        a = rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)
        b = rng.randint(0, 999 if digits == 3 else 10 ** digits - 1)
        if (a, b) not in held_pairs:
            break
    worked = worked_format(a, b) if digits == 3 else rng.random() < 0.5
    if worked:
        return addition_question(a, b) + COT_CUE + "\n" + addition_steps(a, b)
    return addition_question(a, b) + DIRECT_CUE + f" {a + b}."


# Instructions for the in-context-learning evaluation, phrased unlike anything in the corpus
# (the corpus lists carry no instructions, only a rare header). Several phrasings per task
# measure how much accuracy depends on wording (chapter 1).
ICL_PHRASINGS = {
    "plural": ["Change each word so it means more than one.", "Make these into many.",
               "Turn one thing into several things.", "More than one, please."],
    "repeat": ["Say each word two times.", "Echo the word.", "Double every word you hear.",
               "Write it and then write it again."],
    "article": ["Put the right little word in front.", "Add a or an.", "Give the word with its article.",
                "Start with a small word before it."],
    "category": ["Tell what group each thing belongs to.", "What sort of thing is it?",
                 "Name the family of each item.", "Sort each word into its group."],
    "next": ["Count up by one.", "What comes right after?", "Increase by a single step.",
             "Go one higher."],
    "previous": ["Count down by one.", "What comes right before?", "Decrease by a single step.",
                 "Go one lower."],
    "opposite": ["Give the word that means the reverse.", "Flip the meaning.", "Say the contrary word.",
                 "What is the other way around?"],
    "comparative": ["Make each word compare two things.", "Say it in the more form.",
                    "Turn it into a word for comparing.", "How do you say more of it?"],
}
