"""MFCC features, identical for whole signals, batches and streams.

The MFCC is computed without centre padding and with a plain power-to-dB (no ``top_db`` clamp),
so each frame depends only on its own 25 ms of samples. That is what makes a stream's features
equal the whole file's features, and it is also what ``librosa.feature.mfcc(..., center=False,
top_db=None)`` computes with the same window, mel and DCT settings (tests prove both).

Normalization is not applied here: its global statistics are computed by training
(:class:`FeatureStats`) and travel inside the model as buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchaudio

from audiomodels.config import FeatureConfig

LOG_FLOOR = 1e-10  # librosa.power_to_db's default ``amin``


def mfcc_dct(config: FeatureConfig) -> torch.Tensor:
    """(n_mels, n_mfcc) orthonormal DCT-II, the matrix scipy's dct(norm="ortho") applies: log-mel -> MFCC."""
    return torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, norm="ortho")


class Featurizer:
    """Waveform (float32 at ``config.sample_rate``) -> stacked MFCC model frames."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._window = torch.hann_window(config.win_length)  # periodic, like librosa's "hann"
        # (n_freqs, n_mels) Slaney-style mel filters: librosa.filters.mel's defaults.
        self.mel_filters = torchaudio.functional.melscale_fbanks(
            n_freqs=config.win_length // 2 + 1,
            f_min=config.f_min,
            f_max=config.f_max if config.f_max is not None else config.sample_rate / 2,
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.dct = mfcc_dct(config)

    def num_mfcc_frames(self, num_samples: int) -> int:
        """MFCC frames a signal of ``num_samples`` yields (only whole windows count)."""
        if num_samples < self.config.win_length:
            return 0
        return 1 + (num_samples - self.config.win_length) // self.config.hop_length

    def num_model_frames(self, num_samples: int) -> int:
        """Stacked model frames a signal of ``num_samples`` yields."""
        return self.num_mfcc_frames(num_samples) // self.config.stack

    def mel_power(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(..., num_samples) -> (..., num_frames, n_mels) power in each mel band, before the log."""
        shape = waveforms.shape
        if shape[-1] < self.config.win_length:
            return waveforms.new_zeros((*shape[:-1], 0, self.config.n_mels))
        spectrum = torch.stft(
            waveforms.float().reshape(-1, shape[-1]),
            n_fft=self.config.win_length,
            hop_length=self.config.hop_length,
            window=self._window,
            center=False,
            return_complex=True,
        )  # (batch, n_freqs, frames)
        power = spectrum.real.square() + spectrum.imag.square()  # |X|^2 without abs()'s square root: 3x faster
        mel = torch.matmul(power.transpose(-1, -2), self.mel_filters)  # (batch, frames, n_mels)
        return mel.reshape(*shape[:-1], *mel.shape[-2:])

    def mfcc(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(..., num_samples) -> (..., num_frames, n_mfcc) MFCC, librosa-compatible."""
        return self.mfcc_from_mel_power(self.mel_power(waveforms))

    def mfcc_from_mel_power(self, mel: torch.Tensor) -> torch.Tensor:
        """(..., frames, n_mels) mel power -> (..., frames, n_mfcc): power-to-dB, then the DCT."""
        log_mel = 10.0 * torch.log10(torch.clamp(mel, min=LOG_FLOOR))
        return torch.matmul(log_mel, self.dct)

    def mel_power_from_mfcc(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(..., frames, n_mfcc) -> (..., frames, n_mels): the smooth mel power the MFCCs keep.

        The inverse of :meth:`mfcc_from_mel_power` up to the DCT's truncation (its columns are
        orthonormal, so the transpose undoes it); feature-domain augmentation works on this power.
        """
        return torch.pow(10.0, torch.matmul(mfcc, self.dct.to(mfcc.dtype).T) / 10.0)

    def map_mel_power(
        self,
        frames: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor],
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Stacked model frames -> the same frames after ``transform`` on their mel power.

        Feature-domain augmentation (noise, rooms, phone lines) acts on the power the MFCCs keep:
        ``transform`` maps ``(frames, n_mels)`` power in ``dtype`` to the degraded power.
        """
        power = self.mel_power_from_mfcc(self.unstack(frames).to(dtype))
        return self.mfcc_from_mel_power(transform(power).float()).reshape(frames.shape)

    def unstack(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, F * stack) stacked model frames -> (T * stack, F) MFCC frames: :meth:`stack` undone."""
        return frames.reshape(-1, self.config.n_mfcc)

    def stack(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(..., T, F) -> (..., T // stack, F * stack): concatenate and subsample; the remainder drops."""
        stack = self.config.stack
        num_frames = mfcc.shape[-2] // stack
        kept = mfcc[..., : num_frames * stack, :]
        return kept.reshape(*mfcc.shape[:-2], num_frames, mfcc.shape[-1] * stack)

    def __call__(self, waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
        """One mono waveform (num_samples,) -> model frames (T, n_mfcc * stack)."""
        return self.stack(self.mfcc(torch.as_tensor(waveform)))

    def batch(self, waveforms: list[torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Featurize many waveforms; returns ``(features (B, T_max, D) zero-padded, feature_lengths (B,))``.

        One item at a time: the STFT buffers of a few seconds stay in cache, which is over twice as
        fast as one call on the padded batch, and no padding is transformed.
        """
        features = [self(torch.as_tensor(w, dtype=torch.float32)) for w in waveforms]
        lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
        if not features:
            return torch.zeros(0, 0, self.config.model_input_dim), lengths
        return torch.nn.utils.rnn.pad_sequence(features, batch_first=True), lengths


class StreamingFeaturizer:
    """Feeds a signal in arbitrary pieces and emits exactly the frames the whole signal would give.

    State is the unconsumed sample tail (less than one window plus a hop) and the MFCC frames that
    do not yet fill a stacked model frame.
    """

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer
        self._samples = torch.zeros(0)
        self._pending_mfcc = torch.zeros(0, featurizer.config.n_mfcc)

    def samples_needed(self, frames: int) -> int:
        """How many more samples make ``accept`` return ``frames`` more model frames (0: already can)."""
        config = self.featurizer.config
        mfcc_needed = frames * config.stack - len(self._pending_mfcc)
        if mfcc_needed <= 0:
            return 0
        return max(0, config.win_length + (mfcc_needed - 1) * config.hop_length - len(self._samples))

    def accept(self, samples: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Append samples; return the new model frames (k, D), possibly k = 0."""
        config = self.featurizer.config
        self._samples = torch.cat([self._samples, torch.as_tensor(samples, dtype=torch.float32)])
        num_frames = self.featurizer.num_mfcc_frames(self._samples.shape[0])
        if num_frames > 0:
            consumed = num_frames * config.hop_length
            used = self._samples[: consumed - config.hop_length + config.win_length]
            new_mfcc = self.featurizer.mfcc(used)
            self._samples = self._samples[consumed:]
            self._pending_mfcc = torch.cat([self._pending_mfcc, new_mfcc])
        ready = self.featurizer.stack(self._pending_mfcc)
        self._pending_mfcc = self._pending_mfcc[ready.shape[0] * config.stack :]
        return ready


class FeatureStats:
    """Running global mean/variance of MFCC coefficients (float64 sums), computed by training."""

    def __init__(self, num_coefficients: int) -> None:
        self.count = 0
        self._sum = torch.zeros(num_coefficients, dtype=torch.float64)
        self._sum_squares = torch.zeros(num_coefficients, dtype=torch.float64)

    def update(self, frames: torch.Tensor) -> None:
        """Add frames (..., F); stacked model frames may be passed, they are unstacked by width."""
        flat = frames.reshape(-1, self._sum.shape[0]).double()
        self.count += flat.shape[0]
        self._sum += flat.sum(dim=0)
        self._sum_squares += (flat * flat).sum(dim=0)

    def mean_std(self, floor: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as float32; std floored so silent coefficients do not explode."""
        if self.count == 0:
            raise ValueError("no frames were added to the feature statistics")
        mean = self._sum / self.count
        variance = (self._sum_squares / self.count - mean * mean).clamp(min=0.0)
        return mean.float(), variance.sqrt().clamp(min=floor).float()
