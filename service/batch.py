"""The batch transcription job behind ``speechlabel transcribe``.

Inputs are expanded (:mod:`service.inputs`), sharded, and filtered against the results already in
``OUT_DIR/transcripts.jsonl``; the rest go through a transcriber that yields one record per file in
input order:

- :class:`LocalTranscriber` decodes files in worker processes (kept busy ahead of the model), cuts
  long ones at pauses (:mod:`service.segmenter`), and recognizes groups of files with one
  length-sorted :meth:`Recognizer.transcribe_batch` call, so short files share model calls.
- :class:`RemoteTranscriber` sends the files to a server with a bounded number of concurrent RPCs.

Each record is appended to the log with flush + fsync as soon as its group is done, after its
per-file outputs (:mod:`service.formats`) are in place, so a killed job loses at most the group in
flight and a rerun finishes exactly the files that are missing.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol, Self, TypeVar

import grpc
import numpy as np
import torch
from tqdm import tqdm

from audiomodels.audio import AudioError, audio_duration, load_audio
from audiomodels.context import PhraseBias
from audiomodels.files import atomic_write_text
from audiomodels.recognizer import Recognizer, Transcript
from service import formats, segmenter
from service.client import Connection, file_request
from service.gen.speechlabel.v1 import speech_pb2 as pb
from service.gen.speechlabel.v1 import speech_pb2_grpc as pb_grpc
from service.inputs import expand_inputs, file_identity, output_stem, shard_inputs

Record = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")

RESULTS_FILE = "transcripts.jsonl"
LOCK_FILE = ".transcribe.lock"
# fork starts a decoder in milliseconds; spawn re-imports torch in it (seconds per job). Like torch's
# DataLoader workers, forked decoders run torch single-threaded (see _init_decoder).
DECODER_START = "fork" if sys.platform == "linux" else "spawn"
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): signal this process when its parent dies


def make_record(
    audio: str,
    model: str,
    *,
    text: str | None = None,
    words: Sequence[Record] = (),
    segments: Sequence[Record] = (),
    duration_s: float | None = None,
    error: str | None = None,
    alternatives: Sequence[Record] | None = None,
) -> Record:
    """The one JSON line per file; ``error`` is None exactly when the file was transcribed.

    ``alternatives`` (only when more than one hypothesis was asked for): per stretch of speech the
    file was recognized in (the whole file, or each piece a long file was cut into at pauses), its
    start and end and the beam's hypotheses, best first; the best of each is in ``text``.
    """
    record = {
        "audio": audio,
        "text": text,
        "words": list(words),
        "segments": list(segments),
        "duration_s": duration_s,
        "model": model,
        "error": error,
    }
    if alternatives is not None:
        record["alternatives"] = list(alternatives)
    return record


def alternatives_record(start_s: float, end_s: float, hypotheses: Iterable[tuple[str, float]]) -> Record:
    """One stretch of a file and its hypotheses (text, confidence), best first."""
    return {
        "start_s": round(start_s, 3),
        "end_s": round(end_s, 3),
        "hypotheses": [{"text": text, "confidence": round(confidence, 4)} for text, confidence in hypotheses],
    }


def transcript_record(
    audio: str, model: str, transcript: Transcript, alternatives: Sequence[Record] | None = None
) -> Record:
    return make_record(
        audio,
        model,
        text=transcript.text,
        words=[vars(word).copy() for word in transcript.words],  # flat dataclasses: much cheaper than asdict
        segments=[vars(segment).copy() for segment in transcript.segments],
        duration_s=transcript.duration_s,
        alternatives=alternatives,
    )


def ordered_map(
    pool: Executor, function: Callable[[T], R], items: Iterable[T], ahead: Callable[[], int]
) -> Iterator[R]:
    """``function`` over ``items`` on ``pool``, results in input order.

    At most ``ahead()`` items are submitted and not yet taken, so work runs ahead of the consumer
    (while it is busy with earlier results) without piling up results in memory.
    """
    pending: deque[Future[R]] = deque()
    queued = iter(items)
    try:
        while True:
            while len(pending) < ahead() and (item := next(queued, _END)) is not _END:
                pending.append(pool.submit(function, item))  # type: ignore[arg-type]
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


_END = object()


# --------------------------------------------------------------------------- local recognition


@dataclass(frozen=True)
class LocalSettings:
    """How the local path reads, cuts and batches audio."""

    beam_size: int = 1  # CTC prefix beam width (1 = greedy)
    alternatives: int = 1  # hypotheses per stretch of speech (beam search only, at most beam_size)
    bias: PhraseBias | None = None  # phrase hints (beam search only)
    batch_seconds: float = 300.0  # padded audio per model call (bounds memory)
    batch_files: int = 64  # most files recognized (and written) together; 1 = write each file when done
    max_segment_s: float = 15.0  # longer files are cut at pauses into pieces at most this long (about training length)
    workers: int = 1  # audio decoder processes; 0 = decode in this process
    model_procs: int = 1  # processes running the model on different groups, one torch thread each; 1 = this process
    # Longer files are refused. A file is held at the model rate while it is cut and recognized,
    # 230 MB an hour (the source is decoded block by block), so a few hours fit any machine.
    max_duration_s: float = 6 * 3600.0


@dataclass(frozen=True)
class ReadSpec:
    """What a decoder process needs to turn a path into model-ready pieces (picklable)."""

    sample_rate: int
    max_duration_s: float | None
    max_segment_samples: int
    grid: int  # samples per model frame: cuts land on the frame grid


@dataclass(frozen=True)
class DecodedFile:
    path: str
    num_samples: int
    pieces: list[tuple[int, np.ndarray]]  # (start sample, samples at the model rate)
    error: str | None = None


def read_file(spec: ReadSpec, path: str) -> DecodedFile:
    """Decode, validate, resample and cut one file; bad audio becomes the result's ``error``."""
    try:
        waveform = load_audio(path, target_rate=spec.sample_rate, max_duration_s=spec.max_duration_s)
    except AudioError as error:
        return DecodedFile(path, 0, [], str(error))
    pieces = segmenter.split(
        waveform, max_samples=spec.max_segment_samples, grid=spec.grid, sample_rate=spec.sample_rate
    )
    return DecodedFile(path, len(waveform), pieces)


