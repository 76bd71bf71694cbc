"""evaluate(): tiny random-init checkpoints on espeak-ng speech plus broken files, and the CLI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from audiomodels.checkpoint import save_checkpoint
from audiomodels.config import AcousticConfig, FeatureConfig, ModelConfig
from audiomodels.labels import LabelSet
from audiomodels.model import AcousticModel
from audiomodels.recognizer import Recognizer
from training.evaluate import EvaluationResult, add_arguments, breakdown, evaluate, run
from training.export import grouped_scores
from training.manifest import Utterance, write_manifest
from training.metrics import ErrorCounts, char_errors, word_errors

FEATURES = FeatureConfig(n_mfcc=13, stack=2)
PHONES = {"hello world": "h ə l oʊ | w ɜː l d", "open the door": "oʊ p ə n | ð ə | d ɔːɹ"}


def save_tiny_model(path: Path, labels: LabelSet) -> Path:
    """A random-init model small enough to run in milliseconds; its transcripts are noise."""
    torch.manual_seed(0)
    config = AcousticConfig(
        features=FEATURES,
        labels=labels.to_config(),
        model=ModelConfig(
            input_dim=FEATURES.model_input_dim, num_labels=len(labels), proj_dim=16, hidden_size=16, num_layers=1
        ),
    )
    save_checkpoint(path, config, AcousticModel(config.model), metadata={"note": "test"})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "char.ckpt", LabelSet.char())


@pytest.fixture(scope="module")
def utterances(speech_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    """Three real utterances around a missing file and a corrupt one (order is kept in the rows)."""
    corrupt = tmp_path_factory.mktemp("bad") / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    texts = list(speech_files)[:3]
    return [
        Utterance(speech_files[texts[0]], 1.0, "Hello, World!", phones=PHONES.get(texts[0])),
        Utterance(corrupt.parent / "missing.wav", 2.0, "gone"),
        Utterance(speech_files[texts[1]], 1.5, texts[1].upper()),
        Utterance(corrupt, 0.5, "broken"),
        Utterance(speech_files[texts[2]], 1.2, texts[2], phones=PHONES.get(texts[2])),
    ]


def counts_of(record: dict) -> ErrorCounts:
    return ErrorCounts(*(record[k] for k in ("substitutions", "insertions", "deletions", "reference_length")))


def check_consistent(result: EvaluationResult, utterances: list[Utterance]) -> list[dict]:
    """Rows follow the input; their counts add up to the totals; failures carry an error. Returns scored rows."""
    assert result.num_utterances == len(result.per_utterance) == len(utterances)
    assert [row["audio"] for row in result.per_utterance] == [str(u.audio_filepath) for u in utterances]
    scored = [row for row in result.per_utterance if "error" not in row]
    assert result.num_failed == len(utterances) - len(scored)
    for name, total in result.metrics.items():
        assert sum((counts_of(row[name]) for row in scored), ErrorCounts()) == total
    assert result.audio_seconds == pytest.approx(sum(row["duration"] for row in scored), abs=0.01)
    assert result.wall_seconds > 0 and result.real_time_factor > 0
    json.dumps(result.summary())
    return scored


def test_char_model_scores_good_files_and_reports_bad_ones(checkpoint: Path, utterances: list[Utterance]) -> None:
    result = evaluate(Recognizer.from_checkpoint(checkpoint), utterances)

    scored = check_consistent(result, utterances)
    assert result.kind == "char" and result.per is None
    assert set(result.summary()["rates"]) == {"cer", "wer"}
    assert len(scored) == 3 and result.num_failed == 2
    assert "does not exist" in result.per_utterance[1]["error"]
    assert "corrupt" in result.per_utterance[3]["error"]
    assert scored[0]["reference"] == "hello world"  # normalized by the label set
    for row in scored:
        assert row["cer"]["errors"] == char_errors(row["reference"], row["hypothesis"]).errors
        assert row["wer"]["errors"] == word_errors(row["reference"], row["hypothesis"]).errors


def test_beam_search_and_one_utterance_batches(checkpoint: Path, utterances: list[Utterance]) -> None:
    result = evaluate(Recognizer.from_checkpoint(checkpoint), utterances, beam_size=4, batch_seconds=0.1)
    assert len(check_consistent(result, utterances)) == 3


def test_phone_model_scores_phones_and_fails_rows_without_them(
    tmp_path: Path, utterances: list[Utterance]
) -> None:
    recognizer = Recognizer.from_checkpoint(save_tiny_model(tmp_path / "phone.ckpt", LabelSet.phone()))
    result = evaluate(recognizer, utterances)

    scored = check_consistent(result, utterances)
    assert result.kind == "phone" and result.cer is None and result.wer is None
    assert set(result.summary()["rates"]) == {"per"}
    assert [row["reference"] for row in scored] == list(PHONES.values())
    assert "'phones'" in result.per_utterance[2]["error"]
    assert result.per is not None and result.per.reference_length == 8 + 8  # "|" not counted


def test_custom_model_counts_label_tokens_and_separated_words(tmp_path: Path, speech_files: dict[str, Path]) -> None:
    labels = LabelSet("custom", ("<blank>", "|", "a", "bb"), "|")
    recognizer = Recognizer.from_checkpoint(save_tiny_model(tmp_path / "custom.ckpt", labels))
    utterances = [Utterance(path, 1.0, "a  bb | a |") for path in speech_files.values()]
    result = evaluate(recognizer, utterances)

    check_consistent(result, utterances)
    assert result.cer is not None and result.cer.reference_length == 5 * len(utterances)
    assert result.wer is not None and result.wer.reference_length == 2 * len(utterances)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_writes_rows_and_json_summary(
    checkpoint: Path, utterances: list[Utterance], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "data" / "dev.jsonl"
    write_manifest(manifest, utterances, relative_to=manifest.parent)
    out = tmp_path / "results" / "rows.jsonl"
    argv = ["--checkpoint", str(checkpoint), "--manifest", str(manifest), "--out", str(out)]

    assert run(parse([*argv, "--json", "--beam-size", "2"])) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary["num_utterances"] == 5 and summary["num_failed"] == 2
    assert sum(row["cer"]["errors"] for row in rows if "error" not in row) == summary["counts"]["cer"]["errors"]

    assert run(parse(argv)) == 0
    text = capsys.readouterr().out
    assert "3 of 5 utterances scored" in text and "CER" in text and "missing.wav" in text


def test_cli_fails_when_no_utterance_could_be_scored(
    checkpoint: Path, utterances: list[Utterance], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.jsonl"
    write_manifest(manifest, [utterances[1], utterances[3]], relative_to=tmp_path)  # missing + corrupt
    assert run(parse(["--checkpoint", str(checkpoint), "--manifest", str(manifest)])) == 1
    captured = capsys.readouterr()
    assert "0 of 2 utterances scored" in captured.out and "CER" not in captured.out
    assert "missing.wav" in captured.out and "no utterance of" in captured.err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run(parse(["--checkpoint", str(checkpoint), "--manifest", str(empty)])) == 1


def test_cli_reports_a_bad_checkpoint_without_a_traceback(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    with pytest.raises(SystemExit, match="speechlabel evaluate: checkpoint .* does not exist"):
        run(parse(["--checkpoint", str(tmp_path / "none.ckpt"), "--manifest", str(manifest)]))


def test_breakdown_scores_each_speaker_from_its_own_rows(
    checkpoint: Path, utterances: list[Utterance], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    speakers = ["ann", "bob", "ann", "bob", "cid"]  # bob has the missing and the corrupt file
    tagged = [replace(u, extra={"speaker": s}) for u, s in zip(utterances, speakers, strict=True)]
    result = evaluate(Recognizer.from_checkpoint(checkpoint), tagged)
    groups = breakdown(result, tagged, ["speaker"])
    assert set(groups) == {"ann", "bob", "cid"}
    assert [groups[s]["utterances"] for s in ("ann", "bob", "cid")] == [2, 2, 1]
    assert [groups[s]["failed"] for s in ("ann", "bob", "cid")] == [0, 2, 0]
    for speaker, group in groups.items():
        rows = [row for row, s in zip(result.per_utterance, speakers, strict=True) if s == speaker]
        rows = [row for row in rows if "error" not in row]
        for name in ("cer", "wer"):
            assert group["rates"][name] == sum((counts_of(row[name]) for row in rows), ErrorCounts()).rate
    rates = [group["rates"]["cer"] for group in groups.values()]
    assert rates == sorted(rates, reverse=True)  # worst first
    assert breakdown(result, tagged, ["accent"]).keys() == {"?"}  # a field no utterance has
    chains = [[], [{"kind": "noise", "snr_db": 9.0}], [], [{"kind": "reverb"}, {"kind": "telephone"}], []]
    augmented = [replace(u, extra={"augment": chain}) for u, chain in zip(utterances, chains, strict=True)]
    by_chain = breakdown(result, augmented, ["augment"])  # the corpus's augmentation steps, by kind
    assert {name: group["utterances"] for name, group in by_chain.items()} == {"none": 3, "noise": 1, "reverb+telephone": 1}
    both = [replace(u, extra={**t.extra, **a.extra}) for u, t, a in zip(utterances, tagged, augmented, strict=True)]
    by_pair = breakdown(result, both, ["speaker", "augment"])  # each speaker's chains apart
    assert {name: group["utterances"] for name, group in by_pair.items()} == {
        "ann / none": 2, "bob / noise": 1, "bob / reverb+telephone": 1, "cid / none": 1
    }
    assert by_pair["ann / none"]["rates"] == groups["ann"]["rates"]  # the same rows, the same counts
    voices = ["espeak-ng:en-us+m7", "flite:slt", "espeak-ng:en-gb+f5", "flite:slt", "piper"]
    steps = [[{"kind": "speed"}], [{"kind": "noise"}, {"kind": "gain"}], [], chains[3], [{"kind": "gain"}]]
    corpus = [replace(u, extra={"voice": v, "augment": c}) for u, v, c in zip(utterances, voices, steps, strict=True)]
    derived = breakdown(result, corpus, ["engine", "condition"])  # speed and gain leave audio clean
    assert {name: group["utterances"] for name, group in derived.items()} == {
        "espeak-ng / clean": 2, "flite / noise": 1, "flite / reverb+telephone": 1, "piper / clean": 1
    }
    assert derived["espeak-ng / clean"]["rates"] == breakdown(result, tagged, ["speaker"])["ann"]["rates"]
    assert breakdown(result, tagged, ["engine", "condition"]).keys() == {"? / ?"}  # no voice, no augment
    labelled = [replace(u, extra={"engine": "mine"}) for u in utterances]
    assert breakdown(result, labelled, ["engine"]).keys() == {"mine"}  # a manifest field wins
    scored = {"test": {"greedy": result}, "test:plain": {"greedy": result}}
    by_condition = grouped_scores(scored, {"test": corpus, "test:plain": tagged}, "condition")
    assert list(by_condition) == ["test"]  # a card leaves out a split whose manifest has no augment field
    assert by_condition["test"]["noise"]["rates"]["greedy"] == derived["flite / noise"]["rates"]  # one flite utterance

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, tagged, relative_to=tmp_path)
    argv = ["--checkpoint", str(checkpoint), "--manifest", str(manifest), "--by", "speaker"]
    assert run(parse([*argv, "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["by"]["speaker"] == groups
    assert run(parse(argv)) == 0
    text = capsys.readouterr().out
    assert "by speaker:" in text and "(2 failed)" in text and text.count(" utt  CER") == 3
    write_manifest(manifest, both, relative_to=tmp_path)
    assert run(parse([*argv[:-1], "speaker,augment", "--json"])) == 0
    assert json.loads(capsys.readouterr().out)["by"]["speaker,augment"] == by_pair
