"""WorldConfig + seed -> a two-domain toy world -> training corpus, calibration pools and sets, task files.

The default study runs on this world (DESIGN.md, "Embedded default: the toy world"). The
biomedical half holds invented drugs (class, condition treated, dose with unit, dosing
frequency, route, common side effect); the general half holds invented countries (capital,
river, language, currency, mountain, region, population) and small-number arithmetic. The two
halves share only function words and digits, so a trained MoE's experts can specialise by domain.

Every text is one chat turn (`render_chat`: user prompt, assistant answer); training lines also
name their domain, which the toy model's domain-routed warm-up reads (expertlab/train.py). Evaluation items are
about facts the training corpus states, but their exact prompts never occur in training or in the
pools: a QA item asks with the one question phrasing held out for that (entity, attribute), and
every other kind of item is a fresh random combination rejected if seen.

Answer formats (the trained behaviour the metrics rely on):
- classification tasks list lettered options, one per line ("A. gout"), and the answer is the
  option text alone ("gout"); `target` is that text, exactly one of `choices`;
- MedHALT-like items: FCT shows a suggested option (right one time in four) and the answer is
  still the correct option; NOTA has "none of the above" as option D and, in the task file, the
  correct option always replaced by it; Fake asks about a drug that does not exist (a name never
  seen in training) and the answer is the option "no such drug";
- QA answers are the bare value ("20 mg", "twice daily"); entity extraction lists the drug and
  condition names in order of appearance joined by ", "; arithmetic answers are the number;
  summaries are one sentence restating the figures with their units.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from expertlab.data.tokenizer import render_chat
from expertlab.io import write_jsonl
from expertlab.tasks import DOMAINS, TASKS


class WorldConfig(BaseModel):
    """Size and seed of the toy world and of the files written from it."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    drugs: int = Field(default=24, ge=8)
    countries: int = Field(default=24, ge=8)
    arith_max: int = Field(default=9, ge=3)  # operands of plus / minus are 1..arith_max
    train_examples_per_domain: int = Field(default=6000, gt=0)
    pool_size: int = Field(default=512, gt=0)  # held-out demonstrations per domain, for calibration
    eval_items: int = Field(default=64, gt=0)  # items per evaluation task


class CalibrationLike(Protocol):
    domains: list[str]
    samples: int


# --- the world -----------------------------------------------------------------------------------

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
PEOPLE = ("Tomas", "Lina", "Omar", "Greta", "Pavel", "Nadia", "Ivo", "Sofia", "Emil", "Rosa", "Anton", "Maya")
OBJECTS = ("apples", "coins", "books", "stamps", "shells", "cards", "pencils", "marbles")
WORKS = ("bridges", "schools", "parks", "roads", "harbours", "libraries", "stations", "markets")


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
NOTA = "none of the above"
NO_SUCH_DRUG = "no such drug"
LETTERS = "ABCD"


# --- examples ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    choices: tuple[str, ...] | None = None
    document: str | None = None  # summaries: the text summarised, what a judge checks the summary against


@dataclass
class Context:
    """What a format draws from: the world, a random stream, the split and its fresh fake-drug names."""

    world: World
    rng: random.Random
    split: str  # "train", "pool" or "eval"
    fake_names: Iterator[str]


Format = Callable[[Context], Example]


def _options(ctx: Context, correct: str, attribute: str, count: int = 4) -> list[str]:
    distractors = [v for v in ctx.world.values(attribute) if v != correct]
    options = ctx.rng.sample(distractors, count - 1) + [correct]
    ctx.rng.shuffle(options)
    return options


def _lettered(question: str, options: list[str], footer: str = "Answer with the correct option.") -> str:
    lines = [question] + [f"{letter}. {option}" for letter, option in zip(LETTERS, options)]
    return "\n".join(lines + [footer])


def _question(ctx: Context, table: dict[str, tuple[str, ...]], name: str, attribute: str, qa: bool) -> str:
    """A question phrasing; QA keeps the held-out phrasing for evaluation only."""
    phrasings = table[attribute]
    reserved = ctx.world.held_out_phrasing[(name, attribute)]
    if not qa:
        index = ctx.rng.randrange(len(phrasings))
    elif ctx.split == "eval":
        index = reserved
    else:
        index = ctx.rng.choice([i for i in range(len(phrasings)) if i != reserved])
    return phrasings[index].format(x=name)


