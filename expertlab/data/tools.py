"""World + random stream -> tool-call demonstrations: a request in words, the functions on offer, one call.

The toy world's tool_use domain (paper 001's in-domain target; BFCL single-turn on real models). A
prompt lists one to four functions of `FUNCTIONS`, shuffled, one per line in a fixed short form
("get_dose(drug): the usual dose of a drug"), then the request. The answer is the one call
that serves the request, in BFCL's prompting output format `[func_name(arg1=value1, arg2=value2)]`:
keyword arguments in the function's declared order, strings in double quotes, integers bare.
Every value is a fact of the world (a drug's own dose and schedule, a country's capital or currency)
and is stated in the request: a call is read off the request, the function chosen by what it asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from expertlab.data.examples import Context, Example, arith_operands

Value = str | int


@dataclass(frozen=True)
class Function:
    """One function the toy's requests call: its parameters, a one-line description, how users ask for it."""

    name: str
    parameters: tuple[str, ...]
    description: str
    requests: tuple[str, ...]  # phrasings naming every argument as {parameter}
    arguments: Callable[[Context], dict[str, Value]]  # values drawn from the world, one per parameter

    def signature(self) -> str:
        """The function as a prompt lists it: `name(parameters): description`."""
        return f"{self.name}({', '.join(self.parameters)}): {self.description}"


def format_call(name: str, arguments: Mapping[str, Value]) -> str:
    """`[name(key="text", key=3)]`: BFCL's prompting output for one call, keyword arguments in the given order."""
    rendered = (f'{key}="{value}"' if isinstance(value, str) else f"{key}={value}" for key, value in arguments.items())
    return f"[{name}({', '.join(rendered)})]"


def _dose_of(ctx: Context) -> dict[str, Value]:
    return {"drug": ctx.rng.choice(ctx.world.drugs).name}


def _drugs_for(ctx: Context) -> dict[str, Value]:
    drug = ctx.rng.choice(ctx.world.drugs)
    return {"condition": drug.condition, "route": drug.route}


def _reminder(ctx: Context) -> dict[str, Value]:
    drug = ctx.rng.choice(ctx.world.drugs)
    return {"drug": drug.name, "dose": drug.dose, "frequency": drug.frequency}


def _side_effect(ctx: Context) -> dict[str, Value]:
    drug = ctx.rng.choice(ctx.world.drugs)
    return {"drug": drug.name, "effect": drug.side_effect}


def _trip(ctx: Context) -> dict[str, Value]:
    return {"city": ctx.rng.choice(ctx.world.countries).capital, "days": ctx.rng.randint(2, 14)}


def _conversion(ctx: Context) -> dict[str, Value]:
    return {"amount": ctx.rng.randint(2, 900), "currency": ctx.rng.choice(ctx.world.countries).currency}


def _population(ctx: Context) -> dict[str, Value]:
    return {"country": ctx.rng.choice(ctx.world.countries).name}


def _calculation(ctx: Context) -> dict[str, Value]:
    operation, a, b, _ = arith_operands(ctx)
    return {"operation": operation, "a": a, "b": b}


FUNCTIONS: tuple[Function, ...] = (
    Function(
        "get_dose", ("drug",), "the usual dose of a drug",
        ("Look up the usual dose of {drug}.", "What dose of {drug} should I take? Please check.",
         "Find the standard dose of {drug} for me."),
        _dose_of,
    ),
    Function(
        "find_drugs", ("condition", "route"), "drugs for a condition by a route",
        ("Find {route} drugs for {condition}.", "Search for drugs that treat {condition} by the {route} route.",
         "Which {route} drugs are there for {condition}? Search for them."),
        _drugs_for,
    ),
    Function(
        "set_reminder", ("drug", "dose", "frequency"), "remind a patient to take a drug",
        ("Remind me to take {dose} of {drug} {frequency}.", "Set a reminder for {drug} {dose} {frequency}.",
         "Please remind me about my {drug}, {dose} {frequency}."),
        _reminder,
    ),
    Function(
        "report_side_effect", ("drug", "effect"), "report a side effect of a drug",
        ("Report {effect} as a side effect of {drug}.", "I had {effect} after taking {drug}. Please report it.",
         "File a report: {drug} gave me {effect}."),
        _side_effect,
    ),
    Function(
        "book_trip", ("city", "days"), "book a trip to a city",
        ("Book a {days} day trip to {city}.", "Plan a trip to {city} for {days} days.",
         "I want to spend {days} days in {city}. Book it."),
        _trip,
    ),
    Function(
        "convert_currency", ("amount", "currency"), "convert money into dollars",
        ("Convert {amount} {currency} into dollars.", "How many dollars is {amount} {currency}? Convert it.",
         "Change {amount} {currency} to dollars for me."),
        _conversion,
    ),
    Function(
        "get_population", ("country",), "the population of a country",
        ("Look up the population of {country}.", "How many people live in {country}? Please check.",
         "Find out how large the population of {country} is."),
        _population,
    ),
    Function(
        "calculate", ("operation", "a", "b"), "plus, minus or times of two numbers",
        ("Use the calculator for {a} {operation} {b}.", "Calculate {a} {operation} {b} with the tool.",
         "Run the calculator on {a} {operation} {b}."),
        _calculation,
    ),
)  # fmt: skip
MAX_OFFERED = 4  # functions a prompt lists at most (BFCL "multiple" offers 2 to 4)


def tool_call(ctx: Context) -> Example:
    """A request, one to MAX_OFFERED functions on offer (the called one among them), and the call serving it."""
    called = ctx.rng.choice(FUNCTIONS)
    others = ctx.rng.sample([f for f in FUNCTIONS if f is not called], ctx.rng.randint(0, MAX_OFFERED - 1))
    offered = [called, *others]
    ctx.rng.shuffle(offered)
    arguments = called.arguments(ctx)
    request = ctx.rng.choice(called.requests).format(**arguments)
    prompt = "\n".join(["Functions:", *(f.signature() for f in offered), f"Request: {request}"])
    return Example(prompt, format_call(called.name, arguments))
