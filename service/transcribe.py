"""``speechlabel transcribe``: audio files in, one JSON line per file out.

Files are decoded one by one (a bad file gets its ``error`` and the rest still run), then
recognized in length-sorted batches through the shared :class:`Recognizer`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from audiomodels.audio import AudioError, load_audio
from audiomodels.recognizer import Recognizer, Transcript

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "char.ckpt"
FILES_PER_BATCH = 16


def transcript_record(audio: str, transcript: Transcript | None, error: str | None = None) -> dict[str, Any]:
    """The per-file JSON line: audio, text, words, segments, duration_s, error."""
    if transcript is None:
        return {"audio": audio, "text": None, "words": [], "segments": [], "duration_s": None, "error": error}
    return {
        "audio": audio,
        "text": transcript.text,
        "words": [asdict(word) for word in transcript.words],
        "segments": [asdict(segment) for segment in transcript.segments],
        "duration_s": transcript.duration_s,
        "error": None,
    }


def transcribe_files(
    recognizer: Recognizer, paths: Iterable[str], *, beam_size: int = 1, files_per_batch: int = FILES_PER_BATCH
) -> Iterator[dict[str, Any]]:
    """Yield one record per path, in input order; decoding errors become the record's ``error``."""
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[dict[str, Any]]:
        transcripts = recognizer.transcribe_batch(
            [(waveform, recognizer.sample_rate) for _, waveform in pending], beam_size=beam_size
        )
        yield from (transcript_record(path, t) for (path, _), t in zip(pending, transcripts))
        pending.clear()

    for path in paths:
        try:
            waveform = load_audio(path, target_rate=recognizer.sample_rate, max_duration_s=recognizer.max_duration_s)
        except AudioError as error:
            yield from flush()
            yield transcript_record(path, None, str(error))
            continue
        pending.append((path, waveform))
        if len(pending) >= files_per_batch:
            yield from flush()
    yield from flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="model checkpoint (default: shipped char model)")
    parser.add_argument("--out", default="-", help="JSONL output file ('-' = stdout)")
    parser.add_argument("--beam-size", type=int, default=1, help="CTC prefix beam width (1 = greedy)")


def run(args: argparse.Namespace) -> int:
    """Exit status 0 only when every file was transcribed."""
    recognizer = Recognizer.from_checkpoint(args.checkpoint)
    failures = 0
    stream: IO[str] = sys.stdout if args.out == "-" else open(args.out, "w")  # noqa: SIM115 - closed below
    try:
        for record in transcribe_files(recognizer, args.files, beam_size=args.beam_size):
            failures += record["error"] is not None
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            stream.flush()
    finally:
        if stream is not sys.stdout:
            stream.close()
    if failures:
        print(f"{failures} of {len(args.files)} files failed (see their 'error' field)", file=sys.stderr)
    return 1 if failures else 0
