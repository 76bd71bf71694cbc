"""The batch job (``speechlabel transcribe``): inputs, cutting and stitching, outputs, resume after kill -9,
sharding, server mode. Everything runs on real espeak-ng speech and the tiny checkpoint from conftest.py."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from praatio import textgrid

from audiomodels.audio import load_audio, prepare_waveform
from audiomodels.recognizer import Recognizer
from service import segmenter
from service.batch import LOCK_FILE, RESULTS_FILE, DecodedFile, _groups
from service.cli import main as cli_main
from service.inputs import InputError, expand_inputs, output_stem, shard_inputs
from service.registry import ModelRegistry
from tests.grpc_harness import LoopbackServer
from tests.media_files import SUFFIX_FORMATS, write_media
from tests.test_formats import assert_monotonic_cues, parse_srt

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
TEXTS = ("hello world", "the quick brown fox", "open the door", "seven green apples")


def write_speech(speech_files: dict[str, Path], text: str, path: Path, rate: int) -> Path:
    """One fixture utterance resampled to ``rate`` and written in the container of ``path``'s suffix."""
    samples, native = sf.read(speech_files[text], dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    resampled = prepare_waveform(samples, native, target_rate=rate)
    if path.suffix in SUFFIX_FORMATS:
        return write_media(path, resampled, rate)
    sf.write(path, resampled, rate)  # WAV and FLAC: 16-bit PCM
    return path


def write_chain(speech_files: dict[str, Path], texts: tuple[str, ...], path: Path, rate: int) -> Path:
    """Utterances as one chained Ogg Vorbis file, a link each (a recorded radio stream's layout)."""
    links = [write_speech(speech_files, text, path.with_suffix(f".{index}.ogg"), rate) for index, text in enumerate(texts)]
    path.write_bytes(b"".join(link.read_bytes() for link in links))
    for link in links:
        link.unlink()
    return path


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]


def transcribe(*argv: str | Path) -> int:
    return cli_main(["transcribe", *map(str, argv), "--no-progress"])


@pytest.fixture(scope="module")
def checkpoint(trained: tuple[Path, list[float]]) -> str:
    return str(trained[0])


