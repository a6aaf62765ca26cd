"""The second study's prompts, as paper 001 prints them (Appendix A.1, A.2), and what is read from the answers.

Explanations: P_mono's system and user messages; P_domain^(d) is P_mono with a domain's focus, the response
form and the domain's examples added to the system message (the paper gives the medicine and tool-use
datasets' texts: `DOMAIN_PROMPTS`). The examples are the explanation windows, strongest first, each on a
line "Example i: ..." (Delphi's format; the paper shows none), the routed tokens marked << >>, a run of
consecutive routed tokens as one span.
Predictions: the Appendix A.2 system message with N the number of windows shown, and its user message.
The paper's user message has no place for the explanation the system message promises: expertlab puts
"Here is the explanation: this expert specializes in <explanation>" before it, in P_mono's own words. The
windows follow numbered, unmarked, in the sample's seeded order. An answer is "None" or distinct example
numbers separated by commas, nothing else; anything else is invalid (asked again, then recorded invalid).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from expertlab.judges.providers import Messages

# P_mono, system (Appendix A.1.1), before the response form below
MONO_INSTRUCTIONS = (
    "We're studying experts in a large-scale Mixture of Experts (MoE) language model. Each expert "
    "specializes in processing certain types of content, knowledge domains, linguistic patterns, or "
    "reasoning tasks in documents. The content that activates each expert in documents is indicated with "
    "<< ... >>. We will give you a list of documents on which the expert is activated by the router, in "
    "order from most strongly activating to least strongly activating. Look at the parts of the document "
    "the expert activates for and summarize in a single sentence what type of content or domain this "
    "expert specializes in. Provide a reasonable explanation that captures the key distinguishing "
    "features. Note that some experts will specialize in very specific linguistic patterns or substrings,"
    " but others will activate on broader content types provided that the text contains particular "
    "knowledge domains or reasoning patterns. Your explanation should cover the general specialization "
    "pattern across most or all activating content (for example, don't give an explanation specific to a "
    "single domain if the expert activates across multiple related areas). Pay attention to things like "
    "the subject matter, linguistic style, technical complexity, or reasoning type of the activating "
    "content, if that seems relevant. Keep the explanation as short and simple as possible, limited to 20"
    " words or fewer. Omit punctuation and formatting. You should avoid giving long lists of specific "
    "topics. Include specific details about the semantic patterns, syntactic structures, or functional "
    "roles that characterize this expert's specialization. Mention key distinguishing features such as "
    "specific word types, grammatical constructions, or conceptual themes."
)

# P_mono, user: {examples} are the explanation windows, routed tokens marked << >>
MONO_USER = (
    "Here is the explanation: this expert specializes in\n\n"
    "Here are the examples: {examples}"
)

# P_domain^(d) adds to P_mono's system: the medicine dataset's focus
MEDICINE_FOCUS = (
    "This expert processes medical multiple-choice questions and clinical reasoning, so focus on medical "
    "terminology, diagnostic reasoning patterns, clinical decision-making, anatomical concepts, "
    "pharmacological knowledge, pathophysiology, treatment protocols, medical examination patterns, or "
    "healthcare domain knowledge.\n\n"
    "IMPORTANT: This expert should ONLY specialize in medical and healthcare content. Do not generate "
    "explanations about non-medical domains."
)

# the tool-use dataset's focus
TOOL_USE_FOCUS = (
    "This expert processes tool usage and computational workflows. Focus on any specific aspect of tool "
    "interactions, including but not limited to: function invocations, parameter specifications, tool "
    "names, API endpoints, structured data formats, tool interaction patterns, command execution "
    "sequences, data transformation workflows, conditional logic in automation, error handling "
    "mechanisms, input/output processing, system integrations, or any other computational patterns within"
    " tool-calling contexts.\n\n"
    "IMPORTANT: This expert can specialize in any granular aspect of tool usage, computational workflows,"
    " or function execution patterns. The specialization can be very specific (like particular parameter "
    "types, specific API patterns, or unique data structures) or broader (like general workflow patterns "
    "or interaction paradigms). Focus on the most distinctive characteristics that make this expert "
    "unique, even if they seem very specific or technical.\n\n"
    "Here are diverse example patterns (but not limited to these): \"This expert specializes in JSON "
    "parameter formatting in API calls\", \"This expert specializes in HTTP status code handling in tool "
    "responses\", \"This expert specializes in nested function call chains with dependency management\", "
    "\"This expert specializes in authentication token processing in API requests\", \"This expert "
    "specializes in error message parsing and retry logic\", \"This expert specializes in data type "
    "conversion between tool interfaces\", \"This expert specializes in asynchronous tool execution "
    "patterns\", \"This expert specializes in tool output validation and sanitization\", \"This expert "
    "specializes in command-line argument parsing and validation\", \"This expert specializes in database "
    "query construction in tool contexts\", \"This expert specializes in file path manipulation in system "
    "tools\", \"This expert specializes in timestamp and date formatting in data processing tools\", \"This "
    "expert specializes in memory management in computational workflows\", \"This expert specializes in "
    "parallel processing coordination in tool chains\". Note that these are just examples - the expert may"
    " specialize in any specific, granular aspect of tool usage, function calls, or computational "
    "workflows."
)

# closes P_mono's system, and P_domain^(d)'s addition before its examples
RESPONSE_FORM = (
    "Your response should be in the form \"This expert specializes in...\"."
)

# then the dataset's examples
MEDICINE_EXAMPLES = (
    "Some examples: \"This expert specializes in differential diagnosis reasoning in multiple-choice "
    "contexts\", \"This expert specializes in pharmacological drug mechanism descriptions and "
    "interactions\", \"This expert specializes in anatomical structure identification and spatial "
    "relationships\", \"This expert specializes in clinical symptom pattern recognition and analysis\", "
    "\"This expert specializes in medical procedure descriptions and protocols\", \"This expert specializes "
    "in pathophysiology and disease mechanism explanations\", \"This expert specializes in medical "
    "terminology and nomenclature\", \"This expert specializes in treatment option evaluation and "
    "selection\"."
)

# the tool-use dataset's examples
TOOL_USE_EXAMPLES = (
    "Some examples: \"This expert specializes in processing rhetorical questions containing epistemic "
    "verbs\", \"This expert specializes in decision-making and preference-related reasoning\", \"This expert "
    "specializes in words with specific prefix patterns\", \"This expert specializes in government economic"
    " policy content\"."
)

# the predictor, system (Appendix A.2); N is the number of windows shown
PREDICT_SYSTEM = (
    "We're studying experts in a large-scale Mixture of Experts (MoE) language model. Each expert in the "
    "MoE layers specializes in processing certain types of content, knowledge domains, linguistic "
    "patterns, or reasoning tasks.\n\n"
    "You will be given a short explanation of what this expert specializes in, and then be shown N "
    "example sequences in random order.\n\n"
    "You will have to return a comma-separated list of the examples where you think this expert should be"
    " activated by the router, based on the content type, domain knowledge, or linguistic characteristics"
    " required.\n\n"
    "For example, your response might look like \"1, 3, 5\".\n\n"
    "Try not to be overly specific in your interpretation of the explanation.\n\n"
    "If you think there are no examples where this expert will be significantly activated, you should "
    "just respond with \"None\".\n\n"
    "You should include nothing else in your response other than comma-separated numbers or the word "
    "\"None\" - this is important."
)

# the predictor, user: {examples} are the numbered test windows, unmarked
PREDICT_USER = (
    "The documents which this expert is activated are given below: {examples}"
)


DOMAIN_PROMPTS: dict[str, tuple[str, str]] = {  # name -> (focus, examples)
    "medicine": (MEDICINE_FOCUS, MEDICINE_EXAMPLES),
    "tool_use": (TOOL_USE_FOCUS, TOOL_USE_EXAMPLES),
}
EXPLANATION_PREFIX = "this expert specializes in"
_PREDICTION = re.compile(r"\d+(?:\s*,\s*\d+)*")


def marked(token_texts: Sequence[str], positions: Sequence[int]) -> str:
    """A window's text with each run of routed tokens wrapped in << >>."""
    routed = set(positions)
    pieces, inside = [], False
    for index, text in enumerate(token_texts):
        if index in routed and not inside:
            pieces.append("<<")
        elif index not in routed and inside:
            pieces.append(">>")
        inside = index in routed
        pieces.append(text)
    if inside:
        pieces.append(">>")
    return "".join(pieces)


