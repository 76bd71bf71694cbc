"""Tests for audiomodels.labels: normalizer rules, label sets and the real espeak-ng phonemizer."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from audiomodels.config import AcousticConfig, LabelConfig
from audiomodels.espeak import EspeakError
from audiomodels.labels import (
    BLANK,
    PHONES,
    LabelError,
    _canonical_words,
    LabelSet,
    normalize_text,
    phonemize,
    phonemize_batch,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the dev install list
    given = None

CANONICAL_PHONES = re.compile(r"^\S+( \S+)*$")
PARAGRAPH = (
    "On March 3rd, 2021, Dr. Smith's team measured 42.7% growth -- roughly $1.5 million -- "
    "in the Zürich lab. \"Don't worry,\" she said; the thermometer read 21° at 6 o'clock. "
    "Jack & Jill judged the church choir's rhythm, the azure pleasure boat, the bird's "
    "thoughtful voyage through mayhem and the 1990s. Quickly, the yellow zebra jumps over "
    "thirty-three lazy oxen/hounds, singing: whoa, ouch, yeah!"
)


# --------------------------------------------------------------------------- normalizer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,   World!", "hello world"),  # lowercase, punctuation, whitespace
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("I have 3 cats", "i have three cats"),
        ("105", "one hundred and five"),
        ("1,000,000 people", "one million people"),
        ("3.5", "three point five"),
        ("pi is 3.14", "pi is three point one four"),
        ("the 21st and 2nd", "the twenty first and second"),
        ("in 1999", "in nineteen ninety nine"),
        ("the 1990s", "the nineteen nineties"),
        ("agent 007", "agent zero zero seven"),
        ("mp3", "mp three"),
        ("50% off", "fifty percent off"),
        ("Jack&Jill", "jack and jill"),
        ("$5 and $1", "five dollars and one dollar"),
        ("£2.50", "two pounds and fifty pence"),
        ("$1.5 million", "one point five million dollars"),
        ("twenty-one", "twenty one"),
        ("pre—war / post–war", "pre war post war"),
        ("and/or", "and or"),
        ("U.S.A.", "u s a"),
        ("Hmm... (yes) [no] {maybe} #1 ~ok~", "hmm yes no maybe one ok"),
        ("don't", "don't"),
        ("o\u2019clock", "o'clock"),
        ("'quoted' dogs' rock 'n' roll", "quoted dogs rock n roll"),
        ("Café naïve Ångström", "cafe naive angstrom"),
        ("Straße Ærø", "strasse aero"),
        ("ＦＵＬＬ width ﬁne", "full width fine"),
        ("", ""),
        (" \t ", ""),
    ],
)
def test_normalize_text_rules(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "offending"),
    [
        ("你好 world 你", {"你": 2, "好": 1}),
        ("costs 5€ or ¥3", {"€": 1, "¥": 1}),
        ("αβ", {"α": 1, "β": 1}),
        ("smile ☺", {"☺": 1}),
    ],
)
def test_normalize_text_rejects_unmappable(text: str, offending: dict[str, int]) -> None:
    with pytest.raises(LabelError) as caught:
        normalize_text(text)
    assert caught.value.symbols == offending
    for symbol, count in offending.items():
        assert f"{symbol!r} (x{count})" in str(caught.value)


# --------------------------------------------------------------------------- char label set


def test_char_set_layout() -> None:
    labels = LabelSet.char()
    assert len(labels) == 29
    assert labels.symbols[:3] == (BLANK, " ", "'")
    assert labels.label(0) == BLANK and labels.blank_id == 0
    assert labels.word_separator_id() == 1
    assert labels.label(3) == "a" and labels.label(28) == "z"


def test_char_round_trip() -> None:
    labels = LabelSet.char()
    text = labels.normalize("It's 10 o'clock, Dr. Müller!")
    ids = labels.encode(text)
    assert 0 not in ids
    assert labels.decode(ids) == text == "it's ten o'clock dr muller"


def test_decode_skips_blanks_and_keeps_repeats() -> None:
    labels = LabelSet.char()
    h, e, l, o = labels.encode("helo")
    assert labels.decode([0, h, h, 0, e, l, 0, l, o, 0]) == "hhello"


def test_decode_rejects_out_of_range_ids() -> None:
    labels = LabelSet.char()
    with pytest.raises(IndexError):
        labels.decode([3, 29])
    with pytest.raises(IndexError):
        labels.decode([-1])


def test_unknown_symbols_reported_with_counts() -> None:
    with pytest.raises(LabelError) as caught:
        LabelSet.char().encode("aßßb€")
    assert str(caught.value) == "unknown symbols for label set 'char': 'ß' (x2), '€' (x1)"
    assert caught.value.symbols == {"ß": 2, "€": 1}


def test_encode_rejects_blank_as_target() -> None:
    with pytest.raises(LabelError, match="<blank>"):
        LabelSet.phone().encode(f"h {BLANK} i")


if given is not None:

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
    def test_ascii_text_normalizes_and_round_trips(text: str) -> None:
        labels = LabelSet.char()
        normalized = normalize_text(text)
        assert re.fullmatch(r"([a-z']+( [a-z']+)*)?", normalized)
        assert normalize_text(normalized) == normalized
        assert labels.decode(labels.encode(labels.normalize(text))) == normalized


# --------------------------------------------------------------------------- phonemizer


def test_phonemize_canonical_format() -> None:
    phones = phonemize("Hello, world!")
    assert CANONICAL_PHONES.match(phones)
    assert phones.split().count("|") == 1
    assert set(phones.split()) <= set(PHONES) | {"|"}
    assert "ˈ" not in phones and "ˌ" not in phones
    assert phones.startswith("h ") and phones.endswith(" d")


@pytest.mark.parametrize(
    ("word", "phone"),
    [("church", "tʃ"), ("judge", "dʒ"), ("buy", "aɪ"), ("see", "iː"), ("bird", "ɜː"),
     ("butter", "ɚ"), ("boat", "oʊ"), ("car", "ɑːɹ")],
)
def test_multi_character_phones_stay_single_tokens(word: str, phone: str) -> None:
    assert phone in phonemize(word).split()


def test_phonemize_batch_matches_single_calls() -> None:
    texts = ["The quick brown fox.", "", "I bought a boat, sir! Did you?", "42", PARAGRAPH,
             "word " * 150]
    assert phonemize_batch(texts) == [phonemize(t) for t in texts]


def test_long_text_is_not_cut_inside_words() -> None:
    phones = phonemize("house " * 200)
    assert phones.split(" | ") == ["h aʊ s"] * 200


def test_paragraph_phonemizes_and_round_trips() -> None:
    labels = LabelSet.phone()
    phones = phonemize(PARAGRAPH)
    assert CANONICAL_PHONES.match(phones)
    assert labels.decode(labels.encode(phones)) == phones
    assert phones.split().count("|") == len(phones.split(" | ")) - 1


def test_phones_outside_inventory_raise() -> None:
    with pytest.raises(LabelError, match="ʁ"):
        phonemize("rouge", voice="fr")


def test_unknown_voice_raises() -> None:
    with pytest.raises(EspeakError, match="no voice"):
        phonemize("hi", voice="xx-no-such-voice")


# --------------------------------------------------------------------------- phone label set


def test_phone_set_layout_and_normalize() -> None:
    labels = LabelSet.phone()
    assert len(labels) == len(PHONES) + 2 and len(set(PHONES)) == len(PHONES)
    assert labels.symbols[:2] == (BLANK, "|")
    assert labels.word_separator_id() == 1
    assert labels.normalize("  h  ə l\toʊ |  w ɜː l d \n") == "h ə l oʊ | w ɜː l d"
    assert labels.tokenize("t ʃ tʃ") == ["t", "ʃ", "tʃ"]


def test_encode_text_phonemizes_words_for_the_phone_set_and_keeps_phone_strings() -> None:
    phones = LabelSet.phone()
    assert phones.encode_text("Hello, world!") == phones.encode("h ə l oʊ | w ɜː l d")  # espeak-ng's phones
    assert phones.encode_text(" h ə l oʊ ") == phones.encode("h ə l oʊ")  # already phones: as they are
    chars = LabelSet.char()
    assert chars.encode_text("Hello, World!") == chars.encode("hello world")
    with pytest.raises(LabelError):
        phones.encode_text("東京")


# --------------------------------------------------------------------------- custom sets, configs


def write_symbols(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "symbols.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_custom_set_from_file_round_trips(tmp_path: Path) -> None:
    path = write_symbols(tmp_path, "# syllables\nword_separator: /\n\nba\n  ku \n/\nlo\n")
    labels = LabelSet.from_file(path)
    assert labels.kind == "custom"
    assert labels.symbols == (BLANK, "ba", "ku", "/", "lo")
    assert labels.word_separator_id() == 3
    assert labels.decode(labels.encode(labels.normalize(" ba  ku / lo "))) == "ba ku / lo"
    assert LabelSet.from_config(labels.to_config()) == labels
    stored = AcousticConfig(labels=labels.to_config()).to_dict()
    assert LabelSet.from_config(AcousticConfig.from_dict(stored).labels) == labels


def test_custom_set_without_separator(tmp_path: Path) -> None:
    labels = LabelSet.from_file(write_symbols(tmp_path, f"{BLANK}\nx\ny\n"))
    assert labels.symbols == (BLANK, "x", "y")
    assert labels.word_separator_id() is None


def test_duplicate_symbols_rejected(tmp_path: Path) -> None:
    with pytest.raises(LabelError) as caught:
        LabelSet.from_file(write_symbols(tmp_path, "a\nb\na\na\nb\n"))
    assert caught.value.symbols == {"a": 3, "b": 2}
    with pytest.raises(LabelError, match="duplicate"):
        LabelSet("custom", (BLANK, "x", BLANK), "")


@pytest.mark.parametrize(
    ("symbols", "separator"),
    [(("a", BLANK), ""), ((BLANK, "a b"), ""), ((BLANK, "a"), "|"), ((), "")],
)
def test_invalid_sets_rejected(symbols: tuple[str, ...], separator: str) -> None:
    with pytest.raises(LabelError):
        LabelSet("custom", symbols, separator)


@pytest.mark.parametrize("factory", [LabelSet.char, LabelSet.phone])
def test_builtin_sets_round_trip_through_config(factory) -> None:
    labels = factory()
    config = labels.to_config()
    assert config.symbols == labels.symbols
    assert LabelSet.from_config(config) == labels
    assert LabelSet.from_config(LabelConfig(kind=labels.kind)) == labels


def test_default_config_is_char_and_custom_needs_symbols() -> None:
    assert LabelSet.from_config(LabelConfig()) == LabelSet.char()
    with pytest.raises(LabelError):
        LabelSet.from_config(LabelConfig(kind="custom"))
    with pytest.raises(LabelError):
        LabelSet.from_config(LabelConfig(kind="klingon"))


def test_library_phonemizes_as_the_espeak_ng_program() -> None:
    """The in-process library (audiomodels.espeak) gives the phones the corpus's program gave."""
    texts = [normalize_text(t) for t in ("The quick brown fox.", "I bought a boat, sir!", "42", PARAGRAPH)]
    program = subprocess.run(
        ["espeak-ng", "-q", "-v", "en-us", "--ipa", "--sep=_"],
        input="\n".join(texts) + "\n", capture_output=True, encoding="utf-8", check=True,
    ).stdout.splitlines()
    assert phonemize_batch(texts) == [_canonical_words(line) for line in program]


def test_threads_phonemizing_at_once_get_their_own_phones() -> None:
    """The library has one global state; calls from a server's threads must not mix."""
    texts = [f"{word} number {n}" for n, word in enumerate(["apple", "river", "golden", "thunder"] * 10)]
    alone = [phonemize(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(phonemize, texts))
    assert together == alone