def _die_with_parent() -> None:
    """Make a helper process end when the job dies, even by SIGKILL.

    Forked helpers inherit the job's output lock; an orphan would hold it (and a core) forever and
    refuse the rerun that resumes the job. Linux delivers SIGKILL to them when the parent goes.
    """
    if sys.platform != "linux":
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_decoder() -> None:
    _die_with_parent()
    torch.set_num_threads(1)  # resampling is the only torch work; the model process needs the cores


class LocalTranscriber:
    """Recognizes files in this process with one :class:`Recognizer`."""

    def __init__(self, recognizer: Recognizer, model: str, settings: LocalSettings = LocalSettings()) -> None:
        self.recognizer = recognizer
        self.model = model
        self.settings = settings
        features = recognizer.config.features
        self.spec = ReadSpec(
            sample_rate=recognizer.sample_rate,
            max_duration_s=settings.max_duration_s,
            max_segment_samples=round(settings.max_segment_s * recognizer.sample_rate),
            grid=features.frame_samples,
        )

    def __call__(self, paths: Sequence[str]) -> Iterator[Record]:
        """One record per path, in order."""
        # A group is about one model call's worth of audio: small groups keep several model processes
        # evenly busy to the end of the job, and a killed job loses little.
        group_samples = self.settings.batch_seconds * self.recognizer.sample_rate
        groups = _groups(self._decoded(paths, group_samples), self.settings.batch_files, group_samples)
        procs = self.settings.model_procs
        if procs <= 1:
            for group in groups:
                yield from self._recognize(group)
            return
        # A recurrent model uses a second core poorly within one call (each time step is a small
        # matrix product); separate single-threaded processes on separate groups use it fully.
        context = multiprocessing.get_context(DECODER_START)
        pool = ProcessPoolExecutor(procs, mp_context=context, initializer=_init_model_worker, initargs=(self,))
        try:
            # Two groups per process in flight: a process that finishes early starts the next group
            # while an earlier, longer one is still running elsewhere.
            for records in ordered_map(pool, _recognize_in_worker, groups, lambda: 2 * procs):
                yield from records
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _decoded(self, paths: Sequence[str], budget_samples: float) -> Iterator[DecodedFile]:
        """Decoded files in order; decoder processes keep about one group ahead of the model."""
        read = partial(read_file, self.spec)
        workers = self.settings.workers
        if workers == 0:
            yield from map(read, paths)
            return
        seen = [0, 0]  # files, samples: the mean file length sets how many files make a group's worth

        def ahead() -> int:
            by_audio = budget_samples * seen[0] / seen[1] if seen[1] else self.settings.batch_files
            return max(2 * workers, min(self.settings.batch_files + 2 * workers, int(by_audio)))

        context = multiprocessing.get_context(DECODER_START)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_decoder)
        try:
            for decoded in ordered_map(pool, read, paths, ahead):
                seen[0] += 1
                seen[1] += decoded.num_samples
                yield decoded
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _recognize(self, group: list[DecodedFile]) -> Iterator[Record]:
        rate = self.recognizer.sample_rate
        pieces = [(start, samples) for item in group for start, samples in item.pieces]
        transcripts = iter(
            self.recognizer.transcribe_batch(
                [(samples, rate) for _, samples in pieces],
                beam_size=self.settings.beam_size,
                alternatives=self.settings.alternatives,
                bias=self.settings.bias,
                max_batch_seconds=self.settings.batch_seconds,
            )
        )
        for item in group:
            if item.error is not None:
                yield make_record(item.path, self.model, error=item.error)
                continue
            recognized = [(start, next(transcripts)) for start, _ in item.pieces]
            stitched = segmenter.stitch(
                recognized,
                item.num_samples,
                rate,
                self.recognizer.labels,
                self.recognizer.featurizer.num_model_frames(item.num_samples),
            )
            alternatives = None
            if self.settings.alternatives > 1:
                alternatives = [
                    alternatives_record(
                        start / rate,
                        start / rate + transcript.duration_s,
                        ((h.text, h.confidence) for h in (transcript, *transcript.alternatives)),
                    )
                    for start, transcript in recognized
                ]
            yield transcript_record(item.path, self.model, stitched, alternatives)


