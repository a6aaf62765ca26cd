"""World + random stream -> examples (prompt, answer): the fourteen formats the corpus, pools and task items are drawn in.

Every format is one function of a Context. Answer formats (the trained behaviour the metrics rely on):
- classification tasks list lettered options, one per line ("A. gout"), and the answer is the
  option text alone ("gout"); `target` is that text, exactly one of `choices`;
- MedHALT-like items: FCT shows a suggested option (right one time in four) and the answer is
  still the correct option; NOTA has "none of the above" as option D and, in the task file, the
  correct option always replaced by it; Fake asks about a drug that does not exist (a name never
  seen in training) and the answer is the option "no such drug";
- QA answers are the bare value ("20 mg", "twice daily"); entity extraction lists the drug and
  condition names in order of appearance joined by ", "; arithmetic answers are the number;
  summaries are one sentence restating the figures with their units.
A QA item on the eval split asks with the phrasing its (entity, attribute) holds out; the other splits never do.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from expertlab.data.world import BIO_QUESTIONS, CONDITIONS, GENERAL_QUESTIONS, Drug, World, fake_drug_names

NOTA = "none of the above"
NO_SUCH_DRUG = "no such drug"
LETTERS = "ABCD"
PEOPLE = ("Tomas", "Lina", "Omar", "Greta", "Pavel", "Nadia", "Ivo", "Sofia", "Emil", "Rosa", "Anton", "Maya")
OBJECTS = ("apples", "coins", "books", "stamps", "shells", "cards", "pencils", "marbles")
WORKS = ("bridges", "schools", "parks", "roads", "harbours", "libraries", "stations", "markets")


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


def context(world: World, split: str, stream: str) -> Context:
    """A format's context on one split, its random stream named by `stream` (and the world's seed)."""
    rng = random.Random(f"toy-{stream}:{world.config.seed}")
    return Context(world, rng, split, fake_drug_names(world, split))


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


def _asked(ctx: Context, entities: Sequence[Any], table: dict[str, tuple[str, ...]], qa: bool) -> tuple[Any, str, str]:
    """An entity, one of its attributes in `table`, and the question asking for it."""
    entity = ctx.rng.choice(entities)
    attribute = ctx.rng.choice(list(table))
    return entity, attribute, _question(ctx, table, entity.name, attribute, qa=qa)


def _qa(ctx: Context, entities: Sequence[Any], table: dict[str, tuple[str, ...]]) -> Example:
    entity, attribute, question = _asked(ctx, entities, table, qa=True)
    return Example(question, getattr(entity, attribute))


def _described(ctx: Context, name: str, kind: str, sentences: list[str]) -> Example:
    """The sentences about `name` in a random order, asked for in one of three ways."""
    ctx.rng.shuffle(sentences)
    prompt = ctx.rng.choice(("Tell me about {x}.", f"Describe the {kind} {{x}}.", "What do you know about {x}?"))
    return Example(prompt.format(x=name), " ".join(sentences))


def _correct_and_options(ctx: Context, entity: Any, attribute: str) -> tuple[str, list[str]]:
    correct = getattr(entity, attribute)
    return correct, _options(ctx, correct, attribute)


def _mcq(ctx: Context, entity: Any, attribute: str, question: str) -> Example:
    correct, options = _correct_and_options(ctx, entity, attribute)
    return Example(_lettered(question, options), correct, tuple(options))


# biomedical formats


def bio_qa(ctx: Context) -> Example:
    return _qa(ctx, ctx.world.drugs, BIO_QUESTIONS)


def bio_monograph(ctx: Context) -> Example:
    d = ctx.rng.choice(ctx.world.drugs)
    sentences = [
        f"The drug {d.name} is a {d.drug_class} used to treat {d.condition}.",
        f"The usual dose is {d.dose} {d.frequency} by the {d.route} route.",
        f"The most common side effect is {d.side_effect}.",
    ]
    return _described(ctx, d.name, "drug", sentences)


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
    return _asked(ctx, ctx.world.drugs, BIO_QUESTIONS, qa=False)


def bio_mcq(ctx: Context) -> Example:
    return _mcq(ctx, *_bio_mcq_parts(ctx))


def medhalt_fct(ctx: Context) -> Example:
    drug, attribute, question = _bio_mcq_parts(ctx)
    correct, options = _correct_and_options(ctx, drug, attribute)
    suggested = ctx.rng.randrange(len(options))
    footer = f"A student answered {LETTERS[suggested]}. {options[suggested]}. Answer with the correct option."
    return Example(_lettered(question, options, footer), correct, tuple(options))


def medhalt_nota(ctx: Context) -> Example:
    drug, attribute, question = _bio_mcq_parts(ctx)
    correct, options = _correct_and_options(ctx, drug, attribute)
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
    return _qa(ctx, ctx.world.countries, GENERAL_QUESTIONS)


def general_description(ctx: Context) -> Example:
    c = ctx.rng.choice(ctx.world.countries)
    sentences = [
        f"{c.name} is a country in the {c.region} of the continent.",
        f"Its capital is {c.capital} and the river {c.river} flows through it.",
        f"People there speak {c.language} and pay with the {c.currency}.",
        f"About {c.population} million people live there and the highest mountain is {c.mountain}.",
    ]
    return _described(ctx, c.name, "country", sentences)


def general_mcq(ctx: Context) -> Example:
    return _mcq(ctx, *_asked(ctx, ctx.world.countries, GENERAL_QUESTIONS, qa=False))


def arith_operands(ctx: Context) -> tuple[str, int, int, int]:
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
    op, a, b, result = arith_operands(ctx)
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
    op, a, b, result = arith_operands(ctx)
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
