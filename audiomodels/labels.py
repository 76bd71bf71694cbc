"""Output alphabets for the CTC model: text normalization, phonemization and label sets.

A :class:`LabelSet` maps transcripts to integer targets and model output back to text. Its
symbol list is stored in checkpoints (:class:`~audiomodels.config.LabelConfig`), so a model is
always decoded with the alphabet it was trained on. Anything that cannot be labelled raises
:class:`LabelError` naming the offending symbols: silently dropping them would train the model
on transcripts that do not match the audio.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from num2words import num2words

from audiomodels.config import LabelConfig
from audiomodels.espeak import ipa_lines

BLANK = "<blank>"
PHONE_WORD_SEPARATOR = "|"

# Every phone espeak-ng 1.51 (voice en-us, ``--ipa --sep=_``, stress marks removed) produced for
# the 339k lowercase a-z/apostrophe words of Debian's wamerican-huge word list
# (/usr/share/dict/words, accents folded), 30k random 3-12 word sentences drawn from it
# (connected-speech weak forms such as ɐ, ᵻ) and the spelled numbers 0-2099, ordinals 0-199
# and the letters a-z. Rare rows come from loanwords only. The order is frozen: checkpoints
# store their symbol list, but the default phone set is defined by this tuple.
PHONES: tuple[str, ...] = (
    # consonants
    "p", "b", "t", "d", "k", "ɡ", "ʔ", "ɾ", "tʃ", "dʒ", "f", "v", "θ", "ð", "s", "z", "ʃ",
    "ʒ", "h", "m", "n", "ŋ", "n̩", "l", "əl", "ɹ", "w", "j",
    # consonants from loanwords (loch, llano, ...)
    "r", "x", "ç", "ɬ", "nʲ", "ɡʲ",
    # monophthongs (ᵻ: reduced "roses" vowel, ɐ: reduced "a")
    "i", "iː", "iːː", "ɪ", "ᵻ", "e", "ɛ", "æ", "ææ", "ɐ", "ə", "ʌ", "ɑː", "ɔ", "ɔː", "o",
    "oː", "ʊ", "u", "uː", "ɜː", "ɚ",
    # diphthongs and triphthongs
    "eɪ", "aɪ", "ɔɪ", "aʊ", "oʊ", "iə", "aɪə", "aɪɚ",
    # r-coloured vowels espeak emits as one phone
    "ɑːɹ", "ɔːɹ", "oːɹ", "ɛɹ", "ɪɹ", "ʊɹ",
    # nasal vowels from French loanwords
    "ɑ̃", "ɔ̃",
)

_CHAR_SYMBOLS = (BLANK, " ", "'", *"abcdefghijklmnopqrstuvwxyz")


class LabelError(ValueError):
    """Text holds symbols a label set (or the normalizer) cannot represent.

    ``symbols`` maps each offending symbol to how often it occurred, in order of appearance.
    """

    def __init__(self, what: str, symbols: dict[str, int] | None = None):
        self.symbols = dict(symbols or {})
        listed = ", ".join(f"{symbol!r} (x{count})" for symbol, count in self.symbols.items())
        super().__init__(f"{what}: {listed}" if listed else what)


# --------------------------------------------------------------------------- text normalizer

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_SYMBOL_WORDS = {"%": "percent", "&": "and", "+": "plus", "=": "equals", "@": "at", "°": "degrees"}
# Latin letters that NFKD does not decompose into an ASCII base letter.
_LATIN_FOLDS = {
    "ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l",
    "ı": "i", "ħ": "h", "ŀ": "l",
}
# (singular, plural, singular of the hundredth, plural of the hundredth)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_SCALES = "thousand|million|billion|trillion"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"  # "1,000,000" or a plain digit run
_CURRENCY_RE = re.compile(rf"([$€£])\s?({_NUMBER})(?:\.(\d+))?(?:\s?({_SCALES})\b)?")
_ORDINAL_RE = re.compile(r"(\d+)(?:st|nd|rd|th)(s?)\b")
_PLURAL_RE = re.compile(r"(\d+)s\b")
_DECIMAL_RE = re.compile(rf"({_NUMBER})\.(\d+)")
_INTEGER_RE = re.compile(_NUMBER)
_STRAY_APOSTROPHE_RE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def normalize_text(text: str) -> str:
    """Spoken-form lowercase text over ``a-z``, ``'`` and single spaces (the char label set).

    Rules, in order:

    1. Unicode NFKC (full-width forms, ligatures, superscripts become plain characters);
       curly/modifier apostrophes (’ ‘ ʼ ′) become ``'``; lowercase.
    2. Numbers (ASCII digits) become English words, hyphens removed: currency ``$5`` ->
       "five dollars", ``£2.50`` -> "two pounds and fifty pence", ``$3 million`` ->
       "three million dollars" ($ € £); ordinals ``21st`` -> "twenty first"; plurals
       ``1990s`` -> "nineteen nineties", ``4ths`` -> "fourths"; decimals ``3.5`` -> "three
       point five" (fraction digit by digit); grouped ``1,000,000`` -> "one
       million"; a 4-digit integer in 1100-2099 is read as a year (``1999`` -> "nineteen
       ninety nine"); an integer with a leading zero is read digit by digit (``007`` -> "zero
       zero seven"); any other integer as a cardinal (British "and": 105 -> "one hundred and
       five"). Words are set off with spaces, so ``mp3`` -> "mp three".
    3. ``%`` ``&`` ``+`` ``=`` ``@`` ``°`` become " percent", " and ", " plus ", " equals ",
       " at ", " degrees ".
    4. Accented Latin letters fold to ASCII (é -> e, ß -> ss, æ -> ae, ø -> o).
    5. Punctuation of any script (hyphens, dashes, slashes, quotes, periods, ...), ASCII
       symbols (``$ # ~ | ^``), control characters and all whitespace become a space.
    6. Anything else -- letters or digits of other scripts, non-ASCII symbols such as ``¥``
       or emoji -- raises :class:`LabelError` listing them: dropping letters would make the
       transcript disagree with the audio.
    7. An apostrophe is kept only between two letters (don't, o'clock); whitespace is
       collapsed to single spaces and stripped.
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = _spell_numbers(text)
    text = "".join(f" {_SYMBOL_WORDS[c]} " if c in _SYMBOL_WORDS else c for c in text)
    text = _fold_latin(text)
    text = _replace_separators(text)
    text = _STRAY_APOSTROPHE_RE.sub("", text)
    return " ".join(text.split())


def _words(number: int, to: str = "cardinal") -> str:
    """num2words without hyphens and commas, padded with spaces to stand alone."""
    spelled = num2words(number, to=to).replace("-", " ").replace(",", "")
    return f" {spelled} "


def _spell_numbers(text: str) -> str:
    """Rule 2 of :func:`normalize_text`; the most specific patterns go first."""
    text = _CURRENCY_RE.sub(_spell_currency, text)
    text = _ORDINAL_RE.sub(lambda m: _plural(_words(int(m[1]), "ordinal"), m[2]), text)
    text = _PLURAL_RE.sub(lambda m: _plural(_spell_integer(m[1]), "s"), text)
    text = _DECIMAL_RE.sub(lambda m: _spell_decimal(m[1], m[2]), text)
    return _INTEGER_RE.sub(lambda m: _spell_integer(m[0]), text)


def _spell_integer(digits: str) -> str:
    """A bare integer: digit by digit with a leading zero, year in 1100-2099, else cardinal."""
    if len(digits) > 1 and digits.startswith("0") and digits.isdigit():
        return _spell_digits(digits)
    value = int(digits.replace(",", ""))
    return _words(value, "year" if len(digits) == 4 and 1100 <= value <= 2099 else "cardinal")


def _plural(spelled: str, suffix: str) -> str:
    """Plural of a spelled number ("1990s" -> nineteen nineties, "4ths" -> fourths)."""
    if not suffix:
        return spelled
    last = spelled.rstrip()
    if last.endswith("y"):
        return f"{last[:-1]}ies "
    return f"{last}es " if last.endswith(("x", "s")) else f"{last}s "


def _spell_decimal(whole: str, fraction: str) -> str:
    return _words(int(whole.replace(",", ""))) + "point" + _spell_digits(fraction)


def _spell_digits(digits: str) -> str:
    return "".join(_words(int(d)) for d in digits)


def _spell_currency(match: re.Match[str]) -> str:
    """"$5" -> five dollars, "$2.50" -> two dollars and fifty cents, "$1.5 million" -> one
    point five million dollars."""
    symbol, whole, fraction, scale = match.groups()
    unit, units, sub_unit, sub_units = _CURRENCIES[symbol]
    value = int(whole.replace(",", ""))
    if fraction and len(fraction) == 2 and not scale:
        cents = int(fraction)
        spoken = _words(value) + (unit if value == 1 else units)
        return spoken + (f" and{_words(cents)}{sub_unit if cents == 1 else sub_units} " if cents else " ")
    amount = _spell_decimal(whole, fraction) if fraction else _words(value)
    singular = value == 1 and not fraction and not scale
    return f"{amount}{scale or ''} {unit if singular else units} "


def _fold_latin(text: str) -> str:
    """Rule 4: strip combining marks (NFKD) and map the few undecomposable Latin letters."""
    folded = "".join(_LATIN_FOLDS.get(c, c) for c in text)
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))