_WORKER_TRANSCRIBER: LocalTranscriber | None = None  # set in each model process by _init_model_worker


def _init_model_worker(transcriber: LocalTranscriber) -> None:
    global _WORKER_TRANSCRIBER
    _die_with_parent()
    torch.set_num_threads(1)
    _WORKER_TRANSCRIBER = transcriber


def _recognize_in_worker(group: list[DecodedFile]) -> list[Record]:
    assert _WORKER_TRANSCRIBER is not None, "model process started without _init_model_worker"
    return list(_WORKER_TRANSCRIBER._recognize(group))


def _groups(decoded: Iterable[DecodedFile], max_files: int, max_samples: float) -> Iterator[list[DecodedFile]]:
    """Consecutive files, at most ``max_files`` and at most ``max_samples`` of audio unless one file alone is longer."""
    group: list[DecodedFile] = []
    samples = 0
    for item in decoded:
        if group and (len(group) >= max_files or samples + item.num_samples > max_samples):
            yield group
            group, samples = [], 0
        group.append(item)
        samples += item.num_samples
    if group:
        yield group


# --------------------------------------------------------------------------- remote recognition


@dataclass(frozen=True)
class RemoteTranscriber:
    """Sends each file to a server (Recognize, its file formats as they are) with ``concurrency`` calls in flight.

    Long files are not cut here: the server's unary audio limit applies (stream longer ones).
    """

    connection: Connection
    model: str = ""  # the server's name; "" = its default model
    beam_size: int = 1
    concurrency: int = 4
    phrases: tuple[str, ...] = ()  # phrase hints, checked by the server against its model
    phrase_boost: float = 0.0  # 0 = the server's default
    alternatives: int = 1  # hypotheses per file (the server recognizes a file whole)

    def __call__(self, paths: Sequence[str]) -> Iterator[Record]:
        config = pb.RecognitionConfig(
            model=self.model,
            word_time_offsets=True,
            frame_labels=True,
            beam_size=self.beam_size,
            max_alternatives=self.alternatives,
            phrases=self.phrases,
            phrase_boost=self.phrase_boost if self.phrases else 0.0,
        )
        with self.connection.channel() as channel, ThreadPoolExecutor(self.concurrency) as pool:
            stub = pb_grpc.SpeechLabelerStub(channel)
            recognize = partial(self._recognize, stub, config)
            yield from ordered_map(pool, recognize, paths, lambda: 2 * self.concurrency)

    def _recognize(self, stub: pb_grpc.SpeechLabelerStub, config: pb.RecognitionConfig, path: str) -> Record:
        try:
            audio_duration(path)  # local problems get the same messages as in local mode
            sent, audio = file_request(path, config)
            response = stub.Recognize(
                pb.RecognizeRequest(config=sent, audio=audio),
                timeout=self.connection.timeout_s,
                metadata=self.connection.metadata,
            )
        except AudioError as error:
            return make_record(path, self.model, error=str(error))
        except grpc.RpcError as error:
            status = f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
            return make_record(path, self.model, error=status)
        result = response.results[0]
        alternative = result.alternatives[0]
        return make_record(
            path,
            response.model,
            text=alternative.transcript,
            words=[
                {"word": w.word, "start_s": w.start_s, "end_s": w.end_s, "confidence": round(w.confidence, 4)}
                for w in alternative.words
            ],
            segments=[
                {"label": s.label, "start_s": s.start_s, "end_s": s.end_s, "score": round(s.score, 4)}
                for s in result.segments
            ],
            duration_s=round(result.end_s - result.start_s, 3),
            alternatives=[
                alternatives_record(
                    result.start_s, result.end_s, ((a.transcript, a.confidence) for a in result.alternatives)
                )
            ]
            if self.alternatives > 1
            else None,
        )


