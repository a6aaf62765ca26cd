"""(source, summary) -> GroundingReport -> absolute verdict and reasons; (source, A, B) -> the four relative answers; items -> verdict rows.

The offline, deterministic grounding judge (no model, no network), the toy world's default judge. It
looks for the failure modes the study found in pruned models' summaries (paper, Table 3): numbers and
units the source does not state, named entities the source does not name, instruction leakage, and
repetition/collapse; coverage of the source's numbers and entities stands for omission.

Rules, in brief (module constants hold the vocabularies):
- numbers: digits ("1,000", "2.5", "10mg", "12-week") always; spelled-out small numbers ("ten") and
  "once/twice/thrice daily" only before a unit, so "one of the drugs" states nothing. "thousand",
  "million", "billion" scale the value. The unit is the word right after the number (or after one
  modifier for counts of people: "200 older adults"), canonicalised ("mg", "%", "week", "people",
  "ng/ml"). In "10 or 20 mg" and "10-20 mg" the first number inherits the unit.
  A summary number is supported when the source states the same value with the same unit, or, when
  the summary gives no unit, the same value with any unit. A source number is covered when the
  summary states its value with the same unit or with no unit on either side.
- entities: capitalised tokens that do not open a sentence, runs of capitalised tokens (a leading
  function word such as "In" or "The" dropped), tokens that start with a letter and hold a digit
  (drug codes: "ABX-101", "IL-6"), and lowercase words with an international drug-name stem
  ("-olol", "-pril", "-mab", ...). An entity is supported when its words occur, in order, in the
  source (case-insensitive; possessive "'s" and plural "s" stripped).
- leakage: the summarisation prompts' phrases and template markers (Appendix B), chat-role markers.
- repetition: the share of word n-grams (n = 3) that occur more than once, and the longest word
  span that occurs at least twice.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple

from expertlab.judges import protocols as proto
from expertlab.judges.backend import Item, Progress, Row, Settings, Tally, absolute_outputs, verdict_row
from expertlab.judgments import QUESTIONS

AbsoluteLabel = Literal["hallucinated", "faithful"]

REPETITION_N = 3

# --- vocabularies --------------------------------------------------------------------------------

WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
TIMES_WORDS = {"once": 1, "twice": 2, "thrice": 3}
SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
MEASURE_UNITS = {
    "%": "%", "percent": "%", "pct": "%",
    "mg": "mg", "milligram": "mg", "milligrams": "mg",
    "g": "g", "gram": "g", "grams": "g",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg",
    "mcg": "mcg", "µg": "mcg", "μg": "mcg", "ug": "mcg", "microgram": "mcg", "micrograms": "mcg",
    "ng": "ng", "nanogram": "ng", "nanograms": "ng",
    "ml": "ml", "millilitre": "ml", "millilitres": "ml", "milliliter": "ml", "milliliters": "ml",
    "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l", "dl": "dl",
    "mmol": "mmol", "mol": "mol", "iu": "iu", "unit": "unit", "units": "unit",
    "mmhg": "mmhg", "mm": "mm", "cm": "cm", "km": "km", "bpm": "bpm", "kcal": "kcal",
    "second": "second", "seconds": "second", "sec": "second",
    "minute": "minute", "minutes": "minute", "min": "minute", "mins": "minute",
    "hour": "hour", "hours": "hour", "h": "hour", "hr": "hour", "hrs": "hour",
    "day": "day", "days": "day", "week": "week", "weeks": "week", "wk": "week", "wks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year", "yr": "year", "yrs": "year",
    "time": "time", "times": "time", "dose": "dose", "doses": "dose",
    "trial": "trial", "trials": "trial", "study": "study", "studies": "study",
    "site": "site", "sites": "site", "centre": "centre", "centres": "centre", "center": "centre",
    "centers": "centre", "case": "case", "cases": "case", "death": "death", "deaths": "death",
}  # fmt: skip
# Counts of people share one unit: "200 participants" paraphrases "200 patients"; swapping the
# population itself is not a number error.
PEOPLE_UNITS = {
    "patient", "patients", "participant", "participants", "subject", "subjects", "adult", "adults",
    "child", "children", "people", "person", "persons", "individual", "individuals", "woman", "women",
    "man", "men", "volunteer", "volunteers", "infant", "infants", "respondent", "respondents",
}  # fmt: skip
DRUG_STEMS = (
    "olol", "pril", "sartan", "statin", "mab", "nib", "azole", "avir", "cillin", "mycin", "cycline",
    "floxacin", "tadine", "tidine", "sone", "dipine", "parin", "xaban", "gliptin", "glitazone",
    "triptan", "setron", "oxetine", "azepam", "profen", "caine", "dronate",
)  # fmt: skip
FUNCTION_WORDS = {
    "a", "an", "the", "in", "on", "at", "of", "for", "with", "and", "or", "but", "to", "from", "by",
    "as", "this", "these", "that", "those", "it", "its", "we", "our", "they", "their", "after",
    "before", "during", "both", "all", "no", "not", "is", "was", "were", "be", "i", "if", "when",
    "while", "among", "between", "overall", "last", "next",
}  # fmt: skip
LEAKAGE_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        r"\bsummary(?:\s+[ab])?\s*:",
        r"\bsource documents?\s*:",
        r"\b(?:documents?|instructions?|input|output|response|answer)\s*:",
        r"\bwrite an? (?:concise |short |brief )?(?:factual )?summary\b",
        r"\bsummari[sz]e (?:this|the following|the) \w+",
        r"\byou are an? [\w ,-]{0,60}?\b(?:assistant|evaluator|model|summari[sz]er)\b",
        r"\bgiven (?:a|an|the) [\w ,-]{0,80}?, write\b",
        r"\bdo not include information that is not supported\b",
        r"\bin \d+\s*[-–]\s*\d+ sentences\b",
        r"<\|[a-z_]+\|>",
        r"\[/?INST\]",
        r"</?s>",
        r"<(?:start|end)_of_turn>",
        r"^\s*(?:system|user|assistant|human)\s*(?::|$)",
        r"###\s*(?:instruction|input|response)",
        r"«<\s*\w+|\w+\s*»>",
    )
)

# --- patterns ------------------------------------------------------------------------------------

# A digit inside a letter-led token ("H1N1", "IL-6", "ABX-101") belongs to an entity, not a number.
_DIGITS = r"(?<![\w.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
_WORD = "|".join(sorted(WORD_NUMBERS, key=len, reverse=True))
_SPELLED = rf"\b((?:{_WORD})(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?)\b"
_TIMES = r"\b(once|twice|thrice)\b(?=\s+(?:daily|weekly|monthly|a|an|per|every|each)\b)"
_NUMBER_RE = re.compile(rf"{_DIGITS}|{_SPELLED}|{_TIMES}", re.IGNORECASE)
_SCALE_RE = re.compile(r"[\s-]?(thousand|million|billion)\b", re.IGNORECASE)
_UNIT_RE = re.compile(r"(?:\s*(%)|[\s-]?(per cent)\b|[\s-]?([A-Za-zµμ]+(?:/[A-Za-zµμ]+)*)(?![\w/]))")
_MODIFIER_RE = re.compile(r"\s+[A-Za-z]+")
_RANGE_GAP_RE = re.compile(r"\s*(?:-|–|to|or|and|,)\s*")
_TOKEN_RE = re.compile(r"[^\W_][\w'’-]*")
_OPENERS = " \t\"'“‘([«<*•-"


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str | None
    text: str  # as the text writes it, for reasons


@dataclass(frozen=True)
class GroundingReport:
    """What a summary states that its source does not, what it leaves out, and how much it repeats."""

    unsupported_numbers: tuple[str, ...]
    unsupported_entities: tuple[str, ...]
    leakage: tuple[str, ...]
    missing_numbers: tuple[str, ...]  # source numbers the summary does not state
    missing_entities: tuple[str, ...]
    source_numbers: int
    source_entities: int
    stated_numbers: int
    stated_entities: int
    repeated_ngram_share: float  # share of word n-grams occurring more than once
    longest_repeated_span: str  # longest word span occurring at least twice
    longest_repeated_words: int
    words: int

    @property
    def unsupported(self) -> int:
        """Unsupported numbers and entities plus leaked instructions: the hallucination count."""
        return len(self.unsupported_numbers) + len(self.unsupported_entities) + len(self.leakage)

    @property
    def covered(self) -> int:
        return self.source_numbers + self.source_entities - len(self.missing_numbers) - len(self.missing_entities)

    @property
    def coverage(self) -> float:
        """Share of the source's numbers and entities the summary states (1.0 when the source has none)."""
        total = self.source_numbers + self.source_entities
        return self.covered / total if total else 1.0


