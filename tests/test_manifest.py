"""Manifests: round trip, errors, validation, LibriSpeech/Common Voice importers and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomodels.audio import load_audio
from audiomodels.labels import LabelSet
from training.manifest import (
    EMPTY_TEXT,
    MISSING_FILE,
    TOO_SHORT,
    UNKNOWN_SYMBOLS,
    UNREADABLE_AUDIO,
    ManifestError,
    Utterance,
    import_common_voice,
    import_librispeech,
    main,
    min_ctc_frames,
    read_manifest,
    spread_subset,
    validate_manifest,
    write_manifest,
)

FRAMES_PER_SECOND = 1 / 0.03  # default FeatureConfig: 10 ms hop x 3 stacked


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, **kwargs: object) -> Path:
    """A short real audio file (noisy tone) in whatever container the suffix names."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    noise = np.random.default_rng(0).normal(0, 0.01, t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32), sample_rate, **kwargs)
    return path


def test_round_trip_with_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    utterances = [
        Utterance(corpus / "wav" / "a.wav", 1.25, "hello world", "h ə l oʊ | w ɜː l d", {"voice": "en", "speed": 1.1}),
        Utterance(corpus / "wav" / "b.wav", 0.5, "open the door"),
    ]
    manifest = corpus / "train.jsonl"
    write_manifest(manifest, utterances, relative_to=corpus)

    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert [r["audio_filepath"] for r in records] == ["wav/a.wav", "wav/b.wav"]
    assert "phones" not in records[1]
    monkeypatch.chdir(tmp_path)  # resolution must not depend on the working directory
    assert read_manifest(manifest) == utterances


def test_absolute_paths_without_relative_to(tmp_path: Path) -> None:
    utterance = Utterance(tmp_path / "a.wav", 1.0, "hi")
    write_manifest(tmp_path / "m.jsonl", [utterance])
    assert json.loads((tmp_path / "m.jsonl").read_text())["audio_filepath"] == str(tmp_path / "a.wav")
    assert read_manifest(tmp_path / "m.jsonl") == [utterance]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"audio_filepath": "a.wav", "duration": 1.0', "Expecting"),
        ('{"audio_filepath": "a.wav"}', "duration"),
        ("[1, 2]", "JSON object"),
        ('{"audio_filepath": "a.wav", "duration": null, "text": ""}', ""),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    manifest = tmp_path / "m.jsonl"
    good = json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"})
    manifest.write_text(f"{good}\n\n{bad_line}\n{good}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:3: .*{message}"):
        read_manifest(manifest)


def test_failed_write_leaves_the_old_manifest_intact(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance(tmp_path / "a.wav", 1.0, "old")])
    before = manifest.read_bytes()
    unserializable = Utterance(tmp_path / "c.wav", 1.0, "x", extra={"bad": object()})
    broken = [Utterance(tmp_path / "b.wav", 1.0, "new"), unserializable]
    with pytest.raises(TypeError):
        write_manifest(manifest, broken)
    assert manifest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temp file left behind


def test_spread_subset_keeps_each_manifests_share_in_order() -> None:
    """Two dev manifests read as one (6 + 4 utterances), cut to 5: the second keeps its part."""
    utterances = [Utterance(Path(f"/{name}-{i}.wav"), 1.0, "a") for name, n in (("a", 6), ("b", 4)) for i in range(n)]
    picked = [u.audio_filepath.stem for u in spread_subset(utterances, 5)]
    assert picked == ["a-0", "a-2", "a-4", "b-0", "b-2"]
    assert spread_subset(utterances, 10) == utterances == spread_subset(utterances, 400)


def test_min_ctc_frames_counts_repeats() -> None:
    assert min_ctc_frames([]) == 0
    assert min_ctc_frames([1, 2, 3]) == 3
    assert min_ctc_frames([1, 1, 2, 2, 2]) == 8


