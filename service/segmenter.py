"""Cut long recordings into pieces of speech, and stitch the pieces' transcripts back in file time.

A bidirectional model needs a whole piece per call, and memory and padding grow with the longest
item of a batch, so a file longer than the bound is cut: into its stretches of speech, which
look like the utterances the models were trained on (silence between them is never recognized),
and a stretch longer than the bound where the signal is quietest over ``PAUSE_WINDOW_S`` -- long
enough to be a pause between words, where a single quiet frame is often a stop closure inside
one. Every cut is on the model's frame grid, so every piece's frames sit exactly on the whole
file's frame grid and stitched times need no correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from audiomodels.labels import LabelSet
from audiomodels.recognizer import Transcript

PAUSE_WINDOW_S = 0.4
SPEECH_RANGE_DB = 35.0  # how far under the file's loud blocks a block still counts as speech
MIN_PAUSE_S = 0.4  # shorter pauses (stop closures, breaths, commas) stay inside a stretch of speech
LEAD_MARGIN_S = 0.05  # audio kept before a stretch's speech (training utterances: median 0.01 s, 90% under 0.23 s)
TRAIL_MARGIN_S = 0.15  # and after it (training utterances: median 0.14-0.33 s)


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
    power = _block_power(waveform, grid)
    num_blocks = len(power)
    totals = np.concatenate([[0.0], np.cumsum(power)])
    boundaries = np.arange(num_blocks + 1)
    low = np.clip(boundaries - window // 2, 0, num_blocks)
    high = np.clip(boundaries + (window + 1) // 2, 0, num_blocks)
    return (totals[high] - totals[low]) / np.maximum(high - low, 1)


def _block_power(waveform: np.ndarray, grid: int) -> np.ndarray:
    """Mean power of each whole ``grid``-sample block (float64)."""
    num_blocks = len(waveform) // grid
    return np.square(waveform[: num_blocks * grid].reshape(num_blocks, grid), dtype=np.float64).mean(axis=1)


def split(waveform: np.ndarray, *, max_samples: int, grid: int, sample_rate: int) -> list[tuple[int, np.ndarray]]:
    """``(start sample, samples)`` of each piece of a file, in order.

    A file that fits in one piece is recognized whole, as the server would. A longer one is cut
    into its stretches of speech (:func:`speech_regions`), each from :data:`LEAD_MARGIN_S` before
    its speech to :data:`TRAIL_MARGIN_S` after it, and a stretch longer than ``max_samples`` is
    cut again at its quietest points (:func:`cut_points`). Pieces that begin and end like the
    training utterances matter: the shipped models learned from utterances whose speech starts
    within ~0.2 s, and 0.3 s of silence before 150 test utterances cost the char model 3.2
    points of CER (README, Shipped models).
    """
    if len(waveform) <= max_samples:
        return [(0, waveform)]
    pieces = []
    for first, stop in speech_regions(waveform, grid=grid, sample_rate=sample_rate) or [(0, len(waveform))]:
        region = waveform[first:stop]
        starts = cut_points(region, max_samples=max_samples, grid=grid, sample_rate=sample_rate)
        pieces += [(first + a, region[a:b]) for a, b in zip(starts, [*starts[1:], len(region)])]
    return pieces


def speech_regions(waveform: np.ndarray, *, grid: int, sample_rate: int) -> list[tuple[int, int]]:
    """``(start, stop)`` samples of each stretch of speech with its margins; starts on the grid.

    Speech is a ``grid``-sample block within :data:`SPEECH_RANGE_DB` of the file's loud blocks (its
    95th percentile), so a noise floor that close to the speech (a noisy recording) counts as
    speech and such a file is one stretch, cut at its quietest points, as is a file that is more
    than 95% silence (the 10th-loudest block as the loud level would find the speech there, but
    cost test:extra 0.4 points on the README's 70-minute recording); pauses shorter than
    :data:`MIN_PAUSE_S` (stop closures, breaths between words) do not split a stretch.
    """
    power = _block_power(waveform, grid)
    if not len(power):
        return []
    level_db = 10 * np.log10(power + 1e-12)
    speech = np.concatenate([[False], level_db > np.percentile(level_db, 95) - SPEECH_RANGE_DB, [False]])
    edges = np.flatnonzero(np.diff(speech.astype(np.int8)))
    runs = edges.reshape(-1, 2)  # [first speech block, first block after it)
    blocks_per_s = sample_rate / grid
    lead, trail = round(LEAD_MARGIN_S * blocks_per_s), round(TRAIL_MARGIN_S * blocks_per_s)
    merged: list[list[int]] = []
    for first, stop in runs:
        if merged and first - merged[-1][1] < MIN_PAUSE_S * blocks_per_s:
            merged[-1][1] = stop
        else:
            merged.append([first, stop])
    return [(max(0, first - lead) * grid, min((stop + trail) * grid, len(waveform))) for first, stop in merged]


def stitch(
    pieces: Sequence[tuple[int, Transcript]], num_samples: int, sample_rate: int, labels: LabelSet, num_frames: int
) -> Transcript:
    """The pieces' transcripts as one transcript of the whole file, times from the file start.

    Pieces meet at pauses, so the word separator is put between their texts (unless one side
    already ends or starts with it). Frame labels are laid on the file's ``num_frames`` model
    frames; the frames no piece covers (the silence left out, and the few between a piece's
    last whole frame and the next piece) are blank.
    """
    if len(pieces) == 1 and len(pieces[0][1].frame_labels) == num_frames:
        return pieces[0][1]  # the whole file in one piece
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
    frame_labels += [blank] * (num_frames - len(frame_labels))
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
