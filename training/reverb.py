"""Room reverberation applied to cached MFCC features, without decoding audio.

Most recorded speech carries a room: a decaying tail that smears each sound over the next few
hundred milliseconds. The corpus bakes one room into some utterances at synthesis time
(:func:`training.augment.reverb`); a fresh room every epoch needs the feature cache to stay valid,
so the room is applied to the features.

The corpus's room is a direct path plus exponentially decaying noise whose energy falls 60 dB in
``rt60`` seconds and sums to ``10^(-drr_db / 10)`` of the direct path's. A noise tail's phase is
random, so in expectation the powers of the lagged copies add: each band's reverberant power at
MFCC frame ``t`` is the clean power at ``t`` plus, for every lag ``k``, the clean power at
``t - k`` times the share of the tail's energy that arrives ``k`` hops late. That causal filter
along time is applied to the smooth mel power the MFCCs keep (as in :mod:`training.noise`). It is
the expected reverberant spectrum, without the tail's draw-to-draw ripple, and it keeps the
utterance's frame count: the tail past the last frame is dropped, and the level is not rescaled
(the corpus's peak matching is a gain, which the corpus varies separately).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from audiomodels.features import Featurizer

_DECAY_DB = 60.0  # rt60's definition: the time the tail's energy takes to fall by 60 dB


def reverb_kernel(rt60: float, drr_db: float, hop_seconds: float) -> torch.Tensor:
    """Power weights per frame lag ``(lags,)``: 1 (the direct path) plus the tail's energy per hop.

    The tail's energy density decays as ``exp(-a t)`` with ``a = ln(10^6) / rt60`` over
    ``0 < t < rt60``; lag ``k`` collects what arrives in ``[k, k + 1)`` hops.
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    decay = _DECAY_DB / 10.0 * np.log(10.0) / rt60
    edges = np.minimum(np.arange(int(np.ceil(rt60 / hop_seconds)) + 1) * hop_seconds, rt60)
    shares = -np.diff(np.exp(-decay * edges))
    weights = shares / shares.sum() * 10.0 ** (-drr_db / 10.0)
    weights[0] += 1.0
    return torch.from_numpy(weights)


class FeatureReverb:
    """Puts the speech of stacked model frames into a synthetic room (see the module docstring)."""

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer
        self._hop_seconds = featurizer.config.hop_length / featurizer.config.sample_rate

    def add(self, features: torch.Tensor, rt60: float, drr_db: float) -> torch.Tensor:
        """Stacked model frames ``(T, stack * n_mfcc)`` of dry speech -> the same speech in the room."""
        kernel = reverb_kernel(rt60, drr_db, self._hop_seconds).float()  # float32: conv1d is 25x faster than in float64

        def in_room(power: torch.Tensor) -> torch.Tensor:
            bands = power.T.unsqueeze(1)  # (n_mels, 1, frames): one channel per band, the same filter for all
            padded = F.pad(bands, (len(kernel) - 1, 0))  # causal: a frame hears only earlier frames
            return F.conv1d(padded, kernel.flip(0).view(1, 1, -1)).squeeze(1).T

        return self.featurizer.map_mel_power(features, in_room, dtype=torch.float32)
