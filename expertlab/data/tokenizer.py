"""Corpus texts -> a word-level chat tokenizer for the toy world (built locally, no hub).

Words and punctuation marks are single tokens; a number is spelt digit by digit ("240" ->
"2", "##4", "##0", WordPiece style) so numbers compose and decode back without spaces.
Whitespace carries no tokens: texts are canonical (single spaces, no space before punctuation),
so `decode` reproduces every answer the toy world writes; tool calls, written as BFCL writes them
(`[get_dose(drug="valaxolol")]`), get their spacing back from `CALL_SPACING`. Words seen fewer than `min_frequency`
times map to the unknown token: a drug named once in training stays unknown, which is what
the MedHALT-like Fake items test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

BOS = "<|startoftext|>"
EOS = "<|im_end|>"  # ends every turn; generation stops on it
PAD = "<|pad|>"
UNK = "<|unk|>"
TURN = "<|im_start|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, TURN)
DIGITS = tuple("0123456789")

# ChatML-like; `render_chat` below writes exactly what this template renders.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def render_prompt(prompt: str) -> str:
    """`apply_chat_template([user prompt], add_generation_prompt=True, tokenize=False)`, without a tokenizer."""
    return f"{BOS}{TURN}user\n{prompt}{EOS}\n{TURN}assistant\n"


def render_chat(prompt: str, answer: str) -> str:
    """One demonstration: the templated prompt, the answer, end of turn (what training sees)."""
    return render_prompt(prompt) + answer + EOS


# Word-level decoding joins tokens with spaces: '[ get _ dose ( drug = " valaxolol " ) ]'. Applied in order to
# the joined text, these patterns delete the spaces call syntax never has. They need one of _ ( ) [ ] = ", which
# only tool calls hold, so every other domain's text decodes as before.
CALL_SPACING = (
    r" (?=[_()\]=])",  # before _ ( ) ] =
    r"(?<=[_(\[=]) ",  # after _ ( [ =
    r'(?<==") ',  # after a string's opening quote
    r' (?="[,)\]])',  # before its closing quote
)


def _decoder():  # noqa: ANN202
    from tokenizers import Regex, decoders

    spacing = [decoders.Replace(Regex(pattern), "") for pattern in CALL_SPACING]
    return decoders.Sequence([decoders.WordPiece(prefix="##", cleanup=True), decoders.Fuse(), *spacing])


def _pre_tokenizer():  # noqa: ANN202
    from tokenizers import pre_tokenizers

    return pre_tokenizers.BertPreTokenizer()  # splits on whitespace and isolates punctuation


def build_vocab(texts: Iterable[str], min_frequency: int = 2) -> dict[str, int]:
    """Special tokens, the digits (word-initial and ##continuation), then words by descending count."""
    pre = _pre_tokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        for special in SPECIAL_TOKENS:
            text = text.replace(special, " ")
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text) if not piece.isdigit())
    words = sorted((w for w, n in counts.items() if n >= min_frequency), key=lambda w: (-counts[w], w))
    tokens = [*SPECIAL_TOKENS, *DIGITS, *(f"##{d}" for d in DIGITS), *words]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(texts: Iterable[str], min_frequency: int = 2) -> Any:
    """A `PreTrainedTokenizerFast` over the corpus words, with special tokens and the chat template."""
    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(build_vocab(texts, min_frequency), unk_token=UNK, continuing_subword_prefix="##"))
    core.pre_tokenizer = _pre_tokenizer()
    core.decoder = _decoder()
    core.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[TURN],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
