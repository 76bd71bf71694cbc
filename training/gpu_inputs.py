"""The inputs of ``training/gpu_round.sh`` in one folder that fits a transfer budget.

A GPU machine lent for minutes that can reach nothing takes a capped upload (the device tool's is
64 MiB with the code). This fills it: the starting checkpoint with its weights in float16 (half the
bytes; fine-tuning continues in float32 from them), a dev subset as FLAC (dev scoring runs the
product's Recognizer on audio), and a feature pack of as many training hours as the rest allows.

Usage:
    python -m training.gpu_inputs --out gpu --init models/char.ckpt \\
        --dev data/corpus/dev.jsonl [data/corpus-kokoro/dev.jsonl ...] \\
        --train data/corpus/train.jsonl ... [--budget-mb 60] [--dev-utterances 100] \\
        [--feature-cache runs/feature_cache] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import soundfile as sf
import torch

from audiomodels.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from audiomodels.files import atomic_write_text
from training.feature_pack import pack_manifests, write_pack
from training.manifest import Utterance, read_manifests, spread_subset, write_manifest

PACK_BYTES_PER_AUDIO_S = 2850  # 2,701 measured at 16 steps/std (benchmarks/results/feature_pack.json), plus a margin


def half_precision_copy(checkpoint: Checkpoint, source: Path, target: Path) -> None:
    """The checkpoint read from ``source`` with float16 weights; normalization statistics stay
    float32 (their means are large)."""
    model = checkpoint.build_model()
    for parameter in model.parameters():
        parameter.data = parameter.data.half()
    save_checkpoint(target, checkpoint.config, model, {"half_precision_copy_of": str(source)})


def flac_subset(manifests: list[Path], out_dir: Path, count: int) -> list[Utterance]:
    """``count`` utterances of the dev manifests read as one, as 16-bit FLAC under ``out_dir/dev/``:
    training's own dev subset rule (spread evenly), so each manifest keeps its share."""
    chosen = spread_subset(read_manifests(manifests), count)
    (out_dir / "dev").mkdir(parents=True, exist_ok=True)
    copies = []
    for index, utterance in enumerate(chosen):
        samples, rate = sf.read(utterance.audio_filepath, dtype="int16")
        target = out_dir / "dev" / f"{index:04d}.flac"
        sf.write(target, samples, rate, format="FLAC", subtype="PCM_16")
        copies.append(replace(utterance, audio_filepath=target))
    return copies


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, required=True, help="checkpoint the round starts from")
    parser.add_argument("--dev", type=Path, nargs="+", required=True, help="dev manifest(s) (with audio)")
    parser.add_argument("--train", type=Path, nargs="+", required=True, help="training manifest(s)")
    parser.add_argument("--budget-mb", type=float, default=60.0, help="the folder's size cap, in 10^6 bytes")
    parser.add_argument("--dev-utterances", type=int, default=100)
    parser.add_argument("--feature-cache", type=Path)
    parser.add_argument("--seed", type=int, default=1, help="seed of the training subset")
    args = parser.parse_args()

    init = load_checkpoint(args.init)
    half_precision_copy(init, args.init, args.out / "init.ckpt")
    dev = flac_subset(args.dev, args.out, args.dev_utterances)
    write_manifest(args.out / "dev.jsonl", dev, relative_to=args.out)
    hours = (args.budget_mb * 1e6 - folder_bytes(args.out)) / PACK_BYTES_PER_AUDIO_S / 3600
    pack, _ = pack_manifests(args.train, init.config.labels.kind, hours, args.seed, args.feature_cache)
    write_pack(args.out / "train.pack", pack)
    summary = {"train_hours": round(pack.hours, 2), "train_utterances": len(pack),
               "dev_utterances": len(dev), "megabytes": round(folder_bytes(args.out) / 1e6, 1)}
    atomic_write_text(args.out / "inputs.json", json.dumps(summary) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