# biomedical formats


def bio_qa(ctx: Context) -> Example:
    drug = ctx.rng.choice(ctx.world.drugs)
    attribute = ctx.rng.choice(list(BIO_QUESTIONS))
    return Example(_question(ctx, BIO_QUESTIONS, drug.name, attribute, qa=True), getattr(drug, attribute))


def bio_monograph(ctx: Context) -> Example:
    d = ctx.rng.choice(ctx.world.drugs)
    sentences = [
        f"The drug {d.name} is a {d.drug_class} used to treat {d.condition}.",
        f"The usual dose is {d.dose} {d.frequency} by the {d.route} route.",
        f"The most common side effect is {d.side_effect}.",
    ]
    ctx.rng.shuffle(sentences)
    prompt = ctx.rng.choice(("Tell me about {x}.", "Describe the drug {x}.", "What do you know about {x}?"))
    return Example(prompt.format(x=d.name), " ".join(sentences))


NER_SENTENCES = (
    "A patient with {c1} was started on {d1}.",
    "The drugs {d1} and {d2} were compared in adults with {c1}.",
    "Patients with {c1} or {c2} often receive {d1}.",
    "After {d1} failed, the patient with {c1} was switched to {d2}.",
    "Doctors added {d1} to {d2} for severe {c1}.",
    "In the clinic, {d1} reduced {c1} and {c2} symptoms.",
    "A woman with {c1} developed {c2} while taking {d1}.",
    "Doctors sometimes combine {d1} with {d2} when {c1} returns.",
)


def bio_ner(ctx: Context) -> Example:
    template = ctx.rng.choice(NER_SENTENCES)
    d1, d2 = (d.name for d in ctx.rng.sample(ctx.world.drugs, 2))
    c1, c2 = ctx.rng.sample(CONDITIONS, 2)
    values = {"d1": d1, "d2": d2, "c1": c1, "c2": c2}
    sentence = template.format(**values)
    order = sorted(
        (template.index("{" + key + "}"), value) for key, value in values.items() if "{" + key + "}" in template
    )
    prompt = "List the drugs and conditions named in this sentence.\n" + sentence
    return Example(prompt, ", ".join(name for _, name in order))


def _bio_mcq_parts(ctx: Context) -> tuple[Drug, str, str]:
    drug = ctx.rng.choice(ctx.world.drugs)
    attribute = ctx.rng.choice(list(BIO_QUESTIONS))
    return drug, attribute, _question(ctx, BIO_QUESTIONS, drug.name, attribute, qa=False)


def bio_mcq(ctx: Context) -> Example:
    drug, attribute, question = _bio_mcq_parts(ctx)
    correct = getattr(drug, attribute)
    options = _options(ctx, correct, attribute)
    return Example(_lettered(question, options), correct, tuple(options))


def medhalt_fct(ctx: Context) -> Example:
    drug, attribute, question = _bio_mcq_parts(ctx)
    correct = getattr(drug, attribute)
    options = _options(ctx, correct, attribute)
    suggested = ctx.rng.randrange(len(options))
    footer = f"A student answered {LETTERS[suggested]}. {options[suggested]}. Answer with the correct option."
    return Example(_lettered(question, options, footer), correct, tuple(options))


def medhalt_nota(ctx: Context) -> Example:
    drug, attribute, question = _bio_mcq_parts(ctx)
    correct = getattr(drug, attribute)
    options = _options(ctx, correct, attribute)
    replaced = ctx.split == "eval" or ctx.rng.random() < 0.5
    if replaced:
        options.remove(correct)
    else:
        options.remove(ctx.rng.choice([o for o in options if o != correct]))
    options.append(NOTA)
    return Example(_lettered(question, options), NOTA if replaced else correct, tuple(options))


