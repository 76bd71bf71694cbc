"""Real training runs on a small synthesized corpus: learning, checkpoints, kill -9 and resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from audiomodels.checkpoint import load_checkpoint
from audiomodels.config import ModelConfig
from audiomodels.labels import LabelSet
from audiomodels.lm import NgramLM
from audiomodels.recognizer import Recognizer, native_bfloat16
from service.cli import main as cli_main
from training.config import load_train_config
from training.corpus import synthesize_corpus
from training.average import average_checkpoints
from training.export import _soup_line, corpus_description
from training.soup import DEFAULT_TOLERANCE, Candidate, _why_the_start, best_candidate
from training.feature_pack import FeaturePackError
from training.manifest import read_manifest, read_manifests, spread_subset
from training.train import (
    STATE_FILE,
    TrainingRun,
    autocast_dtype,
    build_acoustic_config,
    build_label_set,
    can_start_from,
    feature_cache_dir,
    learning_rate_factor,
    run_manifests,
    run_train_utterances,
)

pytestmark = pytest.mark.slow
TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About three minutes of espeak-ng speech, split train/dev/test by text (and test by voice)."""
    out = tmp_path_factory.mktemp("corpus")
    counts = synthesize_corpus(out, hours=0.05, seed=1, workers=2, augment_probability=0.0, engines=["espeak-ng"])
    assert counts["train"] >= 30 and counts["dev"] >= 2
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 160-step run of the tiny config, made through the CLI as a user would."""
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    status = cli_main(["train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"),
                       "--dev", str(corpus / "dev.jsonl"), "--out", str(run_dir), "--no-progress",
                       "--set", "max_steps=160", "--set", "eval_every=80", "--set", "checkpoint_every=80",
                       "--set", "keep_checkpoints=1"])
    assert status == 0
    return run_dir


def test_training_lowers_dev_cer_and_writes_usable_checkpoints(trained_run: Path) -> None:
    run_dir = trained_run
    metrics = read_metrics(run_dir)
    dev = [m for m in metrics if "dev_cer" in m]
    assert [m["step"] for m in dev] == [0, 80, 160]
    assert dev[-1]["dev_cer"] < 0.8 * dev[0]["dev_cer"], dev  # held-out sentences: learning, not memorizing
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < 0.6 * losses[0]
    assert all(m["audio_hours_per_s"] > 0 and m["steps_per_s"] > 0 for m in metrics if "loss" in m)

    best = load_checkpoint(run_dir / "best.ckpt")
    assert best.metadata["metrics"]["dev_cer"] == min(m["dev_cer"] for m in dev[1:])
    assert best.metadata["train_config"]["max_steps"] == 160
    model = best.build_model()
    assert float(model.feature_std.min()) > 0 and float(model.feature_mean.abs().sum()) > 0  # stats were computed
    assert load_checkpoint(run_dir / "last.ckpt").metadata["step"] == 160
    transcript = Recognizer.from_checkpoint(run_dir / "best.ckpt").transcribe(torch.zeros(16000).numpy() + 1e-4, 16000)
    assert isinstance(transcript.text, str)
    assert (run_dir / "tensorboard").is_dir() and any((run_dir / "tensorboard").iterdir())


def test_run_config_records_the_models_derived_sizes(corpus: Path, tmp_path: Path) -> None:
    """A phone run's train_config.yaml says 74 outputs, not the char default: the sizes of the model it built."""
    argv = ["train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"), "--dev", str(corpus / "dev.jsonl"),
            "--out", str(tmp_path / "run"), "--no-progress", "--set", "labels=phone", "--set", "max_steps=2",
            "--set", "eval_every=2", "--set", "dev_max_utterances=2"]
    assert cli_main(argv) == 0
    saved = load_train_config(tmp_path / "run" / "train_config.yaml")
    model = load_checkpoint(tmp_path / "run" / "last.ckpt").config.model
    assert saved.model == model and model.num_labels == len(LabelSet.phone()) != ModelConfig().num_labels


