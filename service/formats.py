"""Per-file outputs rendered from one transcript record: SRT and WebVTT subtitles, NIST CTM, Praat TextGrid.

Everything is rendered from the JSON record (``text``, ``words``, ``segments``, ``duration_s``), not
from the model, so a resumed job can write the files of records that an earlier run finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

# A cue ends at a pause, or before it grows past one subtitle line or a comfortable reading time.
CUE_MAX_CHARS = 42
CUE_MAX_S = 6.0
CUE_PAUSE_S = 0.7


def cues(words: Sequence[Record]) -> Iterator[tuple[float, float, str]]:
    """``(start_s, end_s, text)`` subtitle cues from word times, in order and never overlapping."""
    cue: list[Record] = []
    for word in words:
        if cue and (
            word["start_s"] - cue[-1]["end_s"] >= CUE_PAUSE_S
            or word["end_s"] - cue[0]["start_s"] > CUE_MAX_S
            or len(" ".join(w["word"] for w in (*cue, word))) > CUE_MAX_CHARS
        ):
            yield cue[0]["start_s"], cue[-1]["end_s"], " ".join(w["word"] for w in cue)
            cue = []
        cue.append(word)
    if cue:
        yield cue[0]["start_s"], cue[-1]["end_s"], " ".join(w["word"] for w in cue)


def _clock(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{decimal}{millis % 1000:03d}"


def srt(record: Record) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    return "".join(
        f"{number}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n\n"
        for number, (start, end, text) in enumerate(cues(record["words"]), start=1)
    )


def vtt(record: Record) -> str:
    """WebVTT: the same cues as :func:`srt` with ``.`` before the milliseconds."""
    return "WEBVTT\n\n" + "".join(
        f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n\n" for start, end, text in cues(record["words"])
    )


def ctm(record: Record) -> str:
    """NIST CTM: ``<file> <channel> <start> <duration> <word> <confidence>`` per word.

    Fields are space separated, so whitespace inside a word (a phone model's words are
    space-separated phones) becomes ``_``.
    """
    file_id = Path(record["audio"]).stem.replace(" ", "_")
    return "".join(
        f"{file_id} 1 {w['start_s']:.3f} {w['end_s'] - w['start_s']:.3f} {'_'.join(w['word'].split())} "
        f"{w['confidence']:.4f}\n"
        for w in record["words"]
    )


def textgrid(record: Record) -> str:
    """Praat TextGrid (long text format) with a ``words`` and a ``labels`` interval tier.

    Interval tiers must cover the whole file, so the gaps between words (and labels) become
    intervals with empty text.
    """
    xmax = max([record["duration_s"], *(item["end_s"] for item in (*record["words"], *record["segments"]))])
    tiers = [
        ("words", [(w["start_s"], w["end_s"], w["word"]) for w in record["words"]]),
        ("labels", [(s["start_s"], s["end_s"], s["label"]) for s in record["segments"]]),
    ]
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {xmax}",
        "tiers? <exists>",
        f"size = {len(tiers)}",
        "item []:",
    ]
    for number, (name, spans) in enumerate(tiers, start=1):
        intervals = _fill_gaps(spans, xmax)
        lines += [
            f"    item [{number}]:",
            '        class = "IntervalTier"',
            f"        name = {_quote(name)}",
            "        xmin = 0",
            f"        xmax = {xmax}",
            f"        intervals: size = {len(intervals)}",
        ]
        for index, (start, end, text) in enumerate(intervals, start=1):
            lines += [
                f"        intervals [{index}]:",
                f"            xmin = {start}",
                f"            xmax = {end}",
                f"            text = {_quote(text)}",
            ]
    return "\n".join(lines) + "\n"


def _fill_gaps(spans: Sequence[tuple[float, float, str]], xmax: float) -> list[tuple[float, float, str]]:
    """Spans in order plus empty intervals between them, covering [0, xmax] with no overlap."""
    intervals: list[tuple[float, float, str]] = []
    position = 0.0
    for start, end, text in spans:
        start = max(start, position)
        if end <= start:
            continue
        if start > position:
            intervals.append((position, start, ""))
        intervals.append((start, end, text))
        position = end
    if position < xmax or not intervals:
        intervals.append((position, xmax, ""))
    return intervals


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


RENDERERS: dict[str, Callable[[Record], str]] = {"srt": srt, "vtt": vtt, "ctm": ctm, "textgrid": textgrid}
EXTENSIONS = {"srt": ".srt", "vtt": ".vtt", "ctm": ".ctm", "textgrid": ".TextGrid"}


def parse_formats(text: str) -> tuple[str, ...]:
    """``"srt,vtt"`` -> ``("srt", "vtt")``; unknown names raise ``ValueError`` listing the known ones."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in RENDERERS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(RENDERERS)}")
    return names