def medhalt_fake(ctx: Context) -> Example:
    attribute = ctx.rng.choice(["condition", "drug_class", "route", "side_effect"])
    fake = ctx.split == "eval" or ctx.rng.random() < 0.5
    if fake:
        name = next(ctx.fake_names)
        phrasing = ctx.rng.choice(BIO_QUESTIONS[attribute])
        question = phrasing.format(x=name)
        options = ctx.rng.sample(ctx.world.values(attribute), 3)
        answer = NO_SUCH_DRUG
    else:
        drug = ctx.rng.choice(ctx.world.drugs)
        question = _question(ctx, BIO_QUESTIONS, drug.name, attribute, qa=False)
        answer = getattr(drug, attribute)
        options = _options(ctx, answer, attribute, count=3)
    options.append(NO_SUCH_DRUG)
    return Example(_lettered(question, options), answer, tuple(options))


def trial_summary(ctx: Context) -> Example:
    rng = ctx.rng
    d = rng.choice(ctx.world.drugs)
    weeks, patients = rng.choice((4, 6, 8, 12, 24, 52)), rng.randint(40, 900)
    treated, placebo = sorted(rng.sample(range(10, 90), 2), reverse=True)
    group = rng.choice(("adults", "children", "patients", "older adults"))
    abstract = (
        f"In a {weeks} week trial, {patients} {group} with {d.condition} received {d.name} {d.dose} "
        f"{d.frequency} or placebo. Symptoms improved in {treated} percent of the {d.name} group and "
        f"{placebo} percent of the placebo group. The most common side effect was {d.side_effect}."
    )
    summary = (
        f"Treatment with {d.name} improved {d.condition} in {treated} percent of {patients} {group} "
        f"versus {placebo} percent with placebo over {weeks} weeks."
    )
    return Example("Summarize this trial.\n" + abstract, summary, document=abstract)


# general formats


def general_qa(ctx: Context) -> Example:
    country = ctx.rng.choice(ctx.world.countries)
    attribute = ctx.rng.choice(list(GENERAL_QUESTIONS))
    return Example(_question(ctx, GENERAL_QUESTIONS, country.name, attribute, qa=True), getattr(country, attribute))


def general_description(ctx: Context) -> Example:
    c = ctx.rng.choice(ctx.world.countries)
    sentences = [
        f"{c.name} is a country in the {c.region} of the continent.",
        f"Its capital is {c.capital} and the river {c.river} flows through it.",
        f"People there speak {c.language} and pay with the {c.currency}.",
        f"About {c.population} million people live there and the highest mountain is {c.mountain}.",
    ]
    ctx.rng.shuffle(sentences)
    prompt = ctx.rng.choice(("Tell me about {x}.", "Describe the country {x}.", "What do you know about {x}?"))
    return Example(prompt.format(x=c.name), " ".join(sentences))


def general_mcq(ctx: Context) -> Example:
    country = ctx.rng.choice(ctx.world.countries)
    attribute = ctx.rng.choice(list(GENERAL_QUESTIONS))
    question = _question(ctx, GENERAL_QUESTIONS, country.name, attribute, qa=False)
    correct = getattr(country, attribute)
    options = _options(ctx, correct, attribute)
    return Example(_lettered(question, options), correct, tuple(options))


def _arith_operands(ctx: Context) -> tuple[str, int, int, int]:
    top = ctx.world.config.arith_max
    op = ctx.rng.choice(("plus", "minus", "times"))
    if op == "times":
        a, b = ctx.rng.randint(2, min(top, 6)), ctx.rng.randint(2, min(top, 6))
        return op, a, b, a * b
    a, b = ctx.rng.randint(1, top), ctx.rng.randint(1, top)
    if op == "minus":
        a, b = max(a, b), min(a, b)
        return op, a, b, a - b
    return op, a, b, a + b


def arith_fact(ctx: Context) -> Example:
    op, a, b, result = _arith_operands(ctx)
    phrasing = ctx.rng.choice(("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?"))
    return Example(phrasing.format(a=a, op=op, b=b), str(result))


