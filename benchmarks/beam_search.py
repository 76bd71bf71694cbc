"""How fast the CTC searches are, beside a C++ beam search: greedy decoding, our prefix beam search
(pure Python) with and without the LM shipped beside the model, and flashlight's lexicon-free beam
search (C++, through torchaudio's ``ctc_decoder``) at the same beams, without an LM and with ours.

Usage:
    python benchmarks/beam_search.py [--checkpoints models/char.ckpt models/phone.ckpt]
        [--manifest data/corpus/test.jsonl] [--limit 100] [--beam-sizes 8 32] [--threads 1]
        [--out benchmarks/results/beam_search.json]

Each utterance's log-probs are computed once, up front; the rows time the searches alone over the
same matrices: decode seconds per audio second (the search's real-time factor), per-utterance
latency percentiles, and the error rate of what each found (scored as ``speechlabel evaluate``
scores). The flashlight rows need the ``bench`` extra (flashlight-text). With an LM they score
hypotheses exactly as ours do: its LM callback returns our fusion's gain per label (weights and
bonuses included, LM weight 1 in flashlight), so the rows differ in the search, not the scores;
flashlight sums merged paths too (``log_add``) and keeps at most ``beam`` labels per frame, as
ours does, but prunes by a score threshold (25) where ours drops labels under 1e-4.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from audiomodels.lm import Fusion, own_fusion
from audiomodels.recognizer import Recognizer
from training.evaluate import scored_utterance, scorers_for
from training.manifest import read_manifest
from training.metrics import ErrorCounts

from report import write_report  # beside this script in benchmarks/

Decoder = Callable[[torch.Tensor], list[int]]  # one utterance's log-probs (T, V) -> label ids
FLASHLIGHT_THRESHOLD = 25.0


def our_decoders(recognizer: Recognizer, beam_sizes: list[int]) -> dict[str, Decoder]:
    """Greedy and our beam search at each size, without and (when the model has one) with its LM."""
    plain = Recognizer(recognizer.config, recognizer.model)

    def searched(source: Recognizer, beam: int) -> Decoder:
        def decode(log_probs: torch.Tensor) -> list[int]:
            search = source.search(beam)
            search.advance(log_probs)
            return search.hypotheses(1)[0]

        return decode

    decoders: dict[str, Decoder] = {"greedy": searched(plain, 1)}
    for beam in beam_sizes:
        decoders[f"beam {beam}"] = searched(plain, beam)
        if recognizer.fusion is not None:
            decoders[f"beam {beam} + LM"] = searched(recognizer, beam)
    return decoders


def flashlight_decoders(recognizer: Recognizer, beam_sizes: list[int]) -> dict[str, Decoder]:
    """flashlight's lexicon-free search at each size, without an LM and with our fusion; none
    when flashlight-text is not installed."""
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError):  # torchaudio raises RuntimeError without flashlight-text
        print("flashlight-text is not installed (pip install -e '.[bench]'): its rows are left out")
        return {}
    labels = recognizer.labels
    symbols = list(labels.symbols)
    separator = labels.word_separator_id()
    options = {
        "lexicon": None, "tokens": symbols, "blank_token": symbols[labels.blank_id],
        "sil_token": symbols[separator if separator is not None else labels.blank_id],
        "beam_threshold": FLASHLIGHT_THRESHOLD, "log_add": True,
    }  # fmt: skip

    def searched(beam: int, fusion: Fusion | None) -> Decoder:
        lm = fusion_lm(fusion) if fusion is not None else None
        decoder = ctc_decoder(**options, beam_size=beam, beam_size_token=beam, lm=lm, lm_weight=1.0)

        def decode(log_probs: torch.Tensor) -> list[int]:
            best = decoder(log_probs.float().unsqueeze(0).contiguous())[0][0]
            return [label for label in best.tokens.tolist() if label != labels.blank_id]

        return decode

    decoders = {}
    for beam in beam_sizes:
        decoders[f"flashlight beam {beam}"] = searched(beam, None)
        if recognizer.fusion is not None:
            decoders[f"flashlight beam {beam} + LM"] = searched(beam, recognizer.fusion)
    return decoders


def fusion_lm(fusion: Fusion) -> Any:
    """Our :class:`Fusion` as a flashlight LM: each state remembers our state, and scoring a label
    returns what our search adds for it."""
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    class FusionLM(CTCDecoderLM):
        def __init__(self) -> None:
            super().__init__()
            self.states: dict[Any, tuple[Any, float]] = {}  # flashlight's state -> (ours, what reaching it gained)

        def start(self, start_with_nothing: bool) -> Any:
            state = CTCDecoderLMState()
            self.states = {state: (fusion.initial_state(), 0.0)}
            return state

        def score(self, state: Any, label: int) -> tuple[Any, float]:
            child = state.child(label)
            if child not in self.states:
                gained, ours = fusion.extend(self.states[state][0], label)
                self.states[child] = ours, gained
            return child, self.states[child][1]

        def finish(self, state: Any) -> tuple[Any, float]:
            return state, fusion.finish(self.states[state][0])

    return FusionLM()


def measure(recognizer: Recognizer, manifest: Path, limit: int, beam_sizes: list[int]) -> dict[str, Any]:
    """{"audio_seconds", "utterances", "decoders": {name: timing and error rates}} for one model."""
    utterances = read_manifest(manifest)[:limit]
    loaded = [scored_utterance(recognizer, utterance) for utterance in utterances]
    outputs = recognizer.decodable_batch([(audio, recognizer.sample_rate) for _, audio in loaded], check=False)
    matrices = [output.log_probs for output in outputs]  # as evaluate decodes them (silence skipped, level set)
    audio_seconds = sum(len(audio) for _, audio in loaded) / recognizer.sample_rate
    scorers = scorers_for(recognizer.labels)
    decoders = {**our_decoders(recognizer, beam_sizes), **flashlight_decoders(recognizer, beam_sizes)}
    rows: dict[str, Any] = {}
    for name, decode in decoders.items():
        latencies, totals = [], dict.fromkeys(scorers, ErrorCounts())
        for (reference, _), log_probs in zip(loaded, matrices, strict=True):
            start = time.perf_counter()
            label_ids = decode(log_probs)
            latencies.append(time.perf_counter() - start)
            hypothesis = recognizer.labels.decode(label_ids)
            totals = {metric: totals[metric] + score(reference, hypothesis) for metric, score in scorers.items()}
        rows[name] = {
            "real_time_factor": sum(latencies) / audio_seconds,
            "latency_ms": {f"p{q}": 1000 * percentile(latencies, q) for q in (50, 95, 99)},
            "rates": {metric: counts.rate for metric, counts in totals.items()},
        }
        print_row(name, rows[name])
    return {"audio_seconds": audio_seconds, "utterances": len(loaded), "decoders": rows}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_row(name: str, row: dict[str, Any]) -> None:
    rates = " ".join(f"{metric.upper()} {100 * rate:.2f}%" for metric, rate in row["rates"].items())
    latency = row["latency_ms"]
    print(
        f"  {name:<26} RTF {row['real_time_factor']:.4f}  p50 {latency['p50']:7.1f} ms  "
        f"p95 {latency['p95']:7.1f} ms  {rates}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", default=[Path("models/char.ckpt"), Path("models/phone.ckpt")])
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--limit", type=int, default=100, help="utterances of the manifest to decode (default 100)")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model passes (default 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/beam_search.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for checkpoint in args.checkpoints:
        recognizer = Recognizer.from_checkpoint(checkpoint, fusion=own_fusion(checkpoint))
        print(f"{checkpoint} ({recognizer.labels.kind}), {args.manifest}, first {args.limit} utterances:")
        results[str(checkpoint)] = measure(recognizer, args.manifest, args.limit, args.beam_sizes)
    write_report(args.out, {"manifest": str(args.manifest), "beam_sizes": args.beam_sizes, "models": results})


if __name__ == "__main__":
    main()
