"""Where live streams get cut: the streaming endpointer on conversations at different speech
levels and in steady background noise.

Usage:
    python benchmarks/endpointing.py [--manifest data/corpus/test.jsonl] [--conversations 40]
        [--utterances 4] [--pauses 1.2 2.5] [--conditions S-20 S-50 S-20:N-40 ...]
        [--model models/char.ckpt | --no-model] [--out benchmarks/results/endpointing.json]

A conversation is ``--utterances`` clean held-out utterances (the manifest's un-augmented ones,
trimmed of their own edge silence), each after a pause drawn from ``--pauses`` seconds (longer
than the 0.8 s endpointing silence, so every pause should end an utterance). A condition
``S<dBFS>[:N<dBFS>]`` scales the speech to that level (RMS over the speech only) and adds noise
(``--noise-color``, pink by default) of the N level (RMS) over the whole stream; without N,
digital silence between utterances.

Scored from the endpointer's cuts (:class:`service.sessions.Endpointer`, fed block by block as a
stream session feeds it), with the server's rule (default stream settings: a noise floor, and a
threshold that holds lower inside an utterance) and the reference, a fixed threshold on the whole
band's RMS (``--reference-dbfs``, -45 dBFS: the server's first rule, no hold):
- ``endpointed``: utterances whose own pause holds a cut (the final comes in that pause);
- ``split``: cuts inside speech; ``merged``: pauses without a cut (the utterance's final waits for
  a later one); ``lost_speech``: the share of speech samples in no utterance (never recognized);
- ``final_delay_s``: from the end of an utterance's speech to its cut (median, p90);
- ``noise_only``: utterances that hold no speech (noise recognized as if it were some).

With a model, every conversation also runs through a stream session (:func:`service.sessions.run_stream`,
greedy, the server's path without the network) and its joined finals are scored against the joined
references (CER for char models, PER for phone models).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch

from audiomodels.audio import encode_pcm16, load_audio
from audiomodels.recognizer import Recognizer
from audiomodels.silence import BLOCK_S
from service.sessions import BlockSplitter, Cut, Endpointer, StreamSettings, run_stream
from training.augment import BACKGROUNDS, background, to_level
from training.manifest import Utterance, read_manifest
from training.metrics import ErrorCounts, char_errors

from report import write_report  # beside this script in benchmarks/

RATE = 16000
TRIM_TOP_DB = 40.0  # an utterance's edge silence: more than this below its loudest frame


@dataclass(frozen=True)
class Condition:
    speech_dbfs: float
    noise_dbfs: float | None  # None: digital silence between the utterances

    @property
    def name(self) -> str:
        return f"S{self.speech_dbfs:g}" + ("" if self.noise_dbfs is None else f":N{self.noise_dbfs:g}")


def parse_condition(text: str) -> Condition:
    """``S-20`` (speech at -20 dBFS in digital silence) or ``S-20:N-40`` (in pink noise at -40 dBFS)."""
    speech, _, noise = text.partition(":")
    if not speech.startswith("S") or (noise and not noise.startswith("N")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected S<dBFS> or S<dBFS>:N<dBFS>, e.g. S-20:N-40")
    return Condition(float(speech[1:]), float(noise[1:]) if noise else None)


@dataclass(frozen=True)
class Conversation:
    samples: np.ndarray  # float32 at RATE
    speech: list[tuple[int, int]]  # [start, end) of each utterance's speech, in samples
    references: list[str]


def trimmed_speech(utterance: Utterance) -> np.ndarray:
    audio = load_audio(utterance.audio_filepath, target_rate=RATE)
    trimmed, _ = librosa.effects.trim(audio, top_db=TRIM_TOP_DB)
    return trimmed.astype(np.float32)


def build_conversation(
    pieces: Sequence[tuple[np.ndarray, str]],
    pauses: Sequence[float],
    condition: Condition,
    rng: np.random.Generator,
    noise_color: str = "pink",
) -> Conversation:
    """Pause, utterance, pause, utterance, ..., pause; scaled and noised as the condition says."""
    parts, speech, position = [], [], 0
    for (audio, _), pause_s in zip(pieces, pauses[:-1], strict=True):
        position += round(pause_s * RATE)
        parts += [np.zeros(round(pause_s * RATE), np.float32), audio]
        speech.append((position, position + len(audio)))
        position += len(audio)
    parts.append(np.zeros(round(pauses[-1] * RATE), np.float32))
    samples = np.concatenate(parts)
    samples = to_level(samples, condition.speech_dbfs, measured_on=np.concatenate([audio for audio, _ in pieces]))
    if condition.noise_dbfs is not None:
        samples += 10 ** (condition.noise_dbfs / 20) * background(len(samples), noise_color, rng)
    return Conversation(np.clip(samples, -1.0, 1.0).astype(np.float32), speech, [text for _, text in pieces])


def endpointer_cuts(samples: np.ndarray, settings: StreamSettings) -> list[Cut]:
    """The cuts a stream session's endpointer makes on these samples (its blocks, its finish)."""
    block = round(BLOCK_S * settings.sample_rate)
    endpointer, splitter = Endpointer(settings, block), BlockSplitter(block)
    cuts = [cut for piece in splitter.push(samples) if (cut := endpointer.on_block(piece)) is not None]
    last = endpointer.finish(splitter.finish())
    return cuts + ([last] if last is not None else [])


