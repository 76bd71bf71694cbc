"""How recognition holds up in background noise, in rooms, on phone lines and with pauses around
the speech: clean held-out speech vs the same speech with noise added, reverberated, telephoned
or with silence before and after it.

Usage:
    python benchmarks/robustness.py [--checkpoints models/char.ckpt models/phone.ckpt]
        [--manifest data/corpus/test.jsonl] [--snrs 30 20 10 5] [--colors white pink brown]
        [--recordings data/music --recording-snrs 20 10]
        [--rooms 0.3:6 0.6:3 0.9:0] [--no-telephone] [--codecs opus:12 opus:24 aac:32] [--silences 0.5]
        [--out benchmarks/results/robustness.json]

Only the manifest's un-augmented utterances are used (the corpus bakes noise, reverb or a phone
line into some of the others), so the clean row is a real baseline. Each condition applies the
corpus's own augmentation -- :func:`training.augment.add_noise` (white, pink or brown, SNR over the
utterance's mean power), recorded sound (``--recordings DIR``: an excerpt of a random file in it
per utterance, e.g. the real music ``make data/music`` unpacks from Debian packages),
:func:`training.augment.reverb` (a synthetic room given as
``RT60:DRR``, reverberation time in seconds and direct-to-reverberant ratio in dB) or
:func:`training.augment.telephone` (8 kHz, 300-3400 Hz, mu-law) -- or puts that many seconds of
digital silence before and after the speech (recordings start before the talker does; the
corpus's utterances start speaking within ~0.2 s) -- and writes
16-bit WAV files, as a client would send them, or compresses the clean speech with a lossy codec
at a bitrate (``--codecs CODEC:KBPS``: Opus in WebM as calls and browsers send it, AAC in M4A as
phones record it; :func:`training.codecs.compressed`) and writes that file; every checkpoint then scores the same files with
``training.evaluate.evaluate`` (greedy), so the models are compared on identical audio. The
primary rate is CER for char models and PER for phone models.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer
from training.augment import BACKGROUNDS, add_background, add_noise, reverb, telephone
from training.codecs import CODEC_FILES, compressed
from training.evaluate import EvaluationResult, breakdown, evaluate, parse_fields
from training.manifest import Utterance, read_manifest

from report import write_report  # beside this script in benchmarks/

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Condition:
    """One way of degrading the audio; ``kind`` "clean", "noise", "recorded" (``color`` names the
    recordings), "room", "telephone", "codec" (``color`` names the codec) or "silence"."""

    kind: str
    color: str = ""
    snr_db: float = 0.0
    rt60: float = 0.0
    drr_db: float = 0.0
    silence_s: float = 0.0
    kbps: float = 0.0
    recordings: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)  # "recorded": 16 kHz mono

    @property
    def name(self) -> str:
        if self.kind == "noise":
            return f"{self.color} {self.snr_db:g} dB"
        if self.kind == "recorded":
            return f"recorded {self.color} {self.snr_db:g} dB"
        if self.kind == "room":
            return f"room {self.rt60:g} s {self.drr_db:g} dB"
        if self.kind == "silence":
            return f"silence {self.silence_s:g} s"
        if self.kind == "codec":
            return f"{self.color} {self.kbps:g} kbps"
        return self.kind

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "noise":
            return add_noise(audio, self.snr_db, self.color, rng)
        if self.kind == "recorded":
            return add_background(audio, self.snr_db, excerpt(self.recordings, len(audio), rng))
        if self.kind == "room":
            return reverb(audio, SAMPLE_RATE, self.rt60, self.drr_db, rng)
        if self.kind == "telephone":
            return telephone(audio, SAMPLE_RATE)
        if self.kind == "silence":
            return np.pad(audio, round(self.silence_s * SAMPLE_RATE))
        return audio

    def write(self, audio: np.ndarray, stem: Path) -> Path:
        """The degraded audio as a client would send it: a 16-bit WAV, or the codec's compressed file."""
        if self.kind == "codec":
            data, suffix = compressed(np.clip(audio, -1.0, 1.0), SAMPLE_RATE, self.color, self.kbps)
            path = stem.with_suffix(suffix)
            path.write_bytes(data)
        else:
            path = stem.with_suffix(".wav")
            sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
        return path


CLEAN = Condition("clean")
QUIET_EXCERPT_DB = 20.0  # an excerpt this far below its recording's level is a pause or a fade: drawn again


def load_recordings(directory: Path) -> tuple[np.ndarray, ...]:
    """Every audio file under ``directory`` (WAV, FLAC, OGG, MP3), at 16 kHz mono."""
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".ogg", ".mp3"})
    if not paths:
        raise SystemExit(f"no audio files under {directory} (make data/music unpacks real music there)")
    return tuple(load_audio(path, target_rate=SAMPLE_RATE) for path in paths)


