"""Offline synthetic speech corpus: English sentences spoken by every installed TTS voice.

No speech data set can be downloaded here, so training data is synthesized.

Text source: the Debian package ``fortunes`` (with ``fortunes-min``), whose files under
/usr/share/games/fortunes hold ~2.5 MB of English quotations, jokes, verse and prose. Entries
are split into sentences of 4-25 words; code, acronyms, abbreviations and unusual symbols are
dropped, and :func:`audiomodels.labels.normalize_text` gives the label text (numbers spelled
out; sentences it cannot map are skipped). About 19,000 distinct sentences remain.

Engines read the original sentence (its punctuation gives natural prosody) when it has the same
words as the label, and otherwise the label text itself, so audio and label always agree.

Output layout under ``--out``::

    train.jsonl dev.jsonl test.jsonl   one JSON object per utterance
    wavs/<split>/<uid>.wav             16 kHz mono PCM16

``audio_filepath`` is relative to the manifest's directory, so a corpus can be moved or copied
whole. Other fields: ``duration`` (s), ``text`` (normalized), ``phones`` (phonemize_batch, en-us
reference voice whatever voice spoke), ``voice``, ``speaker``, ``speed``, ``pitch``,
``voice_params`` (engine-specific knobs) and ``augment`` (the list of augmentation steps applied;
empty when clean).

Splits: sentences are divided once (seeded) into disjoint train/dev/test pools, so dev and test
text never occurs in train. Speakers (a voice identity shared across engines, e.g. CMU "slt" in
flite and festival, or one espeak-ng variant across all accents) are held out for test: about
15% of each engine's speakers, at least one for engines with two or more. Test uses only those
speakers; train and dev share the rest, so dev measures new text and test new text *and* new
voices. Piper ships one speaker, so it appears in train/dev only. ``--hold-out`` names speakers
that go to test whatever the seed draws: a second corpus of other engines that will be trained on
beside a first one passes the first one's test speakers (printed by every run), so a speaker both
corpora share (CMU slt speaks in flite, festival and RHVoice) never reaches train. A voice made
from held-out speakers (a ``kokoro-blend`` mix of two Kokoro voices) is held out with them.
``--sentence-offset`` lets that second corpus (same seed, so the same text split) speak the
sentences the first one has not reached yet instead of repeating its first ones.

Reproducibility and resume: the whole corpus is planned up front as a list of utterance jobs
drawn from the seed (job i's choices depend only on seed, split and i, so more ``--hours``
extends the same plan). File names carry a hash of the job, finished WAVs are skipped on rerun,
and manifests are rewritten (atomically) at the end from the plan and the files present. Same
seed gives the same sentences, voices, parameters and augmentation; audio is bit-identical for
every engine except Piper, whose model draws its own noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from audiomodels.audio import audio_duration, prepare_waveform
from audiomodels.labels import LabelError, normalize_text, phonemize_batch
from training.augment import Step, apply_augment, sample_augment
from training.manifest import Utterance, read_manifest, write_manifest
from training.voices import ENGINES, SynthParams, Voice, available_voices

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
_SKIPPED_FORTUNE_FILES = frozenset({"art", "ascii-art", "translate-me"})  # pictures; Latin

MIN_WORDS, MAX_WORDS = 4, 25
TEXT_SHARE = {"dev": 0.05, "test": 0.05}  # of the sentences; train gets the rest
HOURS_SHARE = {"train": 0.9, "dev": 0.05, "test": 0.05}  # of --hours
TEST_SPEAKER_SHARE = 0.15  # of each engine's speakers
# How often each engine speaks (renormalized over installed ones): the natural-sounding engines
# get most of the time even though espeak-ng has hundreds of voices.
ENGINE_WEIGHTS = {
    "espeak-ng": 0.3, "flite": 0.25, "festival": 0.2, "piper": 0.25, "rhvoice": 0.3, "pico": 0.2, "mbrola": 0.2,
    "festival-extra": 0.2, "kokoro": 0.3, "kokoro-blend": 0.3,
}  # fmt: skip
BATCH_SIZE = 16  # utterances per worker task: amortizes festival/Piper start-up, keeps progress smooth

PEAK_LEVEL = 0.5  # every utterance is scaled to this peak before augmentation (gain varies it later)
CLIP_LEVEL = 0.99

# Named random streams, so adding a draw in one place never shifts another.
_STREAM_TEXT_SPLIT, _STREAM_SPEAKERS, _STREAM_JOB, _STREAM_EPOCH = range(4)
_SPLIT_CODE = {split: index for index, split in enumerate(SPLITS)}

_ALLOWED_CHARS = re.compile(r"^[A-Za-z0-9\s.,;:?!'\"()$%&-]+$")  # anything else is code, markup or symbols
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # spelled out or not, engines disagree with the label
_INNER_PUNCTUATION = re.compile(r"\w[.,:;]\w")  # "comp.os.linux", "3,000": read as "dot", "comma"...
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]*\s+(?=[\"'(]?[A-Z0-9])")
_SPEAKER_LABEL = re.compile(r"^(?:[A-Z][\w']*\s?){1,3}:\s+")  # "Q: ...", "Belenko: ..."
_UNSPOKEN = re.compile(r"[^A-Za-z' .,;:?!]")
_LABEL_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


@dataclass(frozen=True)
class Sentence:
    """A label text and what the TTS engine is given to read."""

    text: str  # normalized label
    spoken: str  # original punctuation where it reads as the same words, else ``text``


@dataclass(frozen=True)
class Job:
    """One planned utterance; everything needed to synthesize it in any worker."""

    index: int
    split: str
    sentence: Sentence
    voice: Voice
    params: SynthParams
    augment: list[Step] = field(hash=False)
    seed: int  # for the augmentation noise

    @property
    def uid(self) -> str:
        """Index for readability, hash of the content so a changed plan never reuses a stale file."""
        content = json.dumps(
            [self.sentence.spoken, self.voice.name, self.params.to_dict(), self.augment, self.seed], sort_keys=True
        )
        return f"{self.split}-{self.index:06d}-{hashlib.sha1(content.encode()).hexdigest()[:10]}"

    @property
    def relpath(self) -> str:
        """WAV path relative to the corpus directory (and so to the manifests)."""
        return f"wavs/{self.split}/{self.uid}.wav"


def _fortune_entries(directory: Path) -> Iterator[str]:
    for path in sorted(directory.iterdir()):
        # "x.dat" are strfile indexes, "x.u8" symlinks to "x"
        if (
            path.is_file()
            and not path.is_symlink()
            and "." not in path.name
            and path.name not in _SKIPPED_FORTUNE_FILES
        ):
            yield from path.read_text(encoding="utf-8", errors="replace").split("\n%\n")


def _entry_prose(entry: str) -> str:
    """The quotation without its attribution ("-- Mark Twain") and with lines joined."""
    lines = []
    for line in entry.splitlines():
        if line.strip().startswith("--"):
            break
        lines.append(line.strip())
    return " ".join(" ".join(lines).split())


def _speakable(sentence: str) -> bool:
    """Plain prose that every engine reads as its label: no code, symbols, acronyms or abbreviations."""
    words = sentence.split()
    return (
        MIN_WORDS <= len(words) <= MAX_WORDS
        and _ALLOWED_CHARS.match(sentence) is not None
        and not _ACRONYM.search(sentence)
        and not _INNER_PUNCTUATION.search(sentence)
        and not any(word.endswith(".") for word in words[:-1])  # "Mr.", "etc.", initials
    )


def _raw_sentences(entry: str) -> Iterator[str]:
    return (_SPEAKER_LABEL.sub("", raw) for raw in _SENTENCE_END.split(_entry_prose(entry)))


def _spoken_form(sentence: str, text: str) -> str:
    """The sentence with its punctuation when that reads as exactly the label's words."""
    spoken = " ".join(_UNSPOKEN.sub(" ", sentence).split())
    return spoken if _LABEL_WORD.findall(spoken.lower()) == text.split() else text


