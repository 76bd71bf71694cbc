"""Training step speed on this machine: fp32 vs bf16 autocast, full-context and chunked (streaming) steps.

Usage: python benchmarks/train_step.py [--config training/configs/char.yaml] [--threads 1] [--steps 4]
       [--out benchmarks/results/train_step.json]

One step = forward, CTC loss, backward, gradient clipping and an AdamW update of the config's model
on a batch that fills its ``batch_frames`` budget with utterances of 2-8 s (random features: the
cost of a step does not depend on the values). Reports seconds per step, steps/s and hours of audio
per second of training, and the relative loss difference of bf16 against fp32 on the same batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from audiomodels.config import Chunking
from audiomodels.model import AcousticModel
from audiomodels.recognizer import native_bfloat16
from training.config import TrainConfig, load_train_config
from training.data import Batch
from training.train import build_acoustic_config, build_label_set, compute_loss

from report import cpu_model, write_report  # beside this script in benchmarks/


def synthetic_batch(config: TrainConfig, num_labels: int, generator: torch.Generator) -> Batch:
    """Utterances of 2-8 s until the frame budget is full; about one label per 2.5 model frames."""
    frame_s = config.features.frame_shift_s
    lengths: list[int] = []
    while sum(lengths) < config.batch_frames:
        lengths.append(int(torch.randint(round(2 / frame_s), round(8 / frame_s), (1,), generator=generator)))
    feature_lengths = torch.tensor(lengths)
    target_lengths = (feature_lengths * 2) // 5
    features = torch.randn(len(lengths), max(lengths), config.features.model_input_dim, generator=generator)
    targets = torch.randint(1, num_labels, (len(lengths), int(target_lengths.max())), generator=generator)
    return Batch(features, feature_lengths, targets, target_lengths)


def time_steps(
    config: TrainConfig, batch: Batch, dtype: torch.dtype | None, chunking: Chunking | None, steps: int
) -> tuple[list[float], float]:
    """Seconds of each step after one warm-up step, and the first step's loss."""
    torch.manual_seed(0)
    labels = build_label_set(config.labels)
    model = AcousticModel(build_acoustic_config(config, labels).model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    times, first_loss = [], 0.0
    for index in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = compute_loss(model, batch, chunking)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        if index == 0:
            first_loss = float(loss.detach())
        else:
            times.append(time.perf_counter() - start)
    return times, first_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("training/configs/char.yaml"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the configs use 1 per run)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = load_train_config(args.config, [])
    batch = synthetic_batch(config, len(build_label_set(config.labels)), torch.Generator().manual_seed(0))
    audio_h = float(batch.feature_lengths.sum()) * config.features.frame_shift_s / 3600
    print(f"{cpu_model()}, {args.threads} thread(s), native bf16: {native_bfloat16()}")
    print(f"batch: {len(batch.feature_lengths)} utterances, {audio_h * 60:.1f} min of audio ({args.config.name})")
    columns = ("s/step", "steps/s", "audio h/s", "speed-up", "loss vs fp32")
    print(f"{'mode':12s} {'precision':9s} " + " ".join(f"{name:>{width}s}" for name, width in zip(columns, (7, 8, 9, 8, 12))))
    rows = []
    for mode, chunking in (("full", None), ("chunked", config.model.streaming)):
        reference: dict[str, float] = {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            times, loss = time_steps(config, batch, dtype, chunking, args.steps)
            seconds = statistics.median(times)
            reference.setdefault("seconds", seconds)
            reference.setdefault("loss", loss)
            row = {
                "mode": mode, "precision": name, "seconds_per_step": round(seconds, 3),
                "steps_per_s": round(1 / seconds, 3), "audio_hours_per_s": round(audio_h / seconds, 4),
                "speedup_vs_fp32": round(reference["seconds"] / seconds, 2),
                "loss_relative_difference": round(abs(loss - reference["loss"]) / reference["loss"], 4),
            }
            rows.append(row)
            print(
                f"{mode:12s} {name:9s} {seconds:7.2f} {row['steps_per_s']:8.3f} {row['audio_hours_per_s']:9.4f} "
                f"{row['speedup_vs_fp32']:7.2f}x {row['loss_relative_difference']:12.4f}"
            )
    write_report(args.out, {
        "threads": args.threads,
        "native_bfloat16": native_bfloat16(), "config": str(args.config), "audio_hours_per_batch": round(audio_h, 4),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
