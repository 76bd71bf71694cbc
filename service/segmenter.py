"""Cut long recordings at pauses into bounded pieces, and stitch the pieces' transcripts back in file time.

A bidirectional model needs a whole piece per call, and memory and padding grow with the longest
item of a batch, so a file longer than the bound is cut. A cut goes where the signal is quietest
over ``PAUSE_WINDOW_S`` -- long enough to be a pause between words, where a single quiet frame is
often a stop closure inside one -- and always on the model's frame grid, so every piece's frames
sit exactly on the whole file's frame grid and stitched times need no correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from audiomodels.labels import LabelSet
from audiomodels.recognizer import Transcript

PAUSE_WINDOW_S = 0.4


def cut_points(waveform: np.ndarray, *, max_samples: int, grid: int, sample_rate: int) -> list[int]:
    """Start sample of every piece (the first is 0), each a multiple of ``grid``.

    Every piece is at most ``max_samples`` long and, when there are several, at least about half
    that, so no piece is too short to recognize.
    """
    if len(waveform) <= max_samples:
        return [0]
    max_blocks = max_samples // grid
    if max_blocks < 2:
        raise ValueError(f"pieces of {max_samples} samples cannot hold two {grid}-sample frames")
    quiet = _pause_energy(waveform, grid, max(1, round(PAUSE_WINDOW_S * sample_rate / grid)))
    num_blocks, half = len(quiet) - 1, max_blocks // 2
    starts = [0]
    while len(waveform) - starts[-1] * grid > max_samples:
        low, high = starts[-1] + half, min(starts[-1] + max_blocks, num_blocks - half)
        starts.append(low + _middle_of_quietest(quiet[low : high + 1]))
    return [start * grid for start in starts]


def _middle_of_quietest(energy: np.ndarray) -> int:
    """Index of the minimum; when it is a run of equal values (digital silence), the run's middle."""
    ties = np.flatnonzero(energy == energy.min())
    breaks = np.flatnonzero(np.diff(ties) > 1)
    run = ties[: breaks[0] + 1] if len(breaks) else ties
    return int(run[len(run) // 2])


def _pause_energy(waveform: np.ndarray, grid: int, window: int) -> np.ndarray:
    """Mean power over ``window`` blocks centred on each block boundary 0..num_blocks."""
    num_blocks = len(waveform) // grid
    power = np.square(waveform[: num_blocks * grid].reshape(num_blocks, grid), dtype=np.float64).mean(axis=1)
    totals = np.concatenate([[0.0], np.cumsum(power)])
    boundaries = np.arange(num_blocks + 1)
    low = np.clip(boundaries - window // 2, 0, num_blocks)
    high = np.clip(boundaries + (window + 1) // 2, 0, num_blocks)
    return (totals[high] - totals[low]) / np.maximum(high - low, 1)


def split(waveform: np.ndarray, *, max_samples: int, grid: int, sample_rate: int) -> list[tuple[int, np.ndarray]]:
    """``(start sample, samples)`` of each piece; see :func:`cut_points`."""
    starts = cut_points(waveform, max_samples=max_samples, grid=grid, sample_rate=sample_rate)
    return [(start, waveform[start:end]) for start, end in zip(starts, [*starts[1:], len(waveform)])]


def stitch(
    pieces: Sequence[tuple[int, Transcript]], num_samples: int, sample_rate: int, labels: LabelSet
) -> Transcript:
    """The pieces' transcripts as one transcript of the whole file, times from the file start.

    Pieces meet at pauses, so the word separator is put between their texts (unless one side
    already ends or starts with it). Frame labels are laid on the file's frame grid; the few
    frames between a piece's last whole frame and the next piece are blank.
    """
    if len(pieces) == 1:
        return pieces[0][1]
    shift = pieces[0][1].frame_shift_s
    words, segments, label_ids = [], [], []
    index = {symbol: i for i, symbol in enumerate(labels.symbols)}
    separator = labels.word_separator_id()
    blank = labels.label(labels.blank_id)
    frame_labels: list[str] = []
    for start, transcript in pieces:
        offset = start / sample_rate
        words += [replace(w, start_s=_at(offset, w.start_s), end_s=_at(offset, w.end_s)) for w in transcript.words]
        segments += [
            replace(s, start_s=_at(offset, s.start_s), end_s=_at(offset, s.end_s)) for s in transcript.segments
        ]
        ids = [index[s.label] for s in transcript.segments]
        if label_ids and ids and separator is not None and separator not in (label_ids[-1], ids[0]):
            label_ids.append(separator)
        label_ids += ids
        first_frame = round(offset / shift)
        frame_labels += [blank] * (first_frame - len(frame_labels)) + list(transcript.frame_labels)
    return Transcript(
        labels.decode(label_ids),
        tuple(words),
        tuple(segments),
        tuple(frame_labels),
        round(num_samples / sample_rate, 3),
        shift,
    )


def _at(offset_s: float, seconds: float) -> float:
    return round(offset_s + seconds, 3)