@cache
def load_sentences(directory: Path = FORTUNES_DIR) -> tuple[Sentence, ...]:
    """Distinct normalized sentences in a stable order (file name, then position)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} not found: install the Debian package 'fortunes' (make install)")
    seen: set[str] = set()
    sentences = []
    for entry in _fortune_entries(directory):
        for sentence in filter(_speakable, _raw_sentences(entry)):
            try:
                text = normalize_text(sentence)
            except LabelError:
                continue
            if text not in seen and len(text.split()) >= MIN_WORDS:
                seen.add(text)
                sentences.append(Sentence(text, _spoken_form(sentence, text)))
    return tuple(sentences)


def unspoken_sentences(seed: int, directory: Path = FORTUNES_DIR) -> list[str]:
    """Normalized sentences of the same text that the corpus never speaks (too short or long, code,
    acronyms...): more text for language models. None is a pool sentence, and none contains a dev
    or test sentence of ``seed``, so an LM built with them is still scored on text it never saw."""
    pools = split_sentences(load_sentences(directory), seed)
    pooled = {sentence.text for pool in pools.values() for sentence in pool}
    held_out: defaultdict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)  # by first words
    for sentence in pools["dev"] + pools["test"]:
        words = tuple(sentence.text.split())
        held_out[words[:MIN_WORDS]].append(words)
    unspoken, seen = [], set()
    for entry in _fortune_entries(directory):
        for raw in _raw_sentences(entry):
            try:
                text = normalize_text(raw)
            except LabelError:
                continue
            words = tuple(text.split())
            if text in pooled or text in seen or len(words) < 2:
                continue
            seen.add(text)
            if not any(
                words[start : start + len(held)] == held
                for start in range(len(words) - MIN_WORDS + 1)
                for held in held_out.get(words[start : start + MIN_WORDS], ())
            ):
                unspoken.append(text)
    return unspoken


def split_sentences(sentences: Sequence[Sentence], seed: int) -> dict[str, list[Sentence]]:
    """Disjoint text pools per split."""
    order = np.random.default_rng([seed, _STREAM_TEXT_SPLIT]).permutation(len(sentences))
    sizes = {split: max(1, round(share * len(sentences))) for split, share in TEXT_SHARE.items()}
    test_end = sizes["test"]
    dev_end = test_end + sizes["dev"]
    pick = [sentences[i] for i in order]
    return {"test": pick[:test_end], "dev": pick[test_end:dev_end], "train": pick[dev_end:]}


def held_out_speakers(voices: Sequence[Voice], seed: int, forced: Iterable[str] = ()) -> set[str]:
    """Test speakers: ``forced`` ones, then a seeded share of each engine's speakers (counting the
    forced ones it has), never an engine's last one; then every voice made from one of those."""
    rng = np.random.default_rng([seed, _STREAM_SPEAKERS])
    forced = set(forced)
    held = _made_from(voices, forced)
    for engine in sorted({voice.engine for voice in voices}):
        speakers = sorted({voice.speaker for voice in voices if voice.engine == engine})
        wanted = max(1, round(TEST_SPEAKER_SHARE * len(speakers))) if len(speakers) > 1 else 0
        for speaker in rng.permutation(speakers):
            if len(held.intersection(speakers)) >= wanted:
                break
            held.add(str(speaker))
    return _made_from(voices, held)


