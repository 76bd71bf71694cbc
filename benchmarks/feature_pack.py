"""What a feature pack costs in size and in accuracy, against the audio it stands for.

Usage:
    python benchmarks/feature_pack.py [--manifest data/corpus/test.jsonl] [--limit 300]
        [--checkpoint models/char.ckpt] [--steps-per-std 4 8 16]
        [--out benchmarks/results/feature_pack.json]

For each quantization (steps per standard deviation of each MFCC coefficient; the pack's default
is ``training.feature_pack.STEPS_PER_STD``) it reports the pack's bytes per second of audio next to
the WAV files and FLAC, the rounding error, the time to read the pack back, and the checkpoint's
greedy error rate on the packed features next to the same model on the exact features. The model
sees whole utterances in both (no leading-silence skip), as training does, so any difference is the
quantization's alone.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer
from training.feature_pack import STEPS_PER_STD, build_pack, read_pack, write_pack
from training.manifest import read_manifest
from training.metrics import ErrorCounts, char_errors, phone_errors

from report import write_report  # beside this script in benchmarks/


def error_rate(recognizer: Recognizer, features: list[torch.Tensor], references: list[str]) -> float:
    """Greedy CER (PER for a phone model) of the model on these model frames, one utterance at a time."""
    phone = recognizer.labels.kind == "phone"
    total = ErrorCounts()
    with torch.inference_mode():
        for frames, reference in zip(features, references, strict=True):
            log_probs, lengths = recognizer.model(frames[None], torch.tensor([len(frames)]))
            hypothesis = recognizer.decode(log_probs[0, : lengths[0]].float(), 0.0).text
            total += phone_errors(reference, hypothesis) if phone else char_errors(reference, hypothesis)
    return total.rate


def flac_bytes(paths: list[Path]) -> int:
    """Bytes of the same audio as 16-bit FLAC."""
    size = 0
    for path in paths:
        samples, rate = sf.read(path, dtype="int16")
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
        size += len(buffer.getvalue())
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, default=300, help="first N utterances of the manifest")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--steps-per-std", type=int, nargs="+", default=sorted({4, 8, STEPS_PER_STD}))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/feature_pack.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recognizer = Recognizer.from_checkpoint(args.checkpoint)
    utterances = read_manifest(args.manifest)[: args.limit]
    phone = recognizer.labels.kind == "phone"
    references = [u.phones if phone else recognizer.labels.normalize(u.text) for u in utterances]
    rate = recognizer.sample_rate
    exact = [recognizer.featurizer(torch.from_numpy(load_audio(u.audio_filepath, target_rate=rate))) for u in utterances]
    seconds = sum(len(frames) for frames in exact) * recognizer.featurizer.config.frame_shift_s
    paths = [u.audio_filepath for u in utterances]
    results: dict[str, Any] = {
        "manifest": str(args.manifest),
        "checkpoint": str(args.checkpoint),
        "utterances": len(utterances),
        "audio_s": round(seconds, 1),
        "wav_bytes_per_s": round(sum(p.stat().st_size for p in paths) / seconds, 1),
        "flac_bytes_per_s": round(flac_bytes(paths) / seconds, 1),
        "exact_error_rate": error_rate(recognizer, exact, references),
        "packs": {},
    }
    print(f"{len(utterances)} utterances, {seconds:.0f} s: WAV {results['wav_bytes_per_s']:.0f} B/s, "
          f"FLAC {results['flac_bytes_per_s']:.0f} B/s, exact features {results['exact_error_rate']:.2%}")
    with tempfile.TemporaryDirectory() as scratch:
        for steps in args.steps_per_std:
            path = Path(scratch) / f"{steps}.pack"
            write_pack(path, build_pack(utterances, exact, recognizer.featurizer.config, steps))
            started = time.perf_counter()
            pack = read_pack(path)
            packed = [pack.features(i) for i in range(len(pack))]
            read_s = time.perf_counter() - started
            relative = torch.cat([(p - e).std(0) / e.std(0) for p, e in zip(packed, exact, strict=True)]).mean()
            row = {
                "bytes_per_s": round(path.stat().st_size / seconds, 1),
                "relative_error": round(float(relative), 4),
                "read_s_per_audio_hour": round(read_s / seconds * 3600, 2),
                "error_rate": error_rate(recognizer, packed, references),
            }
            results["packs"][str(steps)] = row
            print(f"{steps:>3} steps/std: {row['bytes_per_s']:>7.0f} B/s, rounding {row['relative_error']:.1%} of each "
                  f"coefficient's spread, read {row['read_s_per_audio_hour']:.1f} s per audio hour, "
                  f"error rate {row['error_rate']:.2%}")
    write_report(args.out, results, threads=args.threads)


if __name__ == "__main__":
    main()
