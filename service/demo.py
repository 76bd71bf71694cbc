"""``make demo``: speak a few sentences the shipped model never heard, in voices it never heard, and
transcribe them with the same code path as ``speechlabel transcribe``.

Sentences and voices come from the corpus's held-out test pools (seed 0, the seed of the shipped
models' corpus), so what the demo prints is a fair, if tiny, sample of generalization.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile as sf

from audiomodels.audio import prepare_waveform
from audiomodels.lm import lm_beside, own_fusion
from audiomodels.recognizer import Recognizer
from service.batch import LocalSettings, LocalTranscriber
from service.transcribe import DEFAULT_CHECKPOINT
from training.corpus import held_out_speakers, load_sentences, split_sentences
from training.metrics import ErrorCounts, char_errors
from training.voices import SynthParams, available_voices

CORPUS_SEED = 0
ENGINES_SHOWN = ("flite", "festival", "espeak-ng")


def synthesize_demo_audio(out_dir: Path, count: int) -> list[tuple[Path, str, str]]:
    """(wav path, reference text, voice name) for ``count`` held-out sentence/voice pairs."""
    voices = available_voices()
    held = held_out_speakers(voices, CORPUS_SEED)
    test_voices = [v for engine in ENGINES_SHOWN for v in voices if v.engine == engine and v.speaker in held]
    sentences = split_sentences(load_sentences(), CORPUS_SEED)["test"]
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        voice, sentence = test_voices[index * 7 % len(test_voices)], sentences[index * 11 % len(sentences)]
        audio = voice.synthesize([sentence.spoken], [SynthParams()])[0]
        path = out_dir / f"demo-{index}.wav"
        sf.write(path, prepare_waveform(audio, voice.sample_rate, target_rate=16000), 16000, subtype="PCM_16")
        items.append((path, sentence.text, voice.name))
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        print(f"no model at {args.checkpoint}; train one: see README 'Retraining'")
        return 1
    fusion = own_fusion(args.checkpoint)
    recognizer = Recognizer.from_checkpoint(args.checkpoint, fusion=fusion)
    items = synthesize_demo_audio(args.out, args.count)
    paths = [str(path) for path, _, _ in items]
    name = str(args.checkpoint)  # 4 files: decoded in this process
    greedy = list(LocalTranscriber(recognizer, name, LocalSettings(workers=0))(paths))
    beam = list(LocalTranscriber(recognizer, name, LocalSettings(beam_size=8, workers=0))(paths))
    (args.out / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in beam))
    totals = {"greedy": ErrorCounts(), "beam": ErrorCounts()}
    beam_name = f"beam 8 + {lm_beside(args.checkpoint).name}" if fusion else "beam 8"
    for (path, reference, voice), fast, best in zip(items, greedy, beam, strict=True):
        print(f"\n{path.name}  voice {voice}  ({best['duration_s']:.1f} s)")
        print(f"  reference : {reference}")
        for name, record in (("greedy", fast), ("beam", best)):
            errors = char_errors(reference, record["text"] or "")
            totals[name] += errors
            print(f"  {name:10s}: {record['text']}   (CER {errors.rate:.1%})")
        print("  words     : " + " ".join(f"{w['word']}[{w['start_s']:.2f}-{w['end_s']:.2f}]" for w in best["words"]))
    print(
        f"\noverall CER on {len(items)} held-out sentences and voices: greedy {totals['greedy'].rate:.1%}, "
        f"{beam_name} {totals['beam'].rate:.1%}; JSON lines ({beam_name}) in {args.out}/transcripts.jsonl"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
