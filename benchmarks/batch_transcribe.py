"""Batch job speed: ``speechlabel transcribe`` on a generated corpus against the same files one at a time.

Usage:
    python benchmarks/batch_transcribe.py [--minutes 30] [--checkpoint models/char.ckpt] [--threads N]
        [--workers 1] [--model-procs 2] [--precision auto] [--batch-seconds 300] [--batch-files 64]
        [--out benchmarks/results/batch_transcribe.json]

The corpus is spoken by espeak-ng voices (random accent, speed, pitch) from the fortunes sentences,
in three kinds of file so that batching and cutting both matter: single sentences, paragraphs of
3-6 sentences and talks of 40-80 sentences (minutes long, cut at pauses by the job). It is cached
under ``data/bench/`` per (minutes, seed).

- batch: the job as ``speechlabel transcribe`` runs it by default (:func:`service.batch.run_job`
  with a decoder process, grouping, ``--model-procs`` single-threaded model processes on different
  groups, length-sorted model calls, stitching and the fsynced log; precision ``auto`` = bfloat16
  where the CPU has it), wall time from start to the last line, process start-up included. Model
  time is spent in the children, so only the wall time is reported;
- batch_float32: the same job in float32;
- batch_in_process: the same job with the model in this process (``--model-procs 1``), where the
  model, decode and outside shares of the wall time can be measured;
- one at a time: for each file ``load_audio`` then ``Recognizer.transcribe``, the same checkpoint
  and thread count, whole files (no cutting), float32 (faster than bfloat16 for one file).

Each batch run's transcripts are compared with the one-at-a-time ones (character error rate of one
against the other): cutting long files at pauses and bfloat16 arithmetic both change a few
characters, and this shows how many.

RTF = wall seconds / audio seconds. "Model" time is spent inside ``Recognizer.emissions``
(features + network); decoding (CTC search, alignment, words) is counted separately; the rest
(waiting for audio, stitching, writing) is "outside the recognizer".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial, wraps
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer, resolve_precision
from service.batch import RESULTS_FILE, JobOptions, LocalSettings, LocalTranscriber, run_job
from service.inputs import expand_inputs
from training.corpus import load_sentences
from training.metrics import ErrorCounts, char_errors
from training.voices import available_voices

from report import write_report  # beside this script in benchmarks/

FILE_KINDS = {  # kind -> (share of the corpus audio, sentences per file)
    "sentence": (0.5, (1, 1)),
    "paragraph": (0.25, (3, 6)),
    "talk": (0.25, (40, 80)),
}


def build_corpus(directory: Path, minutes: float, seed: int) -> list[Path]:
    """Synthesize the corpus once; ``manifest.jsonl`` is written last, so its presence means complete."""
    manifest = directory / "manifest.jsonl"
    if manifest.exists():
        return [directory / json.loads(line)["audio_filepath"] for line in manifest.read_text().splitlines()]
    rng = np.random.default_rng(seed)
    voices = available_voices(["espeak-ng"])
    sentences = load_sentences()
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for kind, (share, (low, high)) in FILE_KINDS.items():
        seconds = 0.0
        while seconds < share * minutes * 60:
            picked = [sentences[i].spoken for i in rng.integers(0, len(sentences), rng.integers(low, high + 1))]
            voice = voices[rng.integers(len(voices))]
            (audio,) = voice.synthesize([" ".join(picked)], [voice.sample_params(rng)])
            path = directory / f"{kind}-{len(records):05d}.wav"
            sf.write(path, audio, voice.sample_rate, subtype="PCM_16")
            seconds += len(audio) / voice.sample_rate
            records.append({"audio_filepath": path.name, "duration": round(len(audio) / voice.sample_rate, 3)})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return [directory / r["audio_filepath"] for r in records]


class Stopwatch:
    """Wraps a method of one object and sums the wall seconds spent in it."""

    def __init__(self, owner: object, name: str) -> None:
        self.seconds = 0.0
        method = getattr(owner, name)

        @wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        setattr(owner, name, timed)


def measure(recognizer: Recognizer, run: Callable[[], float]) -> dict[str, float]:
    """Wall, model and decode seconds of ``run`` (which returns the audio seconds it covered).

    Model and decode time are only seen when the model runs in this process.
    """
    model, recognize = Stopwatch(recognizer, "emissions"), Stopwatch(recognizer, "transcribe_batch")
    started = time.perf_counter()
    audio_s = run()
    wall = time.perf_counter() - started
    del recognizer.emissions, recognizer.transcribe_batch  # back to the class's methods
    result = {
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 2),
        "rtf": round(wall / audio_s, 5),
        "x_real_time": round(audio_s / wall, 1),
    }
    if recognize.seconds:
        result["model_share"] = round(model.seconds / wall, 3)
        result["decode_share"] = round((recognize.seconds - model.seconds) / wall, 3)
        result["outside_recognizer_share"] = round(1 - recognize.seconds / wall, 3)
    return result


def disagreement(reference: dict[str, str], hypothesis: dict[str, str]) -> float:
    """Character error rate of one run's transcripts against another's (0 = identical text)."""
    counts = sum((char_errors(reference[path], hypothesis[path]) for path in reference), ErrorCounts())
    return round(counts.rate, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="corpus size (audio minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--threads", type=int, help="torch threads in this process (default: torch's choice)")
    defaults = LocalSettings()
    parser.add_argument("--workers", type=int, default=1, help="decoder processes of the batch job")
    parser.add_argument("--model-procs", type=int, default=2, help="model processes of the batch job")
    parser.add_argument("--precision", default="auto", help="the batch job's model arithmetic (auto, float32, bfloat16)")
    parser.add_argument("--batch-seconds", type=float, default=defaults.batch_seconds)
    parser.add_argument("--batch-files", type=int, default=defaults.batch_files)
    parser.add_argument("--max-segment-s", type=float, default=defaults.max_segment_s)
    parser.add_argument("--skip-baseline", action="store_true", help="only the batch job")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/batch_transcribe.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    corpus = Path("data/bench") / f"{args.minutes:g}min-seed{args.seed}"
    started = time.perf_counter()
    files = build_corpus(corpus, args.minutes, args.seed)
    print(f"corpus: {len(files)} files in {corpus} ({time.perf_counter() - started:.0f} s to make or find)")
    precision = resolve_precision(args.precision)
    recognizers = {name: Recognizer.from_checkpoint(args.checkpoint, precision=name) for name in {precision, "float32"}}
    settings = LocalSettings(
        batch_seconds=args.batch_seconds,
        batch_files=args.batch_files,
        max_segment_s=args.max_segment_s,
        workers=args.workers,
        model_procs=args.model_procs,
    )
    paths = expand_inputs([str(corpus)])
    texts: dict[str, dict[str, str]] = {}

    def batch_job(name: str, recognizer: Recognizer, settings: LocalSettings) -> float:
        with tempfile.TemporaryDirectory() as out:
            stats = run_job(paths, LocalTranscriber(recognizer, "bench", settings), JobOptions(out, progress=False))
            records = [json.loads(line) for line in (Path(out) / RESULTS_FILE).read_text().splitlines()]
        assert stats.failed == 0, stats.errors
        texts[name] = {record["audio"]: record["text"] for record in records}
        return stats.audio_s

    def one_at_a_time(recognizer: Recognizer) -> float:
        audio_s = 0.0
        texts["one_at_a_time"] = {}
        for path in paths:
            waveform = load_audio(path, target_rate=recognizer.sample_rate)
            transcript = recognizer.transcribe(waveform, recognizer.sample_rate)
            texts["one_at_a_time"][path] = transcript.text
            audio_s += transcript.duration_s
        return audio_s

    for recognizer in recognizers.values():  # warm-up
        recognizer.transcribe(np.zeros(recognizer.sample_rate, dtype=np.float32), recognizer.sample_rate)
    runs = {  # name -> (recognizer, settings)
        "batch": (recognizers[precision], settings),
        "batch_float32": (recognizers["float32"], settings),
        "batch_in_process": (recognizers[precision], replace(settings, model_procs=1)),
    }
    results: dict[str, Any] = {
        "corpus": {"files": len(files), "minutes": args.minutes, "seed": args.seed, "kinds": list(FILE_KINDS)},
        "checkpoint": str(args.checkpoint),
        "settings": {**vars(settings), "precision": precision, "torch_threads": torch.get_num_threads()},
    }
    for name, (recognizer, run_settings) in runs.items():
        if name == "batch_float32" and precision == "float32":
            continue
        results[name] = measure(recognizer, partial(batch_job, name, recognizer, run_settings))
        print(f"{name:17s}: {results[name]}")
    if not args.skip_baseline:
        # float32: one file at a time is faster in float32 than in bfloat16 (no batch to fill the wide units).
        results["one_at_a_time"] = measure(recognizers["float32"], partial(one_at_a_time, recognizers["float32"]))
        print(f"one at a time    : {results['one_at_a_time']}")
        baseline = results["one_at_a_time"]["wall_s"]
        results["speedup"] = {name: round(baseline / results[name]["wall_s"], 2) for name in runs if name in results}
        results["transcript_cer_vs_one_at_a_time"] = {
            name: disagreement(texts["one_at_a_time"], texts[name]) for name in runs if name in texts
        }
        print(f"speedup over one at a time: {results['speedup']}")
        print(f"transcripts vs one at a time (CER): {results['transcript_cer_vs_one_at_a_time']}")
    write_report(args.out, results)


if __name__ == "__main__":
    main()
