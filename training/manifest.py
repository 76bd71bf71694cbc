"""JSONL manifests: the one input format of training, with importers and a validator.

One JSON object per line with NeMo's field names (``audio_filepath``, ``duration``, ``text``) plus
our ``phones`` and any other fields, which are kept untouched. Corpora in other layouts
(LibriSpeech, Common Voice) are *imported* into a manifest once instead of being read by the
dataset, so the dataset has a single input path.

``audio_filepath`` may be relative to the manifest's directory, which keeps a corpus directory
relocatable; in memory it is always absolute.

Command line::

    python -m training.manifest import-librispeech ROOT OUT.jsonl
    python -m training.manifest import-common-voice TSV OUT.jsonl [--clips-dir DIR]
    python -m training.manifest validate MANIFEST --labels char|phone [--output KEPT.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from audiomodels.audio import AudioError, audio_duration
from audiomodels.config import FeatureConfig
from audiomodels.files import atomic_write_text
from audiomodels.labels import LabelError, LabelSet

_REQUIRED_FIELDS = ("audio_filepath", "duration", "text")
_MAX_EXAMPLES = 5  # examples kept per problem kind in a ValidationReport

MISSING_FILE = "missing file"
UNREADABLE_AUDIO = "unreadable audio"
EMPTY_TEXT = "empty text"
UNKNOWN_SYMBOLS = "unknown symbols"
TOO_SHORT = "too short for its labels"


class ManifestError(ValueError):
    """A manifest line that is not a usable utterance record; the message names file:line."""


@dataclass(frozen=True)
class Utterance:
    """One manifest record."""

    audio_filepath: Path  # absolute (resolved)
    duration: float  # seconds, as recorded in the manifest (from the audio header at import)
    text: str  # transcript as written in the corpus; LabelSet.normalize runs at use time
    phones: str | None = None  # canonical phone string "h ə l oʊ | w ɜː l d", when known
    extra: dict[str, Any] = field(default_factory=dict, hash=False)  # all other fields, kept

    def target(self, name: str) -> str | None:
        """The label source called ``name``: ``"text"``, ``"phones"`` or an extra field."""
        if name in ("text", "phones"):
            return getattr(self, name)
        return self.extra.get(name)

    def to_record(self, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-ready dict; the audio path relative to ``relative_to`` when given."""
        path = os.path.relpath(self.audio_filepath, relative_to) if relative_to else str(self.audio_filepath)
        record: dict[str, Any] = {"audio_filepath": path, "duration": self.duration, "text": self.text}
        if self.phones is not None:
            record["phones"] = self.phones
        return {**record, **{k: v for k, v in self.extra.items() if k not in record}}

    @classmethod
    def from_record(cls, record: dict[str, Any], base_dir: Path) -> Utterance:
        """Inverse of :meth:`to_record`; a relative path is resolved against ``base_dir``."""
        missing = [name for name in _REQUIRED_FIELDS if name not in record]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        extra = {k: v for k, v in record.items() if k not in (*_REQUIRED_FIELDS, "phones")}
        return cls(
            audio_filepath=(base_dir / record["audio_filepath"]).resolve(),
            duration=float(record["duration"]),
            text=str(record["text"]),
            phones=record.get("phones"),
            extra=extra,
        )


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSONL manifest; blank lines are skipped, anything else malformed raises ManifestError."""
    path = Path(path)
    base_dir = path.parent.absolute()
    utterances = []
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                utterances.append(Utterance.from_record(record, base_dir))
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                raise ManifestError(f"{path}:{line_number}: {exc}") from exc
    return utterances


def read_manifests(paths: Iterable[str | os.PathLike]) -> list[Utterance]:
    """Several manifests as one list, in order (e.g. two corpora trained on together)."""
    return [utterance for path in paths for utterance in read_manifest(path)]


_Item = TypeVar("_Item")


def spread_subset(items: Sequence[_Item], limit: int) -> list[_Item]:
    """At most ``limit`` items spaced evenly through the sequence, in order: of several dev
    manifests read as one, each keeps its share, where the first ``limit`` would be the first alone."""
    if len(items) <= limit:
        return list(items)
    return [items[index * len(items) // limit] for index in range(limit)]


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance], relative_to: Path | None = None) -> None:
    """Write a JSONL manifest atomically, so a crash never leaves a half-written one behind.

    With ``relative_to`` (usually the manifest's own directory) audio paths are stored relative to
    it; :func:`read_manifest` resolves them against the manifest's directory.
    """
    lines = [json.dumps(u.to_record(relative_to), ensure_ascii=False) + "\n" for u in utterances]
    atomic_write_text(path, "".join(lines))


class Problem(NamedTuple):
    """Why one utterance was skipped."""

    kind: str  # one of the problem kinds above
    detail: str  # human-readable specifics
    symbols: Mapping[str, int] = {}  # unknown symbol -> occurrences (unknown symbols only)


@dataclass
class ValidationReport:
    """What :func:`validate_manifest` kept and why it skipped the rest."""

    kept: list[Utterance] = field(default_factory=list)
    problems: Counter[str] = field(default_factory=Counter)  # problem kind -> skipped utterances
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> first few "path: detail"
    unknown_symbols: Counter[str] = field(default_factory=Counter)  # symbol -> occurrences

    def skip(self, utterance: Utterance, problem: Problem) -> None:
        """Record one skipped utterance."""
        self.problems[problem.kind] += 1
        self.unknown_symbols.update(problem.symbols)
        examples = self.examples.setdefault(problem.kind, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(f"{utterance.audio_filepath}: {problem.detail}")

    def summary(self) -> str:
        """Multi-line human-readable report: totals, then each problem kind with examples."""
        total = len(self.kept) + sum(self.problems.values())
        lines = [f"kept {len(self.kept)} of {total} utterances"]
        for kind, count in self.problems.most_common():
            lines.append(f"skipped {count}: {kind}")
            lines.extend(f"    e.g. {example}" for example in self.examples.get(kind, []))
        if self.unknown_symbols:
            counts = ", ".join(f"{symbol!r} x{n}" for symbol, n in self.unknown_symbols.most_common())
            lines.append(f"unknown symbols: {counts}")
        return "\n".join(lines)


def min_ctc_frames(label_ids: Sequence[int]) -> int:
    """Frames CTC needs for a target: one per label plus a blank between each repeated pair."""
    repeats = sum(1 for a, b in pairwise(label_ids) if a == b)
    return len(label_ids) + repeats


def validate_manifest(
    utterances: Iterable[Utterance],
    labels: LabelSet,
    *,
    target_field: str = "text",
    frames_per_second: float,
    check_audio: bool = True,
) -> ValidationReport:
    """Split utterances into trainable ones and skipped ones with the reason, never raising.

    The first failing check decides the kind: missing file, unreadable audio (header only, so
    cheap; skipped with ``check_audio=False``), symbols the label set cannot represent (counted
    per symbol in ``unknown_symbols``), an empty target after normalization, and a target
    needing more CTC frames than ``duration * frames_per_second`` (the header duration when
    audio is checked, else the manifest's). That frame count is an estimate: the featurizer
    can yield one model frame fewer because only whole analysis windows count.
    """
    report = ValidationReport()
    for utterance in utterances:
        problem = _check(utterance, labels, target_field, frames_per_second, check_audio)
        if problem is None:
            report.kept.append(utterance)
        else:
            report.skip(utterance, problem)
    return report


def _check(
    utterance: Utterance,
    labels: LabelSet,
    target_field: str,
    frames_per_second: float,
    check_audio: bool,
) -> Problem | None:
    """The first problem with ``utterance``, or None when it is usable."""
    if not utterance.audio_filepath.is_file():
        return Problem(MISSING_FILE, "no such file")
    duration = utterance.duration
    if check_audio:
        try:
            duration = audio_duration(utterance.audio_filepath)
        except AudioError as exc:
            return Problem(UNREADABLE_AUDIO, str(exc))
    try:
        label_ids = labels.encode(labels.normalize(utterance.target(target_field) or ""))
    except LabelError as exc:  # from normalize (unmappable characters) or encode (not in the set)
        return Problem(UNKNOWN_SYMBOLS, str(exc), exc.symbols)
    if not label_ids:
        return Problem(EMPTY_TEXT, f"{target_field!r} is missing or empty after normalization")
    needed, available = min_ctc_frames(label_ids), int(duration * frames_per_second)
    if needed > available:
        return Problem(TOO_SHORT, f"{needed} CTC frames needed, {available} available ({duration:.2f} s)")
    return None


def import_librispeech(root: str | os.PathLike) -> list[Utterance]:
    """Read the LibriSpeech layout ``root/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``.

    Each transcript line is ``<utterance-id> TEXT`` with ``<utterance-id>.flac`` beside it. The
    duration comes from the FLAC header; text is kept as written (upper case) and normalized by
    the label set at use time. Speaker and chapter ids go into ``extra`` for speaker-disjoint splits.
    """
    utterances = []
    for transcript in sorted(Path(root).resolve().glob("*/*/*.trans.txt")):
        speaker, chapter = transcript.parent.parent.name, transcript.parent.name
        for line in transcript.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utterance_id, _, text = line.strip().partition(" ")
            audio = transcript.parent / f"{utterance_id}.flac"
            extra = {"speaker": speaker, "chapter": chapter}
            utterances.append(Utterance(audio, _header_duration(audio), text, extra=extra))
    return utterances


def import_common_voice(tsv: str | os.PathLike, clips_dir: str | os.PathLike | None = None) -> list[Utterance]:
    """Read a Common Voice TSV (``path`` and ``sentence`` columns; clips in ``<tsv dir>/clips``).

    Common Voice ships MP3 clips; they are read as they are (durations from their headers). A
    clip that cannot be read is kept with duration 0.0, so the manifest stays complete and
    :func:`validate_manifest` reports it. The other non-empty columns (client_id, gender, locale,
    ...) go into ``extra``.
    """
    tsv = Path(tsv).resolve()
    clips = Path(clips_dir).resolve() if clips_dir is not None else tsv.parent / "clips"
    utterances = []
    with tsv.open(encoding="utf-8", newline="") as file:
        # Sentences contain bare quotes; Common Voice TSVs are not quoted.
        for row in csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE):
            audio = clips / row.pop("path")
            text = row.pop("sentence")
            extra = {k: v for k, v in row.items() if v}
            utterances.append(Utterance(audio, _header_duration(audio), text, extra=extra))
    return utterances


def _header_duration(path: Path) -> float:
    """Duration from the audio header, or 0.0 when the file is missing or unreadable.

    Importers keep such utterances rather than fail the whole import; validation reports them.
    """
    try:
        return audio_duration(path)
    except AudioError:
        return 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``import-librispeech``, ``import-common-voice`` and ``validate`` subcommands."""
    commands = parser.add_subparsers(dest="manifest_command", required=True)

    librispeech = commands.add_parser("import-librispeech", help="LibriSpeech directory -> manifest")
    librispeech.add_argument("root", type=Path, help="directory holding <speaker>/<chapter>/ folders")
    librispeech.add_argument("output", type=Path, help="manifest to write (paths stored relative to it)")

    common_voice = commands.add_parser("import-common-voice", help="Common Voice TSV -> manifest")
    common_voice.add_argument("tsv", type=Path, help="e.g. train.tsv")
    common_voice.add_argument("output", type=Path, help="manifest to write (paths stored relative to it)")
    common_voice.add_argument("--clips-dir", type=Path, help="default: <tsv dir>/clips")

    validate = commands.add_parser(
        "validate", help="report utterances that cannot be trained on (frame rate of the default FeatureConfig)"
    )
    validate.add_argument("manifest", type=Path)
    validate.add_argument("--labels", choices=("char", "phone"), required=True, help="label set to check against")
    validate.add_argument(
        "--target-field", help="manifest field to label (default: text, or phones for --labels phone)"
    )
    validate.add_argument("--output", type=Path, help="also write the kept utterances to this manifest")


def run(args: argparse.Namespace) -> int:
    """Execute parsed arguments; returns the exit status (1 when validation skipped anything)."""
    if args.manifest_command == "validate":
        return _run_validate(args)
    if args.manifest_command == "import-librispeech":
        utterances = import_librispeech(args.root)
    else:
        utterances = import_common_voice(args.tsv, args.clips_dir)
    write_manifest(args.output, utterances, relative_to=args.output.parent.absolute())
    print(f"wrote {len(utterances)} utterances to {args.output}")
    return 0


def _run_validate(args: argparse.Namespace) -> int:
    labels = LabelSet.phone() if args.labels == "phone" else LabelSet.char()
    target_field = args.target_field or ("phones" if args.labels == "phone" else "text")
    report = validate_manifest(
        read_manifest(args.manifest),
        labels,
        target_field=target_field,
        frames_per_second=1.0 / FeatureConfig().frame_shift_s,
    )
    print(report.summary())
    if args.output is not None:
        write_manifest(args.output, report.kept, relative_to=args.output.parent.absolute())
    return 1 if report.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training.manifest``."""
    parser = argparse.ArgumentParser(prog="python -m training.manifest", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
