"""WorldConfig + seed -> the toy world's facts: invented drugs and countries, and the question phrasing each holds out.

The default study runs on this world (DESIGN.md, "Embedded default: the toy world"). The
biomedical domain holds invented drugs (class, condition treated, dose with unit, dosing
frequency, route, common side effect); the general domain holds invented countries (capital,
river, language, currency, mountain, region, population) and small-number arithmetic. The two
share only function words and digits, so a trained MoE's experts can specialise by domain.
Every (entity, attribute) keeps one of its question phrasings for evaluation only. The tool_use
domain (expertlab.data.tools) asks for function calls about the same facts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class WorldConfig(BaseModel):
    """Size and seed of the toy world and of the files written from it."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    drugs: int = Field(default=24, ge=8)
    countries: int = Field(default=24, ge=8)
    arith_max: int = Field(default=9, ge=3)  # operands of plus / minus are 1..arith_max
    train_examples_per_domain: int = Field(default=6000, gt=0)  # biomedical and general each
    # tool_use demonstrations in the training corpus: fewer than the other domains', so the base model calls
    # functions less well than it answers questions, and fine-tuning on the split below has something to teach
    tool_train_examples: int = Field(default=1500, gt=0)
    tool_finetune_examples: int = Field(default=2000, gt=0)  # finetune/tool_use.jsonl: the second study's data
    pool_size: int = Field(default=512, gt=0)  # held-out demonstrations per domain, for calibration
    eval_items: int = Field(default=64, gt=0)  # items per evaluation task

    def train_examples(self, domain: str) -> int:
        """Demonstrations of `domain` in the training corpus."""
        return self.tool_train_examples if domain == "tool_use" else self.train_examples_per_domain



# --- the names -----------------------------------------------------------------------------------

CONDITIONS = (
    "asthma", "migraine", "gout", "psoriasis", "eczema", "hypertension", "angina", "epilepsy",
    "glaucoma", "anemia", "arthritis", "bronchitis", "cystitis", "dermatitis", "malaria",
    "pneumonia", "sinusitis", "tinnitus", "vertigo", "colitis", "hepatitis", "shingles",
)  # fmt: skip
DRUG_CLASSES = {  # class -> name suffix, as real nomenclature does
    "beta blocker": "olol",
    "ACE inhibitor": "pril",
    "statin": "statin",
    "monoclonal antibody": "mab",
    "antifungal": "azole",
    "antiviral": "avir",
    "antibiotic": "cillin",
    "kinase inhibitor": "tinib",
    "corticosteroid": "sone",
    "antihistamine": "tadine",
}
DRUG_STEMS = (
    "val", "zor", "mex", "tri", "lor", "ben", "cef", "dar", "fen", "gli", "hex",
    "kal", "lev", "mor", "nex", "pra", "quin", "rox", "sil", "tam", "ven", "xal",
)  # fmt: skip
DRUG_LINKS = ("a", "e", "i", "o", "u", "ax", "ix", "or", "en", "az")
DOSES = {  # unit -> amounts
    "mg": (5, 10, 20, 25, 40, 50, 100, 200, 250, 500),
    "mcg": (50, 100, 200, 400),
    "mL": (2, 5, 10, 15),
    "g": (1, 2),
}
FREQUENCIES = ("once daily", "twice daily", "three times daily", "every eight hours", "once weekly")
ROUTES = ("oral", "intravenous", "inhaled", "topical", "subcutaneous", "intramuscular")
SIDE_EFFECTS = (
    "nausea", "headache", "rash", "dizziness", "fatigue", "cough",
    "diarrhea", "constipation", "drowsiness", "tremor", "itching", "insomnia",
)  # fmt: skip