class Transcriber(Protocol):
    """Paths in, one record per path out, in input order (local and server mode alike)."""

    def __call__(self, paths: Sequence[str]) -> Iterator[Record]: ...


# --------------------------------------------------------------------------- the job


class JobError(Exception):
    """The job cannot start (e.g. another job holds the output directory); the message says why."""


@dataclass(frozen=True)
class JobOptions:
    out: str  # output directory, or "-" for JSON lines on stdout
    formats: tuple[str, ...] = ()  # per-file outputs (service.formats names); directory output only
    resume: bool = True  # skip files already in OUT_DIR/transcripts.jsonl; False starts that file afresh
    shard: tuple[int, int] | None = None  # (I, N): this job's deterministic 1/N of the inputs
    progress: bool = True


@dataclass
class JobStats:
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # done by an earlier run
    audio_s: float = 0.0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # "path: error" of the first few failures

    @property
    def real_time_factor(self) -> float:
        """Wall seconds per audio second (lower is faster)."""
        return self.wall_s / self.audio_s if self.audio_s else 0.0

    def summary(self) -> str:
        speed = f"RTF {self.real_time_factor:.4f} ({1 / self.real_time_factor:.0f}x real time)" if self.audio_s else ""
        return (
            f"{self.ok} files ok, {self.failed} failed, {self.skipped} already done; "
            f"{self.audio_s / 3600:.3f} h of audio in {self.wall_s:.1f} s {speed}".rstrip()
        )


def run_job(inputs: Sequence[str], transcribe: Transcriber, options: JobOptions) -> JobStats:
    """Transcribe every input not done yet and write its record; returns what happened."""
    paths = shard_inputs(expand_inputs(inputs), options.shard)
    identities = {path: file_identity(path) for path in paths}
    stats = JobStats()
    with _open_sink(options, identities) as sink:
        todo = [path for path in paths if path not in sink.done]
        stats.skipped = len(paths) - len(todo)
        started = time.perf_counter()
        with tqdm(total=len(todo), unit="file", disable=not options.progress, file=sys.stderr) as bar:
            for record in transcribe(todo):
                size, mtime_ns = identities[record["audio"]] or (None, None)
                sink.write({**record, "size_bytes": size, "mtime_ns": mtime_ns})
                _count(stats, record)
                stats.wall_s = time.perf_counter() - started
                bar.update()
                if stats.audio_s:
                    bar.set_postfix_str(
                        f"{stats.audio_s / 3600:.2f} h audio, RTF {stats.real_time_factor:.4f}, {stats.failed} failed"
                    )
    return stats