def _replace_separators(text: str) -> str:
    """Rules 5 and 6: punctuation-like characters become spaces, unmappable ones raise."""
    kept: list[str] = []
    unknown: Counter[str] = Counter()
    for c in text:
        if ("a" <= c <= "z") or c == "'":
            kept.append(c)
        elif _is_separator(c):
            kept.append(" ")
        else:
            unknown[c] += 1
    if unknown:
        raise LabelError("unmappable characters in text", unknown)
    return "".join(kept)


def _is_separator(c: str) -> bool:
    category = unicodedata.category(c)
    return (
        c.isspace()
        or category[0] in "PZ"
        or category in ("Cc", "Cf")
        or (c.isascii() and category[0] == "S")
    )


# --------------------------------------------------------------------------- phonemizer

# --sep: espeak puts it between phones, never inside one (tʃ, aɪ, ɜː), so --tie is not needed.
_ESPEAK_SEPARATOR = "_"
_STRESS_MARKS = str.maketrans("", "", "ˈˌ")


def phonemize(text: str, voice: str = "en-us") -> str:
    """Canonical phone string of ``text`` (see :func:`phonemize_batch`); one espeak-ng call."""
    return phonemize_batch([text], voice)[0]


def phonemize_batch(texts: Sequence[str], voice: str = "en-us", check: bool = True) -> list[str]:
    """espeak-ng IPA phones for many texts, from its library in this process (:mod:`audiomodels.espeak`).

    Each text goes through :func:`normalize_text`, then espeak-ng (as ``-q --ipa --sep=_`` prints
    it). The result is canonical: phones separated by single spaces, words by ``" | "``, e.g.
    ``"h ə l oʊ | w ɜː l d"``. espeak-ng's separator option keeps multi-character phones
    (aɪ, tʃ, iː, ɜː, ɑːɹ) as one token. Stress marks ˈ ˌ are dropped: stress is not an
    acoustic unit the CTC model labels, and keeping it would triple the vowel symbols. Length marks stay attached to their vowel. Words follow espeak-ng's own
    segmentation (it splits some compounds, and reads lowercase Roman numerals such as
    "xvi" as "roman sixteen"). Phones outside :data:`PHONES` raise :class:`LabelError`, unless
    ``check`` is false (bulk text, e.g. for LMs, where the caller skips such texts one by one).
    """
    results = phonemize_normalized([normalize_text(t) for t in texts], voice)
    if check:
        _check_phones(" ".join(results))
    return results


