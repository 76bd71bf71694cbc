"""Vocal tract length perturbation (VTLP) of MFCC features, one small matrix per warp factor.

Speakers differ most in vocal-tract length, which scales every formant frequency (women's sit
roughly 15-20% above men's). Warping an utterance's frequency axis by ``alpha`` imitates a talker
with a shorter (``alpha > 1``) or longer tract without resynthesizing audio, so a corpus of a few
voices covers more of the voices a model will meet.

MFCCs are a truncated orthonormal DCT of log-mel energies, so the warp is linear in them: undo the
DCT (giving the smooth log-mel envelope the MFCCs keep), move that envelope along frequency, and
apply the DCT again. That is one ``(n_mfcc, n_mfcc)`` matrix, applied to cached features at the
cost of a matrix product -- the feature cache stays valid and no audio is decoded.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch

from audiomodels.config import FeatureConfig
from audiomodels.features import mfcc_dct


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
    """Warp stacked model frames ``(T, stack * n_mfcc)``: every stacked MFCC vector separately."""
    num_frames, dim = features.shape
    n_mfcc = matrix.shape[0]
    return (features.reshape(num_frames, dim // n_mfcc, n_mfcc) @ matrix).reshape(num_frames, dim)
