"""Background noise added to cached MFCC features, at a chosen SNR, without decoding audio.

The corpus bakes one noise draw into each noisy utterance at synthesis time; a model that is to
hold up on audio that is never digitally silent needs fresh noise at every epoch. Decoding the
audio again for that would throw away the feature cache, so the noise is added to the features:

Noise adds to speech in power, band by band. MFCCs are a truncated orthonormal DCT of log-mel
energies, so undoing the DCT gives the smooth log-mel envelope the MFCCs keep; its power plus the
noise's mel power, logged and transformed back, is what the noisy audio's MFCCs would be. The
noise's mel spectrum and its frame-to-frame spread come from running
:func:`training.augment.colored_noise` (the corpus's own noise) through the featurizer once per
colour; each frame's noise power is drawn per band from a gamma distribution with that mean and
spread. SNR is relative to the utterance's mean power with silences included, as in
:func:`training.augment.add_noise`.
"""

from __future__ import annotations

import numpy as np
import torch

from audiomodels.features import Featurizer
from training.augment import NOISE_COLORS, colored_noise

# Calibration noise comes in utterance-sized pieces: colored_noise scales each piece to unit
# variance, and the share of a red (brown) noise's power below the first mel band grows with length.
_CALIBRATION_PIECES = 10
_CALIBRATION_PIECE_SECONDS = 4.0


class FeatureNoise:
    """Adds noise of one of :data:`~training.augment.NOISE_COLORS` to stacked model frames."""

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer
        piece = round(_CALIBRATION_PIECE_SECONDS * featurizer.config.sample_rate)
        rng = np.random.default_rng(0)
        self._mean: dict[str, torch.Tensor] = {}  # colour -> (n_mels,) mel power of unit-variance noise
        self._shape: dict[str, torch.Tensor] = {}  # colour -> (n_mels,) gamma shape = mean^2 / variance
        for color in NOISE_COLORS:
            pieces = [torch.from_numpy(colored_noise(piece, color, rng)) for _ in range(_CALIBRATION_PIECES)]
            frames = featurizer.mel_power(torch.stack(pieces)).double().flatten(0, 1)
            self._mean[color] = frames.mean(dim=0)
            self._shape[color] = frames.mean(dim=0) ** 2 / frames.var(dim=0)
        # Band weights that sum the mel powers back into a frame's total power (every FFT bin once):
        # the least-squares solution of mel_filters @ w = 1, scaled so unit white noise reads 1.
        filters = featurizer.mel_filters.double()
        weights = torch.linalg.lstsq(filters, torch.ones(filters.shape[0], 1, dtype=torch.float64)).solution[:, 0]
        self._power_weights = weights / (self._mean["white"] @ weights)

    def add(self, features: torch.Tensor, snr_db: float, color: str, generator: torch.Generator) -> torch.Tensor:
        """Stacked model frames ``(T, stack * n_mfcc)`` of speech -> the same speech in noise."""
        if color not in self._mean:
            raise ValueError(f"unknown noise colour {color!r}; known: {sorted(self._mean)}")
        rng = np.random.default_rng(int(torch.randint(2**62, (), generator=generator)))

        def in_noise(speech: torch.Tensor) -> torch.Tensor:
            signal_power = float((speech @ self._power_weights).mean()) if len(speech) else 0.0
            noise_variance = signal_power / 10.0 ** (snr_db / 10.0)
            shape = self._shape[color].expand_as(speech)
            spread = torch.from_numpy(rng.gamma(shape.numpy(), 1.0 / shape.numpy()))  # mean 1, the band's variance
            return speech + noise_variance * self._mean[color] * spread

        return self.featurizer.map_mel_power(features, in_noise)
