"""Per-file outputs (SRT, WebVTT, CTM, TextGrid) rendered from hand-built records, read back by their parsers."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest
from praatio import textgrid

from service import formats


def word(text: str, start: float, end: float, confidence: float = 0.9) -> dict:
    return {"word": text, "start_s": start, "end_s": end, "confidence": confidence}


RECORD = {
    "audio": "/corpus/talk one.wav",
    "text": "hello world this is a rather long sentence that needs more than one subtitle line",
    "duration_s": 3725.5,
    "words": [word("hello", 0.30, 0.70), word('wor"ld', 0.80, 1.20)]  # a pause, then a long run
    + [
        word(w, 3.0 + 0.3 * i, 3.25 + 0.3 * i)
        for i, w in enumerate(["this", "is", "a", "rather", "long", "sentence", "that", "needs"])
    ]
    + [word(w, 3700.0 + 0.4 * i, 3700.3 + 0.4 * i) for i, w in enumerate(["more", "than", "one", "subtitle", "line"])],
    "segments": [
        {"label": "h", "start_s": 0.30, "end_s": 0.36, "score": 0.9},
        {"label": " ", "start_s": 0.70, "end_s": 0.80, "score": 0.6},
        {"label": "w", "start_s": 0.80, "end_s": 0.83, "score": 0.8},
    ],
}

SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n")


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    blocks = [block + "\n" for block in text.strip("\n").split("\n\n")]
    cues = []
    for block in blocks:
        match = SRT_CUE.fullmatch(block)
        assert match, f"not an SRT cue: {block!r}"
        n, h1, m1, s1, ms1, h2, m2, s2, ms2, line = match.groups()
        start = int(h1) * 3600 + int(m1) * 60 + int(s1) + int(ms1) / 1000
        end = int(h2) * 3600 + int(m2) * 60 + int(s2) + int(ms2) / 1000
        cues.append((int(n), start, end, line))
    return cues


def assert_monotonic_cues(cues: list[tuple[int, float, float, str]]) -> None:
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    for (_, start, end, line), following in zip(cues, [*cues[1:], None]):
        assert start < end and len(line) <= formats.CUE_MAX_CHARS
        if following:
            assert end <= following[1]


def test_srt_cues_are_numbered_monotonic_and_split_at_pauses_and_length() -> None:
    cues = parse_srt(formats.srt(RECORD))
    assert_monotonic_cues(cues)
    assert cues[0][1:] == (0.3, 1.2, 'hello wor"ld')  # the pause before "this" ends the first cue
    assert " ".join(c[3] for c in cues) == " ".join(w["word"] for w in RECORD["words"])
    assert cues[-1][1] == 3700.0 and cues[-1][3].endswith("line")  # hours render as 01:01:40
    assert "01:01:40,000 -->" in formats.srt(RECORD)


def test_vtt_has_the_header_and_the_srt_cues() -> None:
    text = formats.vtt(RECORD)
    assert text.startswith("WEBVTT\n\n")
    srt_as_vtt = re.sub(r"^\d+\n", "", formats.srt(RECORD), flags=re.MULTILINE).replace(",", ".")
    assert text.removeprefix("WEBVTT\n\n") == srt_as_vtt


def test_ctm_has_one_nist_line_per_word() -> None:
    lines = formats.ctm(RECORD).splitlines()
    assert len(lines) == len(RECORD["words"])
    for line, expected in zip(lines, RECORD["words"]):
        file_id, channel, start, duration, token, confidence = line.split(" ")
        assert (file_id, channel, token) == ("talk_one", "1", expected["word"])
        assert float(start) == pytest.approx(expected["start_s"]) and float(duration) > 0
        assert float(confidence) == expected["confidence"]
    phone_words = {**RECORD, "words": [word("h ə l oʊ", 0.1, 0.5)]}
    assert formats.ctm(phone_words).split()[4] == "h_ə_l_oʊ"


def test_textgrid_reads_back_with_praatio_as_word_and_label_tiers(tmp_path: Path) -> None:
    path = tmp_path / "out.TextGrid"
    path.write_text(formats.textgrid(RECORD), encoding="utf-8")
    grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    assert grid.tierNames == ("words", "labels") and grid.maxTimestamp == RECORD["duration_s"]
    words = grid.getTier("words").entries
    assert [e.label for e in words if e.label] == [w["word"] for w in RECORD["words"]]  # quotes survive
    assert words[0].start == 0 and words[-1].end == RECORD["duration_s"]  # gaps are empty intervals
    assert all(a.end == b.start for a, b in pairwise(words))
    labels = grid.getTier("labels").entries
    assert [(e.start, e.end, e.label) for e in labels if e.label] == [(0.3, 0.36, "h"), (0.8, 0.83, "w")]


def test_an_empty_transcript_renders_valid_empty_outputs(tmp_path: Path) -> None:
    record = {**RECORD, "text": "", "words": [], "segments": [], "duration_s": 1.5}
    assert formats.srt(record) == "" and formats.vtt(record) == "WEBVTT\n\n" and formats.ctm(record) == ""
    path = tmp_path / "empty.TextGrid"
    path.write_text(formats.textgrid(record), encoding="utf-8")
    grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    assert [(e.start, e.end, e.label) for e in grid.getTier("words").entries] == [(0, 1.5, "")]


def test_parse_formats() -> None:
    assert formats.parse_formats("SRT, textgrid,srt") == ("srt", "textgrid")
    assert formats.parse_formats("") == ()
    with pytest.raises(ValueError, match="unknown format.*docx.*known: srt"):
        formats.parse_formats("srt,docx")