PLACE_STEMS = (
    "Mel", "Tor", "Ast", "Bel", "Cor", "Dun", "Esk", "Fal", "Gor", "Hal", "Ist", "Jor", "Kel",
    "Lun", "Mor", "Nor", "Ost", "Pel", "Ryn", "Sar", "Tal", "Ulm", "Vel", "Wen", "Yar", "Zan",
)  # fmt: skip
PLACE_LINKS = ("do", "ma", "vi", "te", "ga", "bo", "le", "ri")
COUNTRY_ENDINGS = ("ria", "land", "via", "stan", "ora", "esh")
CAPITAL_ENDINGS = ("burg", "ton", "grad", "holm", "port", "by", "mouth", "stad")
RIVER_ENDINGS = ("wa", "el", "ur", "ava", "ent", "is")
MOUNTAIN_ENDINGS = ("horn", "fell", "crag", "peak")
CURRENCY_ENDINGS = ("ar", "ek", "ollo", "un")
REGIONS = ("north", "south", "east", "west", "centre")
POPULATIONS = range(2, 96)  # millions


# --- question phrasings --------------------------------------------------------------------------

BIO_QUESTIONS = {
    "condition": (
        "Which condition is {x} used to treat?",
        "What disease does {x} treat?",
        "For which condition is {x} prescribed?",
        "What is {x} indicated for?",
    ),
    "drug_class": (
        "What class of drug is {x}?",
        "To which drug class does {x} belong?",
        "What kind of drug is {x}?",
        "Which drug class includes {x}?",
    ),
    "dose": (
        "What is the usual dose of {x}?",
        "What is the standard dose of {x}?",
        "How much {x} is given per dose?",
        "What dose of {x} do patients take?",
    ),
    "frequency": (
        "How often is {x} taken?",
        "How frequently is {x} given?",
        "What is the dosing schedule of {x}?",
        "How many times is {x} dosed?",
    ),
    "route": (
        "By which route is {x} given?",
        "How is {x} administered?",
        "What is the route of {x}?",
        "Which route is used for {x}?",
    ),
    "side_effect": (
        "What is the most common side effect of {x}?",
        "Which side effect is most common with {x}?",
        "What adverse effect does {x} often cause?",
        "Which side effect do patients on {x} report most?",
    ),
}
GENERAL_QUESTIONS = {
    "capital": (
        "What is the capital of {x}?",
        "Which city is the capital of {x}?",
        "Name the capital city of {x}.",
        "Where is the government of {x} seated?",
    ),
    "river": (
        "Which river flows through {x}?",
        "What is the main river of {x}?",
        "Name the river that crosses {x}.",
        "Which river runs through {x}?",
    ),
    "language": (
        "What language is spoken in {x}?",
        "Which language do people in {x} speak?",
        "What is the language of {x}?",
        "Name the language used in {x}.",
    ),
    "currency": (
        "What currency is used in {x}?",
        "Which currency do people in {x} pay with?",
        "What is the money of {x} called?",
        "Name the currency of {x}.",
    ),
    "mountain": (
        "What is the highest mountain of {x}?",
        "Which mountain is the tallest in {x}?",
        "Name the highest peak of {x}.",
        "What is the tallest mountain in {x}?",
    ),
    "region": (
        "In which region of the continent is {x}?",
        "Where on the continent does {x} lie?",
        "Which part of the continent is {x} in?",
        "In what region does {x} lie?",
    ),
    "population": (
        "How many million people live in {x}?",
        "What is the population of {x} in millions?",
        "About how many million people does {x} have?",
        "How large is the population of {x} in millions?",
    ),
}


# --- the world -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drug:
    name: str
    drug_class: str
    condition: str
    dose: str  # amount and unit, e.g. "20 mg"
    frequency: str
    route: str
    side_effect: str


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    river: str
    language: str
    currency: str
    mountain: str
    region: str
    population: str  # millions, as digits


