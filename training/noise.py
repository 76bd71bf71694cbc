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

Music is not steady, so it has no such per-band law: its mel power is taken frame by frame from a
bank of :func:`training.augment.synthetic_music` clips, featurized once, at a random clip and offset.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from audiomodels.features import Featurizer
from training.augment import NOISE_COLORS, colored_noise, synthetic_music

# Calibration noise comes in utterance-sized pieces: colored_noise scales each piece to unit
# variance, and the share of a red (brown) noise's power below the first mel band grows with length.
_CALIBRATION_PIECES = 10
_CALIBRATION_PIECE_SECONDS = 4.0
_MUSIC_CLIPS = 24  # distinct pieces of music in the bank (a fixed seed: the same bank in every run)
_MUSIC_CLIP_SECONDS = 8.0


class FeatureNoise:
    """Adds a background of :data:`~training.augment.BACKGROUNDS` (noise of a colour, or music) to
    stacked model frames."""

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

    @functools.cached_property
    def _music(self) -> torch.Tensor:
        """(clips, frames, n_mels) mel power of unit-variance music; built on first use, since runs
        that draw only noise colours never need it."""
        rate = self.featurizer.config.sample_rate
        rng = np.random.default_rng(1)
        clips = [torch.from_numpy(synthetic_music(round(_MUSIC_CLIP_SECONDS * rate), rng, rate)) for _ in range(_MUSIC_CLIPS)]
        return self.featurizer.mel_power(torch.stack(clips)).double()

    def _noise_power(self, speech: torch.Tensor, snr_db: float) -> float:
        """The noise's total power per frame that puts it ``snr_db`` under the speech's mean power."""
        signal_power = float((speech @ self._power_weights).mean()) if len(speech) else 0.0
        return signal_power / 10.0 ** (snr_db / 10.0)

    def add(self, features: torch.Tensor, snr_db: float, kind: str, generator: torch.Generator) -> torch.Tensor:
        """Stacked model frames ``(T, stack * n_mfcc)`` of speech -> the same speech in noise (or music)."""
        if kind not in self._mean and kind != "music":
            raise ValueError(f"unknown background {kind!r}; known: {sorted(self._mean)} and music")
        rng = np.random.default_rng(int(torch.randint(2**62, (), generator=generator)))
        if kind == "music":
            return self._add_music(features, snr_db, rng)

        def in_noise(speech: torch.Tensor) -> torch.Tensor:
            noise_variance = self._noise_power(speech, snr_db)
            shape = self._shape[kind].expand_as(speech)
            spread = torch.from_numpy(rng.gamma(shape.numpy(), 1.0 / shape.numpy()))  # mean 1, the band's variance
            return speech + noise_variance * self._mean[kind] * spread

        return self.featurizer.map_mel_power(features, in_noise)

    def _add_music(self, features: torch.Tensor, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
        clips, frames, _ = self._music.shape

        def in_music(speech: torch.Tensor) -> torch.Tensor:
            clip = self._music[int(rng.integers(clips))]
            index = (int(rng.integers(frames)) + torch.arange(len(speech))) % frames  # looped past its end
            return speech + self._noise_power(speech, snr_db) * clip[index]

        return self.featurizer.map_mel_power(features, in_music)
