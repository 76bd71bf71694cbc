"""Frequency warping of MFCC features, one small matrix per warp factor: VTLP in training, a
warp ensemble at inference.

Speakers differ most in vocal-tract length, which scales every formant frequency (women's sit
roughly 15-20% above men's). Warping an utterance's frequency axis by ``alpha`` imitates a talker
with a shorter (``alpha > 1``) or longer tract without resynthesizing audio, so a corpus of a few
voices covers more of the voices a model will meet.

MFCCs are a truncated orthonormal DCT of log-mel energies, so the warp is linear in them: undo the
DCT (giving the smooth log-mel envelope the MFCCs keep), move that envelope along frequency, and
apply the DCT again. That is one ``(n_mfcc, n_mfcc)`` matrix, applied to cached features at the
cost of a matrix product -- the feature cache stays valid and no audio is decoded.

At inference the same matrices make a warp ensemble (:class:`audiomodels.recognizer.Recognizer`'s
``warps``): the model hears an utterance at a few warp factors and their frame posteriors are
averaged, so a voice whose tract lies between the training voices' is also heard as a nearer one.
On the shipped models' unseen test voices this bought 0.3-1.2 points of CER and PER (models/HISTORY.md).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import librosa
import numpy as np
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import mfcc_dct

WARP_LIMITS = (0.7, 1.4)
# The ensemble measured on the shipped models (models/HISTORY.md): five passes, formants 12% down to 12% up.
RECOMMENDED_WARPS = (0.88, 0.96, 1.0, 1.04, 1.12)


def warp_matrix(config: FeatureConfig, alpha: float) -> torch.Tensor:
    """``(n_mfcc, n_mfcc)`` matrix M with ``mfcc @ M`` = the MFCCs of the same speech with every
    frequency multiplied by ``alpha`` (1.0 gives the identity).

    Each mel band of the result takes the log energy the original had at ``1 / alpha`` of the
    band's centre frequency, interpolated between neighbouring bands; past the lowest or highest
    band the edge band's energy is repeated.
    """
    if alpha <= 0:
        raise ValueError(f"warp factor must be positive, got {alpha}")
    f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
    # Band centres of the featurizer's Slaney mel filterbank (n_mels + 2 edges, inner points).
    centres_hz = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.f_min, fmax=f_max)[1:-1]
    centres_mel = librosa.hz_to_mel(centres_hz)
    source_mel = librosa.hz_to_mel(centres_hz / alpha)
    position = np.interp(source_mel, centres_mel, np.arange(config.n_mels, dtype=np.float64))  # clamps at the edges
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, config.n_mels - 1)
    fraction = position - lower
    resample = np.zeros((config.n_mels, config.n_mels))  # row j: weights of the source bands for band j
    bands = np.arange(config.n_mels)
    np.add.at(resample, (bands, lower), 1.0 - fraction)
    np.add.at(resample, (bands, upper), fraction)
    dct = mfcc_dct(config).double()  # (n_mels, n_mfcc), the featurizer's own
    return (dct.T @ torch.from_numpy(resample).T @ dct).float()


def warp_features(features: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Warp stacked model frames ``(..., T, stack * n_mfcc)``: every stacked MFCC vector separately."""
    *lead, dim = features.shape
    n_mfcc = matrix.shape[0]
    return (features.reshape(*lead, dim // n_mfcc, n_mfcc) @ matrix).reshape(*lead, dim)


def mean_posterior(log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Log of the mean probability of equally shaped log-probability tensors: the ensemble's output.

    Probabilities, not log-probabilities, are averaged: a label one pass is sure of and another
    doubts keeps most of its mass, as in the usual posterior averaging of acoustic-model ensembles.
    """
    return torch.logsumexp(torch.stack(list(log_probs)), dim=0) - math.log(len(log_probs))


def check_warps(warps: Sequence[float]) -> tuple[float, ...]:
    """Validated warp factors of an inference ensemble (raises ``ValueError``).

    Factors must lie in 0.7-1.4: a wider warp moves formants past any adult voice and past what
    training covered (speed perturbation up to 1.3x), so its pass could only add noise. They must
    also differ: a repeated factor would only weigh one pass twice.
    """
    warps = tuple(float(w) for w in warps)
    outside = [w for w in warps if not WARP_LIMITS[0] <= w <= WARP_LIMITS[1]]
    if outside:
        raise ValueError(f"warp factors must lie in {WARP_LIMITS[0]}-{WARP_LIMITS[1]}, got {outside}")
    if len(set(warps)) != len(warps):
        raise ValueError(f"warp factors must differ, got {list(warps)}")
    return warps


def parse_warps(text: str) -> tuple[float, ...]:
    """``"0.88,0.96,1,1.04,1.12"`` -> validated factors (the ``--warps`` option of every decoding command)."""
    try:
        return check_warps(float(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def format_warps(warps: Sequence[float]) -> str:
    """Factors as ``--warps`` takes them: ``"0.88,0.96,1,1.04,1.12"`` (the inverse of :func:`parse_warps`)."""
    return ",".join(f"{w:g}" for w in warps)


def add_warps_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--warps``: the warp ensemble option of every command that runs a model on whole utterances."""
    parser.add_argument(
        "--warps",
        type=parse_warps,
        default=(),
        metavar="W1,W2,...",
        help=f"run the model once per frequency-warp factor and average the posteriors: more accurate on "
        f"unfamiliar voices, one model pass per factor (measured: {format_warps(RECOMMENDED_WARPS)}); default one plain pass",
    )