@pytest.fixture(scope="module")
def mixed(speech_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A directory, a manifest and a glob: WAV/FLAC/MP3/M4A/WebM/chained Ogg at 8-48 kHz, a corrupt and an empty file."""
    root = tmp_path_factory.mktemp("mixed")
    folder = root / "folder"
    files = {
        "16k": write_speech(speech_files, TEXTS[0], folder / "a16k.wav", 16000),
        "8k": write_speech(speech_files, TEXTS[1], folder / "sub" / "b8k.wav", 8000),
        "44k": write_speech(speech_files, TEXTS[2], folder / "c44k.flac", 44100),
        "mp3": write_speech(speech_files, TEXTS[3], folder / "f22k.mp3", 22050),
        "m4a": write_speech(speech_files, TEXTS[0], folder / "g44k.m4a", 44100),
        # (the overfit test model reads Opus "open the door" as "open the dor"; MP3 and AAC it reads right)
        "webm": write_speech(speech_files, TEXTS[3], folder / "h48k.webm", 48000),
        "ogg-chain": write_chain(speech_files, (TEXTS[0], TEXTS[3]), folder / "i22k-chain.ogg", 22050),
        "manifest": write_speech(speech_files, TEXTS[3], root / "listed" / "d16k.wav", 16000),
        "glob": write_speech(speech_files, TEXTS[0], root / "globbed" / "e22k.flac", 22050),
    }
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio")
    manifest = root / "list.jsonl"  # lists one file of the folder again: it must still be transcribed once
    manifest.write_text(
        json.dumps({"audio_filepath": "listed/d16k.wav"})
        + "\n\n"
        + json.dumps({"audio_filepath": "folder/a16k.wav"})
        + "\n"
    )
    return {
        "args": [folder, manifest, root / "globbed" / "*.flac"],
        "files": files,
        "corrupt": str(folder / "corrupt.wav"),
        "empty": str(folder / "empty.wav"),
        "count": 11,
    }


def test_inputs_expand_directories_manifests_and_globs_once_each(mixed: dict, tmp_path: Path) -> None:
    paths = expand_inputs(map(str, mixed["args"]))
    files = mixed["files"]
    assert paths == [
        str(files["16k"]),
        str(files["44k"]),
        mixed["corrupt"],
        mixed["empty"],
        str(files["mp3"]),
        str(files["m4a"]),
        str(files["webm"]),
        str(files["ogg-chain"]),
        str(files["8k"]),
        str(files["manifest"]),
        str(files["glob"]),
    ]
    assert expand_inputs([str(tmp_path / "missing.wav")]) == [str(tmp_path / "missing.wav")]  # gets an error record
    with pytest.raises(InputError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.wav")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.wav"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        expand_inputs([str(bad)])


def test_shards_split_inputs_deterministically_and_completely() -> None:
    paths = [f"corpus/{i:05d}.wav" for i in range(2000)]
    shards = [shard_inputs(paths, (i, 3)) for i in range(3)]
    assert sorted(p for shard in shards for p in shard) == paths
    assert all(550 < len(shard) < 780 for shard in shards)
    assert shard_inputs(list(reversed(paths)), (1, 3)) == list(reversed(shards[1]))  # order does not matter
    assert len({output_stem(p) for p in paths}) == len(paths)


def test_cuts_land_in_pauses_on_the_frame_grid_within_bounds() -> None:
    rate, grid = 16000, 480
    rng = np.random.default_rng(0)
    bursts, gaps = [], []
    position = 0
    for index in range(30):  # 30 "words" of 0.4-1.6 s noise, 0.15-0.6 s pauses between them
        length = int(rng.uniform(0.4, 1.6) * rate)
        bursts.append(0.3 * rng.standard_normal(length).astype(np.float32))
        gap = int(rng.uniform(0.15, 0.6) * rate)
        gaps.append((position + length, position + length + gap))
        bursts.append(0.001 * rng.standard_normal(gap).astype(np.float32))
        position += length + gap
    waveform = np.concatenate(bursts)
    starts = segmenter.cut_points(waveform, max_samples=8 * rate, grid=grid, sample_rate=rate)
    assert starts[0] == 0 and len(starts) > 3
    lengths = np.diff([*starts, len(waveform)])
    assert all(4 * rate <= n <= 8 * rate for n in lengths)
    for cut in starts[1:]:
        assert cut % grid == 0
        assert any(low <= cut <= high for low, high in gaps), f"cut at {cut / rate:.2f} s is inside speech"
    assert segmenter.cut_points(waveform[: 8 * rate], max_samples=8 * rate, grid=grid, sample_rate=rate) == [0]


def test_speech_regions_span_each_stretch_of_speech_with_its_margins() -> None:
    rate, grid = 16000, 480
    rng = np.random.default_rng(1)
    floor = 1e-4 * rng.standard_normal(12 * rate).astype(np.float32)  # a quiet room, 80 dB under the speech

    def burst(waveform: np.ndarray, start_s: float, stop_s: float, level: float = 0.3) -> None:
        start, stop = round(start_s * rate), round(stop_s * rate)
        waveform[start:stop] += level * rng.standard_normal(stop - start).astype(np.float32)

    waveform = floor.copy()
    burst(waveform, 1.0, 2.5)
    burst(waveform, 2.7, 4.0)  # 0.2 s pause: the same stretch
    burst(waveform, 6.0, 6.6, level=0.03)  # quieter speech still counts
    burst(waveform, 9.0, 11.0)
    regions = segmenter.speech_regions(waveform, grid=grid, sample_rate=rate)
    assert [(round(a / rate, 2), round(b / rate, 2)) for a, b in regions] == [(0.93, 4.17), (5.94, 6.75), (8.94, 11.16)]
    assert all(a % grid == 0 for a, _ in regions)

    pieces = segmenter.split(waveform, max_samples=2 * rate, grid=grid, sample_rate=rate)
    assert [start for start, _ in pieces][:1] == [regions[0][0]] and len(pieces) == 5  # long stretches cut again
    assert all(len(samples) <= 2 * rate for _, samples in pieces)

    noisy = waveform + 0.02 * rng.standard_normal(len(waveform)).astype(np.float32)  # noise 25 dB under speech
    assert segmenter.speech_regions(noisy, grid=grid, sample_rate=rate) == [(0, len(noisy))]


def test_groups_stay_within_the_audio_budget_unless_one_file_is_longer() -> None:
    lengths = [50, 40, 30, 500, 20, 20, 20, 20, 90, 10]
    decoded = [DecodedFile(f"{i}.wav", n, [(0, np.zeros(n, np.float32))]) for i, n in enumerate(lengths)]
    groups = list(_groups(decoded, max_files=3, max_samples=100))
    assert [[item.num_samples for item in group] for group in groups] == [
        [50, 40], [30], [500], [20, 20, 20], [20], [90, 10]
    ]


def test_long_file_is_cut_at_pauses_and_stitched_in_file_time(checkpoint: str, speech_files, tmp_path: Path) -> None:
    rate = 16000
    silence = np.zeros(rate, dtype=np.float32)
    parts = [silence]
    for text in TEXTS:
        parts += [load_audio(speech_files[text]), silence]
    waveform = np.concatenate(parts)
    long_file = tmp_path / "long.wav"
    sf.write(long_file, waveform, rate, subtype="FLOAT")
    out = tmp_path / "out"
    status = transcribe(long_file, "--out", out, "--checkpoint", checkpoint, "--workers", "0", "--max-segment-s", "4")
    (record,) = read_log(out)
    assert status == 0 and record["error"] is None and record["duration_s"] == round(len(waveform) / rate, 3)

    cut = segmenter.split(waveform, max_samples=4 * rate, grid=480, sample_rate=rate)
    assert len(cut) == len(TEXTS)  # one piece per utterance: the second of silence around each is left out
    for start, samples in cut:
        assert np.abs(waveform[start - 800 : start]).max() < 1e-3 < np.abs(samples[:2400]).max()  # speech soon
        assert np.abs(waveform[start + len(samples) : start + len(samples) + 1600]).max() < 1e-3
    recognizer = Recognizer.from_checkpoint(checkpoint)
    pieces = [(a, recognizer.transcribe(samples, rate)) for a, samples in cut]
    expected = [
        (w.word, round(a / rate + w.start_s, 3), round(a / rate + w.end_s, 3)) for a, p in pieces for w in p.words
    ]
    assert [(w["word"], w["start_s"], w["end_s"]) for w in record["words"]] == expected
    assert record["text"].split() == " ".join(p.text for _, p in pieces).split()
    times = [t for s in record["segments"] for t in (s["start_s"], s["end_s"])]
    assert times == sorted(times) and times[-1] <= record["duration_s"]
    num_frames = recognizer.featurizer.num_model_frames(len(waveform))
    stitched = segmenter.stitch(pieces, len(waveform), rate, recognizer.labels, num_frames)
    assert len(stitched.frame_labels) == num_frames  # on the file's grid, the silence left out included


def test_mixed_inputs_with_every_format_and_a_rerun_that_skips_what_is_done(
    mixed: dict, checkpoint: str, speech_files, tmp_path
) -> None:
    out = tmp_path / "out"
    args = [*mixed["args"], "--out", out, "--checkpoint", checkpoint, "--format", "srt,vtt,ctm,textgrid"]
    assert transcribe(*args, "--workers", "1") == 1  # decoder process; two files fail
    records = {r["audio"]: r for r in read_log(out)}
    assert len(records) == mixed["count"] == len(read_log(out))
    files = mixed["files"]
    expected = {"16k": TEXTS[0], "44k": TEXTS[2], "mp3": TEXTS[3], "m4a": TEXTS[0], "webm": TEXTS[3]}
    expected |= {"manifest": TEXTS[3], "glob": TEXTS[0]}
    for name, text in expected.items():
        assert (records[str(files[name])]["error"], records[str(files[name])]["text"]) == (None, text)
    assert records[str(files["8k"])]["error"] is None and records[str(files["8k"])]["duration_s"] > 0.5
    chain = records[str(files["ogg-chain"])]  # both links (the tiny model runs the two phrases together)
    assert chain["text"].startswith(TEXTS[0]) and chain["text"].endswith("apples")
    assert chain["duration_s"] == pytest.approx(sum(sf.info(speech_files[text]).duration for text in (TEXTS[0], TEXTS[3])), abs=0.01)
    assert "decode" in records[mixed["corrupt"]]["error"] and records[mixed["corrupt"]]["text"] is None
    assert records[mixed["empty"]]["error"]
    for record in records.values():
        assert record["model"] == checkpoint and (record["size_bytes"], record["mtime_ns"]) != (None, None)
        stem = str(out / output_stem(record["audio"]))
        written = {p.suffix for p in out.glob(f"{Path(stem).name}.*")}
        assert written == (set() if record["error"] else {".srt", ".vtt", ".ctm", ".TextGrid"})
        if record["error"] is None:
            assert_monotonic_cues(parse_srt(Path(stem + ".srt").read_text()))
            grid = textgrid.openTextgrid(stem + ".TextGrid", includeEmptyIntervals=False)
            assert [e.label for e in grid.getTier("words").entries] == [w["word"] for w in record["words"]]

    os.utime(files["16k"], ns=(time.time_ns(), time.time_ns()))  # a changed file is transcribed again
    lost = Path(str(out / output_stem(str(files["44k"]))) + ".srt")
    lost.unlink()  # an output of a done file is rendered again from its line
    assert transcribe(*args, "--workers", "0", "--allow-errors") == 0
    again = read_log(out)
    assert sorted(r["audio"] for r in again) == sorted(records)  # each still once
    assert again[-3:] == [r for r in again if r["audio"] in (str(files["16k"]), mixed["corrupt"], mixed["empty"])]
    assert [cue[3] for cue in parse_srt(lost.read_text())] == [TEXTS[2]]


def test_stdout_mode_streams_one_json_line_per_input_in_order(checkpoint: str, speech_files, tmp_path, capsys) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    files = [str(p) for p in speech_files.values()]
    status = transcribe(files[0], corrupt, files[1], "--checkpoint", checkpoint, "--workers", "0", "--out", "-")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [r["audio"] for r in records] == [files[0], str(corrupt), files[1]]
    assert [r["text"] for r in records] == [TEXTS[0], None, TEXTS[1]] and "decode" in records[1]["error"]
    assert set(records[0]["words"][0]) == {"word", "start_s", "end_s", "confidence"}
    assert set(records[0]["segments"][0]) == {"label", "start_s", "end_s", "score"}
    assert (
        transcribe(files[0], "--out", "-", "--format", "srt", "--checkpoint", checkpoint) == 2
    )  # formats need a directory


def test_files_over_the_duration_limit_get_an_error_line_and_the_rest_go_on(
    checkpoint: str, speech_files, capsys
) -> None:
    by_length = sorted(map(str, speech_files.values()), key=lambda path: sf.info(path).duration)
    short, long = by_length[0], by_length[-1]
    limit = (sf.info(short).duration + sf.info(long).duration) / 2
    assert transcribe(long, short, "--checkpoint", checkpoint, "--max-duration-s", str(limit)) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["audio"] for r in records] == [long, short]
    assert f"longer than the {limit} s limit" in records[0]["error"] and records[0]["text"] is None
    assert records[1]["error"] is None and records[1]["text"]


def test_model_processes_give_the_in_process_results_in_input_order(
    checkpoint: str, speech_files, mixed: dict, tmp_path
) -> None:
    inputs = [*speech_files.values(), mixed["corrupt"], *speech_files.values()]
    common = ["--checkpoint", checkpoint, "--workers", "1", "--batch-files", "1"]  # one group per file
    assert transcribe(*inputs, "--out", tmp_path / "procs", *common, "--model-procs", "2") == 1
    assert transcribe(*inputs, "--out", tmp_path / "here", *common, "--no-resume") == 1
    procs, here = read_log(tmp_path / "procs"), read_log(tmp_path / "here")
    assert [r["audio"] for r in procs] == [r["audio"] for r in here] == [str(p) for p in dict.fromkeys(inputs)]
    assert procs == here  # words, times, confidences and errors alike
    assert [r["text"] for r in procs] == [*TEXTS, None]


def test_killed_job_resumes_and_every_input_appears_exactly_once(checkpoint: str, speech_files, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sources = list(speech_files.values())
    for index in range(60):
        shutil.copy(sources[index % 4], corpus / f"{index:03d}.wav")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "transcribe",
        str(corpus),
        "--out",
        str(out),
        "--checkpoint",
        checkpoint,
        "--batch-files",
        "1",
        "--workers",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--format",
        "srt",
    ]
    job = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    log = out / RESULTS_FILE
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_bytes().count(b"\n") >= 5) and time.monotonic() < deadline:
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    written = log.read_bytes().count(b"\n")
    assert 5 <= written < 60, "the job should have been killed part way"
    with log.open("a") as file:  # a torn write, as a crash inside write() leaves it
        file.write('{"audio": "' + str(corpus / "059.wav") + '", "text": "hel')

    finished = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert f"{written} already done" in finished.stderr
    audio = [r["audio"] for r in read_log(out)]
    assert sorted(audio) == sorted(str(p) for p in corpus.iterdir())
    assert len({output_stem(a) for a in audio}) == len(list(out.glob("*.srt"))) == 60


def test_shards_written_apart_merge_into_every_input_once(checkpoint: str, speech_files, tmp_path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index in range(12):
        shutil.copy(list(speech_files.values())[index % 4], corpus / f"{index:02d}.wav")
    lines = []
    for shard in range(3):
        out = tmp_path / f"shard{shard}"
        assert (
            transcribe(corpus, "--out", out, "--shard", f"{shard}/3", "--checkpoint", checkpoint, "--workers", "0") == 0
        )
        lines += (out / RESULTS_FILE).read_text().splitlines()
    assert sorted(json.loads(line)["audio"] for line in lines) == sorted(str(p) for p in corpus.iterdir())
    with pytest.raises(SystemExit):
        transcribe(corpus, "--out", tmp_path / "x", "--shard", "3/3")


def test_a_second_job_on_the_same_directory_is_refused(checkpoint: str, speech_files, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with (out / LOCK_FILE).open("wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert transcribe(*speech_files.values(), "--out", out, "--checkpoint", checkpoint, "--workers", "0") == 2
    assert not (out / RESULTS_FILE).exists()


def test_server_mode_gives_the_local_results(grpc_server, checkpoint: str, speech_files, mixed: dict, tmp_path) -> None:
    inputs = [*speech_files.values(), mixed["corrupt"]]
    remote, local = tmp_path / "remote", tmp_path / "local"
    assert (
        transcribe(
            *inputs,
            "--out",
            remote,
            "--server",
            grpc_server.address,
            "--model",
            "tiny",
            "--concurrency",
            "2",
            "--format",
            "textgrid",
        )
        == 1
    )
    # The server computes in float32; the local job's default (bfloat16 where the CPU has it) differs in the last digits.
    local_options = ["--checkpoint", checkpoint, "--workers", "0", "--precision", "float32"]
    assert transcribe(*inputs, "--out", local, *local_options) == 1
    remote_records, local_records = read_log(remote), read_log(local)
    assert [r["audio"] for r in remote_records] == [str(p) for p in inputs]
    assert [r["text"] for r in remote_records] == [r["text"] for r in local_records] == [*TEXTS, None]
    assert remote_records[0]["words"] == local_records[0]["words"]
    assert remote_records[0]["segments"] == local_records[0]["segments"]
    assert remote_records[0]["model"] == "tiny" and "decode" in remote_records[-1]["error"]
    assert len(list(remote.glob("*.TextGrid"))) == 4


def test_phrase_hints_reach_the_decoder_locally_and_through_a_server(
    grpc_server, checkpoint: str, speech_files, tmp_path, capsys
) -> None:
    path = str(speech_files["hello world"])
    hints = tmp_path / "hints.txt"
    hints.write_text("hello word\n\n", encoding="utf-8")
    local = ["--checkpoint", checkpoint, "--workers", "0", "--precision", "float32"]
    remote = ["--server", grpc_server.address, "--model", "tiny"]
    for where in (local, remote):
        assert transcribe(path, "--out", "-", "--beam-size", "8", *where) == 0
        assert json.loads(capsys.readouterr().out)["text"] == "hello world"
        assert transcribe(path, "--out", "-", "--beam-size", "8", "--phrases-file", hints, "--phrase-boost", "10", *where) == 0
        assert json.loads(capsys.readouterr().out)["text"] == "hello word"
    assert transcribe(path, "--out", "-", "--phrase", "hello word", *local) == 2  # greedy has no hints
    assert "need beam search" in capsys.readouterr().err
    assert transcribe(path, "--out", "-", "--beam-size", "8", "--phrase", "東京", *local) == 2
    assert "'東京'" in capsys.readouterr().err


def test_alternatives_per_stretch_of_speech_locally_and_through_a_server(
    grpc_server, checkpoint: str, speech_files, tmp_path, capsys
) -> None:
    rate = 16000
    silence = np.zeros(rate, dtype=np.float32)
    first, second = (load_audio(speech_files[text]) for text in TEXTS[:2])
    long_file = tmp_path / "two.wav"
    sf.write(long_file, np.concatenate([silence, first, silence, second, silence]), rate, subtype="FLOAT")
    local = ["--checkpoint", checkpoint, "--workers", "0", "--precision", "float32", "--beam-size", "8"]
    assert transcribe(long_file, "--out", "-", *local, "--alternatives", "3", "--max-segment-s", "3") == 0
    record = json.loads(capsys.readouterr().out)
    recognizer = Recognizer.from_checkpoint(checkpoint)
    cut = segmenter.split(load_audio(long_file), max_samples=3 * rate, grid=480, sample_rate=rate)
    assert len(cut) == 2 and [(a["start_s"], a["end_s"]) for a in record["alternatives"]] == [
        (round(start / rate, 3), round(start / rate + len(samples) / rate, 3)) for start, samples in cut
    ]  # one entry per piece the file was cut into, in file time
    for stretch, (_, samples) in zip(record["alternatives"], cut, strict=True):
        expected = recognizer.transcribe(samples, rate, beam_size=8, alternatives=3)
        assert [h["text"] for h in stretch["hypotheses"]] == [t.text for t in (expected, *expected.alternatives)]
        assert 1 < len(stretch["hypotheses"]) <= 3
        assert all(0.0 <= h["confidence"] <= 1.0 for h in stretch["hypotheses"])
    assert record["text"] == " ".join(a["hypotheses"][0]["text"] for a in record["alternatives"])

    path = speech_files[TEXTS[2]]
    remote = ["--server", grpc_server.address, "--model", "tiny", "--beam-size", "8"]
    found = []
    for where in (local, remote):
        assert transcribe(path, "--out", "-", *where, "--alternatives", "4") == 0
        (stretch,) = json.loads(capsys.readouterr().out)["alternatives"]
        assert stretch["start_s"] == 0.0 and stretch["end_s"] == round(len(load_audio(path)) / rate, 3)
        found.append([h["text"] for h in stretch["hypotheses"]])
    assert found[0] == found[1] and found[0][0] == TEXTS[2] and len(set(found[0])) == len(found[0]) > 1
    assert transcribe(path, "--out", "-", *local) == 0 and "alternatives" not in json.loads(capsys.readouterr().out)
    assert transcribe(path, "--out", "-", *local, "--alternatives", "9") == 2  # more than the beam holds
    assert "--alternatives 9" in capsys.readouterr().err


def test_a_warp_ensemble_server_gives_the_warp_ensemble_local_results(
    model_dir: Path, checkpoint: str, speech_files, tmp_path: Path
) -> None:
    """``--warps`` reaches the server's recognizers and the local job alike, and changes the scores."""
    inputs = list(speech_files.values())
    server = LoopbackServer(ModelRegistry.load_dir(model_dir, warps=(0.95, 1.05)), workers=1)
    try:
        remote_argv = ["--server", server.address, "--model", "tiny"]
        assert transcribe(*inputs, "--out", tmp_path / "remote", *remote_argv) == 0
        assert transcribe(*inputs, "--out", tmp_path / "refused", *remote_argv, "--warps", "0.95,1.05") == 2
    finally:
        server.close()
    local_options = ["--checkpoint", checkpoint, "--workers", "0", "--precision", "float32"]
    assert transcribe(*inputs, "--out", tmp_path / "local", *local_options, "--warps", "0.95,1.05") == 0
    assert transcribe(*inputs, "--out", tmp_path / "plain", *local_options) == 0
    remote, local, plain = (read_log(tmp_path / name) for name in ("remote", "local", "plain"))
    assert [r["segments"] for r in remote] == [r["segments"] for r in local]
    assert [r["segments"] for r in local] != [r["segments"] for r in plain]