@pytest.fixture
def fabricated(tmp_path: Path) -> dict[str, Utterance]:
    """One good utterance per kind of problem, plus two good ones."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    return {
        "good": Utterance(write_tone(tmp_path / "good.wav", 1.0), 1.0, "Hello, World!"),
        "good_flac": Utterance(write_tone(tmp_path / "good.flac", 0.6), 0.6, "don't stop"),
        MISSING_FILE: Utterance(tmp_path / "missing.wav", 1.0, "hello"),
        UNREADABLE_AUDIO: Utterance(corrupt, 1.0, "hello"),
        EMPTY_TEXT: Utterance(write_tone(tmp_path / "empty.wav", 1.0), 1.0, " ... "),
        UNKNOWN_SYMBOLS: Utterance(write_tone(tmp_path / "euro.wav", 1.0), 1.0, "only € left, € again"),
        # 0.1 s = 3 model frames, far too few for 26 characters
        TOO_SHORT: Utterance(write_tone(tmp_path / "tiny.wav", 0.1), 0.1, "a much too long transcript"),
    }


def test_validation_counts_each_problem_and_keeps_the_good(fabricated: dict[str, Utterance]) -> None:
    report = validate_manifest(list(fabricated.values()), LabelSet.char(), frames_per_second=FRAMES_PER_SECOND)

    assert report.kept == [fabricated["good"], fabricated["good_flac"]]
    kinds = [MISSING_FILE, UNREADABLE_AUDIO, EMPTY_TEXT, UNKNOWN_SYMBOLS, TOO_SHORT]
    assert report.problems == Counter({kind: 1 for kind in kinds})
    for kind in kinds:
        assert len(report.examples[kind]) == 1
        assert report.examples[kind][0].startswith(f"{fabricated[kind].audio_filepath}: ")
    assert report.unknown_symbols == Counter({"€": 2})

    summary = report.summary()
    assert "kept 2 of 7 utterances" in summary
    for kind in kinds:
        assert f"skipped 1: {kind}" in summary
    assert "'€' x2" in summary


def test_validation_without_audio_check_uses_manifest_duration(fabricated: dict[str, Utterance]) -> None:
    corrupt = fabricated[UNREADABLE_AUDIO]
    lying = Utterance(fabricated["good"].audio_filepath, 0.05, "hello world")  # header says 1 s
    labels = LabelSet.char()
    checked = validate_manifest([corrupt, lying], labels, frames_per_second=FRAMES_PER_SECOND)
    unchecked = validate_manifest([corrupt, lying], labels, frames_per_second=FRAMES_PER_SECOND, check_audio=False)
    assert checked.kept == [lying] and checked.problems == Counter({UNREADABLE_AUDIO: 1})
    assert unchecked.kept == [corrupt] and unchecked.problems == Counter({TOO_SHORT: 1})


def test_validation_of_phone_targets(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "a.wav", 1.0)
    good = Utterance(audio, 1.0, "hello world", phones="h ə l oʊ | w ɜː l d")
    no_phones = Utterance(audio, 1.0, "hello world")
    bad_phone = Utterance(audio, 1.0, "hello", phones="h ə l Q oʊ")
    report = validate_manifest(
        [good, no_phones, bad_phone], LabelSet.phone(), target_field="phones", frames_per_second=FRAMES_PER_SECOND
    )
    assert report.kept == [good]
    assert report.problems == Counter({EMPTY_TEXT: 1, UNKNOWN_SYMBOLS: 1})
    assert report.unknown_symbols == Counter({"Q": 1})


def make_librispeech(root: Path) -> dict[str, float]:
    """Two speakers in the LibriSpeech layout; returns utterance id -> duration."""
    durations = {"84-121123-0000": 1.0, "84-121123-0001": 1.5, "174-50561-0000": 1.75}
    texts = {
        "84-121123-0000": "GO DO YOU HEAR",
        "84-121123-0001": "BUT IN LESS THAN FIVE MINUTES",
        "174-50561-0000": "FORGOTTEN TOO THE NAME OF GILLIAN",
    }
    for utterance_id, seconds in durations.items():
        speaker, chapter, _ = utterance_id.split("-")
        chapter_dir = root / speaker / chapter
        write_tone(chapter_dir / f"{utterance_id}.flac", seconds)
        with (chapter_dir / f"{speaker}-{chapter}.trans.txt").open("a", encoding="utf-8") as file:
            file.write(f"{utterance_id} {texts[utterance_id]}\n")
    return durations


def test_import_librispeech(tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech" / "dev-clean"
    durations = make_librispeech(root)
    utterances = import_librispeech(root)

    assert [u.audio_filepath.relative_to(root).as_posix() for u in utterances] == [
        "174/50561/174-50561-0000.flac",
        "84/121123/84-121123-0000.flac",
        "84/121123/84-121123-0001.flac",
    ]
    assert [u.duration for u in utterances] == [durations[u.audio_filepath.stem] for u in utterances]
    assert utterances[1].text == "GO DO YOU HEAR"
    assert utterances[1].extra == {"speaker": "84", "chapter": "121123"}
    report = validate_manifest(utterances, LabelSet.char(), frames_per_second=FRAMES_PER_SECOND)
    assert report.kept == utterances


CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"


def make_common_voice(directory: Path, clips: Path) -> None:
    """A TSV with a FLAC clip, a real MP3 clip (the format Common Voice ships) and a corrupt one."""
    write_tone(clips / "common_voice_en_1.flac", 0.8)
    write_tone(clips / "common_voice_en_2.mp3", 1.2, format="MP3")
    (clips / "common_voice_en_3.mp3").write_bytes(b"ID3" + bytes(200))  # a tag and no audio
    rows = [
        CV_HEADER,
        'abc\tcommon_voice_en_1.flac\tHe said "hello" twice.\t2\t0\ttwenties\tfemale\t\ten\t',
        "def\tcommon_voice_en_2.mp3\tOpen the door.\t3\t1\t\t\t\ten\t",
        "ghi\tcommon_voice_en_3.mp3\tClose it.\t1\t0\t\t\t\ten\t",
    ]
    (directory / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_import_common_voice_reads_its_mp3_clips_and_reports_unreadable_ones(tmp_path: Path) -> None:
    make_common_voice(tmp_path, tmp_path / "clips")
    utterances = import_common_voice(tmp_path / "train.tsv")

    flac, mp3, corrupt = utterances
    assert flac.audio_filepath == tmp_path / "clips" / "common_voice_en_1.flac"
    assert flac.text == 'He said "hello" twice.'
    assert flac.duration == pytest.approx(0.8)
    assert flac.extra == {
        "client_id": "abc",
        "up_votes": "2",
        "down_votes": "0",
        "age": "twenties",
        "gender": "female",
        "locale": "en",
    }
    assert mp3.text == "Open the door." and mp3.duration == pytest.approx(1.2)
    assert load_audio(mp3.audio_filepath).shape == (round(1.2 * 16000),)
    assert corrupt.duration == 0.0
    report = validate_manifest(utterances, LabelSet.char(), frames_per_second=FRAMES_PER_SECOND)
    assert report.kept == [flac, mp3]
    assert report.problems == Counter({UNREADABLE_AUDIO: 1})


def test_import_common_voice_with_separate_clips_dir(tmp_path: Path) -> None:
    make_common_voice(tmp_path, tmp_path / "elsewhere")
    utterances = import_common_voice(tmp_path / "train.tsv", clips_dir=tmp_path / "elsewhere")
    assert utterances[0].audio_filepath == tmp_path / "elsewhere" / "common_voice_en_1.flac"
    assert utterances[0].duration == pytest.approx(0.8)


def test_cli_import_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "LibriSpeech"
    make_librispeech(root)
    out = tmp_path / "manifests" / "dev.jsonl"
    assert main(["import-librispeech", str(root), str(out)]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["audio_filepath"] == "../LibriSpeech/174/50561/174-50561-0000.flac"
    assert read_manifest(out) == import_librispeech(root)

    assert main(["validate", str(out), "--labels", "char"]) == 0
    assert "kept 3 of 3 utterances" in capsys.readouterr().out

    (root / "84/121123/84-121123-0001.flac").unlink()
    kept = tmp_path / "kept.jsonl"
    assert main(["validate", str(out), "--labels", "char", "--output", str(kept)]) == 1
    assert f"skipped 1: {MISSING_FILE}" in capsys.readouterr().out
    assert len(read_manifest(kept)) == 2


def test_cli_import_common_voice(tmp_path: Path) -> None:
    make_common_voice(tmp_path, tmp_path / "clips")
    out = tmp_path / "cv.jsonl"
    assert main(["import-common-voice", str(tmp_path / "train.tsv"), str(out)]) == 0
    assert read_manifest(out) == import_common_voice(tmp_path / "train.tsv")