def score_cuts(conversation: Conversation, cuts: Sequence[Cut]) -> dict[str, Any]:
    """Counts for one conversation (see the module docstring)."""
    speech = conversation.speech
    pause_ends = [start for start, _ in speech[1:]] + [len(conversation.samples) + 1]
    covered = np.zeros(len(conversation.samples), bool)
    for cut in cuts:
        covered[cut.start_sample : cut.end_sample] = True
    ends = [cut.end_sample for cut in cuts]
    delays = []
    for (_, end), pause_end in zip(speech, pause_ends, strict=True):
        in_pause = [e for e in ends if end <= e < pause_end]
        if in_pause:
            delays.append((in_pause[0] - end) / RATE)
    speech_samples = sum(end - start for start, end in speech)
    return {
        "utterances": len(speech),
        "cuts": len(cuts),
        "endpointed": len(delays),
        "merged": len(speech) - len(delays),
        "split": sum(any(start < e < end for start, end in speech) for e in ends),
        "noise_only": sum(
            not any(c.start_sample < end and start < c.end_sample for start, end in speech) for c in cuts
        ),
        "lost_speech_samples": speech_samples - sum(int(covered[start:end].sum()) for start, end in speech),
        "speech_samples": speech_samples,
        "delays": delays,
    }


def summarize(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    totals = {key: sum(s[key] for s in scores) for key in scores[0] if key != "delays"}
    delays = [d for s in scores for d in s["delays"]]
    return {
        **{key: value for key, value in totals.items() if not key.endswith("_samples")},
        "lost_speech": round(totals["lost_speech_samples"] / totals["speech_samples"], 4),
        "final_delay_s": {
            "median": round(float(np.median(delays)), 3) if delays else None,
            "p90": round(float(np.percentile(delays, 90)), 3) if delays else None,
        },
    }


def recognition_errors(recognizer: Recognizer, conversation: Conversation, settings: StreamSettings) -> ErrorCounts:
    """The joined finals of a streamed conversation against its joined references."""
    results, _ = run_stream(recognizer, settings, [encode_pcm16(conversation.samples)])
    hypothesis = " ".join(r.transcript.text for r in results if r.transcript.text)
    reference = " ".join(recognizer.labels.normalize(text) for text in conversation.references)
    return char_errors(reference, hypothesis)


def run(
    utterances: Sequence[Utterance],
    conditions: Sequence[Condition],
    args: argparse.Namespace,
    recognizer: Recognizer | None,
) -> dict[str, dict[str, Any]]:
    """{rule: {condition: summary}} for the server's rule and the fixed-threshold reference."""
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(utterances), size=(args.conversations, args.utterances), replace=False)
    layouts = [
        ([(trimmed_speech(utterances[i]), utterances[i].text) for i in row],
         rng.uniform(*args.pauses, size=args.utterances + 1))
        for row in picks
    ]  # fmt: skip
    if args.first_pause is not None:
        for _, pauses in layouts:
            pauses[0] = args.first_pause
    rules = {
        "noise floor": StreamSettings("pcm16", RATE),
        f"fixed {args.reference_dbfs:g} dBFS": StreamSettings(
            "pcm16", RATE, silence_dbfs=args.reference_dbfs, above_noise_db=-np.inf, speech_band_hz=None,
            speech_hold_db=0.0,
        ),
    }
    results: dict[str, dict[str, Any]] = {rule: {} for rule in rules}
    for condition in conditions:
        noise_rng = np.random.default_rng(args.seed + 1)
        conversations = [
            build_conversation(pieces, pauses, condition, noise_rng, args.noise_color) for pieces, pauses in layouts
        ]
        for rule, settings in rules.items():
            summary = summarize([score_cuts(c, endpointer_cuts(c.samples, settings)) for c in conversations])
            if recognizer is not None:
                counts = sum((recognition_errors(recognizer, c, settings) for c in conversations), ErrorCounts())
                summary["cer"] = round(counts.rate, 4)
            results[rule][condition.name] = summary
            print(rule, condition.name, summary, flush=True)
    return results