def _made_from(voices: Sequence[Voice], speakers: set[str]) -> set[str]:
    """``speakers`` present, and every voice's speaker that is made from one of them (a blend)."""
    return {voice.speaker for voice in voices if voice.speaker in speakers or voice.sources() & speakers}


def split_voices(voices: Sequence[Voice], seed: int, forced: Iterable[str] = ()) -> dict[str, list[Voice]]:
    """Test gets the held-out speakers' voices; train and dev share all the others."""
    held = held_out_speakers(voices, seed, forced)
    seen = [voice for voice in voices if voice.speaker not in held]
    return {"train": seen, "dev": seen, "test": [voice for voice in voices if voice.speaker in held]}


def estimate_duration(job: Job) -> float:
    """Seconds of audio a job will produce, for budgeting the plan before anything is synthesized."""
    seconds = 0.5 + len(job.sentence.text) / (17.0 * job.params.speed)  # fitted on all engines
    for step in job.augment:
        seconds = seconds / step["factor"] if step["kind"] == "speed" else seconds + step.get("rt60", 0.0)
    return seconds


class _EpochOrder:
    """Sentence for job i: a fresh seeded shuffle of the pool for every pass through it."""

    def __init__(self, pool: Sequence[Sentence], seed: int, split: str) -> None:
        self._pool, self._seed, self._split = pool, seed, split
        self._orders: dict[int, np.ndarray] = {}

    def __getitem__(self, index: int) -> Sentence:
        epoch, position = divmod(index, len(self._pool))
        if epoch not in self._orders:
            rng = np.random.default_rng([self._seed, _STREAM_EPOCH, _SPLIT_CODE[self._split], epoch])
            self._orders[epoch] = rng.permutation(len(self._pool))
        return self._pool[self._orders[epoch][position]]


