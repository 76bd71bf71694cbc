"""espeak-ng speech with the true time of every word: the reference that word and label times
are measured against (``benchmarks/word_times.py``).

espeak-ng's library reports, as it synthesizes, where each phoneme starts in its audio (phoneme
events, with the text position of the word they belong to). A word starts at its first phoneme
and ends where the next phoneme event (the next word's, or a pause's) starts, to the sample.

The events need the library initialized with phoneme events on, while :mod:`audiomodels.espeak`
initializes it for phonemizing, and a process has one library state. So synthesis runs in worker
processes of its own (:func:`timed_speech`), never in the caller's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TYPE_CHECKING

import numpy as np

from audiomodels.labels import LabelSet, normalize_text
from training.manifest import Utterance
from training.metrics import matched_pairs

if TYPE_CHECKING:  # the recognizer imports torch, which synthesis workers need not load
    from audiomodels.recognizer import Transcript

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_PHONEME_EVENTS, _INITIALIZE_PHONEME_IPA, _INITIALIZE_DONT_EXIT = 0x0001, 0x0002, 0x8000
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_POSITION_CHARACTER, _CHARS_UTF8 = 1, 1
_RATE, _PITCH, _WORD_GAP = 1, 3, 7  # espeak_PARAMETER ids
DEFAULT_WPM, DEFAULT_PITCH = 175, 50  # the espeak-ng program's defaults, which the corpus scales
WITHIN_MS = (20, 50, 100)  # error sizes whose shares :func:`time_error_summary` reports


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """speak_lib.h's espeak_EVENT."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class SpeechJob:
    """What to say and how: an espeak-ng voice (``en-us+f3``), speed and pitch as factors of the
    program's defaults, and the gap between words in units of 10 ms (the corpus's parameters)."""

    text: str
    voice: str = "en-us"
    speed: float = 1.0
    pitch: float = 1.0
    word_gap: int = 0


@dataclass(frozen=True)
class TimedSpeech:
    """Mono int16 samples at ``rate``, each word's (text, start_s, end_s) and each phoneme's
    (IPA, start_s, end_s), in order."""

    samples: np.ndarray
    rate: int
    words: tuple[tuple[str, float, float], ...]
    phonemes: tuple[tuple[str, float, float], ...] = ()


