"""The training loop: manifests in, checkpoints and metrics out, resumable after any interruption.

Read top to bottom: build the run (labels, data, model, optimizer), then ``train_steps`` loops over
length-bucketed batches computing the CTC loss; every ``checkpoint_every`` steps the whole run state
is saved atomically (so kill -9 loses at most that many steps), every ``eval_every`` steps the dev set
is scored with the shared Recognizer/evaluate path and the best model is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from audiomodels.checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from audiomodels.config import AcousticConfig, Chunking
from audiomodels.features import Featurizer
from audiomodels.labels import LabelSet
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer, native_bfloat16
from training.config import TrainConfig, load_train_config, train_config_to_dict
from training.data import Batch, FrameBudgetBatchSampler, SpeechDataset, collate, compute_feature_stats
from training.evaluate import evaluate, primary_metric
from training.feature_pack import FeaturePack, read_pack
from training.manifest import Utterance, read_manifests, spread_subset, validate_manifest

STATE_FILE = "last_state.pt"
CONFIG_FILE = "train_config.yaml"
KEPT_DIR = "checkpoints"
LOG_EVERY = 10


def build_label_set(spec: str) -> LabelSet:
    """``char``, ``phone`` or a custom label file path."""
    if spec == "char":
        return LabelSet.char()
    if spec == "phone":
        return LabelSet.phone()
    return LabelSet.from_file(spec)


def build_acoustic_config(config: TrainConfig, labels: LabelSet) -> AcousticConfig:
    """The checkpoint config; model input/output sizes are derived so they can never disagree."""
    model = config.model.__class__(
        **{**config.model.__dict__, "input_dim": config.features.model_input_dim, "num_labels": len(labels)}
    )
    return AcousticConfig(features=config.features, labels=labels.to_config(), model=model)


def can_start_from(mine: AcousticConfig, theirs: AcousticConfig) -> bool:
    """Whether a run of config ``mine`` can take ``theirs``'s weights: same labels, features and layer
    sizes, and no more residual layers (a run grows a shallower model; it cannot drop layers)."""
    return (
        (mine.labels, mine.features) == (theirs.labels, theirs.features)
        and all(
            getattr(mine.model, name) == getattr(theirs.model, name)
            for name in ("input_dim", "num_labels", "proj_dim", "hidden_size", "num_layers")
        )
        and theirs.model.residual_layers <= mine.model.residual_layers
    )


def compute_loss(model: AcousticModel, batch: Batch, chunking: Chunking | None = None) -> torch.Tensor:
    """Mean per-utterance CTC loss, normalized by target length (as torch's 'mean' reduction)."""
    log_probs, out_lengths = model(batch.features, batch.feature_lengths, chunking)  # (N, T, V)
    return torch.nn.functional.ctc_loss(
        log_probs.float().transpose(0, 1),  # (T, N, V) in fp32 even under autocast
        batch.targets,
        out_lengths,
        batch.target_lengths,
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )


def training_chunking(step: int, config: TrainConfig) -> Chunking | None:
    """The mode of one step: full context, or chunked with a random (C, R) from the config.

    Drawn from a generator seeded by (seed, step), so a resumed run repeats the same choices.
    """
    rng = random.Random(config.seed * 1_000_003 + step)
    if rng.random() >= config.chunked_prob:
        return None
    return Chunking(rng.choice(config.chunk_sizes), rng.choice(config.right_contexts))


def feature_cache_dir(config: TrainConfig, run_dir: Path) -> Path | None:
    """Where a run caches features: ``feature_cache`` when set, else RUN_DIR/feature_cache; None when off."""
    if not config.cache_features:
        return None
    return Path(config.feature_cache) if config.feature_cache else run_dir / "feature_cache"


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    warmup = max(config.optim.warmup_steps, 1)
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(config.max_steps - warmup, 1), 1.0)
    floor = config.optim.min_lr_ratio
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The forward pass's mixed precision; ``auto`` = bf16 where the hardware has it natively.

    That includes CPUs with AVX512-BF16 or AMX, where a 3x256 BiGRU step measured 1.4-1.9x faster
    (``benchmarks/train_step.py``); elsewhere bf16 is emulated and slower, so fp32. Weights, the
    optimizer and the CTC loss stay fp32 either way.
    """
    if config.amp == "off" or (config.amp == "auto" and not native_bfloat16(device)):
        return None
    return torch.float16 if config.amp == "fp16" else torch.bfloat16


@dataclass
class Progress:
    """Counters that a resumed run continues from."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of the current epoch already trained on
    best_metric: float = math.inf