def plan_split(
    split: str,
    budget_s: float,
    sentences: Sequence[Sentence],
    voices: Sequence[Voice],
    seed: int,
    augment_probability: float,
    sentence_offset: int = 0,
) -> list[Job]:
    """Jobs until the estimated audio reaches ``budget_s``; job i depends only on (seed, split, i).

    Job i speaks sentence ``sentence_offset + i`` of the split's seeded sentence order."""
    if not voices or not sentences:
        log.warning("split %s has no %s; it stays empty", split, "voices" if not voices else "sentences")
        return []
    engines = sorted({voice.engine for voice in voices})
    by_engine = {engine: [voice for voice in voices if voice.engine == engine] for engine in engines}
    weights = np.array([ENGINE_WEIGHTS[engine] for engine in engines])
    order = _EpochOrder(sentences, seed, split)
    jobs: list[Job] = []
    total = 0.0
    while total < budget_s:
        index = len(jobs)
        rng = np.random.default_rng([seed, _STREAM_JOB, _SPLIT_CODE[split], index])
        candidates = by_engine[engines[rng.choice(len(engines), p=weights / weights.sum())]]
        voice = candidates[rng.integers(len(candidates))]
        params = voice.sample_params(rng)
        augment = sample_augment(rng, augment_probability)
        job = Job(index, split, order[sentence_offset + index], voice, params, augment, int(rng.integers(2**63)))
        jobs.append(job)
        total += estimate_duration(job)
    return jobs


def plan_corpus(
    hours: float,
    seed: int,
    voices: Sequence[Voice],
    sentences: Sequence[Sentence],
    augment_probability: float,
    hold_out: Iterable[str] = (),
    sentence_offset: int = 0,
) -> list[Job]:
    """The whole corpus as a deterministic job list (no audio is made here)."""
    text_pools = split_sentences(sentences, seed)
    voice_pools = split_voices(voices, seed, hold_out)
    return [
        job
        for split in SPLITS
        for job in plan_split(
            split,
            hours * 3600 * HOURS_SHARE[split],
            text_pools[split],
            voice_pools[split],
            seed,
            augment_probability,
            sentence_offset,
        )
    ]


def _finish(audio: np.ndarray, sample_rate: int, job: Job) -> np.ndarray:
    """Engine output to the corpus format: 16 kHz, a common level, augmented, never clipped."""
    audio = prepare_waveform(audio, sample_rate, target_rate=SAMPLE_RATE)
    audio = audio * np.float32(PEAK_LEVEL / max(float(np.max(np.abs(audio))), 1e-9))
    audio = apply_augment(audio, SAMPLE_RATE, job.augment, np.random.default_rng(job.seed))
    peak = float(np.max(np.abs(audio)))
    return audio * np.float32(CLIP_LEVEL / peak) if peak > CLIP_LEVEL else audio