@dataclass(frozen=True)
class World:
    config: WorldConfig
    drugs: tuple[Drug, ...]
    countries: tuple[Country, ...]
    # (entity name, attribute) -> index of the question phrasing reserved for evaluation
    held_out_phrasing: dict[tuple[str, str], int]

    def values(self, attribute: str) -> list[str]:
        """Every value an attribute can take (the distractor pool), in a fixed order."""
        fixed = {
            "condition": CONDITIONS,
            "drug_class": tuple(DRUG_CLASSES),
            "dose": tuple(f"{amount} {unit}" for unit, amounts in DOSES.items() for amount in amounts),
            "frequency": FREQUENCIES,
            "route": ROUTES,
            "side_effect": SIDE_EFFECTS,
            "region": REGIONS,
            "population": tuple(str(n) for n in POPULATIONS),
        }
        if attribute in fixed:
            return list(fixed[attribute])
        return [getattr(c, attribute) for c in self.countries]


def _unique_name(rng: random.Random, used: set[str], make: Callable[[], str]) -> str:
    for _ in range(10_000):
        name = make()
        if name not in used:
            used.add(name)
            return name
    raise ValueError("ran out of distinct invented names; lower the world sizes")


def _drug_name(rng: random.Random, drug_class: str) -> str:
    return rng.choice(DRUG_STEMS) + rng.choice(DRUG_LINKS) + DRUG_CLASSES[drug_class]


def _place_name(rng: random.Random, endings: tuple[str, ...]) -> str:
    return rng.choice(PLACE_STEMS) + rng.choice(PLACE_LINKS) + rng.choice(endings)


def build_world(cfg: WorldConfig) -> World:
    """The facts of the world, drawn from `cfg.seed` alone."""
    rng = random.Random(f"toy-world:{cfg.seed}")
    used: set[str] = set()
    drugs = []
    for _ in range(cfg.drugs):
        drug_class = rng.choice(list(DRUG_CLASSES))
        unit = rng.choice(list(DOSES))
        drugs.append(
            Drug(
                name=_unique_name(rng, used, lambda c=drug_class: _drug_name(rng, c)),
                drug_class=drug_class,
                condition=rng.choice(CONDITIONS),
                dose=f"{rng.choice(DOSES[unit])} {unit}",
                frequency=rng.choice(FREQUENCIES),
                route=rng.choice(ROUTES),
                side_effect=rng.choice(SIDE_EFFECTS),
            )
        )
    countries = []
    for _ in range(cfg.countries):
        stem = _unique_name(rng, used, lambda: rng.choice(PLACE_STEMS) + rng.choice(PLACE_LINKS))
        countries.append(
            Country(
                name=stem + rng.choice(COUNTRY_ENDINGS),
                capital=_unique_name(rng, used, lambda: _place_name(rng, CAPITAL_ENDINGS)),
                river=_unique_name(rng, used, lambda: _place_name(rng, RIVER_ENDINGS)),
                language=stem + "ish",
                currency=_unique_name(rng, used, lambda: _place_name(rng, CURRENCY_ENDINGS).lower()),
                mountain=_unique_name(rng, used, lambda: _place_name(rng, MOUNTAIN_ENDINGS)),
                region=rng.choice(REGIONS),
                population=str(rng.choice(POPULATIONS)),
            )
        )
    held_out = {}
    for drug in drugs:
        for attribute, phrasings in BIO_QUESTIONS.items():
            held_out[(drug.name, attribute)] = rng.randrange(len(phrasings))
    for country in countries:
        for attribute, phrasings in GENERAL_QUESTIONS.items():
            held_out[(country.name, attribute)] = rng.randrange(len(phrasings))
    return World(cfg, tuple(drugs), tuple(countries), held_out)


def fake_drug_names(world: World, split: str) -> Iterator[str]:
    """Fresh non-existent drug names for one split: never a real drug, never repeated across splits."""
    rng = random.Random(f"toy-fake:{world.config.seed}")
    taken = {d.name for d in world.drugs}
    splits = ("eval", "pool", "train")
    while True:
        for name_split in splits:
            name = _unique_name(rng, taken, lambda: _drug_name(rng, rng.choice(list(DRUG_CLASSES))))
            if name_split == split:
                yield name