def test_export_ships_best_checkpoint_with_scores_and_card(trained_run: Path, corpus: Path, tmp_path: Path) -> None:
    lm = tmp_path / "built.npz"
    assert cli_main(["lm", "--checkpoint", str(trained_run / "best.ckpt"), "--manifest", str(corpus / "train.jsonl"),
                     "--order", "4", "--out", str(lm)]) == 0
    status = cli_main(["export", "--run", str(trained_run), "--name", "tiny", "--dev", str(corpus / "dev.jsonl"),
                       "--test", str(corpus / "test.jsonl"), "--models-dir", str(tmp_path), "--lm", str(lm),
                       "--extra-test", f"again={corpus / 'dev.jsonl'}"])
    assert status == 0
    assert NgramLM.load(tmp_path / "tiny.lm.npz").order == 4  # shipped beside the model, used by its beam search
    shipped = load_checkpoint(tmp_path / "tiny.ckpt")
    evaluation = shipped.metadata["evaluation"]
    best_dev_cer = load_checkpoint(trained_run / "best.ckpt").metadata["metrics"]["dev_cer"]
    assert evaluation["dev"]["greedy"]["rates"]["cer"] == pytest.approx(best_dev_cer)  # same scorer as training
    assert 0 <= evaluation["test"]["beam8"]["rates"]["cer"] <= 1.5
    assert evaluation["data"]["train"]["utterances"] >= 30
    again = evaluation["test:again"]  # an extra test set: here the dev manifest, so its scores must equal dev's
    assert {d: v["rates"] for d, v in again.items()} == {d: v["rates"] for d, v in evaluation["dev"].items()}
    assert evaluation["data"]["test:again"]["utterances"] == len((corpus / "dev.jsonl").read_text().splitlines())
    for split, manifest in (("test", "test.jsonl"), ("test:again", "dev.jsonl")):  # each held-out speaker scored
        rows = [json.loads(line) for line in (corpus / manifest).read_text().splitlines()]
        speakers = evaluation["speakers"][split]
        counts = {name: entry["utterances"] for name, entry in speakers.items()}
        assert counts == dict(Counter(row["speaker"] for row in rows))
        assert all(set(entry["rates"]) == set(evaluation[split]) for entry in speakers.values())
        greedy = [entry["rates"]["greedy"]["cer"] for entry in speakers.values()]
        assert greedy == sorted(greedy, reverse=True)  # worst first
        assert min(greedy) <= evaluation[split]["greedy"]["rates"]["cer"] <= max(greedy)  # the mean sits among them
        ((condition, entry),) = evaluation["conditions"][split].items()  # synthesized clean: one condition, all of it
        assert condition == "clean" and entry["utterances"] == evaluation["data"][split]["utterances"]
        assert entry["rates"] == {decoder: summary["rates"] for decoder, summary in evaluation[split].items()}
    card = (tmp_path / "tiny.md").read_text()
    clean = evaluation["conditions"]["test"]["clean"]
    assert "Held-out test by condition" in card
    assert f"| test | clean | {clean['utterances']} | {clean['rates']['greedy']['cer']:.2%} |" in card
    worst, entry = next(iter(evaluation["speakers"]["test"].items()))
    assert f"| test | {worst} | {entry['utterances']} | {entry['rates']['greedy']['cer']:.2%} |" in card
    assert "| test | greedy |" in card and "| dev | beam8 |" in card and "| test | beam8 + LM |" in card
    assert "| test:again | beam8 + LM |" in card and "| test:again | beam32 + LM |" in card
    assert "; test:again = {" in card
    assert "order 4" in card and "manifest train.jsonl" in card and "word 3-gram over" in card


def test_kept_checkpoints_average_and_export(trained_run: Path, corpus: Path, tmp_path: Path) -> None:
    """``keep_checkpoints: 1`` leaves only the last evaluation's model; it averages with best.ckpt
    and ``export --checkpoint`` ships the average with its sources in the metadata."""
    kept = sorted((trained_run / "checkpoints").iterdir())
    assert [path.name for path in kept] == ["step-0000160.ckpt"]  # step 80's was removed
    last_dev = [m for m in read_metrics(trained_run) if "dev_cer" in m][-1]
    assert load_checkpoint(kept[0]).metadata["metrics"]["dev_cer"] == last_dev["dev_cer"]
    averaged = tmp_path / "avg.ckpt"
    assert cli_main(["average", str(trained_run / "best.ckpt"), str(kept[0]), "--out", str(averaged)]) == 0
    assert cli_main(["export", "--run", str(trained_run), "--checkpoint", str(averaged), "--name", "avg",
                     "--dev", str(corpus / "dev.jsonl"), "--test", str(corpus / "test.jsonl"),
                     "--models-dir", str(tmp_path / "models")]) == 0
    shipped = load_checkpoint(tmp_path / "models" / "avg.ckpt").metadata
    best_step = load_checkpoint(trained_run / "best.ckpt").metadata["step"]
    assert [source["step"] for source in shipped["averaged_from"]] == [best_step, 160]
    assert 0 <= shipped["evaluation"]["test"]["greedy"]["rates"]["cer"] <= 1.5
    card = (tmp_path / "models" / "avg.md").read_text()
    assert f"- weights: the mean of 2 checkpoints (`{trained_run / 'best.ckpt'}` (step {best_step}, share 0.5)" in card