WORD_PROBLEMS = {
    "plus": (
        "{p} has {a} {o} and gets {b} more. How many {o} does {p} have now?",
        "{p} found {a} {o} and then {b} more. How many {o} did {p} find?",
    ),
    "minus": (
        "{p} had {a} {o} and gave away {b}. How many {o} are left?",
        "{p} had {a} {o} and lost {b}. How many {o} does {p} still have?",
    ),
    "times": (
        "{p} buys {a} bags with {b} {o} in each. How many {o} is that?",
        "{p} has {a} boxes of {b} {o}. How many {o} are there in all?",
    ),
}


def general_arith(ctx: Context) -> Example:
    op, a, b, result = _arith_operands(ctx)
    phrasing = ctx.rng.choice(WORD_PROBLEMS[op])
    prompt = phrasing.format(p=ctx.rng.choice(PEOPLE), o=ctx.rng.choice(OBJECTS), a=a, b=b)
    return Example(prompt, str(result))


def general_summary(ctx: Context) -> Example:
    rng = ctx.rng
    c = rng.choice(ctx.world.countries)
    works, count = rng.choice(WORKS), rng.randint(2, 30)
    cost, months, users = rng.randint(5, 900), rng.randint(2, 48), rng.randint(10, 950)
    report = (
        f"Last year {c.capital}, the capital of {c.name}, opened {count} new {works} near the river "
        f"{c.river}. The work cost {cost} million {c.currency} and took {months} months. About {users} "
        f"thousand people use the new {works} each week."
    )
    summary = f"{c.capital} in {c.name} opened {count} {works} for {cost} million {c.currency} in {months} months."
    return Example("Summarize this report.\n" + report, summary, document=report)


# Evaluation tasks -> the format that writes their items (every registered task needs one).
TASK_FORMATS: dict[str, Format] = {
    "bio_qa": bio_qa,
    "bio_ner": bio_ner,
    "bio_mcq": bio_mcq,
    "trial_summary": trial_summary,
    "bio_fct": medhalt_fct,
    "bio_nota": medhalt_nota,
    "bio_fake": medhalt_fake,
    "general_arith": general_arith,
    "general_mcq": general_mcq,
    "general_summary": general_summary,
}
# Training and pool mixture per domain: format -> weight.
MIXTURE: dict[str, dict[Format, float]] = {
    "biomedical": {
        bio_qa: 0.30,
        bio_monograph: 0.10,
        bio_mcq: 0.14,
        bio_ner: 0.12,
        trial_summary: 0.10,
        medhalt_fct: 0.08,
        medhalt_nota: 0.08,
        medhalt_fake: 0.08,
    },
    "general": {
        general_qa: 0.30,
        general_description: 0.10,
        general_mcq: 0.16,
        arith_fact: 0.14,
        general_arith: 0.14,
        general_summary: 0.16,
    },
}


# --- splits --------------------------------------------------------------------------------------


def _fake_names(world: World, split: str) -> Iterator[str]:
    """Fresh non-existent drug names for one split: never a real drug, never repeated across splits."""
    rng = random.Random(f"toy-fake:{world.config.seed}")
    taken = {d.name for d in world.drugs}
    splits = ("eval", "pool", "train")
    while True:
        for name_split in splits:
            name = _unique_name(rng, taken, lambda: _drug_name(rng, rng.choice(list(DRUG_CLASSES))))
            if name_split == split:
                yield name


def _context(world: World, split: str, stream: str) -> Context:
    rng = random.Random(f"toy-{stream}:{world.config.seed}")
    return Context(world, rng, split, _fake_names(world, split))


