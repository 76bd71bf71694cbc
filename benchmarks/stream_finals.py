"""What a live stream's finals gain from ``full_context_finals`` and what they wait for it.

Usage:
    python benchmarks/stream_finals.py [--checkpoint models/char.ckpt] [--phone-model models/phone.ckpt]
        [--split test=data/corpus/test.jsonl ...] [--limit N] [--beam-size 8] [--threads 1]
        [--out benchmarks/results/stream_finals.json]

Each utterance is streamed alone through a :func:`service.sessions.direct_session` (the server's
session code without gRPC or batching) in 100 ms messages, without interims, with beam search and
the LM shipped beside the char model, three ways:

- ``chunked``: the default final, the chunked model's search at the model's streaming latency;
- ``full context``: ``full_context_finals``, the utterance decoded again whole by the full-context model;
- ``full context + check``: the same with the phone check (``serve --phone-check``).

Scores per split: final CER and WER; *final latency*, the time from the end of the audio to the
final (``finish``: for ``chunked`` the last chunk, the rest of the search and the alignment, for
the others the whole-utterance decode), p50 / p95 ms; and the real-time factor of all the
stream's work. One thread by default, side by side on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomodels.audio import encode_pcm16, load_audio
from audiomodels.lm import own_fusion
from audiomodels.phone_check import DEFAULT_PHONE_MODEL, PhoneCheck
from audiomodels.recognizer import Recognizer
from service.sessions import StreamResult, StreamSettings, direct_session
from training.manifest import read_manifest
from training.metrics import ErrorCounts, char_errors, word_errors

from report import write_report  # beside this script in benchmarks/
from stream_interims import MESSAGE, RATE, percentiles_ms
from warp_ensemble import add_split_argument, chosen_splits


def stream_once(
    recognizer: Recognizer, settings: StreamSettings, audio: np.ndarray
) -> tuple[list[StreamResult], float, float]:
    """(finals, seconds from the end of the audio to the last final, seconds of all the stream's work)."""
    data = encode_pcm16(audio)

    async def run() -> tuple[list[StreamResult], float, float]:
        session = direct_session(recognizer, settings)
        started = time.perf_counter()
        results = [r for j in range(0, len(data), MESSAGE) for r in await session.accept(data[j : j + MESSAGE])]
        ended = time.perf_counter()
        results += await session.finish()
        finished = time.perf_counter()
        return results, finished - ended, finished - started

    return asyncio.run(run())


def score(variants: dict[str, tuple[Recognizer, StreamSettings]], manifest: Path, limit: int | None) -> dict[str, Any]:
    """{variant: CER, WER, final latency and RTF} over one split."""
    utterances = read_manifest(manifest)[:limit]
    audios = [load_audio(u.audio_filepath, target_rate=RATE) for u in utterances]
    audio_s = sum(len(a) for a in audios) / RATE
    rows = {}
    for name, (recognizer, settings) in variants.items():
        chars, words, latencies, work = ErrorCounts(), ErrorCounts(), [], 0.0
        for utterance, audio in zip(utterances, audios, strict=True):
            results, latency, seconds = stream_once(recognizer, settings, audio)
            reference = recognizer.labels.normalize(utterance.text)
            said = " ".join(r.transcript.text for r in results if r.is_final)
            chars += char_errors(reference, said)
            words += word_errors(reference, said)
            latencies.append(latency)
            work += seconds
        rows[name] = {
            "cer": round(chars.rate, 4),
            "wer": round(words.rate, 4),
            "final_latency_ms": percentiles_ms(latencies),
            "real_time_factor": round(work / audio_s, 4),
        }
        print(f"  {manifest} {name}: {rows[name]}", flush=True)
    return {"utterances": len(utterances), "audio_s": round(audio_s, 1), "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--phone-model", type=Path, default=DEFAULT_PHONE_MODEL)
    add_split_argument(parser)
    parser.add_argument("--limit", type=int, default=None, help="the first N utterances of each split only")
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a loaded machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_finals.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fusion = own_fusion(args.checkpoint)
    plain = Recognizer.from_checkpoint(args.checkpoint, fusion=fusion)
    check = PhoneCheck(Recognizer.from_checkpoint(args.phone_model))
    checked = Recognizer(plain.config, plain.model, fusion=fusion, phone_check=check)
    chunked = StreamSettings("pcm16", RATE, beam_size=args.beam_size)
    full = dataclasses.replace(chunked, full_context_finals=True)
    variants = {"chunked": (plain, chunked), "full context": (plain, full), "full context + check": (checked, full)}
    splits = chosen_splits(args)
    results = {split: score(variants, manifest, args.limit) for split, manifest in splits.items()}
    decoder = f"beam{args.beam_size} + LM" if fusion else f"beam{args.beam_size}"
    print(f"\n| split | {decoder}: final CER | final WER | final latency p50 / p95 | RTF |")
    print("|---|---|---|---|---|")
    for split, result in results.items():
        rows = result["variants"].values()
        cells = [" / ".join(f"{100 * row[key]:.2f}%" for row in rows) for key in ("cer", "wer")]
        waits = [row["final_latency_ms"] for row in rows]
        latency = " / ".join(f"{wait['p50']:.0f}-{wait['p95']:.0f} ms" for wait in waits)
        speed = " / ".join(f"{row['real_time_factor']:.4f}" for row in rows)
        print(f"| {split} | {' | '.join(cells)} | {latency} | {speed} |")
    report = {
        "threads": args.threads,
        "beam_size": args.beam_size,
        "phone_model": str(args.phone_model),
        "variants": list(variants),
        "results": results,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