@dataclass(frozen=True)
class Thresholds:
    """When a report reads as hallucinated, and when a faithful verdict still notes a weakness."""

    max_unsupported_numbers: int = 0  # any invented or altered number (or unit) hallucinates
    max_unsupported_entities: int = 0  # any entity the source does not name hallucinates
    leakage_hallucinates: bool = True  # an echoed prompt is content the source does not support
    heavy_repetition: float = 0.5  # noted in the reasons only: collapse is not a hallucination
    low_coverage: float = 0.5  # noted in the reasons only: omission is not a hallucination


class AbsoluteVerdict(NamedTuple):
    label: AbsoluteLabel
    reasons: tuple[str, ...]


# --- numbers -------------------------------------------------------------------------------------


def _unit_at(text: str, pos: int) -> tuple[str | None, int]:
    """The canonical unit starting at `pos` (and where it ends), or None."""
    match = _UNIT_RE.match(text, pos)
    if match is None:
        return None, pos
    if match.group(1) or match.group(2):
        return "%", match.end()
    word = match.group(3).lower()
    if "/" in word:
        parts = [MEASURE_UNITS.get(part) for part in word.split("/")]
        if all(parts):
            return "/".join(p for p in parts if p), match.end()
        return None, pos
    if word in MEASURE_UNITS:
        return MEASURE_UNITS[word], match.end()
    if word in PEOPLE_UNITS:
        return "people", match.end()
    modifier = _MODIFIER_RE.match(text, match.end())
    if modifier and word not in FUNCTION_WORDS and modifier.group().strip().lower() in PEOPLE_UNITS:
        return "people", modifier.end()
    return None, pos