def test_compare_reads_two_exports_scores_by_split_speaker_and_condition(
    trained_run: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's best and last models, exported, then compared as a user deciding what to ship would."""
    shipped = {}
    for name, checkpoint, extra in (("best", trained_run / "best.ckpt", []),
                                    ("last", trained_run / "last.ckpt", ["--extra-test", f"more={corpus / 'test.jsonl'}"])):
        assert cli_main(["export", "--run", str(trained_run), "--checkpoint", str(checkpoint), "--name", name,
                         "--dev", str(corpus / "dev.jsonl"), "--test", str(corpus / "test.jsonl"),
                         "--models-dir", str(tmp_path), *extra]) == 0
        shipped[name] = load_checkpoint(tmp_path / f"{name}.ckpt").metadata["evaluation"]
    capsys.readouterr()
    assert cli_main(["compare", str(tmp_path / "best.ckpt"), str(tmp_path / "last.ckpt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    changes = result["changes"]
    splits = [c for c in changes if not c["grouping"]]
    assert {(c["split"], c["decoder"], c["metric"]) for c in splits} == {
        (split, decoder, metric) for split in ("dev", "test") for decoder in ("greedy", "beam8") for metric in ("cer", "wer")
    }
    keys = {"speaker": "speakers", "condition": "conditions"}
    for c in changes:  # every row is the two cards' numbers: whole split, one speaker or one condition
        for side, name in (("before", "best"), ("after", "last")):
            evaluation = shipped[name]
            if c["grouping"]:
                expected = evaluation[keys[c["grouping"]]][c["split"]][c["group"]]["rates"][c["decoder"]][c["metric"]]
            else:
                expected = evaluation[c["split"]][c["decoder"]]["rates"][c["metric"]]
            assert c[side] == expected
    speakers = {c["group"] for c in changes if c["grouping"] == "speaker"}
    assert speakers == set(shipped["last"]["speakers"]["test"]) and speakers
    assert {c["group"] for c in changes if c["grouping"] == "condition"} == {"clean"}
    assert sum(result["counts"].values()) == len(changes)
    assert result["one_sided"] == {"before": [], "after": ["test:more"]}  # named, its rows not compared
    assert not any(c["split"] == "test:more" for c in changes)
    assert result["counts"]["gained"] == sum(c["delta"] < 0 and abs(c["delta"]) >= 5e-5 for c in changes)
    assert cli_main(["compare", str(tmp_path / "best.ckpt"), str(tmp_path / "best.ckpt")]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Splits: 0 gained, 0 lost, {len(splits)} level (of {len(splits)})")
    greedy = shipped["best"]["test"]["greedy"]["rates"]["cer"]
    assert f"| test | all | greedy | CER | {greedy:.2%} | {greedy:.2%} | +0.00 |" in text
    assert "Scored only" not in text
    assert cli_main(["compare", str(tmp_path / "last.ckpt"), str(tmp_path / "best.ckpt")]) == 0
    assert capsys.readouterr().out.endswith("\n\nScored only before (not compared): test:more\n")
    with pytest.raises(SystemExit, match=r"speechlabel compare: .*best\.ckpt carries no exported scores"):
        cli_main(["compare", str(trained_run / "best.ckpt"), str(tmp_path / "last.ckpt")])


def test_export_names_an_input_it_cannot_read_before_scoring(trained_run: Path, corpus: Path, tmp_path: Path) -> None:
    arguments = ["export", "--name", "x", "--dev", str(corpus / "dev.jsonl"), "--test", str(corpus / "test.jsonl"),
                 "--models-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"speechlabel export: checkpoint .*missing\.ckpt does not exist"):
        cli_main([*arguments, "--run", str(trained_run), "--checkpoint", str(tmp_path / "missing.ckpt")])
    shutil.copy(trained_run / "best.ckpt", tmp_path / "best.ckpt")  # a run directory without its run.json
    with pytest.raises(SystemExit, match=r"speechlabel export: .*run\.json"):
        cli_main([*arguments, "--run", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"speechlabel export: .*nope\.jsonl"):
        cli_main([*arguments, "--run", str(trained_run), "--extra-test", f"more={tmp_path / 'nope.jsonl'}"])
    assert not list(tmp_path.glob("x.*"))


@pytest.fixture(scope="module")
def streaming_round(trained_run: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-step fine-tuning round from the run's best model, every batch in the chunked mode."""
    run_dir = tmp_path_factory.mktemp("round") / "streaming"
    status = cli_main(["train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"),
                       "--dev", str(corpus / "dev.jsonl"), "--out", str(run_dir), "--no-progress",
                       "--set", f"init_from={trained_run / 'best.ckpt'}", "--set", "chunked_prob=1.0",
                       "--set", "optim.warmup_steps=10",
                       "--set", "max_steps=60", "--set", "eval_every=60", "--set", "checkpoint_every=60"])
    assert status == 0
    return run_dir


def test_streaming_fine_tune_starts_from_a_checkpoint_and_learns_the_chunked_mode(
    trained_run: Path, streaming_round: Path
) -> None:
    source = trained_run / "best.ckpt"
    metrics = read_metrics(streaming_round)
    dev = [m for m in metrics if "dev_cer" in m]
    assert dev[0]["dev_cer"] == load_checkpoint(source).metadata["metrics"]["dev_cer"]  # the source's weights
    assert "dev_streaming_cer" in dev[-1]  # a streaming run is scored as it will stream too
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < 0.9 * losses[0], losses  # every step chunked: the CTC loss of the chunked mode falls


def test_soup_picks_the_rounds_share_on_dev_and_records_every_candidate(
    trained_run: Path,
    streaming_round: Path,
    trained: tuple[Path, list[float]],
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run's best model and its chunked round mixed at three shares, greedy: every candidate
    scores what ``average`` + ``evaluate`` give the same mix, and the written weights are the best's."""
    start, round_, dev = trained_run / "best.ckpt", streaming_round / "last.ckpt", corpus / "dev.jsonl"
    start_weights = load_checkpoint(start).state_dict["input_projection.0.weight"]
    assert not torch.equal(start_weights, load_checkpoint(round_).state_dict["input_projection.0.weight"])
    out = tmp_path / "soup.ckpt"
    assert cli_main(["soup", str(start), str(round_), "--dev", str(dev), "--out", str(out),
                     "--shares", "0,1/2,1", "--beam-size", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["decoder"], record["metric"], record["dev"]) == ("greedy", "cer", str(dev))
    assert [candidate["share"] for candidate in record["candidates"]] == [0.0, 0.5, 1.0]
    for candidate, weights in zip(record["candidates"], ("1,0", "1,1", "0,1"), strict=True):
        mix = tmp_path / f"mix-{weights}.ckpt"
        assert cli_main(["average", str(start), str(round_), "--weights", weights, "--out", str(mix)]) == 0
        capsys.readouterr()
        assert cli_main(["evaluate", "--checkpoint", str(mix), "--manifest", str(dev), "--json"]) == 0
        assert candidate["rate"] == json.loads(capsys.readouterr().out)["rates"]["cer"], weights
    picked = min(record["candidates"], key=lambda candidate: candidate["rate"])
    assert record["picked_share"] == picked["share"]
    soup = load_checkpoint(out)
    expected = average_checkpoints([start, round_], [1 - picked["share"], picked["share"]])
    for name, tensor in expected.state_dict.items():
        torch.testing.assert_close(soup.state_dict[name], tensor, msg=name)
    assert soup.metadata["soup"] == record
    assert record["tolerance"] == DEFAULT_TOLERANCE
    assert all(c["by_dev"] == {str(dev): c["rate"]} for c in record["candidates"])
    halves = _halves(dev)
    assert cli_main(["soup", str(start), str(round_), "--dev", *map(str, halves), "--out", str(tmp_path / "2.ckpt"),
                     "--shares", "0,1", "--beam-size", "1", "--json"]) == 0
    split = json.loads(capsys.readouterr().out)  # dev in two manifests: pooled, the whole dev's rates; each its own
    assert split["dev"] == f"{halves[0]} + {halves[1]}"
    assert [c["rate"] for c in split["candidates"]] == [record["candidates"][0]["rate"], record["candidates"][-1]["rate"]]
    for candidate in split["candidates"]:
        assert list(candidate["by_dev"]) == [str(path) for path in halves]
        assert min(candidate["by_dev"].values()) <= candidate["rate"] <= max(candidate["by_dev"].values())
    assert f"**{picked['share']:.3g}: {picked['rate']:.3%}**" in _soup_line(soup.metadata)[0]
    assert _soup_line(soup.metadata)[0].endswith("losing over 0.05 points on a dev manifest to 0 is refused")
    card_line = _soup_line({"soup": split})[0]  # several dev manifests: each one's rate after the pooled one
    for candidate in split["candidates"]:
        each = " / ".join(f"{rate:.3%}" for rate in candidate["by_dev"].values())
        assert f"{candidate['share']:.3g}: {candidate['rate']:.3%} ({each})" in card_line

    refused = ["soup", str(start), str(round_), "--dev", str(dev), "--out", str(tmp_path / "x.ckpt")]
    with pytest.raises(SystemExit, match=r"within \[0, 1\]"):
        cli_main([*refused, "--shares", "0,1.5"])
    with pytest.raises(SystemExit):  # argparse: not a number
        cli_main([*refused, "--shares", "half"])
    with pytest.raises(SystemExit, match="not below 0"):
        cli_main([*refused, "--tolerance", "-0.1"])
    with pytest.raises(SystemExit, match="not one lineage"):  # a model of another run
        cli_main([*refused[:2], str(trained[0]), *refused[3:]])
    with pytest.raises(SystemExit, match=re.escape(f"given twice would count twice pooled: {dev}")):
        cli_main([*refused[:5], str(dev), *refused[5:]])
    assert not (tmp_path / "x.ckpt").exists()


def test_soup_refuses_a_share_that_loses_a_dev_manifest_to_the_start() -> None:
    """The seed-24 Kokoro round's rates (corpus dev, Kokoro dev): the round alone is best pooled but
    loses corpus dev, so is 2/3; the best of the rest is 1/2. Without share 0 there is no guard."""
    rates = {0.0: (7.964, 23.088), 1 / 3: (7.895, 17.897), 0.5: (7.920, 16.316), 2 / 3: (8.076, 14.801), 1.0: (8.180, 12.707)}
    candidates = [Candidate(share, (531 * a + 198 * b) / 72900, (a / 100, b / 100)) for share, (a, b) in rates.items()]
    assert best_candidate(candidates).share == 0.5
    assert best_candidate(candidates[1:]).share == 1.0
    assert best_candidate([Candidate(0.0, 9.0, (9.0,)), Candidate(1.0, 8.0, (8.0,))]).share == 1.0  # one dev: the best


def test_soup_tolerates_a_noise_sized_loss_and_says_why_the_start_alone_won() -> None:
    """The seed-25 round (step 350): every share beat the start pooled and lost corpus dev, a third of
    it by 0.019 points (6 characters), within the default tolerance (0.05 points); the rest by 0.2 or
    more. Without a tolerance share 0 is kept, and the printout must not claim the start scored best."""
    rates = {0.0: (7.948, 24.727), 1 / 3: (7.967, 20.180), 0.5: (8.167, 18.379), 2 / 3: (8.152, 16.342), 1.0: (8.365, 14.851)}
    candidates = [Candidate(share, (531 * a + 108 * b) / 63900, (a / 100, b / 100)) for share, (a, b) in rates.items()]
    assert best_candidate(candidates).share == 1 / 3
    assert best_candidate(candidates, tolerance=0.0).share == 0.0
    assert best_candidate(candidates, tolerance=0.0002).share == 1 / 3  # 0.019 < 0.02 points
    why = _why_the_start(candidates[0], candidates, 0.0)
    assert why == "every share that scored better pooled loses a dev manifest to the start alone by more than 0 points"
    level = [Candidate(0.0, 0.08, (0.08,)), Candidate(1.0, 0.09, (0.09,))]
    assert _why_the_start(level[0], level, 0.0005) == "the start alone scored best"


def test_fine_tuning_refuses_a_checkpoint_of_another_shape(trained_run: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not match"):
        cli_main(["train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"),
                  "--dev", str(corpus / "dev.jsonl"), "--out", str(tmp_path / "run"), "--no-progress",
                  "--set", f"init_from={trained_run / 'best.ckpt'}", "--set", "model.hidden_size=24"])


def test_fine_tuning_grows_a_checkpoint_by_a_residual_layer_that_starts_shut(
    trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    source = trained_run / "best.ckpt"
    run_dir = tmp_path / "grown"
    arguments = ["train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"), "--dev", str(corpus / "dev.jsonl"),
                 "--no-progress", "--set", "model.residual_layers=1"]
    assert cli_main([*arguments, "--out", str(run_dir), "--set", f"init_from={source}", "--set", "max_steps=20",
                     "--set", "eval_every=20", "--set", "checkpoint_every=20"]) == 0
    dev = [m for m in read_metrics(run_dir) if "dev_cer" in m]
    assert dev[0]["dev_cer"] == load_checkpoint(source).metadata["metrics"]["dev_cer"]  # exactly the source at first
    grown = load_checkpoint(run_dir / "last.ckpt")
    assert grown.config.model.stacked_layers == load_checkpoint(source).config.model.num_layers + 1
    assert grown.state_dict["residual_projections.0.weight"].abs().sum() > 0  # the new layer has started to count
    with pytest.raises(ValueError, match="does not match"):  # a deeper checkpoint cannot start a shallower run
        cli_main([*arguments[:-2], "--out", str(tmp_path / "shallow"), "--set", f"init_from={run_dir / 'last.ckpt'}"])


def test_kill_9_then_resume_finishes_the_run(corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "service.cli", "train", "--config", str(TINY), "--train", str(corpus / "train.jsonl"),
               "--dev", str(corpus / "dev.jsonl"), "--out", str(run_dir), "--no-progress",
               "--set", "max_steps=60", "--set", "checkpoint_every=10", "--set", "eval_every=1000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 1200  # generous: a loaded CI machine may start slowly
    while time.monotonic() < deadline and not _checkpointed_step(run_dir) >= 20:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _checkpointed_step(run_dir)
    assert 20 <= killed_at < 60

    resumed = subprocess.run([sys.executable, "-m", "service.cli", "train", "--resume", str(run_dir), "--no-progress"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _checkpointed_step(run_dir) == 60
    steps = [m["step"] for m in read_metrics(run_dir) if "loss" in m]
    assert steps[-1] == 60
    after_kill = [s for s in steps if s > killed_at]
    assert after_kill and after_kill == sorted(after_kill)  # continued from the checkpoint, not from step 0
    assert load_checkpoint(run_dir / "last.ckpt").metadata["step"] == 60


def _halves(manifest: Path) -> list[Path]:
    """The manifest split in two, beside the WAVs they name."""
    lines = manifest.read_text().splitlines(keepends=True)
    halves = [manifest.with_name(f"{manifest.stem}-first-half.jsonl"), manifest.with_name(f"{manifest.stem}-second-half.jsonl")]
    halves[0].write_text("".join(lines[: len(lines) // 2]))
    halves[1].write_text("".join(lines[len(lines) // 2 :]))
    return halves


def test_training_reads_several_manifests_as_one_and_resume_keeps_them(corpus: Path, tmp_path: Path) -> None:
    """Train and dev each from two manifests; the dev scores at step 0 are those of the whole dev split."""
    lines = (corpus / "train.jsonl").read_text().splitlines(keepends=True)
    halves, dev_halves = _halves(corpus / "train.jsonl"), _halves(corpus / "dev.jsonl")
    run_dir = tmp_path / "run"
    arguments = ["--no-progress", "--set", "eval_every=1000", "--set", "checkpoint_every=1"]
    assert cli_main(["train", "--config", str(TINY), "--train", *map(str, halves), "--dev", *map(str, dev_halves),
                     "--out", str(run_dir), "--set", "max_steps=1", *arguments]) == 0
    run_info = json.loads((run_dir / "run.json").read_text())
    assert (run_info["train"], run_info["dev"]) == ([str(path) for path in halves], [str(path) for path in dev_halves])
    assert run_manifests({"dev": str(corpus / "dev.jsonl")}, "dev") == [corpus / "dev.jsonl"]  # a run.json of before
    whole_dev = tmp_path / "whole-dev"
    assert cli_main(["train", "--config", str(TINY), "--train", *map(str, halves), "--dev", str(corpus / "dev.jsonl"),
                     "--out", str(whole_dev), "--set", "max_steps=1", *arguments]) == 0
    assert read_metrics(run_dir)[0] == read_metrics(whole_dev)[0]
    assert (run_dir / "data_report_train.txt").read_text().startswith(f"kept {len(lines)} of {len(lines)} utterances")
    (run_dir / "data_report_train.txt").unlink()
    assert cli_main(["train", "--resume", str(run_dir), "--set", "max_steps=2", *arguments]) == 0
    assert (run_dir / "data_report_train.txt").read_text().startswith(f"kept {len(lines)} of")
    assert load_checkpoint(run_dir / "last.ckpt").metadata["step"] == 2


def test_card_describes_an_oversampled_training_set_with_its_distinct_audio(corpus: Path) -> None:
    train = corpus / "train.jsonl"
    once = corpus_description(read_manifests([train]))
    twice = corpus_description(read_manifests([train, train]))
    assert "distinct_utterances" not in once
    assert twice["utterances"] == 2 * once["utterances"] == 2 * twice["distinct_utterances"]
    assert twice["distinct_hours"] == once["hours"] and twice["hours"] == pytest.approx(2 * once["hours"], abs=0.002)


def test_dev_scoring_stops_the_run_when_no_dev_utterance_can_be_read(corpus: Path, tmp_path: Path) -> None:
    originals = read_manifest(corpus / "dev.jsonl")
    dev = [replace(u, audio_filepath=tmp_path / u.audio_filepath.name) for u in originals]
    for original, copy in zip(originals, dev, strict=True):
        shutil.copy(original.audio_filepath, copy.audio_filepath)
    (tmp_path / "run").mkdir()
    run = TrainingRun(load_train_config(TINY), read_manifest(corpus / "train.jsonl"), dev, tmp_path / "run",
                      device=torch.device("cpu"), show_progress=False)
    for utterance in dev:  # gone after validation, e.g. a dev disk unmounted mid-run
        utterance.audio_filepath.unlink()
    with pytest.raises(RuntimeError, match="no dev utterance could be scored at step 0 .* does not exist"):
        run.evaluate_dev()
    assert not (tmp_path / "run" / "best.ckpt").exists()


def test_new_run_refuses_a_directory_that_holds_one(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "service.cli", "train", "--train", str(corpus / "train.jsonl"),
                             "--dev", str(corpus / "dev.jsonl"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "--resume" in result.stderr


def _checkpointed_step(run_dir: Path) -> int:
    try:
        return int(torch.load(run_dir / STATE_FILE, weights_only=True)["progress"]["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def test_learning_rate_warms_up_then_decays() -> None:
    config = load_train_config(None, ["max_steps=1000", "optim.warmup_steps=100", "optim.min_lr_ratio=0.1"])
    factors = [learning_rate_factor(step, config) for step in range(1000)]
    assert factors[0] == pytest.approx(0.01) and factors[99] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[99:], factors[100:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_feature_cache_is_the_runs_own_unless_one_is_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert feature_cache_dir(load_train_config(None), run) == run / "feature_cache"
    shared = load_train_config(None, [f"feature_cache={tmp_path / 'shared'}"])
    assert feature_cache_dir(shared, run) == tmp_path / "shared"
    assert feature_cache_dir(load_train_config(None, ["cache_features=false"]), run) is None


def test_config_overrides_and_unknown_keys() -> None:
    config = load_train_config(TINY, ["optim.lr=0.01", "model.hidden_size=32", "augment.speed_factors=[0.9, 1.1]"])
    assert config.optim.lr == 0.01 and config.model.hidden_size == 32 and config.augment.speed_factors == (0.9, 1.1)
    assert config.model.num_layers == 2  # from the file
    with pytest.raises(ValueError, match="unknown OptimConfig setting"):
        load_train_config(None, ["optim.learning_rate=1"])


@pytest.mark.parametrize("path", sorted(TINY.parent.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_loads(path: Path) -> None:
    """A misspelt or retired setting in a recipe fails here, not after a session's first hour."""
    config = load_train_config(path)
    assert config.max_steps > 0 and config.labels in {"char", "phone"}


def test_robust_recipe_restores_the_more_voices_augmentation_and_adds_the_feature_degradations() -> None:
    names = ("robust-finetune.yaml", "more-voices-finetune.yaml")
    robust, more_voices = (load_train_config(TINY.parent / name) for name in names)
    assert (robust.augment.speed_factors, robust.augment.speed_prob, robust.chunked_prob) == (
        more_voices.augment.speed_factors, more_voices.augment.speed_prob, more_voices.chunked_prob
    )
    assert min(robust.augment.noise_prob, robust.augment.reverb_prob, robust.augment.telephone_prob) > 0


@pytest.mark.parametrize("labels", ["char", "phone"])
def test_robust_recipe_starts_from_the_shipped_model(labels: str) -> None:
    """The recipe's header promises the next round of either shipped model; a shipped model deeper
    than the recipe would only be refused once a session had featurized its corpora."""
    config = load_train_config(TINY.parent / "robust-finetune.yaml", [f"labels={labels}"])
    shipped = load_checkpoint(TINY.parents[2] / "models" / f"{labels}.ckpt").config
    assert can_start_from(build_acoustic_config(config, build_label_set(labels)), shipped)


def test_number_settings_are_coerced_or_rejected_by_name() -> None:
    config = load_train_config(None, ["optim.lr=5e-4", "max_steps=1e3", "optim.grad_clip=1"])  # YAML: "5e-4" is a str
    assert config.optim.lr == 5e-4 and config.max_steps == 1000 and isinstance(config.max_steps, int)
    assert isinstance(config.optim.grad_clip, float)
    with pytest.raises(ValueError, match="OptimConfig.lr must be a number, got 'fast'"):
        load_train_config(None, ["optim.lr=fast"])
    with pytest.raises(ValueError, match="TrainConfig.max_steps must be a whole number"):
        load_train_config(None, ["max_steps=10.5"])
    with pytest.raises(ValueError, match="TrainConfig.eval_every must be a number, got True"):
        load_train_config(None, ["eval_every=yes"])


def test_mixed_precision_auto_follows_the_hardware_and_explicit_choices_win() -> None:
    cpu = torch.device("cpu")
    auto = load_train_config(None, [])
    assert autocast_dtype(auto, cpu) == (torch.bfloat16 if native_bfloat16(cpu) else None)
    assert autocast_dtype(load_train_config(None, ["amp=off"]), cpu) is None
    assert autocast_dtype(load_train_config(None, ["amp=bf16"]), cpu) == torch.bfloat16
    assert autocast_dtype(load_train_config(None, ["amp=fp16"]), cpu) == torch.float16
    with pytest.raises(ValueError, match="amp must be one of"):
        load_train_config(None, ["amp=bfloat16"])


def test_a_run_on_a_feature_pack_learns_resumes_and_describes_its_data(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`speechlabel pack` then `train --train-pack`: no audio is read for training, yet the run learns."""
    pack = tmp_path / "train.pack"
    assert cli_main(["pack", "--train", str(corpus / "train.jsonl"), "--out", str(pack)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    train = read_manifest(corpus / "train.jsonl")
    assert report["utterances"] == len(train) and report["bytes_per_audio_s"] < 4000  # WAV is 32,000
    run_dir = tmp_path / "run"
    assert cli_main(["train", "--config", str(TINY), "--train-pack", str(pack), "--dev", str(corpus / "dev.jsonl"),
                     "--out", str(run_dir), "--no-progress", "--set", "max_steps=160", "--set", "eval_every=80",
                     "--set", "checkpoint_every=80", "--set", "cache_features=true"]) == 0
    dev = [m for m in read_metrics(run_dir) if "dev_cer" in m]
    assert dev[-1]["dev_cer"] < 0.8 * dev[0]["dev_cer"], dev
    assert not (run_dir / "feature_cache").exists()  # the pack is the cache
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["train_pack"] == str(pack) and "train" not in run_info
    assert [u.text for u in run_train_utterances(run_info)] == [u.text for u in train]
    assert cli_main(["train", "--resume", str(run_dir), "--no-progress", "--set", "max_steps=170"]) == 0
    assert load_checkpoint(run_dir / "last.ckpt").metadata["step"] == 170
    with pytest.raises(FeaturePackError, match="speed_prob=0"):
        cli_main(["train", "--config", str(TINY), "--train-pack", str(pack), "--dev", str(corpus / "dev.jsonl"),
                  "--out", str(tmp_path / "speed"), "--no-progress", "--set", "augment.speed_prob=0.5"])


def test_gpu_round_fits_its_inputs_and_budget_and_ships_joinable_checkpoints(
    trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    """make gpu-inputs, then training/gpu_round.sh, here on the CPU with the tiny recipe and a 60 s budget
    (not timed: a loaded machine overruns the speed its first leg measured; `timeout` bounds the second)."""
    repo = Path(__file__).resolve().parent.parent
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "training.gpu_inputs", "--out", str(inputs), "--init",
                    str(trained_run / "best.ckpt"), "--dev", str(corpus / "dev.jsonl"), str(corpus / "test.jsonl"),
                    "--train", str(corpus / "train.jsonl"), "--budget-mb", "2", "--dev-utterances", "3"],
                   check=True, cwd=repo)
    summary = json.loads((inputs / "inputs.json").read_text())
    assert summary["megabytes"] <= 2 and summary["dev_utterances"] == 3
    devs = [read_manifest(corpus / name) for name in ("dev.jsonl", "test.jsonl")]
    picked = [u.text for u in read_manifest(inputs / "dev.jsonl")]
    assert picked == [u.text for u in spread_subset(devs[0] + devs[1], 3)]
    assert all(any(u.text in picked for u in dev) for dev in devs)  # both dev manifests keep a share
    assert summary["train_utterances"] == len(read_manifest(corpus / "train.jsonl"))  # 2 MB holds all of it
    init = load_checkpoint(inputs / "init.ckpt")
    assert init.state_dict["input_projection.0.weight"].dtype == torch.float16
    assert init.state_dict["feature_mean"].dtype == torch.float32  # normalization keeps its precision
    assert all(path.suffix == ".flac" for path in (inputs / "dev").iterdir())

    environment = {**os.environ, "PYTHON": sys.executable, "CONFIG": str(TINY), "RESERVE_S": "5",
                   "RUN_DIR": str(tmp_path / "run"), "PYTHONPATH": str(repo)}
    result = subprocess.run(["bash", "training/gpu_round.sh", str(inputs), str(out), "60", "--set", "keep_checkpoints=3"],
                            cwd=repo, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("best", "averaged"):
        parts = sorted(out.glob(f"{name}.ckpt.part*"))
        assert parts and all(part.stat().st_size <= 15 * 2**20 for part in parts)
        (tmp_path / f"{name}.ckpt").write_bytes(b"".join(part.read_bytes() for part in parts))
    averaged = load_checkpoint(tmp_path / "averaged.ckpt")
    steps = [source["step"] for source in averaged.metadata["averaged_from"]]
    # The last three kept checkpoints, or two where a loaded machine's timeout cut the second leg short
    # (the script's exit-124 path): either way that leg ran past the 40-step probe.
    assert 2 <= len(steps) <= 3 and steps[-1] > 40
    assert steps == sorted(set(steps))
    assert load_checkpoint(tmp_path / "best.ckpt").state_dict["input_projection.0.weight"].dtype == torch.float32
    assert [m["step"] for m in read_metrics(out) if "loss" in m][-1] == steps[-1]