def task_items(world: World) -> dict[str, list[dict[str, Any]]]:
    """`eval_items` distinct items for every toy-world task."""
    names = [name for name, entry in TASKS.items() if entry.source == "toy"]
    missing = [name for name in names if name not in TASK_FORMATS]
    if missing:
        raise ValueError(f"the toy world has no item format for tasks: {', '.join(missing)}")
    items = {}
    for name in names:
        # The stream is keyed by the format, so renaming a task keeps its items.
        ctx = _context(world, "eval", f"task-{TASK_FORMATS[name].__name__}")
        seen: set[str] = set()
        rows = []
        for _ in range(world.config.eval_items * 200):
            if len(rows) == world.config.eval_items:
                break
            example = TASK_FORMATS[name](ctx)
            if example.prompt in seen:
                continue
            seen.add(example.prompt)
            choices = list(example.choices) if example.choices is not None else None
            if TASKS[name].kind == "classification" and (choices is None or example.answer not in choices):
                raise AssertionError(f"{name}: classification item without its target among the choices")
            item_id = f"{name}-{len(rows):04d}"
            row = {"id": item_id, "prompt": example.prompt, "target": example.answer, "choices": choices}
            if example.document is not None:
                row["doc"] = {"source": example.document}
            rows.append(row)
        else:
            raise ValueError(f"task {name}: cannot draw {world.config.eval_items} distinct items; enlarge the world")
        items[name] = rows
    return items


def demonstrations(
    world: World,
    domain: str,
    count: int,
    split: str,
    avoid: set[str],
    prefer_new: frozenset[str] | set[str] = frozenset(),
) -> list[Example]:
    """`count` examples of one domain's mixture; prompts in `avoid` are never used, those in `prefer_new` rarely."""
    ctx = _context(world, split, f"{split}-{domain}")
    formats = list(MIXTURE[domain])
    weights = list(MIXTURE[domain].values())
    examples = []
    while len(examples) < count:
        fmt = ctx.rng.choices(formats, weights)[0]
        for _ in range(20):
            example = fmt(ctx)
            if example.prompt not in avoid and example.prompt not in prefer_new:
                break
        else:
            while example.prompt in avoid:
                example = fmt(ctx)
        examples.append(example)
    return examples


def pool_capacity(cfg: WorldConfig, domains: list[str]) -> int:
    """How many calibration texts the pools of `domains` hold together: toy.world.pool_size each."""
    return cfg.pool_size * len(set(domains))


def write_toy_data(
    cfg: WorldConfig,
    out_dir: Path,
    calibrations: dict[str, CalibrationLike],
    seeds: list[int],
) -> dict[str, int]:
    """Write train.jsonl, pools/<domain>.jsonl, calibration/<name>/seed<seed>.jsonl and tasks/<task>.jsonl."""
    out_dir = Path(out_dir)
    world = build_world(cfg)
    items = task_items(world)
    eval_prompts = {row["prompt"] for rows in items.values() for row in rows}

    train = []
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.train_examples_per_domain, "train", eval_prompts)
        train.extend((domain, e) for e in examples)
    random.Random(f"toy-shuffle:{cfg.seed}").shuffle(train)
    train_prompts = {e.prompt for _, e in train}
    pools = {}
    for domain in DOMAINS:
        examples = demonstrations(world, domain, cfg.pool_size, "pool", eval_prompts, train_prompts)
        pools[domain] = [render_chat(e.prompt, e.answer) for e in examples]

    write_jsonl(out_dir / "train.jsonl", ({"text": render_chat(e.prompt, e.answer), "domain": d} for d, e in train))
    for domain, texts in pools.items():
        write_jsonl(out_dir / "pools" / f"{domain}.jsonl", ({"text": t} for t in texts))
    for name, calibration in calibrations.items():
        union = []
        for domain in calibration.domains:
            if domain not in pools:
                raise ValueError(f"calibration {name!r}: unknown domain {domain!r}; allowed: {', '.join(DOMAINS)}")
            union.extend(pools[domain])
        if calibration.samples > pool_capacity(cfg, calibration.domains):
            raise ValueError(
                f"calibration {name!r}: {calibration.samples} samples requested, the pools hold {len(union)} "
                "(raise toy.world.pool_size)"
            )
        for seed in seeds:
            chosen = random.Random(seed).sample(union, calibration.samples)
            write_jsonl(out_dir / "calibration" / name / f"seed{seed}.jsonl", ({"text": t} for t in chosen))
    for name, rows in items.items():
        write_jsonl(out_dir / "tasks" / f"{name}.jsonl", rows)
    return {"train": len(train), **{f"pool_{d}": len(t) for d, t in pools.items()}, "tasks": len(items)}
