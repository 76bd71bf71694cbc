"""What a live stream's interim results say before its final, per decoder, and the decoding work
left at the cut.

Usage:
    python benchmarks/stream_interims.py [--checkpoint models/char.ckpt] [--manifest data/corpus/test.jsonl]
        [--limit N] [--beam-size 8] [--distractors 20] [--out benchmarks/results/stream_interims.json]

Each utterance is streamed alone through a :class:`service.sessions.StreamingSession` (``run_stream``:
the server's session code without gRPC) at the model's streaming latency, in 100 ms messages, with
interim results, once per decoder:

- ``greedy``;
- ``beam + LM``: beam search with the model's own LM;
- ``beam + LM + hints``: also phrase hints, the utterance's words (3+ letters) that the LM does not
  know plus ``--distractors`` such words of other utterances (as ``benchmarks/phrase_hints.py``).

Scores:

- *interim CER*: every interim against the reference as far as the interim reaches. The reference's
  letters are force-aligned to the audio (full-context model); an interim covering the audio up to
  ``t`` is scored against the letters that end by ``t``. Pooled over all interims. The boundary
  letter is uncertain by a frame or two for every decoder alike.
- *final CER / WER*.
- *stable share*: how much of the interims' text the search had settled (``stable_transcript``: the
  start every hypothesis still in the beam shares), pooled over characters; *revised interims*: the
  share of interims that do not simply extend the one before (text taken back); *broken promises*:
  results that do not start with an earlier interim's stable text (must be 0).
- *hinted words in interims*: of the spoken hinted words, how many appear in an interim before the
  final (multisets per utterance), and in the final.
- *decoding at the cut*: the work between the endpointer's cut and the final, apart from the model:
  searching the frames the stream had not searched yet (the last chunk) and aligning the result,
  against searching the whole utterance at the cut (what finals did before the search ran chunk by
  chunk, without settling). Timed on the same chunked log-probs, one thread; p50 / p95 ms.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomodels.audio import encode_pcm16, load_audio
from audiomodels.context import PhraseBias
from audiomodels.lm import own_fusion
from audiomodels.recognizer import Recognizer
from service.sessions import StreamResult, StreamSettings, run_stream, stream_chunking
from training.manifest import read_manifest
from training.metrics import ErrorCounts, char_errors, word_errors

from phrase_hints import distractor_lists, recall, unknown_words  # beside this script in benchmarks/
from report import write_report

RATE = 16000
MESSAGE = 1600 * 2  # 100 ms of 16 kHz PCM16


def reference_prefix(aligned: Recognizer, audio: np.ndarray, reference: str) -> list[tuple[float, str]]:
    """(end time, label) of each reference letter, force-aligned; empty if it cannot be aligned."""
    try:
        segments = aligned.align(audio, RATE, reference).segments
    except ValueError:
        return []
    return [(s.end_s, s.label) for s in segments]


def text_by(letters: list[tuple[float, str]], end_s: float) -> str:
    return "".join(label for end, label in letters if end <= end_s + 1e-9).strip()


def cut_timings(
    recognizer: Recognizer, twin: Recognizer, audio: np.ndarray, searched_frames: int, **options: Any
) -> tuple[float, float]:
    """(seconds to search the unsearched tail and align, as a stream's settling search does; seconds
    to search everything and align, as finals were decoded before)."""
    ((log_probs, duration, _),) = twin.decodable_batch([(audio, RATE)])
    search = twin.search(**options)
    search.advance(log_probs[:searched_frames])
    started = time.perf_counter()
    search.advance(log_probs[searched_frames:])
    recognizer.transcript(log_probs, search.hypotheses(), duration)
    tail = time.perf_counter() - started
    started = time.perf_counter()
    search = recognizer.search(**options)
    search.advance(log_probs)
    recognizer.transcript(log_probs, search.hypotheses(), duration)
    return tail, time.perf_counter() - started


def percentiles_ms(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(1000 * float(np.percentile(values, q)), 2) for q in (50, 95)} if values else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, default=None, help="the first N utterances only")
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--distractors", type=int, default=20, help="unspoken hints per utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_interims.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    fusion = own_fusion(args.checkpoint)
    if fusion is None or fusion.lm.words is None:
        raise SystemExit(f"{args.checkpoint} has no LM with a word vocabulary beside it")
    recognizer = Recognizer.from_checkpoint(args.checkpoint, fusion=fusion)
    aligned = Recognizer(recognizer.config, recognizer.model)
    twin = Recognizer(recognizer.config, recognizer.model, chunking=stream_chunking(recognizer, 0.0), fusion=fusion)
    labels = recognizer.labels
    known = {labels.decode(spelling) for spelling in fusion.lm.words.vocabulary}
    utterances = read_manifest(args.manifest)
    references = [labels.normalize(u.text) for u in utterances]
    spoken = [unknown_words(r, known) for r in references]
    distractors = distractor_lists(spoken, args.distractors, args.seed)  # from the whole split
    hints = [own + extra for own, extra in zip(spoken, distractors)]
    utterances, references, spoken = utterances[: args.limit], references[: args.limit], spoken[: args.limit]
    decoders: dict[str, dict[str, Any]] = {
        "greedy": {},
        "beam + LM": {"beam_size": args.beam_size},
        "beam + LM + hints": {"beam_size": args.beam_size, "hints": True},
    }
    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "manifest": str(args.manifest),
        "utterances": len(utterances),
        "spoken_hinted_words": sum(map(len, spoken)),
        "distractors": args.distractors,
        "decoders": {},
    }
    audios = [load_audio(u.audio_filepath) for u in utterances]
    letters = [reference_prefix(aligned, audio, ref) for audio, ref in zip(audios, references)]
    print(f"{len(utterances)} utterances ({sum(map(bool, letters))} aligned), {sum(map(len, spoken))} spoken "
          f"words outside the LM hinted with {args.distractors} distractors each", flush=True)  # fmt: skip
    for name, options in decoders.items():
        interim_chars, final_chars, final_words = ErrorCounts(), ErrorCounts(), ErrorCounts()
        seen, said, total, interim_count, tails, wholes = 0, 0, 0, 0, [], []
        stable_chars, interim_text_chars, revised, pairs, broken = 0, 0, 0, 0, 0
        started = time.perf_counter()
        for i, audio in enumerate(audios):
            bias = PhraseBias.from_phrases(hints[i], labels) if options.get("hints") and hints[i] else None
            beam = options.get("beam_size", 1)
            settings = StreamSettings("pcm16", RATE, interim_results=True, beam_size=beam, bias=bias)
            data = encode_pcm16(audio)
            streamed, _ = run_stream(
                recognizer, settings, [data[j : j + MESSAGE] for j in range(0, len(data), MESSAGE)]
            )
            finals = [r for r in streamed if r.is_final]
            interims = [r for r in streamed if not r.is_final]
            final_text = " ".join(r.transcript.text for r in finals)
            final_chars += char_errors(references[i], final_text)
            final_words += word_errors(references[i], final_text)
            stable_chars += sum(len(r.stable_text) for r in interims)
            interim_text_chars += sum(len(r.transcript.text) for r in interims)
            for shown in interims_per_utterance(streamed):
                revised += sum(not b.transcript.text.startswith(a.transcript.text) for a, b in zip(shown, shown[1:]))
                pairs += max(len(shown) - 1, 0)
            broken += promises_broken(streamed)
            if letters[i]:
                for interim in interims:
                    interim_chars += char_errors(text_by(letters[i], interim.end_s), interim.transcript.text)
                interim_count += len(interims)
            if options.get("hints"):
                seen += hinted_in_interims(spoken[i], interims)
                found, wanted = recall(spoken[i], final_text)
                said, total = said + found, total + wanted
            if len(finals) == 1 and beam > 1:
                (final,) = finals
                span = audio[round(final.start_s * RATE) : round(final.end_s * RATE)]
                searched = round(interims[-1].transcript.duration_s / final.transcript.frame_shift_s) if interims else 0
                tail, whole = cut_timings(recognizer, twin, span, searched, beam_size=beam, bias=bias)
                tails.append(tail)
                wholes.append(whole)
        row: dict[str, Any] = {
            "interims": interim_count,
            "interim_cer": round(interim_chars.rate, 4),
            "stable_share": round(stable_chars / max(interim_text_chars, 1), 4),
            "revised_interims": round(revised / max(pairs, 1), 4),
            "broken_promises": broken,
            "final_cer": round(final_chars.rate, 4),
            "final_wer": round(final_words.rate, 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if options.get("hints"):
            row["hinted_words_in_interims"] = round(seen / max(total, 1), 4)
            row["hinted_words_in_finals"] = round(said / max(total, 1), 4)
        if tails:
            row["decoding_at_cut_ms"] = {"last_chunk": percentiles_ms(tails), "whole_utterance": percentiles_ms(wholes)}
        results["decoders"][name] = row
        print(f"  {name}: {row}", flush=True)
    write_report(args.out, results, threads=1)


def interims_per_utterance(results: list[StreamResult]) -> list[list[StreamResult]]:
    """The interims of each utterance of a stream, in order (each utterance ends with its final)."""
    groups: list[list[StreamResult]] = [[]]
    for result in results:
        if result.is_final:
            groups.append([])
        else:
            groups[-1].append(result)
    return [group for group in groups if group]


def promises_broken(results: list[StreamResult]) -> int:
    """Results of an utterance that do not start with the stable text of an interim before them."""
    broken, stable = 0, ""
    for result in results:
        broken += not result.transcript.text.startswith(stable)
        stable = "" if result.is_final else max(stable, result.stable_text, key=len)
    return broken


def hinted_in_interims(hinted: list[str], interims: list[StreamResult]) -> int:
    """Hinted words that some interim shows (per word, the most copies any one interim holds)."""
    wanted = Counter(hinted)
    best = Counter[str]()
    for interim in interims:
        best |= Counter(w for w in interim.transcript.text.split() if w in wanted)
    return sum(min(n, best[w]) for w, n in wanted.items())


if __name__ == "__main__":
    main()