def timed_speech(jobs: list[SpeechJob], workers: int = 1) -> list[TimedSpeech]:
    """Synthesize ``jobs`` in ``workers`` processes of their own (see the module's note)."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_synthesize, jobs, chunksize=8))


_state: dict[str, object] = {}  # in a worker: the library and its rate, loaded once


def _synthesize(job: SpeechJob) -> TimedSpeech:
    if not _state:
        library = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialize (is espeak-ng-data installed?)")
        library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
        library.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        _state.update(library=library, rate=rate)
    library, rate = _state["library"], int(_state["rate"])  # type: ignore[call-overload]
    names = [job.voice, job.voice.replace("en-gb", "en", 1)]  # the program's en-gb is the library's voice "en"
    if all(library.espeak_SetVoiceByName(name.encode()) != 0 for name in names):  # type: ignore[attr-defined]
        raise ValueError(f"espeak-ng has no voice {job.voice!r}")
    library.espeak_SetParameter(_RATE, round(DEFAULT_WPM * job.speed), 0)  # type: ignore[attr-defined]
    library.espeak_SetParameter(_PITCH, min(99, round(DEFAULT_PITCH * job.pitch)), 0)  # type: ignore[attr-defined]
    library.espeak_SetParameter(_WORD_GAP, job.word_gap, 0)  # type: ignore[attr-defined]
    pieces: list[np.ndarray] = []
    phonemes: list[tuple[int, int, str]] = []  # (sample, text position, IPA; "" for a pause or the end)
    words: dict[int, int] = {}  # text position -> length, from word events

    def collect(wave: ctypes.Array, count: int, events: ctypes.Array) -> int:
        if count > 0:
            pieces.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                phonemes.append((event.sample, event.text_position, event.id.string.decode("utf-8", "replace")))
            elif event.type == _EVENT_WORD:
                words[event.text_position] = event.length
            index += 1
        return 0

    callback = _CALLBACK(collect)
    library.espeak_SetSynthCallback(callback)  # type: ignore[attr-defined]
    text = job.text.encode()
    if library.espeak_Synth(text, len(text) + 1, 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:  # type: ignore[attr-defined]
        raise RuntimeError(f"espeak-ng could not synthesize {job.text!r}")
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    voiced = tuple(
        (name, sample / rate, phonemes[index + 1][0] / rate)
        for index, (sample, _, name) in enumerate(phonemes[:-1])
        if name
    )
    return TimedSpeech(samples, rate, tuple(_word_times(job.text, phonemes, words, rate)), voiced)


def _word_times(
    text: str, phonemes: list[tuple[int, int, str]], words: dict[int, int], rate: int
) -> list[tuple[str, float, float]]:
    """Each word's first phoneme's start and the start of the phoneme event after its last."""
    timed = []
    for position, length in sorted(words.items()):
        own = [index for index, (_, at, name) in enumerate(phonemes) if at == position and name]
        if not own or own[-1] + 1 >= len(phonemes):
            continue  # a word espeak-ng did not voice (punctuation read as nothing)
        word = text.encode()[position - 1 : position - 1 + length].decode("utf-8", "replace")
        timed.append((word, phonemes[own[0]][0] / rate, phonemes[own[-1] + 1][0] / rate))
    return timed


def espeak_jobs(utterances: list[Utterance], limit: int) -> list[SpeechJob]:
    """The first ``limit`` espeak-ng utterances of a corpus manifest (``voice`` ``espeak-ng:NAME``,
    with its speed, pitch and word gap) as jobs: speech of known voices and texts to time."""
    jobs = []
    for utterance in utterances:
        engine, _, voice = str(utterance.extra.get("voice", "")).partition(":")
        if engine == "espeak-ng" and len(jobs) < limit:
            params = utterance.extra.get("voice_params") or {}
            speed, pitch = float(utterance.extra.get("speed", 1.0)), float(utterance.extra.get("pitch", 1.0))
            jobs.append(SpeechJob(utterance.text, voice, speed, pitch, int(params.get("word_gap", 0))))
    return jobs


def word_time_errors(
    truth: TimedSpeech, words: list[tuple[str, float, float]], in_order: bool = False
) -> list[tuple[float, float]]:
    """(start error, end error) in ms, hypothesis minus truth, of each of ``words`` (text, start_s,
    end_s) paired with a true word: by equal normalized text, or with ``in_order`` (words whose
    text is not the text's, a phone model's) position by position when the counts agree."""
    if in_order:
        return _in_order_errors(truth.words, words)
    pairs = matched_pairs([normalize_text(word) for word, _, _ in truth.words], [word for word, _, _ in words])
    return [_error(truth.words[i], words[j]) for i, j in pairs]


def transcript_time_errors(
    truth: TimedSpeech, transcript: Transcript, labels: LabelSet
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Start and end errors (ms) of a transcript's words and, for a phone model, of its label
    segments. A phone model's words and segments are phones: paired with the true words and
    phonemes position by position where the counts agree (the names may differ where an accent
    does). A char model's words are paired by text (:func:`word_time_errors`); its characters
    have no true times."""
    phones = labels.kind == "phone"
    words = word_time_errors(truth, [(w.word, w.start_s, w.end_s) for w in transcript.words], in_order=phones)
    if not phones:
        return words, []
    spoken = [(s.label, s.start_s, s.end_s) for s in transcript.segments if s.label != labels.word_separator]
    return words, _in_order_errors(truth.phonemes, spoken)


def _in_order_errors(
    true: tuple[tuple[str, float, float], ...], found: list[tuple[str, float, float]]
) -> list[tuple[float, float]]:
    return [_error(t, f) for t, f in zip(true, found, strict=True)] if len(true) == len(found) else []


def _error(true: tuple[str, float, float], found: tuple[str, float, float]) -> tuple[float, float]:
    return 1000 * (found[1] - true[1]), 1000 * (found[2] - true[2])


def time_error_summary(errors: list[tuple[float, float]]) -> dict[str, object]:
    """Of start and end errors (ms): the mean (a bias; late is positive), the median and 90th
    percentile of their size, and the shares within :data:`WITHIN_MS`."""
    result: dict[str, object] = {"words": len(errors)}
    for side, values in (("start", [e[0] for e in errors]), ("end", [e[1] for e in errors])):
        if not values:
            result[side] = None
            continue
        sizes = np.abs(values)
        result[side] = {
            "mean_ms": round(float(np.mean(values)), 1),
            "median_ms": round(float(np.median(values)), 1),
            "median_abs_ms": round(float(np.median(sizes)), 1),
            "p90_abs_ms": round(float(np.percentile(sizes, 90)), 1),
            **{f"within_{ms}ms": round(float(np.mean(sizes <= ms)), 3) for ms in WITHIN_MS},
        }
    return result