def phonemize_normalized(texts: Sequence[str], voice: str = "en-us") -> list[str]:
    """:func:`phonemize_batch` of texts :func:`normalize_text` has already made (a char label
    set's output), unchecked: a decoder phonemizing its hypotheses as it searches saves the
    normalization, half the cost of each call."""
    return [_canonical_words(line) for line in ipa_lines(list(texts), voice, _ESPEAK_SEPARATOR)]


def _canonical_words(ipa: str) -> str:
    words = []
    for word in ipa.translate(_STRESS_MARKS).split():
        phones = [p for p in word.split(_ESPEAK_SEPARATOR) if p]
        if phones:
            words.append(" ".join(phones))
    return f" {PHONE_WORD_SEPARATOR} ".join(words)


def _check_phones(phone_text: str) -> None:
    known = set(PHONES) | {PHONE_WORD_SEPARATOR}
    unknown = Counter(p for p in phone_text.split() if p not in known)
    if unknown:
        raise LabelError("phones outside the inventory PHONES", unknown)


# --------------------------------------------------------------------------- label sets


@dataclass(frozen=True)
class LabelSet:
    """An ordered CTC alphabet; ``symbols[0]`` is the blank.

    ``kind`` picks the text handling: "char" (normalized characters), "phone" (space-separated
    phones from :func:`phonemize`) or "custom" (space-separated tokens, symbols from a file).
    ``word_separator`` is the symbol between words ("" when the set has none).
    """

    kind: str
    symbols: tuple[str, ...]
    word_separator: str
    blank_id: int = 0
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("char", "phone", "custom"):
            raise LabelError(f"unknown label set kind {self.kind!r}")
        duplicates = {s: n for s, n in Counter(self.symbols).items() if n > 1}
        if duplicates:
            raise LabelError(f"duplicate symbols in label set {self.kind!r}", duplicates)
        if self.blank_id != 0 or not self.symbols or self.symbols[0] != BLANK:
            raise LabelError(f"label set {self.kind!r} must start with {BLANK!r} (blank_id 0)")
        if self.kind != "char":
            spaced = {s: 1 for s in self.symbols if not s or any(c.isspace() for c in s)}
            if spaced:
                raise LabelError(f"symbols with whitespace in label set {self.kind!r}", spaced)
        if self.word_separator and self.word_separator not in self.symbols:
            raise LabelError(
                f"word separator not in label set {self.kind!r}", {self.word_separator: 1}
            )
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def char(cls) -> LabelSet:
        """Blank, space, apostrophe and a-z: the alphabet of :func:`normalize_text`."""
        return cls("char", _CHAR_SYMBOLS, " ")

    @classmethod
    def phone(cls) -> LabelSet:
        """Blank, the word separator ``|`` and :data:`PHONES`."""
        return cls("phone", (BLANK, PHONE_WORD_SEPARATOR, *PHONES), PHONE_WORD_SEPARATOR)

    @classmethod
    def from_file(cls, path: str | Path) -> LabelSet:
        """A custom set from a UTF-8 file with one symbol per line.

        Blank lines and lines starting with ``#`` are ignored; surrounding whitespace is
        stripped. An optional line ``word_separator: X`` names the word separator X, which
        must also be listed as a symbol. The blank is put first unless the file lists
        ``<blank>`` as its first symbol. Duplicates raise :class:`LabelError`.
        """
        symbols: list[str] = []
        separator = ""
        for raw in Path(path).read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("word_separator:"):
                separator = line.removeprefix("word_separator:").strip()
            else:
                symbols.append(line)
        if not symbols or symbols[0] != BLANK:
            symbols.insert(0, BLANK)
        return cls("custom", tuple(symbols), separator)

    @classmethod
    def from_config(cls, config: LabelConfig) -> LabelSet:
        """Rebuild a stored set; empty ``symbols`` means the kind's default set (and separator)."""
        if config.symbols:
            return cls(config.kind, tuple(config.symbols), config.word_separator)
        defaults = {"char": cls.char, "phone": cls.phone}
        if config.kind not in defaults:
            raise LabelError(f"label kind {config.kind!r} has no default set: symbols needed")
        return defaults[config.kind]()

    def to_config(self) -> LabelConfig:
        """The full symbol list is always stored, so a checkpoint never depends on PHONES."""
        return LabelConfig(kind=self.kind, symbols=self.symbols, word_separator=self.word_separator)

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        """char: :func:`normalize_text`; phone: NFC and whitespace cleanup of a phone string
        (phonemize first); custom: whitespace cleanup."""
        if self.kind == "char":
            return normalize_text(text)
        if self.kind == "phone":
            text = unicodedata.normalize("NFC", text)
        return " ".join(text.split())

    def tokenize(self, text: str) -> list[str]:
        """char: the characters of already normalized text; phone/custom: whitespace tokens."""
        return list(text) if self.kind == "char" else text.split()

    def encode(self, text: str) -> list[int]:
        """Label ids of the tokens; unknown tokens (and the blank itself) raise LabelError."""
        tokens = self.tokenize(text)
        unknown = Counter(t for t in tokens if t not in self._index or t == BLANK)
        if unknown:
            raise LabelError(f"unknown symbols for label set {self.kind!r}", unknown)
        return [self._index[t] for t in tokens]

    def encode_known(self, tokens: Iterable[str]) -> list[int]:
        """Label ids of the tokens this set has, the others (and the blank) left out: what a
        decoder phonemizing hypotheses keeps of espeak-ng's phones, thousands of times per
        utterance, without :meth:`encode`'s checks."""
        index = self._index
        return [index[token] for token in tokens if token != BLANK and token in index]

    def encode_text(self, text: str) -> list[int]:
        """Label ids of what ``text`` says, for callers that hold words, not labels (Align,
        phrase hints): char and custom sets normalize and encode it; the phone set takes it as
        it is when every token already is one of its phones, and otherwise phonemizes it with
        espeak-ng, as the training manifests' phones were made."""
        if self.kind == "phone":
            phones = self.normalize(text)
            if not all(token in self._index and token != BLANK for token in phones.split()):
                phones = phonemize(text)
            return self.encode(phones)
        return self.encode(self.normalize(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of label ids, blanks skipped. Repeats are kept: CTC collapsing is the caller's."""
        joiner = "" if self.kind == "char" else " "
        return joiner.join(self.label(i) for i in ids if int(i) != self.blank_id)

    def label(self, index: int) -> str:
        """The symbol of one id (numpy/torch integers accepted); negative ids are rejected."""
        index = int(index)
        if not 0 <= index < len(self.symbols):
            raise IndexError(f"label id {index} outside 0..{len(self.symbols) - 1}")
        return self.symbols[index]

    def word_separator_id(self) -> int | None:
        return self._index[self.word_separator] if self.word_separator else None