def print_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """One markdown row per condition, the reference rule's cells beside the server's (ref -> server)."""
    server, reference = results.values()
    print(f"\n{' -> '.join(reversed(results))}:")
    print("| condition | endpointed | merged | split | noise-only | lost speech | final delay median | CER |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in server.items():
        ref = reference[name]
        cells = [
            f"{ref['endpointed']} -> {r['endpointed']} of {r['utterances']}",
            *(f"{ref[key]} -> {r[key]}" for key in ("merged", "split", "noise_only")),
            f"{100 * ref['lost_speech']:.1f}% -> {100 * r['lost_speech']:.1f}%",
            f"{ref['final_delay_s']['median']} -> {r['final_delay_s']['median']} s",
            f"{100 * ref['cer']:.1f}% -> {100 * r['cer']:.1f}%" if "cer" in r else "-",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("data/corpus/test.jsonl"))
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=4, help="utterances per conversation")
    parser.add_argument("--pauses", type=float, nargs=2, default=[1.2, 2.5], metavar=("MIN", "MAX"))
    parser.add_argument("--first-pause", type=float, help="seconds before the first utterance (0: the stream "
                        "opens mid-speech); default: drawn as the others")  # fmt: skip
    default_conditions = ["S-20", "S-35", "S-50", "S-60", "S-20:N-60", "S-20:N-50", "S-20:N-45", "S-20:N-40",
                          "S-20:N-35", "S-20:N-30", "S-30:N-45"]  # fmt: skip
    parser.add_argument("--conditions", type=parse_condition, nargs="+",
                        default=[parse_condition(c) for c in default_conditions], help="S<speech dBFS>[:N<noise dBFS>]")  # fmt: skip
    parser.add_argument("--noise-color", choices=BACKGROUNDS, default="pink")
    parser.add_argument("--model", type=Path, default=Path("models/char.ckpt"))
    parser.add_argument("--no-model", action="store_true", help="score the cuts only")
    parser.add_argument("--reference-dbfs", type=float, default=-45.0,
                        help="the reference rule: a fixed threshold on the whole band, no noise floor (the server's rule before)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/endpointing.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clean = [u for u in read_manifest(args.manifest) if not u.extra.get("augment")]
    recognizer = None if args.no_model else Recognizer.from_checkpoint(args.model)
    if recognizer is not None and recognizer.labels.kind != "char":
        parser.error(f"{args.model} is a {recognizer.labels.kind} model; the references are text, score a char model")
    results = run(clean, args.conditions, args, recognizer)
    print_table(results)
    report = {
        "manifest": str(args.manifest),
        "conversations": args.conversations,
        "utterances_per_conversation": args.utterances,
        "pauses_s": args.pauses,
        "noise_color": args.noise_color,
        "first_pause_s": args.first_pause,
        "model": None if recognizer is None else str(args.model),
        "results": results,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