def _count(stats: JobStats, record: Record) -> None:
    if record["error"] is None:
        stats.ok += 1
        stats.audio_s += record["duration_s"]
    else:
        stats.failed += 1
        if len(stats.errors) < 5:
            stats.errors.append(f"{record['audio']}: {record['error']}")


class _StdoutSink:
    def __init__(self) -> None:
        self.done: dict[str, Record] = {}  # nothing to resume from

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, record: Record) -> None:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()


class _DirectorySink:
    """OUT_DIR: per-file outputs, then the record appended to ``transcripts.jsonl`` (flush + fsync).

    Opening it takes an exclusive lock on the directory (two jobs appending to one log would
    interleave) and, when resuming, repairs and compacts the log; see :func:`_load_log`.
    """

    def __init__(self, options: JobOptions, identities: dict[str, tuple[int, int] | None]) -> None:
        self.directory = Path(options.out)
        self.formats = options.formats
        self.identities = identities
        self.resume = options.resume
        self.done: dict[str, Record] = {}
        self._log: IO[str] | None = None
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = (self.directory / LOCK_FILE).open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JobError(f"another transcribe job is writing to {self.directory}") from None
        log = self.directory / RESULTS_FILE
        kept = _load_log(log, self.identities, self.done) if self.resume else []
        atomic_write_text(log, "".join(kept))
        for record in self.done.values():  # outputs asked for now but not by the earlier run
            self._write_outputs(record, only_missing=True)
        self._log = log.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._log is not None:
            self._log.close()
        if self._lock is not None:
            self._lock.close()

    def write(self, record: Record) -> None:
        assert self._log is not None
        self._write_outputs(record)
        self._log.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def _write_outputs(self, record: Record, only_missing: bool = False) -> None:
        if record["error"] is not None:
            return
        stem = output_stem(record["audio"])
        for name in self.formats:
            path = self.directory / (stem + formats.EXTENSIONS[name])
            if not (only_missing and path.exists()):
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_text(formats.RENDERERS[name](record), encoding="utf-8")
                os.replace(temporary, path)


def _load_log(log: Path, identities: dict[str, tuple[int, int] | None], done: dict[str, Record]) -> list[str]:
    """Lines of an earlier run's log to keep; fills ``done`` with the inputs they finish.

    A line counts as done when it parses, has no error, and its file's size and mtime are as they
    are now. A torn last line (a crash mid-write), failed files and changed files are dropped, so
    they are transcribed again and appear once. Lines for paths that are not inputs of this run
    are kept untouched.
    """
    if not log.exists():
        return []
    kept = []
    *complete, _torn = log.read_text(encoding="utf-8", errors="replace").split("\n")  # _torn: "" after a clean end
    for line in complete:
        try:
            record = json.loads(line)
            audio = record["audio"]
        except (ValueError, TypeError, KeyError):
            continue  # garbled
        if audio not in identities:
            kept.append(line + "\n")
        elif record.get("error") is None and audio not in done and _identity(record) == identities[audio]:
            done[audio] = record
            kept.append(line + "\n")
    return kept


def _identity(record: Record) -> tuple[int, int] | None:
    size, mtime_ns = record.get("size_bytes"), record.get("mtime_ns")
    return None if size is None or mtime_ns is None else (size, mtime_ns)


def _open_sink(options: JobOptions, identities: dict[str, tuple[int, int] | None]) -> _StdoutSink | _DirectorySink:
    if options.out == "-":
        if options.formats:
            raise JobError("--format needs an output directory (--out DIR), not '-'")
        return _StdoutSink()
    return _DirectorySink(options, identities)