def _spelled_value(words: str) -> int:
    return sum(WORD_NUMBERS[w] for w in re.split(r"[- ]", words.lower()))


def quantities(text: str) -> list[Quantity]:
    """Every number the text states, with its canonical unit when it has one."""
    found: list[tuple[Quantity, int, int]] = []
    for match in _NUMBER_RE.finditer(text):
        digits, decimals, spelled, times = match.group(1), match.group(2), match.group(3), match.group(4)
        end = match.end()
        if digits:
            value = Decimal(digits.replace(",", "") + (f".{decimals}" if decimals else ""))
        elif spelled:
            value = Decimal(_spelled_value(spelled))
        else:
            value = Decimal(TIMES_WORDS[times.lower()])
        scale = _SCALE_RE.match(text, end)
        if scale:
            value *= SCALES[scale.group(1).lower()]
            end = scale.end()
        unit, unit_end = _unit_at(text, end)
        if times:
            unit = "time"
        elif spelled and unit is None:
            continue  # "one of the drugs", "the two groups" state no quantity
        value = value.normalize()
        value = value.quantize(Decimal(1)) if value == value.to_integral() else value
        found.append((Quantity(value, unit, text[match.start() : max(unit_end, end)].strip()), match.start(), end))
    # "10 or 20 mg", "10-20 mg": the unit written once applies to every number of the range or list.
    for i in range(len(found) - 2, -1, -1):
        (q, start, end), (nxt, nxt_start, _) = found[i], found[i + 1]
        if q.unit is None and nxt.unit is not None and _RANGE_GAP_RE.fullmatch(text, end, nxt_start):
            found[i] = (Quantity(q.value, nxt.unit, q.text), start, end)
    return [q for q, _, _ in found]


def _number_supported(claim: Quantity, source: list[Quantity]) -> bool:
    return any(s.value == claim.value and (claim.unit is None or s.unit == claim.unit) for s in source)


def _number_covered(fact: Quantity, summary: list[Quantity]) -> bool:
    return any(s.value == fact.value and (s.unit == fact.unit or None in (s.unit, fact.unit)) for s in summary)


# --- entities ------------------------------------------------------------------------------------


def _normal(token: str) -> str:
    word = token.lower().replace("’", "'")
    word = re.sub(r"'s?$", "", word).strip("-'")
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word


def _normal_words(text: str) -> list[str]:
    return [w for w in (_normal(m.group()) for m in _TOKEN_RE.finditer(text)) if w]


def _sentence_initial(text: str, start: int) -> bool:
    prefix = text[:start].rstrip(_OPENERS)
    return not prefix or prefix[-1] in ".!?:;\n"


def _is_code(token: str) -> bool:
    return token[0].isalpha() and any(c.isdigit() for c in token)


