"""espeak-ng's phonemizer in this process, through its C library (``libespeak-ng``).

Phone targets, phone LMs and the phone check all phonemize with espeak-ng. Starting the
``espeak-ng`` program costs about 10 ms, which a corpus pays once per batch but a decoder that
phonemizes the words of its hypotheses as it searches (hundreds per utterance) cannot; a call into
the library costs about 0.05 ms per sentence and gives the program's output (``--ipa --sep=_``),
line for line, as ``tests/test_labels.py`` checks against the program itself.

The library keeps one global state (voice, buffers), so calls are serialized by a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02  # no audio device is opened; phonemization only
_INITIALIZE_DONT_EXIT = 0x8000  # a missing voice is an error code, not the end of the process
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02


class EspeakError(RuntimeError):
    """libespeak-ng is missing or refused a voice."""


class _Library:
    """The loaded library and the voice it is set to."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as error:
            raise EspeakError(f"libespeak-ng is not installed (apt-get install espeak-ng): {error}") from None
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        if self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT) < 0:
            raise EspeakError("libespeak-ng failed to initialize (is espeak-ng-data installed?)")
        self.voice = ""

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")
            self.voice = voice


_LOCK = threading.Lock()  # the library's one global state: loading, voice and every call
_loaded: list[_Library] = []


def _phonemizing(voice: str) -> _Library:
    """The loaded library set to ``voice``; the caller holds ``_LOCK``."""
    if not _loaded:
        _loaded.append(_Library())
    _loaded[0].set_voice(voice)
    return _loaded[0]


def _clauses(library: _Library, line: str, mode: int) -> list[str]:
    """One line's IPA, clause by clause: the library answers a clause a call and moves the pointer on."""
    buffer = ctypes.create_string_buffer(line.encode())
    pointer = ctypes.c_void_p(ctypes.addressof(buffer))
    clauses = []
    while pointer.value:
        clauses.append(library.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode).decode())
    return [clause for clause in clauses if clause]


def ipa_lines(lines: list[str], voice: str, separator: str) -> list[str]:
    """espeak-ng's IPA for each line (``separator`` between the phones of a word), as
    ``espeak-ng -q -v VOICE --ipa --sep=SEPARATOR`` prints it for the same lines on stdin."""
    mode = _PHONEMES_IPA | (ord(separator) << 8)
    with _LOCK:
        library = _phonemizing(voice)
        return [" ".join(_clauses(library, line, mode)) for line in lines]


def ipa_clauses(line: str, voice: str) -> list[str]:
    """espeak-ng's IPA of one line, stress marks included, one string per clause (its punctuation
    dropped), as ``espeak-ng -q -v VOICE --ipa`` prints it, a clause per output line."""
    with _LOCK:
        return _clauses(_phonemizing(voice), line, _PHONEMES_IPA)
