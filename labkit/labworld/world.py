"""The fictional world every LabWorld text is about (chapter 0).

Countries, cities, people and companies are drawn from fixed name lists with a seeded
`random.Random`, so the same seed always builds the same world. Word pools (nouns with
their categories, adjectives with opposites) are shared by the general corpus, the
in-context-learning lists and the instruction data.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

COUNTRY_NAMES = ["Velmora", "Tarsik", "Odrin", "Maloria", "Kesh", "Brundia", "Ostrel", "Yanvar"]
CITY_NAMES = [
    "Dunmere", "Halby", "Corvale", "Pindar", "Ashford", "Lumen", "Rivet", "Sorrow Bay",
    "Tamsin", "Ebber", "Gallow", "Norwick", "Quill", "Fennick", "Marrow", "Ostbury",
    "Belhaven", "Crail", "Dapple", "Elsin", "Grove Hill", "Harth", "Ivel", "Jorum",
]
FIRST_NAMES = [
    "Mira", "Tom", "Anna", "Leo", "Sara", "Ben", "Nina", "Omar", "Lily", "Max", "Ada", "Finn",
    "Rosa", "Sam", "Ivy", "Jack", "Zoe", "Eli", "Maya", "Noah", "Lena", "Hugo", "Tess", "Kai",
    "Ella", "Milo", "Ruby", "Theo", "Nora", "Otto",
]
LAST_NAMES = [
    "Holt", "Berg", "Fenn", "Marsh", "Quist", "Roe", "Dale", "Price", "Voss", "Wynn", "Lark",
    "Stone", "Brook", "Hale", "Frost", "Pike",
]
JOBS = ["baker", "teacher", "farmer", "painter", "doctor", "sailor", "builder", "singer",
        "gardener", "writer", "driver", "tailor"]
COMPANY_WORDS = ["Bright", "North", "Silver", "Green", "Iron", "Blue", "Golden", "Swift",
                 "River", "Sun", "Oak", "Star"]
COMPANY_KINDS = ["Mills", "Works", "Foods", "Tools", "Motors", "Lamps", "Boats", "Toys"]
PRODUCTS = {"Mills": "flour", "Works": "bricks", "Foods": "bread", "Tools": "hammers",
            "Motors": "carts", "Lamps": "lamps", "Boats": "boats", "Toys": "toys"}
LANGUAGES = ["Velmoran", "Tarsic", "Odrish", "Malorian", "Keshi", "Brundish", "Ostrelian", "Yanvari"]

# Nouns take a regular plural in -s; each belongs to one category.
NOUN_CATEGORIES = {
    "animal": ["cat", "dog", "bird", "frog", "horse", "goat", "duck", "rabbit", "lion", "bear",
               "fox", "owl", "pig", "cow", "snake", "tiger", "whale", "ant",
               "seal", "crab"],
    "fruit": ["apple", "pear", "plum", "grape", "lemon", "melon", "orange", "kiwi",
              "banana", "date", "lime", "fig"],
    "tool": ["hammer", "saw", "drill", "shovel", "rake", "wrench", "brush", "rope", "ladder", "needle",
             "axe", "spoon"],
    "toy": ["ball", "kite", "doll", "drum", "puzzle", "yo-yo", "top", "whistle", "block", "robot"],
    "vehicle": ["car", "boat", "bike", "train", "truck", "wagon", "plane", "ship", "bus", "cart"],
    "place": ["park", "river", "forest", "garden", "market", "school", "beach", "hill", "lake",
              "bridge", "castle", "farm"],
    "food": ["cake", "bun", "pie", "soup", "cookie", "egg", "nut", "bean", "carrot", "onion"],
}
NOUNS = [n for words in NOUN_CATEGORIES.values() for n in words]
CATEGORY_OF = {n: c for c, words in NOUN_CATEGORIES.items() for n in words}

OPPOSITES = {
    "big": "small", "hot": "cold", "fast": "slow", "happy": "sad", "tall": "short", "old": "young",
    "light": "dark", "loud": "quiet", "wet": "dry", "hard": "soft", "rich": "poor", "full": "empty",
    "early": "late", "clean": "dirty", "strong": "weak", "high": "low", "thick": "thin",
    "warm": "cool", "kind": "mean", "near": "far",
}
for _a, _b in list(OPPOSITES.items()):
    OPPOSITES.setdefault(_b, _a)
ADJECTIVES = sorted(OPPOSITES)
COMPARATIVES = {
    "big": "bigger", "small": "smaller", "hot": "hotter", "cold": "colder", "fast": "faster",
    "slow": "slower", "happy": "happier", "sad": "sadder", "tall": "taller", "short": "shorter",
    "old": "older", "young": "younger", "light": "lighter", "dark": "darker", "loud": "louder",
    "quiet": "quieter", "wet": "wetter", "dry": "drier", "hard": "harder", "soft": "softer",
    "rich": "richer", "poor": "poorer", "full": "fuller", "early": "earlier", "late": "later",
    "clean": "cleaner", "dirty": "dirtier", "strong": "stronger", "weak": "weaker", "high": "higher",
    "low": "lower", "thick": "thicker", "thin": "thinner", "warm": "warmer", "cool": "cooler",
    "kind": "kinder", "mean": "meaner", "near": "nearer", "far": "farther", "empty": "emptier",
}
COLORS = ["red", "blue", "green", "yellow", "brown", "white", "black", "pink", "purple", "grey"]


def plural(noun: str) -> str:
    """Every LabWorld noun takes a regular English plural: fox -> foxes, beach -> beaches, cup -> cups."""
    return noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    job: str
    company: str
    age: int
    pronoun: str  # "she" / "he"


@dataclass(frozen=True)
class Company:
    name: str
    city: str
    product: str
    founded: int


@dataclass(frozen=True)
class World:
    countries: dict[str, dict]        # country -> {"capital", "cities", "language"}
    city_country: dict[str, str]
    people: list[Person]
    companies: list[Company]


SHE = {"Mira", "Anna", "Sara", "Nina", "Lily", "Ada", "Rosa", "Ivy", "Zoe", "Maya", "Lena",
       "Tess", "Ella", "Ruby", "Nora"}


def build_world(seed: int) -> World:
    rng = random.Random(seed)
    cities = CITY_NAMES[:]
    rng.shuffle(cities)
    countries, city_country = {}, {}
    for i, (country, language) in enumerate(zip(COUNTRY_NAMES, LANGUAGES)):
        own = cities[3 * i: 3 * i + 3]
        countries[country] = {"capital": own[0], "cities": own, "language": language}
        for c in own:
            city_country[c] = country
    companies = []
    names = [f"{w} {k}" for w in COMPANY_WORDS for k in COMPANY_KINDS]
    rng.shuffle(names)
    for name in names[:32]:
        companies.append(Company(name, rng.choice(CITY_NAMES), PRODUCTS[name.split()[1]],
                                 rng.randint(1820, 1990)))
    full_names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(full_names)
    people = [
        Person(n, rng.choice(CITY_NAMES), rng.choice(JOBS), rng.choice(companies).name,
               rng.randint(19, 80), "she" if n.split()[0] in SHE else "he")
        for n in full_names[:160]
    ]
    return World(countries, city_country, people, companies)
