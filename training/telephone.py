"""A telephone line applied to cached MFCC features, without decoding audio.

Callers on a phone line reach a speech service through an 8 kHz, 300-3400 Hz channel with G.711
mu-law coding (:func:`training.augment.telephone`, which the corpus applies to some utterances
once). To give a model a phone line every epoch without leaving the feature cache, the channel is
modelled on the mel power the MFCCs keep, in two parts, both measured by running the corpus's own
functions on white noise once:

- the speech path: a fixed gain per mel band (the band-pass and the 8 kHz round trip), and
- the coding noise: mu-law quantization adds noise at a roughly constant level below the signal,
  after the band-pass, so it fills the whole 0-4 kHz band (shaped only by the resampling back), and
- the idle line: mu-law has no exact zero, so digital silence comes back as a faint constant.

Within a mel band the channel's gain is not flat (the 300 Hz and 3.4 kHz edges are steep), so the
result is an approximation: on real speech it more than halves the distance between the features
of the clean and of the telephoned audio (tested).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from audiomodels.features import Featurizer
from training.augment import TELEPHONE_RATE, colored_noise, telephone

# Mu-law coding noise below the narrowband signal's power. G.711 gives ~38 dB for speech; on 60
# clean dev utterances 35 dB brought the features closest to those of the corpus's telephone()
# (mean abs MFCC error 5.15; 5.16 at 40 dB, 5.45 at 30, 6.69 without coding noise, 11.6 unchanged).
CODING_SNR_DB = 35.0
_CALIBRATION_SECONDS = 8.0


class FeatureTelephone:
    """Puts the speech of stacked model frames through a phone line (see the module docstring)."""

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer
        rate = featurizer.config.sample_rate
        rng = np.random.default_rng(0)
        wideband = 0.1 * colored_noise(round(_CALIBRATION_SECONDS * rate), "white", rng)  # far from mu-law's clipping
        reference = self._mean_power(torch.from_numpy(wideband))
        self._speech_gain = self._mean_power(torch.from_numpy(telephone(wideband, rate))) / reference
        narrowband = torch.from_numpy(0.1 * colored_noise(round(_CALIBRATION_SECONDS * TELEPHONE_RATE), "white", rng))
        coding = self._mean_power(AF.resample(narrowband, TELEPHONE_RATE, rate))
        self._coding_shape = coding / coding.sum()  # (n_mels,) share of the coding noise in each band
        silence = np.zeros(round(_CALIBRATION_SECONDS * rate), dtype=np.float32)
        self._idle = self._mean_power(torch.from_numpy(telephone(silence, rate)))  # what the line sends in silence

    def _mean_power(self, audio: torch.Tensor) -> torch.Tensor:
        return self.featurizer.mel_power(audio).double().mean(dim=0)

    def add(self, features: torch.Tensor) -> torch.Tensor:
        """Stacked model frames ``(T, stack * n_mfcc)`` of speech -> the same speech over the phone."""

        def over_the_line(power: torch.Tensor) -> torch.Tensor:
            line = power * self._speech_gain
            coding = line.sum(dim=-1, keepdim=True) * 10.0 ** (-CODING_SNR_DB / 10.0) * self._coding_shape
            return line + coding + self._idle

        return self.featurizer.map_mel_power(features, over_the_line)