class TrainingRun:
    """Owns the model, optimizer, data and bookkeeping of one run directory."""

    def __init__(
        self,
        config: TrainConfig,
        train_utterances: list[Utterance],
        dev_utterances: list[Utterance],
        run_dir: Path,
        *,
        device: torch.device,
        show_progress: bool = True,
        pack: FeaturePack | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.device = device
        self.show_progress = show_progress
        self.labels = build_label_set(config.labels)
        self.acoustic_config = build_acoustic_config(config, self.labels)
        self.featurizer = Featurizer(config.features)
        # A pack's utterances were validated when packed, and their audio need not be here.
        self.train_utterances = train_utterances if pack is not None else self._validated(train_utterances, "train")
        self.dev_utterances = spread_subset(self._validated(dev_utterances, "dev"), config.dev_max_utterances)
        torch.manual_seed(config.seed)
        self.model = AcousticModel(self.acoustic_config.model).to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, config)
        )
        self.dataset = SpeechDataset(
            self.train_utterances,
            self.featurizer,
            self.labels,
            target_field=config.target_field,
            augment=config.augment,
            cache_dir=None if pack is not None else feature_cache_dir(config, run_dir),
            pack=pack,
            seed=config.seed,
        )
        self.sampler = FrameBudgetBatchSampler(
            [self.dataset.num_frames(i) for i in range(len(self.dataset))], config.batch_frames, seed=config.seed
        )
        self.progress = Progress()
        self.autocast = autocast_dtype(config, device)
        self.metrics_path = run_dir / "metrics.jsonl"
        self.tensorboard = _tensorboard_writer(run_dir / "tensorboard")

    def _validated(self, utterances: list[Utterance], split: str) -> list[Utterance]:
        frames_per_second = 1.0 / self.config.features.frame_shift_s
        report = validate_manifest(
            utterances, self.labels, target_field=self.config.target_field, frames_per_second=frames_per_second
        )
        (self.run_dir / f"data_report_{split}.txt").write_text(report.summary() + "\n")
        if not report.kept:
            raise ValueError(f"no usable {split} utterances:\n{report.summary()}")
        if report.problems:
            tqdm.write(f"{split} manifest: {report.summary()}")
        return report.kept

    def initialize_weights(self) -> None:
        """A fresh run: weights and normalization from ``init_from``, or statistics of the training data."""
        if self.config.init_from:
            self.load_initial_checkpoint(Path(self.config.init_from))
        else:
            self.initialize_normalization()

    def load_initial_checkpoint(self, path: Path) -> None:
        """Fine-tuning start: the checkpoint must have this run's labels and layer sizes, or fewer
        residual layers (the run grows it: the new layers start as the identity, see ``model.py``)."""
        checkpoint = load_checkpoint(path)
        mine, theirs = self.acoustic_config, checkpoint.config
        if not can_start_from(mine, theirs):
            raise ValueError(f"{path} does not match this run's labels, features or model size; cannot start from it")
        missing, unexpected = self.model.load_state_dict(checkpoint.state_dict, strict=False)
        grown = range(theirs.model.stacked_layers, mine.model.stacked_layers)
        new_names = tuple(f"layers.{i}." for i in grown) + tuple(
            f"residual_projections.{i - mine.model.num_layers}." for i in grown
        )
        if unexpected or any(not name.startswith(new_names) for name in missing):
            raise ValueError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")
        if grown:
            tqdm.write(f"grown from {theirs.model.stacked_layers} to {mine.model.stacked_layers} layers")

    def initialize_normalization(self) -> None:
        """Global MFCC statistics over (a subset of) the training data, stored in the model."""
        mean, std = compute_feature_stats(self.dataset, max_utterances=self.config.stats_max_utterances)
        self.model.set_normalization(mean.to(self.device), std.to(self.device))

    # --- persistence ------------------------------------------------------------------------
    def save_state(self) -> None:
        """Everything needed to continue exactly here; one atomic file plus the loadable model."""
        state = {
            "progress": self.progress.__dict__,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": list(random.getstate()[1]),
        }
        atomic_torch_save(state, self.run_dir / STATE_FILE)
        self.save_model("last.ckpt")

    def load_state(self) -> None:
        state = torch.load(self.run_dir / STATE_FILE, map_location=self.device, weights_only=True)
        self.progress = Progress(**state["progress"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        random.setstate((3, tuple(state["python_rng"]), None))

    def save_model(self, name: str, metrics: dict[str, Any] | None = None) -> None:
        metadata = {
            "step": self.progress.step,
            "train_config": train_config_to_dict(self.config),
            "train_utterances": len(self.train_utterances),
            "train_hours": round(sum(u.duration for u in self.train_utterances) / 3600, 3),
            "metrics": metrics or {},
        }
        save_checkpoint(self.run_dir / name, self.acoustic_config, self.model, metadata)

    def keep_checkpoint(self, scores: dict[str, float]) -> None:
        """This evaluation's model as ``checkpoints/step-N.ckpt``; older ones beyond ``keep_checkpoints`` go."""
        kept = self.run_dir / KEPT_DIR
        kept.mkdir(exist_ok=True)
        self.save_model(f"{KEPT_DIR}/step-{self.progress.step:07d}.ckpt", scores)
        for old in sorted(kept.glob("step-*.ckpt"))[: -self.config.keep_checkpoints]:
            old.unlink()

    def log(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, record["step"])
            self.tensorboard.flush()

    # --- the loop ---------------------------------------------------------------------------
    def batches(self) -> Iterator[Batch]:
        """Endless batches across epochs, resuming mid-epoch where the saved progress says."""
        while True:
            self.dataset.set_epoch(self.progress.epoch)
            self.sampler.load_state_dict(
                {"epoch": self.progress.epoch, "batches_yielded": self.progress.batches_in_epoch}
            )
            loader = DataLoader(
                self.dataset,
                batch_sampler=self.sampler,
                collate_fn=collate,
                num_workers=self.config.num_workers,
                persistent_workers=False,
            )
            for batch in loader:
                self.progress.batches_in_epoch += 1
                yield batch
            self.progress.epoch += 1
            self.progress.batches_in_epoch = 0

    def train_step(self, batch: Batch) -> float:
        self.model.train()
        batch = batch.to(self.device)
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            loss = compute_loss(self.model, batch, training_chunking(self.progress.step, self.config))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def evaluate_dev(self) -> dict[str, float]:
        """Dev scores with the same Recognizer/decoder the product serves with."""
        modes = {"dev": None}
        if self.config.chunked_prob > 0:  # a streaming-trained model is scored as it will stream too
            modes["dev_streaming"] = self.acoustic_config.model.streaming
        scores = {}
        for prefix, chunking in modes.items():
            recognizer = Recognizer(self.acoustic_config, self.model, device=self.device, chunking=chunking)
            result = evaluate(recognizer, self.dev_utterances)
            if not result.num_scored:  # rates of nothing would read as a perfect "best"
                first = result.per_utterance[0]
                raise RuntimeError(
                    f"no dev utterance could be scored at step {self.progress.step} "
                    f"(first: {first['audio']}: {first['error']}); fix the dev set, then --resume"
                )
            scores.update({f"{prefix}_{name}": value for name, value in result.summary()["rates"].items()})
        self.model.train()
        return scores

    def primary_metric(self, scores: dict[str, float]) -> float:
        return scores[f"dev_{primary_metric(self.labels.kind)}"]

    def run(self) -> dict[str, float]:
        """Train to ``max_steps``; returns the final dev scores."""
        config, progress = self.config, self.progress
        bar = tqdm(total=config.max_steps, initial=progress.step, disable=not self.show_progress, unit="step")
        window_start, window_steps, window_audio_s, window_loss = time.monotonic(), 0, 0.0, 0.0
        batches = self.batches()
        scores: dict[str, float] = {}
        if progress.step == 0:  # the untrained score, so every curve in metrics.jsonl has its start
            self.log({"step": 0, **self.evaluate_dev()})
        while progress.step < config.max_steps:
            batch = next(batches)
            loss = self.train_step(batch)
            progress.step += 1
            window_steps += 1
            window_loss += loss
            window_audio_s += float(batch.feature_lengths.sum()) * config.features.frame_shift_s
            bar.update(1)
            if progress.step % LOG_EVERY == 0 or progress.step == config.max_steps:
                elapsed = max(time.monotonic() - window_start, 1e-9)
                record = {
                    "step": progress.step,
                    "epoch": progress.epoch,
                    "loss": round(window_loss / window_steps, 4),
                    "lr": self.scheduler.get_last_lr()[0],
                    "steps_per_s": round(window_steps / elapsed, 3),
                    "audio_hours_per_s": round(window_audio_s / 3600 / elapsed, 5),
                }
                bar.set_postfix(loss=record["loss"], steps_s=record["steps_per_s"], audio_h_s=record["audio_hours_per_s"])
                self.log(record)
                window_start, window_steps, window_audio_s, window_loss = time.monotonic(), 0, 0.0, 0.0
            if progress.step % config.eval_every == 0 or progress.step == config.max_steps:
                scores = self.evaluate_dev()
                self.log({"step": progress.step, **scores})
                bar.write(f"step {progress.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
                if self.primary_metric(scores) < progress.best_metric:
                    progress.best_metric = self.primary_metric(scores)
                    self.save_model("best.ckpt", scores)
                if config.keep_checkpoints:
                    self.keep_checkpoint(scores)
            if progress.step % config.checkpoint_every == 0 or progress.step == config.max_steps:
                self.save_state()
        bar.close()
        return scores or self.evaluate_dev()


def _tensorboard_writer(directory: Path) -> Any:
    """A SummaryWriter when the tensorboard package is installed, else None (metrics.jsonl always)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))


def train(
    config: TrainConfig,
    train_manifests: Sequence[Path],
    dev_manifests: Sequence[Path],
    run_dir: Path,
    *,
    resume: bool = False,
    device: str | None = None,
    show_progress: bool = True,
    train_pack: Path | None = None,
) -> dict[str, float]:
    """Start (or resume) a run in ``run_dir`` and train it to ``config.max_steps``.

    With ``train_pack`` the training data is that feature pack, and ``train_manifests`` is unused.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    pack = read_pack(train_pack) if train_pack is not None else None
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    chosen_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = TrainingRun(
        config,
        pack.utterances if pack is not None else read_manifests(train_manifests),
        read_manifests(dev_manifests),
        run_dir,
        device=chosen_device,
        show_progress=show_progress,
        pack=pack,
    )
    if resume and (run_dir / STATE_FILE).exists():
        run.load_state()
    else:
        run.initialize_weights()
    resolved = replace(config, model=run.acoustic_config.model)  # the sizes the model really has, not defaults
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(train_config_to_dict(resolved), sort_keys=False))
    return run.run()


def run_train_utterances(run_info: dict[str, Any]) -> list[Utterance]:
    """What a run's run.json says it trained on: its feature pack's utterances, or its manifests'."""
    if "train_pack" in run_info:
        return read_pack(run_info["train_pack"]).utterances
    return read_manifests(run_manifests(run_info, "train"))


def run_manifests(run_info: dict[str, Any], role: str) -> list[Path]:
    """The ``train`` or ``dev`` manifests a run's run.json names (runs from before several manifests
    per role name one as a string; a run on a feature pack names no train manifest)."""
    named = run_info.get(role, [])
    return [Path(path) for path in ([named] if isinstance(named, str) else named)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML training config (see training/configs/)")
    parser.add_argument("--train", type=Path, nargs="+", help="training manifest(s) (JSONL), trained on as one")
    parser.add_argument("--train-pack", type=Path, help="train on a feature pack (speechlabel pack) instead of --train")
    parser.add_argument(
        "--dev", type=Path, nargs="+", help="dev manifest(s) (JSONL), scored as one: e.g. each corpus's dev split"
    )
    parser.add_argument("--out", type=Path, help="run directory (checkpoints, metrics, TensorBoard)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-3")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def run(args: argparse.Namespace) -> int:
    """CLI: a new run needs --train/--dev/--out; --resume RUN_DIR reuses that run's saved config and data."""
    if args.resume is not None:
        run_dir = args.resume
        saved = json.loads((run_dir / "run.json").read_text())
        config = load_train_config(run_dir / CONFIG_FILE, args.set)
        train_manifests, dev_manifests = run_manifests(saved, "train"), run_manifests(saved, "dev")
        train_pack = Path(saved["train_pack"]) if "train_pack" in saved else None
    else:
        if not ((args.train or args.train_pack) and args.dev and args.out) or (args.train and args.train_pack):
            raise SystemExit(
                "speechlabel train: --train (or --train-pack), --dev and --out are required (or --resume RUN_DIR)"
            )
        run_dir, dev_manifests = args.out, [path.resolve() for path in args.dev]
        train_manifests = [path.resolve() for path in args.train or []]
        train_pack = args.train_pack.resolve() if args.train_pack else None
        if (run_dir / STATE_FILE).exists():
            raise SystemExit(f"speechlabel train: {run_dir} already holds a run; continue it with --resume {run_dir}")
        config = load_train_config(args.config, args.set)
        run_dir.mkdir(parents=True, exist_ok=True)
        source = {"train_pack": str(train_pack)} if train_pack else {"train": [str(path) for path in train_manifests]}
        run_info = {**source, "dev": [str(path) for path in dev_manifests]}
        (run_dir / "run.json").write_text(json.dumps(run_info))
    try:
        scores = train(
            config, train_manifests, dev_manifests, run_dir,
            resume=args.resume is not None, device=args.device, show_progress=not args.no_progress,
            train_pack=train_pack,
        )
    except KeyboardInterrupt:
        print(f"interrupted; resume with: speechlabel train --resume {run_dir}")
        return 130
    print(json.dumps({"run_dir": str(run_dir), **scores}))
    return 0