def excerpt(recordings: Sequence[np.ndarray], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A unit-variance stretch of ``num_samples`` from a random recording (drawn by length, looped if
    shorter), not from one of its pauses or fades: scaled to unit variance, those would be a hiss,
    not the sound."""
    lengths = np.array([len(r) for r in recordings], dtype=np.float64)
    for _ in range(10):
        recording = recordings[int(rng.choice(len(recordings), p=lengths / lengths.sum()))]
        if len(recording) < num_samples:
            recording = np.tile(recording, -(-num_samples // len(recording)))
        start = int(rng.integers(len(recording) - num_samples + 1))
        piece = recording[start : start + num_samples].astype(np.float64)
        level, whole = piece.std(), recording.std()
        if level > whole * 10 ** (-QUIET_EXCERPT_DB / 20):
            break
    return (piece / max(level, 1e-12)).astype(np.float32)


def parse_room(text: str) -> Condition:
    """``"RT60:DRR"`` (e.g. ``0.6:3``) -> a room condition."""
    rt60, _, drr_db = text.partition(":")
    try:
        return Condition("room", rt60=float(rt60), drr_db=float(drr_db))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a room is RT60:DRR in seconds and dB, e.g. 0.6:3, not {text!r}") from None


def parse_codec(text: str) -> Condition:
    """``"CODEC:KBPS"`` (e.g. ``opus:12``) -> a codec condition."""
    codec, _, kbps = text.partition(":")
    try:
        if codec in CODEC_FILES:
            return Condition("codec", color=codec, kbps=float(kbps))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"a codec is CODEC:KBPS with CODEC one of {', '.join(CODEC_FILES)}, not {text!r}")


def degraded_copies(utterances: Sequence[Utterance], condition: Condition, directory: Path, seed: int) -> list[Utterance]:
    """The utterances under ``condition``, as WAV files in ``directory`` (one draw per utterance)."""
    copies = []
    for index, utterance in enumerate(utterances):
        rng = np.random.default_rng([seed, index])
        audio = condition.apply(load_audio(utterance.audio_filepath, target_rate=SAMPLE_RATE), rng)
        copies.append(replace(utterance, audio_filepath=condition.write(audio, directory / f"{index:05d}")))
    return copies


def run(
    checkpoints: Sequence[Path],
    utterances: Sequence[Utterance],
    conditions: Sequence[Condition],
    by: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """{condition name: {checkpoint: evaluation summary}}; with ``by`` (manifest fields, e.g.
    ``["speaker"]``) each summary also holds the scores per value under ``"by"``, because one voice
    can lose far more in a condition than the mean shows."""
    recognizers = {str(path): Recognizer.from_checkpoint(path) for path in checkpoints}
    results: dict[str, dict[str, Any]] = {}
    for number, condition in enumerate(conditions):
        with tempfile.TemporaryDirectory(prefix="robustness-bench-") as directory:
            scored = utterances if condition == CLEAN else degraded_copies(utterances, condition, Path(directory), number)
            results[condition.name] = {
                path: _scores(evaluate(recognizer, scored), scored, by) for path, recognizer in recognizers.items()
            }
        print(condition.name, {path: summary["rates"] for path, summary in results[condition.name].items()}, flush=True)
    return results


def _scores(result: EvaluationResult, utterances: Sequence[Utterance], by: Sequence[str]) -> dict[str, Any]:
    return {**result.summary(), **({"by": {",".join(by): breakdown(result, utterances, by)}} if by else {})}


def primary_rate(summary: dict[str, Any]) -> float:
    return summary["rates"]["per" if "per" in summary["rates"] else "cer"]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Markdown: a row per condition, a column per checkpoint (CER or PER, change from clean)."""
    checkpoints = list(results["clean"])
    print("\n| condition | " + " | ".join(checkpoints) + " |")
    print("|---|" + "---:|" * len(checkpoints))
    for name, by_checkpoint in results.items():
        cells = []
        for path in checkpoints:
            rate, clean = primary_rate(by_checkpoint[path]), primary_rate(results["clean"][path])
            cells.append(f"{100 * rate:.1f}%" + ("" if name == "clean" else f" ({100 * (rate - clean):+.1f})"))
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt"), Path("models/phone.ckpt")])
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--snrs", type=float, nargs="*", default=[30.0, 20.0, 10.0, 5.0], help="none: no noise rows")
    parser.add_argument("--colors", nargs="+", choices=BACKGROUNDS, default=["white", "pink", "brown"])
    parser.add_argument("--recordings", type=Path, help="a directory of recorded backgrounds (make data/music: real music)")
    parser.add_argument("--recording-snrs", type=float, nargs="+", default=[20.0, 10.0])
    rooms = [parse_room(room) for room in ("0.3:6", "0.6:3", "0.9:0")]
    parser.add_argument("--rooms", type=parse_room, nargs="*", default=rooms,
                        help="rooms as RT60:DRR (seconds:dB); none with an empty --rooms")
    parser.add_argument("--no-telephone", action="store_true", help="leave out the phone line condition")
    codecs = [parse_codec(codec) for codec in ("opus:12", "opus:24", "aac:32")]
    parser.add_argument("--codecs", type=parse_codec, nargs="*", default=codecs,
                        help="lossy codecs as CODEC:KBPS (opus, aac); none with an empty --codecs")
    parser.add_argument("--silences", type=float, nargs="*", default=[0.5],
                        help="seconds of silence put before and after the speech, one condition each")
    parser.add_argument("--by", default="speaker", metavar="FIELD[,FIELD]",
                        help="also score each value of these manifest fields in every condition (JSON only); "
                        "'' for none")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/robustness.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clean = [u for u in read_manifest(args.manifest) if not u.extra.get("augment")]
    noises = [Condition("noise", color=color, snr_db=snr) for color in args.colors for snr in args.snrs]
    if args.recordings is not None:
        bank = load_recordings(args.recordings)
        noises += [Condition("recorded", args.recordings.name, snr, recordings=bank) for snr in args.recording_snrs]
    silences = [Condition("silence", silence_s=seconds) for seconds in args.silences]
    telephone_line = [] if args.no_telephone else [Condition("telephone")]
    conditions = [CLEAN, *noises, *args.rooms, *telephone_line, *args.codecs, *silences]
    results = run(args.checkpoints, clean, conditions, parse_fields(args.by))
    report = {
        "manifest": str(args.manifest),
        "utterances": len(clean),
        "audio_seconds": results["clean"][str(args.checkpoints[0])]["audio_seconds"],
        "results": results,
    }
    print_table(results)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