def _write_wav(path: Path, audio: np.ndarray) -> None:
    """Write-then-rename, so an interrupted run never leaves a truncated WAV that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(partial, path)


def _synthesize_batch(task: tuple[Path, list[Job]]) -> tuple[int, float]:
    """Worker: one voice, several jobs. Returns (utterances written, seconds of audio)."""
    out, jobs = task
    voice = jobs[0].voice
    try:
        waves = voice.synthesize([job.sentence.spoken for job in jobs], [job.params for job in jobs])
        finished = [_finish(wave, voice.sample_rate, job) for job, wave in zip(jobs, waves, strict=True)]
    except Exception as error:  # one broken voice or sentence must not lose hours of finished work
        log.warning("voice %s failed on %d utterance(s), skipped: %s", voice.name, len(jobs), error)
        return 0, 0.0
    for job, audio in zip(jobs, finished, strict=True):
        _write_wav(out / job.relpath, audio)
    return len(jobs), sum(len(audio) for audio in finished) / SAMPLE_RATE


def _batches(jobs: Iterable[Job]) -> list[list[Job]]:
    """Same-voice groups of up to BATCH_SIZE, interleaved by plan order so engines mix over time."""
    by_voice: dict[str, list[Job]] = {}
    for job in jobs:
        by_voice.setdefault(job.voice.name, []).append(job)
    batches = [group[i : i + BATCH_SIZE] for group in by_voice.values() for i in range(0, len(group), BATCH_SIZE)]
    return sorted(batches, key=lambda batch: (batch[0].split, batch[0].index))


def _init_worker() -> None:
    torch.set_num_threads(1)  # parallelism is across processes


def synthesize_jobs(jobs: Sequence[Job], out: Path, workers: int) -> None:
    """Synthesize every job whose WAV is missing, in parallel, with a progress bar."""
    todo = [job for job in jobs if not (out / job.relpath).exists()]
    tasks = [(out, batch) for batch in _batches(todo)]
    with tqdm(total=len(todo), unit="utt", desc="synthesizing", disable=not todo) as bar:
        if workers <= 1:
            _track(map(_synthesize_batch, tasks), bar)
            return
        with Pool(workers, initializer=_init_worker) as pool:
            _track(pool.imap_unordered(_synthesize_batch, tasks), bar)


def _track(results: Iterable[tuple[int, float]], bar: tqdm) -> None:
    audio_s = 0.0
    for count, seconds in results:
        audio_s += seconds
        bar.update(count)
        bar.set_postfix(audio_h=f"{audio_s / 3600:.2f}")


def _utterance(job: Job, out: Path, phones: str) -> Utterance:
    path = out / job.relpath
    return Utterance(
        audio_filepath=path,
        duration=round(audio_duration(path), 4),
        text=job.sentence.text,
        phones=phones,
        extra={"voice": job.voice.name, "speaker": job.voice.speaker, **job.params.to_dict(), "augment": job.augment},
    )


def _phonemes(texts: Sequence[str]) -> dict[str, str]:
    """Phones per text. phonemize_batch fails a whole batch for one unknown phone; then each text
    is retried alone and only the failing ones are left out, so finished audio is never stranded."""
    try:
        return dict(zip(texts, phonemize_batch(texts), strict=True))
    except LabelError:
        phones = {}
        for text in texts:
            try:
                phones[text] = phonemize_batch([text])[0]
            except LabelError as error:
                log.warning("left out of the manifests, no phones for %r: %s", text, error)
        return phones


def write_manifests(jobs: Sequence[Job], out: Path) -> dict[str, int]:
    """train/dev/test.jsonl from the plan and the WAVs present; returns utterances per split."""
    present = [job for job in jobs if (out / job.relpath).exists()]
    phones = _phonemes(sorted({job.sentence.text for job in present}))
    present = [job for job in present if job.sentence.text in phones]
    counts = {}
    for split in SPLITS:
        utterances = [_utterance(job, out, phones[job.sentence.text]) for job in present if job.split == split]
        write_manifest(out / f"{split}.jsonl", utterances, relative_to=out)
        counts[split] = len(utterances)
    missing = len(jobs) - len(present)
    if missing:
        log.warning("%d planned utterance(s) are not in the manifests (see warnings above)", missing)
    return counts


def synthesize_corpus(
    out: Path,
    hours: float,
    seed: int = 0,
    workers: int = 1,
    augment_probability: float = 0.5,
    engines: Iterable[str] = ENGINES,
    hold_out: Iterable[str] = (),
    sentence_offset: int = 0,
) -> dict[str, int]:
    """Plan, synthesize what is missing, write manifests. Returns utterances per split."""
    voices = available_voices(engines)
    if not voices:
        raise RuntimeError("no TTS voice is installed (`make install voices` brings every engine)")
    jobs = plan_corpus(hours, seed, voices, load_sentences(), augment_probability, hold_out, sentence_offset)
    out.mkdir(parents=True, exist_ok=True)
    synthesize_jobs(jobs, out, workers)
    return write_manifests(jobs, out)


def _engine_list(value: str) -> list[str]:
    engines = [engine.strip() for engine in value.split(",") if engine.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not engines:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {unknown}; choose from {','.join(ENGINES)}")
    return engines


def _speaker_list(value: str) -> list[str]:
    return [speaker.strip() for speaker in value.split(",") if speaker.strip()]


def _positive_hours(value: str) -> float:
    hours = float(value)
    if hours <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return hours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synth`` action and its options, under the ``corpus`` command (``speechlabel corpus synth``)."""
    actions = parser.add_subparsers(dest="corpus_action", required=True, metavar="ACTION")
    synth = actions.add_parser("synth", help="synthesize a train/dev/test speech corpus", description=__doc__)
    synth.formatter_class = argparse.RawDescriptionHelpFormatter
    synth.add_argument("--out", type=Path, required=True, help="corpus directory (created; rerun to resume)")
    synth.add_argument("--hours", type=_positive_hours, default=2.0, help="total audio, all splits (default 2.0)")
    synth.add_argument("--seed", type=int, default=0, help="fixes sentences, voices, parameters, augmentation")
    synth.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    synth.add_argument("--augment-prob", type=float, default=0.5, help="chance an utterance is augmented (0.5)")
    synth.add_argument(
        "--engines",
        type=_engine_list,
        default=list(ENGINES),
        help=f"comma-separated TTS engines (default: every installed one of {','.join(ENGINES)})",
    )
    synth.add_argument(
        "--hold-out",
        type=_speaker_list,
        default=[],
        metavar="SPEAKERS",
        help="comma-separated speakers that go to test whatever the seed draws (e.g. another corpus's test speakers)",
    )
    synth.add_argument(
        "--sentence-offset",
        type=int,
        default=0,
        metavar="N",
        help="start each split's sentence order N utterances in: a second corpus with the same seed (the same "
        "text split) then speaks the sentences a first one of N utterances per split has not used",
    )


def run(args: argparse.Namespace) -> int:
    """Execute the action parsed with :func:`add_arguments`."""
    counts = synthesize_corpus(
        args.out,
        hours=args.hours,
        seed=args.seed,
        workers=args.jobs,
        augment_probability=args.augment_prob,
        engines=args.engines,
        hold_out=args.hold_out,
        sentence_offset=args.sentence_offset,
    )
    print(f"{args.out}: " + ", ".join(f"{split} {count} utterances" for split, count in counts.items()))
    test_speakers = sorted({utterance.extra["speaker"] for utterance in read_manifest(args.out / "test.jsonl")})
    print(f"test speakers (held out of train and dev; pass to --hold-out of a corpus trained beside this one): "
          f"{','.join(test_speakers)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.corpus synth --out DIR --hours H --seed S --jobs N``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