def _has_drug_stem(token: str) -> bool:
    word = _normal(token)
    return word.isalpha() and any(word.endswith(stem) and len(word) >= len(stem) + 3 for stem in DRUG_STEMS)


def entities(text: str) -> list[str]:
    """Named entities: proper-noun runs, drug codes and drug names, in order of appearance."""
    tokens = [(m.group().strip("'’-"), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
    found: list[str] = []
    run: list[tuple[str, bool]] = []  # (token, sentence-initial)

    def close_run() -> None:
        while run and run[0][0].lower() in FUNCTION_WORDS:
            run.pop(0)
        if len(run) > 1 or (run and not run[0][1]):
            found.append(" ".join(token for token, _ in run))
        run.clear()

    previous_end = None
    for token, start, end in tokens:
        if not token:
            continue
        initial = _sentence_initial(text, start)
        capitalised = token[0].isupper() and len(token) > 1 and token.lower() not in MEASURE_UNITS
        adjacent = previous_end is not None and text[previous_end:start] == " "
        if capitalised and not _is_code(token):
            if run and not adjacent:
                close_run()
            run.append((token, initial))
        else:
            close_run()
            if _is_code(token) or _has_drug_stem(token):
                found.append(token)
        previous_end = end
    close_run()
    return found


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _unique_entities(items: list[str]) -> list[str]:
    firsts: dict[str, str] = {}
    for item in items:
        firsts.setdefault(" ".join(_normal_words(item)), item)
    return list(firsts.values())


def _unique_quantities(items: list[Quantity]) -> list[Quantity]:
    firsts: dict[tuple[Decimal, str | None], Quantity] = {}
    for item in items:
        firsts.setdefault((item.value, item.unit), item)
    return list(firsts.values())


# --- repetition and leakage ----------------------------------------------------------------------


def _repeated_span(words: list[str], length: int) -> tuple[str, ...]:
    """The first word span of `length` that occurs twice, or ()."""
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - length + 1):
        gram = tuple(words[i : i + length])
        if gram in seen:
            return gram
        seen.add(gram)
    return ()


def _repetition(words: list[str], n: int) -> tuple[float, str]:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    share = sum(1 for gram in grams if counts[gram] > 1) / len(grams) if grams else 0.0
    # A repeated span of length L + 1 contains one of length L, so the longest is found by bisection.
    longest: tuple[str, ...] = ()
    low, high = 1, len(words) - 1
    while low <= high:
        length = (low + high) // 2
        repeat = _repeated_span(words, length)
        if repeat:
            longest, low = repeat, length + 1
        else:
            high = length - 1
    return share, " ".join(longest)


def leakage(summary: str) -> list[str]:
    """Prompt instructions, template markers and chat-role markers echoed in a summary."""
    hits = [(m.start(), m.group().strip()) for pattern in LEAKAGE_PATTERNS for m in pattern.finditer(summary)]
    return [text for _, text in sorted(hits)]


# --- the judge -----------------------------------------------------------------------------------


def analyse(source: str, summary: str, *, ngram: int = REPETITION_N) -> GroundingReport:
    """Ground every number and entity of `summary` in `source`, and measure leakage, repetition, coverage."""
    source_quantities, summary_quantities = _unique_quantities(quantities(source)), quantities(summary)
    source_words, summary_words = _normal_words(source), _normal_words(summary)
    source_entities, summary_entities = _unique_entities(entities(source)), _unique_entities(entities(summary))
    plain_words = [m.group().lower() for m in re.finditer(r"[\w%]+", summary)]
    share, span = _repetition(plain_words, ngram)
    return GroundingReport(
        unsupported_numbers=tuple(
            q.text for q in _unique_quantities(summary_quantities) if not _number_supported(q, source_quantities)
        ),
        unsupported_entities=tuple(e for e in summary_entities if not _contains(source_words, _normal_words(e))),
        leakage=tuple(leakage(summary)),
        missing_numbers=tuple(q.text for q in source_quantities if not _number_covered(q, summary_quantities)),
        missing_entities=tuple(e for e in source_entities if not _contains(summary_words, _normal_words(e))),
        source_numbers=len(source_quantities),
        source_entities=len(source_entities),
        stated_numbers=len(summary_quantities),
        stated_entities=len(summary_entities),
        repeated_ngram_share=share,
        longest_repeated_span=span,
        longest_repeated_words=len(span.split()),
        words=len(plain_words),
    )


def absolute_verdict(report: GroundingReport, thresholds: Thresholds = Thresholds()) -> AbsoluteVerdict:
    """Hallucinated when the summary states numbers, entities or instructions its source does not support."""
    hallucinated = (
        len(report.unsupported_numbers) > thresholds.max_unsupported_numbers
        or len(report.unsupported_entities) > thresholds.max_unsupported_entities
        or (bool(report.leakage) and thresholds.leakage_hallucinates)
    )
    reasons: list[str] = []
    reasons += [f"unsupported number: {x}" for x in report.unsupported_numbers]
    reasons += [f"unsupported entity: {x}" for x in report.unsupported_entities]
    reasons += [f"instruction leakage: {x}" for x in report.leakage]
    if report.repeated_ngram_share >= thresholds.heavy_repetition:
        reasons.append(f"heavy repetition: {report.repeated_ngram_share:.0%} of word n-grams repeat")
    if report.coverage < thresholds.low_coverage:
        reasons.append(f"low coverage: {report.coverage:.0%} of the source's numbers and entities stated")
    return AbsoluteVerdict("hallucinated" if hallucinated else "faithful", tuple(reasons))


def _alignment(report: GroundingReport) -> int:
    return report.covered - report.unsupported


def _stated(report: GroundingReport) -> int:
    return report.stated_numbers + report.stated_entities + len(report.leakage)


def relative_verdict(
    source: str, summary_a: str, summary_b: str, *, ngram: int = REPETITION_N
) -> dict[str, proto.Side]:
    """The paper's four pairwise questions, each naming the summary that has more of it (Appendix B).

    Per question, a key is compared and the summary with the larger key is named:
    q1 hallucinations: (unsupported items, unsupported share of stated items);
    q2 omission: (-coverage, -words), a shorter summary omits more;
    q3 repetition: (repeated n-gram share, longest repeated span);
    q4 alignment: (covered source items - unsupported items, -repeated n-gram share).
    Every key ends with the summary's text, so a tie on all measures goes to the text that sorts last:
    answers depend on content, never on position, and swapping A and B swaps every answer. The one
    exception: identical summaries answer "A" to every question.
    """
    reports = {"A": analyse(source, summary_a, ngram=ngram), "B": analyse(source, summary_b, ngram=ngram)}
    texts = {"A": summary_a, "B": summary_b}

    def keys(side: proto.Side) -> dict[str, tuple[float, float, str]]:
        r, text = reports[side], texts[side]
        return {
            "q1_hallucinations_more": (r.unsupported, r.unsupported / max(_stated(r), 1), text),
            "q2_omission_more": (-r.coverage, -r.words, text),
            "q3_repetition_more": (r.repeated_ngram_share, r.longest_repeated_words, text),
            "q4_alignment_more": (_alignment(r), -r.repeated_ngram_share, text),
        }

    a, b = keys("A"), keys("B")
    return {question: "B" if b[question] > a[question] else "A" for question in QUESTIONS["relative"]}


# --- the judge backend ---------------------------------------------------------------------------


class GroundingJudge:
    """The grounding judge as a judge backend: free, so it is never cached."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings

    def count(self, items: Sequence[Item], protocols: Sequence[str]) -> int:
        return len(items)

    def judge(
        self, items: Sequence[Item], protocols: Sequence[str], progress: Progress | None = None
    ) -> tuple[list[Row], Tally]:
        rows: list[Row] = []
        tally = Tally()
        for item in items:
            if "absolute" in protocols:
                for output, text in absolute_outputs(item):
                    verdict = absolute_verdict(analyse(item.document, text))
                    raw = {"reasons": list(verdict.reasons)}
                    rows.append(
                        verdict_row(self.name, "absolute", "hallucinated", item, output, verdict.label, "ok", raw)
                    )
                    tally.computed += 1
            if "relative" in protocols:
                order = proto.ab_order(self.settings.seed, item.sample_id)
                shown = {"pruned": item.pruned, "source": item.source}
                answers = relative_verdict(item.document, shown[order[0]], shown[order[1]])
                resolved = proto.resolve(answers, order)
                raw = {"order": {"A": order[0], "B": order[1]}, "answers": answers}
                for question in QUESTIONS["relative"]:
                    rows.append(
                        verdict_row(self.name, "relative", question, item, "pair", resolved[question], "ok", raw)
                    )
                tally.computed += 1
            if progress is not None:
                progress(1)
        return rows, tally