def numbered(texts: Sequence[str]) -> str:
    """The examples block: a line per window, "Example i: ..." from 1, after a line break."""
    return "".join(f"\nExample {number}: {text}" for number, text in enumerate(texts, start=1))


def explain_system(domain_prompt: str | None = None) -> str:
    """P_mono's system message, or P_domain^(d)'s with the named domain prompt's focus and examples."""
    system = f"{MONO_INSTRUCTIONS}\n\n{RESPONSE_FORM}"
    if domain_prompt is None:
        return system
    if domain_prompt not in DOMAIN_PROMPTS:
        raise ValueError(f"no domain prompt {domain_prompt!r}; the paper gives {', '.join(DOMAIN_PROMPTS)}")
    focus, examples = DOMAIN_PROMPTS[domain_prompt]
    return f"{system}\n\n{focus}\n\n{RESPONSE_FORM}\n\n{examples}"


def explain_messages(windows: Sequence[str], domain_prompt: str | None = None) -> Messages:
    """The explainer's messages for the marked explanation windows, strongest first."""
    return [
        {"role": "system", "content": explain_system(domain_prompt)},
        {"role": "user", "content": MONO_USER.format(examples=numbered(windows))},
    ]


def predict_messages(explanation: str, windows: Sequence[str]) -> Messages:
    """The predictor's messages for an explanation and the unmarked test windows, in their order."""
    system = PREDICT_SYSTEM.replace("be shown N example sequences", f"be shown {len(windows)} example sequences")
    user = f"Here is the explanation: {EXPLANATION_PREFIX} {explanation}\n\n" + PREDICT_USER.format(
        examples=numbered(windows)
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_explanation(answer: str) -> str:
    """What an explainer says the expert specializes in, without the "This expert specializes in" it opens with."""
    text = " ".join(answer.split())
    if text.lower().startswith(EXPLANATION_PREFIX):
        text = text[len(EXPLANATION_PREFIX) :].strip()
    if not text:
        raise ValueError("the answer names no specialization")
    return text


def parse_prediction(answer: str, shown: int) -> frozenset[int]:
    """The example numbers an answer names: "None" (nothing) or "1, 3, 5" with each number in 1..shown, once."""
    text = answer.strip()
    if text == "None":
        return frozenset()
    if not _PREDICTION.fullmatch(text):
        raise ValueError(f"not comma-separated example numbers nor None: {text[:80]!r}")
    numbers = [int(part) for part in text.split(",")]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"an example is named twice: {text!r}")
    outside = [n for n in numbers if not 1 <= n <= shown]
    if outside:
        raise ValueError(f"example number(s) {outside} outside 1..{shown}")
    return frozenset(numbers)
