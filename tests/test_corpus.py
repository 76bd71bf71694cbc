"""Tests for the synthetic corpus: voices, augmentation, text source, plan, CLI, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomodels.labels import normalize_text
from training import augment
from training.corpus import (
    ENGINE_WEIGHTS,
    MAX_WORDS,
    MIN_WORDS,
    SAMPLE_RATE,
    SPLITS,
    load_sentences,
    main,
    held_out_speakers,
    plan_corpus,
    split_sentences,
    split_voices,
    unspoken_sentences,
)
from training.voices import ENGINES, SynthParams, _kokoro_blend_voices, _kokoro_voices, available_voices

RATE = SAMPLE_RATE
TINY_HOURS = 30 / 3600  # a 30-second corpus: every code path, a few seconds of synthesis
FIELDS = {"audio_filepath", "duration", "text", "phones", "voice", "speed", "pitch", "augment"}


def read_manifests(out: Path) -> dict[str, list[dict]]:
    return {split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()] for split in SPLITS}


def synth(out: Path, seed: int = 0) -> int:
    return main(["synth", "--out", str(out), "--hours", str(TINY_HOURS), "--seed", str(seed), "--jobs", "2"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    assert synth(out) == 0
    return out


def band_energy(audio: np.ndarray, low: float, high: float, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- manifests and audio -------------------------------------------------------------------


def test_manifests_have_every_field(corpus: Path) -> None:
    manifests = read_manifests(corpus)
    assert manifests["train"] and manifests["dev"] and manifests["test"]
    for records in manifests.values():
        for record in records:
            assert record.keys() >= FIELDS
            assert record["text"] == normalize_text(record["text"])
            assert record["phones"].strip()
            assert isinstance(record["augment"], list)


def test_every_wav_is_16k_mono_pcm16_with_the_manifest_duration(corpus: Path) -> None:
    for records in read_manifests(corpus).values():
        for record in records:
            path = corpus / record["audio_filepath"]  # relative to the manifest's directory
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
            assert info.frames / RATE == pytest.approx(record["duration"], abs=1e-3)
            audio, _ = sf.read(path, dtype="float32")
            assert np.sqrt(np.mean(audio**2)) > 1e-3, f"{path} is silent"


def test_splits_are_disjoint_by_text_and_test_speakers_are_held_out(corpus: Path) -> None:
    manifests = read_manifests(corpus)
    texts = {split: {record["text"] for record in records} for split, records in manifests.items()}
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    train_speakers = {record["speaker"] for record in manifests["train"] + manifests["dev"]}
    assert not train_speakers & {record["speaker"] for record in manifests["test"]}


def test_rerun_with_the_same_seed_is_a_no_op(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {path: path.stat().st_mtime_ns for path in corpus.rglob("*.wav")}
    manifests = {split: (corpus / f"{split}.jsonl").read_bytes() for split in SPLITS}
    assert synth(corpus) == 0
    assert {path: path.stat().st_mtime_ns for path in corpus.rglob("*.wav")} == before
    assert {split: (corpus / f"{split}.jsonl").read_bytes() for split in SPLITS} == manifests
    printed = capsys.readouterr().out.splitlines()[-1]  # what a second corpus passes to --hold-out
    test_speakers = sorted({record["speaker"] for record in read_manifests(corpus)["test"]})
    assert printed.startswith("test speakers") and printed.split(": ")[-1] == ",".join(test_speakers)


def test_interrupted_run_resumes_with_identical_audio(corpus: Path) -> None:
    """Deleted WAVs (deterministic engines) come back bit-identical; the manifests do too."""
    records = [r for records in read_manifests(corpus).values() for r in records if not r["voice"].startswith("piper")]
    lost = [corpus / record["audio_filepath"] for record in records[:3]]
    original = {path: path.read_bytes() for path in lost}
    manifests = {split: (corpus / f"{split}.jsonl").read_bytes() for split in SPLITS}
    for path in lost:
        path.unlink()
    assert synth(corpus) == 0
    assert {path: path.read_bytes() for path in lost} == original
    assert {split: (corpus / f"{split}.jsonl").read_bytes() for split in SPLITS} == manifests


def test_speechlabel_cli_reaches_corpus_synth(tmp_path: Path) -> None:
    from service.cli import build_parser

    args = build_parser("corpus").parse_args(["corpus", "synth", "--out", str(tmp_path), "--engines", "flite"])
    assert (args.corpus_action, args.out, args.engines, args.seed) == ("synth", tmp_path, ["flite"], 0)
    assert (args.hold_out, args.sentence_offset) == ([], 0)
    args = build_parser("corpus").parse_args(["corpus", "synth", "--out", str(tmp_path), "--engines", "rhvoice,pico",
                                              "--hold-out", "cmu-slt, pico-kh0", "--sentence-offset", "9000"])
    assert (args.engines, args.hold_out, args.sentence_offset) == (["rhvoice", "pico"], ["cmu-slt", "pico-kh0"], 9000)


# --- plan -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voices() -> list:
    return available_voices()


def plan_summary(seed: int, voices: list, hours: float = 0.5) -> list[tuple]:
    jobs = plan_corpus(hours, seed, voices, load_sentences(), augment_probability=0.5)
    return [(job.uid, job.sentence.text, job.voice.name, job.params, job.augment) for job in jobs]


def test_plan_is_deterministic_and_depends_on_the_seed(voices: list) -> None:
    first = plan_summary(0, voices)
    assert first == plan_summary(0, voices)
    other = plan_summary(1, voices)
    assert [job[1] for job in first] != [job[1] for job in other]
    assert [job[2] for job in first] != [job[2] for job in other]


def test_more_hours_extend_the_same_plan(voices: list) -> None:
    short, long = plan_summary(0, voices, 0.1), plan_summary(0, voices, 0.3)
    assert len(short) < len(long) and {job[0] for job in short} <= {job[0] for job in long}


def test_larger_plan_holds_out_text_and_speakers(voices: list) -> None:
    jobs = plan_corpus(3.0, 0, voices, load_sentences(), augment_probability=0.5)
    by_split = {split: [job for job in jobs if job.split == split] for split in SPLITS}
    texts = {split: {job.sentence.text for job in split_jobs} for split, split_jobs in by_split.items()}
    assert not texts["train"] & (texts["dev"] | texts["test"]) and not texts["dev"] & texts["test"]
    speakers = {split: {job.voice.speaker for job in split_jobs} for split, split_jobs in by_split.items()}
    assert speakers["test"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    # Engine weights, not voice counts, decide how often an engine speaks (espeak-ng has ~97% of the voices).
    engines = {voice.engine for voice in voices}
    expected = ENGINE_WEIGHTS["espeak-ng"] / sum(ENGINE_WEIGHTS[engine] for engine in engines)
    espeak_share = sum(job.voice.engine == "espeak-ng" for job in by_split["train"]) / len(by_split["train"])
    assert abs(espeak_share - expected) < 0.05


def test_hold_out_sends_a_speaker_to_test_in_every_engine_it_speaks_in(voices: list) -> None:
    """The second-corpus case: a speaker the seed put in train is forced out of train and dev."""
    plan = plan_corpus(0.5, 0, voices, load_sentences(), augment_probability=0.5)
    speaker = next(job.voice.speaker for job in plan if job.split == "train")
    pools = split_voices(voices, 0, forced=[speaker])
    assert [voice for voice in voices if voice.speaker == speaker] == [v for v in pools["test"] if v.speaker == speaker]
    assert all(voice.speaker != speaker for voice in pools["train"] + pools["dev"])
    held = plan_corpus(0.5, 0, voices, load_sentences(), augment_probability=0.5, hold_out=[speaker])
    assert speaker not in {job.voice.speaker for job in held if job.split != "test"}
    forced = held_out_speakers(voices, 0, forced=[speaker, "no-such-speaker"])
    assert speaker in forced and "no-such-speaker" not in forced
    assert len(forced) == len(held_out_speakers(voices, 0))  # a forced speaker counts towards its engine's share


def test_a_blend_is_held_out_with_either_of_its_voices(fake_kokoro_tables: list[Path]) -> None:
    """No part of a test voice is heard in train or dev: a Kokoro blend goes to test with either of its parts."""
    voices = _kokoro_voices() + _kokoro_blend_voices()
    forced = "kokoro-af_alpha"
    pools = split_voices(voices, 0, forced=[forced])
    test_speakers = {voice.speaker for voice in pools["test"]}
    plain_test = {voice.speaker for voice in pools["test"] if voice.engine == "kokoro"}
    assert forced in plain_test and len(plain_test) == round(0.15 * len(fake_kokoro_tables))
    assert all(voice.speaker in test_speakers for voice in voices if forced in voice.sources())
    assert pools["train"] and all(not voice.sources() & plain_test for voice in pools["train"] + pools["dev"])
    assert not test_speakers & {voice.speaker for voice in pools["train"] + pools["dev"]}


def test_sentence_offset_continues_each_split_s_sentence_order(voices: list) -> None:
    """Same seed, same text split: the offset plan speaks the sentences the first plan reaches later."""
    offset = 7
    first = plan_corpus(0.3, 0, voices, load_sentences(), augment_probability=0.5)
    second = plan_corpus(0.3, 0, voices, load_sentences(), augment_probability=0.5, sentence_offset=offset)
    for split in SPLITS:
        before = [job for job in first if job.split == split]
        after = [job for job in second if job.split == split]
        overlap = min(len(before) - offset, len(after))
        assert overlap > 0
        assert [job.sentence for job in after[:overlap]] == [job.sentence for job in before[offset : offset + overlap]]
        assert [job.voice for job in after[:overlap]] == [job.voice for job in before[:overlap]]  # only text moves


# --- text source ----------------------------------------------------------------------------


def test_text_source_gives_thousands_of_normalized_sentences() -> None:
    sentences = load_sentences()
    assert len(sentences) > 5000
    assert len({sentence.text for sentence in sentences}) == len(sentences)
    for sentence in sentences[::97]:
        assert sentence.text == normalize_text(sentence.text)
        assert MIN_WORDS <= len(sentence.text.split()) <= MAX_WORDS + 10  # numbers spell out longer
        assert normalize_text(sentence.spoken) == sentence.text


def test_unspoken_sentences_add_text_but_never_a_held_out_sentence(tmp_path: Path) -> None:
    """LM text beyond the spoken pools: sentences the corpus filters out (here by an acronym), unless
    they hold a dev or test sentence, which would let an LM see held-out text."""
    animals = ["cat", "dog", "owl", "fox", "hen", "cow", "pig", "yak", "elk", "ram", "eel", "bee", "ant", "bat", "ape"]
    colors = ["red", "blue"]
    speakable = [f"The {color} {animal} sat on the old wooden fence." for animal in animals for color in colors]
    wrapped = [f"The NASA report said that {sentence[:-1].lower()} all day." for sentence in speakable]
    (tmp_path / "quotes").write_text("\n%\n".join(speakable + wrapped + ["Go home.", speakable[0]]) + "\n")
    pools = split_sentences(load_sentences(tmp_path), seed=3)
    assert len(pools["dev"]) == len(pools["test"]) == 2
    unspoken = unspoken_sentences(3, tmp_path)
    expected = {f"the nasa report said that {sentence.text} all day" for sentence in pools["train"]}
    assert set(unspoken) == expected | {"go home"}
    assert len(unspoken) == len(set(unspoken))
    held_out = [sentence.text for sentence in pools["dev"] + pools["test"]]
    assert not any(held in text for held in held_out for text in unspoken)


# --- augmentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", sorted(augment.NOISE_COLORS))
def test_add_noise_hits_the_requested_snr(color: str) -> None:
    clean = tone()
    noisy = augment.add_noise(clean, 10.0, color, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)


def test_noise_colors_tilt_towards_low_frequencies() -> None:
    tilt = {
        color: band_energy(augment.colored_noise(RATE, color, np.random.default_rng(0)), 20, 500)
        / band_energy(augment.colored_noise(RATE, color, np.random.default_rng(0)), 4000, 8000)
        for color in ("white", "pink", "brown")
    }
    assert tilt["white"] < 0.2 < tilt["pink"] < 10 < tilt["brown"]


def test_telephone_removes_energy_above_4khz_and_below_300hz() -> None:
    noise = 0.1 * augment.colored_noise(RATE, "white", np.random.default_rng(0))
    phone = augment.telephone(noise, RATE)
    assert len(phone) == len(noise)
    assert band_energy(phone, 4100, 8000) < 1e-3 * band_energy(noise, 4100, 8000)
    assert band_energy(phone, 20, 120) < 0.1 * band_energy(noise, 20, 120)
    assert band_energy(phone, 500, 3000) > 0.5 * band_energy(noise, 500, 3000)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_by_the_factor(factor: float) -> None:
    audio = tone(2.0)
    assert len(augment.speed(audio, RATE, factor)) == pytest.approx(len(audio) / factor, abs=2)


def test_reverb_adds_a_decaying_tail() -> None:
    burst = np.concatenate([tone(0.2), np.zeros(RATE, np.float32)])
    wet = augment.reverb(burst, RATE, rt60=0.5, drr_db=0.0, rng=np.random.default_rng(0))
    assert len(wet) == len(burst) + round(0.5 * RATE) - 1
    after = wet[round(0.2 * RATE) :]
    early, late = np.mean(after[:1600] ** 2), np.mean(after[6400:8000] ** 2)  # 0-0.1 s vs 0.4-0.5 s after
    assert early > 1e-4 and late < 0.05 * early
    assert not np.any(burst[round(0.2 * RATE) :])  # the dry input was silent there


def test_gain_scales_by_decibels() -> None:
    audio = tone()
    assert np.max(np.abs(augment.gain(audio, 6.0))) == pytest.approx(0.5 * 10 ** (6 / 20), rel=1e-4)


def test_to_level_sets_the_rms_of_the_audio_or_of_its_speech() -> None:
    audio = tone()
    assert augment.rms_dbfs(augment.to_level(audio, -40.0)) == pytest.approx(-40.0, abs=1e-3)
    with_pause = np.concatenate([audio, np.zeros(len(audio), np.float32)])
    assert augment.rms_dbfs(augment.to_level(with_pause, -40.0, measured_on=audio)[: len(audio)]) == pytest.approx(-40.0, abs=1e-3)
    assert augment.rms_dbfs(np.zeros(10, np.float32)) == -200.0


def test_augment_chain_is_seeded_and_respects_the_probability() -> None:
    assert all(augment.sample_augment(np.random.default_rng(i), 0.0) == [] for i in range(20))
    chains = [augment.sample_augment(np.random.default_rng(i), 1.0) for i in range(50)]
    assert all(chains) and chains == [augment.sample_augment(np.random.default_rng(i), 1.0) for i in range(50)]
    order = list(augment.STEP_PROBABILITIES)
    assert all([order.index(step["kind"]) for step in chain] == sorted(order.index(s["kind"]) for s in chain)
               for chain in chains)  # fmt: skip
    audio = tone()
    for chain in chains[:10]:
        first = augment.apply_augment(audio, RATE, chain, np.random.default_rng(7))
        assert np.array_equal(first, augment.apply_augment(audio, RATE, chain, np.random.default_rng(7)))


# --- voices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_speaks_a_sentence(engine: str) -> None:
    engine_voices = available_voices([engine])
    if not engine_voices:
        pytest.skip(f"{engine} is not installed (make install)")
    voice = engine_voices[len(engine_voices) // 2]
    params = [SynthParams(), voice.sample_params(np.random.default_rng(0))]
    waves = voice.synthesize(["the quick brown fox jumps over the lazy dog"] * 2, params)
    for wave in waves:
        seconds = len(wave) / voice.sample_rate
        assert 1.0 < seconds < 6.0
        assert np.sqrt(np.mean(wave**2)) > 0.005, f"{voice.name} produced silence"
