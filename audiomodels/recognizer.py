"""The one inference entry point: checkpoint in, transcripts with times out.

Training evaluation, the server and the batch job all call :class:`Recognizer`, so there is one
featurizer and one decoder in the product. Results are plain frozen dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from audiomodels.alignment import LabelSpan, WordSpan, align_labels, group_words
from audiomodels.audio import prepare_waveform
from audiomodels.char_check import CharCheck
from audiomodels.checkpoint import shared_model
from audiomodels.config import AcousticConfig, Chunking
from audiomodels.calibration import Calibration, own_calibration
from audiomodels.context import BiasedFusion, PhraseBias
from audiomodels.decoding import FrameSearch, GreedySearch, PrefixBeam, PrefixScorer, Settling, frame_argmax
from audiomodels.features import Featurizer
from audiomodels.labels import LabelSet
from audiomodels.lm import Fusion
from audiomodels.model import AcousticModel
from audiomodels.phone_check import PhoneCheck, PhoneOpinion
from audiomodels.silence import LEADING_SILENCE_S, SPEECH_LEVEL_DBFS, level_gain, level_window_s, speech_start
from audiomodels.warp import check_warps, mean_posterior, warp_features, warp_matrix

DEFAULT_MAX_DURATION_S = 3600.0
CERTAINLY_NOT = -1e4  # log-prob of the non-blank labels on skipped silence (exp() is 0 in float32; no inf arithmetic)
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 matrix products run in hardware on ``device`` (else they are emulated, and slower).

    CPUs with AVX512-BF16 or AMX and CUDA GPUs of compute capability 8 and up. (oneDNN also
    "supports" bf16 on plain AVX512 by emulation, where the BiGRU measured 1.3-2x slower than fp32.)
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> ``bfloat16`` where the hardware has it, else ``float32``; names are checked."""
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose auto, {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class Segment:
    """One label with its contiguous time span and mean posterior (0..1)."""

    label: str
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class Word:
    """One word with its time span and confidence: the probability that it is right where the
    model has a calibration (:mod:`audiomodels.calibration`; its times then moved by the model's
    measured bias), else the geometric mean of its label scores."""

    word: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    """Everything the service layer sees of one recognized or aligned utterance."""

    text: str
    words: tuple[Word, ...]
    segments: tuple[Segment, ...]
    frame_labels: tuple[str, ...]  # per model frame: the argmax label ("<blank>" for blank)
    duration_s: float
    frame_shift_s: float
    # Beam search's runner-up hypotheses, best first, each with its own alignment (only when
    # more than one alternative was asked for; their own ``alternatives`` are empty).
    alternatives: tuple["Transcript", ...] = ()

    @property
    def confidence(self) -> float:
        """Utterance confidence: mean word confidence (0 for an empty transcript)."""
        return float(np.mean([w.confidence for w in self.words])) if self.words else 0.0


class Decodable(NamedTuple):
    """One utterance's model output as :meth:`Recognizer.decode` takes it."""

    log_probs: torch.Tensor  # (T, V) of the recognizer's model
    duration_s: float
    check_log_probs: torch.Tensor | None = None  # the phone or char check's model's, when one runs


class Recognizer:
    """Featurizer + model + label set rebuilt from one checkpoint."""

    def __init__(
        self,
        config: AcousticConfig,
        model: AcousticModel,
        *,
        device: str | torch.device = "cpu",
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        chunking: Chunking | None = None,
        precision: str = "float32",
        fusion: Fusion | None = None,
        warps: Sequence[float] = (),
        leading_silence_s: float | None = LEADING_SILENCE_S,
        level_dbfs: tuple[float, float] | None = SPEECH_LEVEL_DBFS,
        phone_check: PhoneCheck | None = None,
        char_check: CharCheck | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """``precision`` is the model's arithmetic: ``bfloat16`` runs large batches about 1.7x faster on
        CPUs with native support and changes transcripts very little (see the batch benchmark);
        single utterances are faster in ``float32``. Features, search and alignment stay float32.
        ``fusion`` adds a label language model to beam search (``beam_size`` > 1; greedy ignores it).
        ``warps`` (e.g. 0.88, 0.96, 1, 1.04, 1.12) runs the model once per frequency-warp factor and
        averages the frame posteriors (audiomodels/warp.py): more accurate on voices unlike the
        training voices, at one model pass per factor. Empty = one plain pass. Live streams get
        the same ensemble by passing :attr:`warp_matrices` to :func:`audiomodels.streaming.step_streams`.
        ``leading_silence_s``: transcription skips the silence before the speech but this much
        (:mod:`audiomodels.silence`, the rule live streams follow); ``None`` runs the model from
        the first sample. ``level_dbfs``: an utterance whose start's loudest block lies outside this range
        (the training speech's) is scaled to its nearer edge, unless that would raise its noise too
        far (:func:`audiomodels.silence.level_gain`; also each utterance of a live stream); ``None``
        leaves every level alone. ``phone_check`` (char models): a phone model guides beam search and
        re-ranks its hypotheses by its likelihood of their phones (:mod:`audiomodels.phone_check`).
        ``char_check`` (phone models): a char model's transcript, phonemized, joins and guides the
        ranking of beam search's hypotheses (:mod:`audiomodels.char_check`). ``calibration`` maps
        recognized words' confidences to probabilities and moves word times by the model's bias
        (:mod:`audiomodels.calibration`; :meth:`from_checkpoint` loads the checkpoint's own); None
        leaves them raw.
        """
        self.config = config
        self.chunking = chunking  # None = full context; else the latency-controlled mode a stream gets
        self.labels = LabelSet.from_config(config.labels)
        self.featurizer = Featurizer(config.features)
        self.device = torch.device(device)
        self.dtype = PRECISIONS[resolve_precision(precision, self.device)]
        weights = next(model.parameters())
        if weights.dtype != self.dtype or weights.device != self.device:
            model = copy.deepcopy(model)  # the caller's model (shared by other recognizers) keeps its dtype and device
        self.model = model.to(self.device, self.dtype).eval()
        self.max_duration_s = max_duration_s
        if fusion is not None:
            fusion.lm.check_labels(self.labels.symbols)
        self.fusion = fusion
        self.warps = check_warps(warps)
        self.warp_matrices = [warp_matrix(config.features, w) for w in self.warps]
        self.leading_silence_s = leading_silence_s
        self.level_dbfs = level_dbfs
        if phone_check is not None:
            phone_check.check_serves(self.labels, self.sample_rate)
        self.phone_check = phone_check
        if char_check is not None:
            char_check.check_serves(self.labels, self.sample_rate)
        self.char_check = char_check
        # the char model that reads for the char check (phone-checked by this model): CharCheck.reader
        self.char_reader = char_check.reader(self) if char_check is not None else None
        self.calibration = calibration

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: object) -> "Recognizer":
        """Load a checkpoint file (safely) and build a ready recognizer; recognizers of one file
        share its model (:func:`audiomodels.checkpoint.shared_model`). Its calibration
        (``NAME.calibration.json``) is used unless ``calibration`` is given."""
        config, model, _ = shared_model(path)
        if "calibration" not in kwargs:
            kwargs["calibration"] = own_calibration(path)
        return cls(config, model, **kwargs)  # type: ignore[arg-type]

    @property
    def sample_rate(self) -> int:
        """The rate the model was trained at; inputs are resampled to it."""
        return self.config.features.sample_rate

    def prepare(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Validate, downmix and resample one waveform (raises ``AudioError``)."""
        return prepare_waveform(waveform, sample_rate, target_rate=self.sample_rate, max_duration_s=self.max_duration_s)

    @torch.inference_mode()
    def emissions(self, waveforms: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared waveforms -> ``(log_probs (B, T, V) on CPU, lengths (B,))`` in one model call; with
        K warps the call holds the K warped copies of the batch (20% faster on 2 threads than K
        calls) and their posteriors are averaged."""
        features, lengths = self.featurizer.batch(list(waveforms))
        passes = [warp_features(features, m) for m in self.warp_matrices] or [features]
        log_probs, out_lengths = self.model(
            torch.cat(passes).to(self.device, self.dtype), lengths.repeat(len(passes)).to(self.device), self.chunking
        )
        log_probs = mean_posterior(log_probs.float().split(len(waveforms)))
        return log_probs.cpu(), out_lengths[: len(waveforms)].cpu()

    def transcribe(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        *,
        beam_size: int = 1,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
    ) -> Transcript:
        """Recognize one utterance."""
        return self.transcribe_batch(
            [(waveform, sample_rate)], beam_size=beam_size, alternatives=alternatives, bias=bias
        )[0]

    def emission_list(self, speech: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Each model-rate waveform's log-probs (T, V), as heard (no silence skipped, no level set):
        what a check's model makes of speech the checked model has already prepared."""
        log_probs, lengths = self.emissions(speech)
        return [log_probs[row, :length] for row, length in enumerate(lengths.tolist())]

    def transcribe_batch(
        self,
        items: Sequence[tuple[np.ndarray | torch.Tensor, int]],
        *,
        beam_size: int = 1,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
        max_batch_seconds: float = 600.0,
    ) -> list[Transcript]:
        """Recognize many utterances: length-sorted, padded, one model call per batch
        (:meth:`decodable_batch`), each then decoded with the same options (:meth:`decode`)."""
        return [
            self.decode(*output, beam_size=beam_size, alternatives=alternatives, bias=bias)
            for output in self.decodable_batch(items, max_batch_seconds, check=beam_size > 1)
        ]

    def decodable_batch(
        self,
        items: Sequence[tuple[np.ndarray | torch.Tensor, int]],
        max_batch_seconds: float = 600.0,
        check: bool = True,
    ) -> list[Decodable]:
        """Each utterance's log-probs as :meth:`decode` takes them, and its duration, in input order;
        with a :attr:`phone_check` or :attr:`char_check` (and ``check`` true: some of them will be
        beam searched) also its check model's log-probs of the same speech (silence skipped, level set).

        The model runs on length-sorted, padded batches; ``max_batch_seconds`` bounds the padded
        audio per model call (memory; a K-warp ensemble counts each utterance K times). Apart from
        decoding, so that requests with different decoding options share model calls (the
        server's batcher) and one model output can be decoded many ways (benchmarks).
        """
        prepared = [self.prepare(waveform, rate) for waveform, rate in items]
        starts = [self.speech_start(waveform) for waveform in prepared]
        speech = [self.leveled(waveform[start:]) for waveform, start in zip(prepared, starts)]
        frame_samples = self.featurizer.config.frame_samples
        checker = (self.phone_check or self.char_check) if check else None
        results: list[Decodable | None] = [None] * len(prepared)
        budget = max_batch_seconds * self.sample_rate / max(1, len(self.warps))
        for batch in _length_sorted_batches(speech, budget):
            log_probs, lengths = self.emissions([speech[i] for i in batch])
            heard = checker.recognizer.emission_list([speech[i] for i in batch]) if checker else [None] * len(batch)
            for row, index in enumerate(batch):
                emitted = self._after_silence(log_probs[row, : lengths[row]], starts[index] // frame_samples)
                results[index] = Decodable(emitted, len(prepared[index]) / self.sample_rate, heard[row])
        return [r for r in results if r is not None]

    def speech_start(self, prepared: np.ndarray) -> int:
        """First sample of a prepared waveform the model needs to see (a whole model frame)."""
        if self.leading_silence_s is None:
            return 0
        return speech_start(
            prepared, self.sample_rate, self.leading_silence_s, align=self.featurizer.config.frame_samples
        )

    def level_window_s(self, chunking: Chunking | None = None) -> float:
        """Seconds of an utterance's start that set its gain in a run with ``chunking`` (default:
        this recognizer's): a stream waits for them, so its latency bounds them."""
        chunking = chunking or self.chunking
        return level_window_s(chunking.latency_frames * self.config.features.frame_shift_s if chunking else None)

    def level_gain(self, speech: np.ndarray, chunking: Chunking | None = None) -> float:
        """The gain for an utterance whose (model-rate) samples start with ``speech``, run with ``chunking``."""
        if self.level_dbfs is None:
            return 1.0
        return level_gain(speech, self.sample_rate, self.level_dbfs, self.level_window_s(chunking))

    def leveled(self, speech: np.ndarray) -> np.ndarray:
        """``speech`` (from its :meth:`speech_start` on) scaled by its :meth:`level_gain`."""
        gain = self.level_gain(speech)
        return speech if gain == 1.0 else speech * np.float32(gain)

    def _after_silence(self, log_probs: torch.Tensor, skipped_frames: int) -> torch.Tensor:
        """Log-probs with the skipped silence back in front as certain blanks, so every time and
        frame label is the whole recording's."""
        if not skipped_frames:
            return log_probs
        blanks = torch.full((skipped_frames, log_probs.shape[1]), CERTAINLY_NOT, dtype=log_probs.dtype)
        blanks[:, self.labels.blank_id] = 0.0
        return torch.cat([blanks, log_probs])

    def decode(
        self,
        log_probs: torch.Tensor,
        duration_s: float,
        check_log_probs: torch.Tensor | None = None,
        *,
        beam_size: int = 1,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
    ) -> Transcript:
        """One utterance's log-probs (T, V) -> transcript with aligned label segments and words
        (:meth:`ranked`, then :meth:`transcript`)."""
        hypotheses = self.ranked(log_probs, check_log_probs, beam_size=beam_size, alternatives=alternatives, bias=bias)
        return self.transcript(log_probs, hypotheses[:alternatives], duration_s, beam_size=beam_size)

    def ranked(
        self,
        log_probs: torch.Tensor,
        check_log_probs: torch.Tensor | None = None,
        *,
        beam_size: int = 1,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
    ) -> list[list[int]]:
        """One utterance's hypotheses (label ids) from :meth:`search` over all its log-probs (T, V),
        best first, at least ``alternatives`` where the search has them. With ``check_log_probs``
        (from :meth:`decodable_batch`) beam search is checked: by a :attr:`phone_check`
        (:meth:`_checked`) or a :attr:`char_check` (its reading joins the final beam, which it ranks)."""
        checked = check_log_probs is not None and beam_size > 1
        if checked and self.phone_check is not None:
            opinion = self.phone_check.opinion(check_log_probs, self.labels)
            return self._checked(log_probs, opinion, beam_size, alternatives, bias)
        search = self.search(beam_size, alternatives, bias)
        search.advance(log_probs)
        if checked and self.char_check is not None:
            reading = self.char_check.reading(self.char_reader, check_log_probs, log_probs, beam_size, self.labels)
            blank = self.labels.blank_id
            return self.char_check.rank(search.hypotheses(beam_size), log_probs, blank, self._scorer(bias), reading)
        return search.hypotheses(alternatives)

    def _checked(
        self, log_probs: torch.Tensor, opinion: PhoneOpinion, beam_size: int, alternatives: int, bias: PhraseBias | None
    ) -> list[list[int]]:
        """Beam search with the phone check (:mod:`audiomodels.phone_check`), best first: the phone
        model guides one search, and the beams of it and of the same search unguided are ranked
        together by one exact score. The unguided beam keeps in the running what the guide pruned:
        where the phone model hears badly, guided hypotheses run words together or stop spelling
        to put its cost off (models/HISTORY.md)."""
        assert self.phone_check is not None
        searches = [self.search(beam_size, alternatives, bias, phone_opinion=opinion)]  # checks alternatives
        if self.phone_check.search_weight > 0:
            searches.append(self.search(beam_size, bias=bias))
        candidates: dict[tuple[int, ...], list[int]] = {}
        for search in searches:
            search.advance(log_probs)
            for label_ids in search.hypotheses(beam_size):
                candidates.setdefault(tuple(label_ids), label_ids)
        scorer = self.phone_check.guide(self._scorer(bias), opinion)
        return self.phone_check.rank(list(candidates.values()), log_probs, self.labels.blank_id, scorer, opinion)

    def search(
        self,
        beam_size: int = 1,
        alternatives: int = 1,
        bias: PhraseBias | None = None,
        chunking: Chunking | None = None,
        phone_opinion: PhoneOpinion | None = None,
    ) -> FrameSearch:
        """A fresh search for one utterance: greedy, or beam search with this recognizer's LM.

        ``alternatives`` > 1 (beam search only, at most ``beam_size``) is how many hypotheses will be
        asked of it. ``bias`` (beam search only) favours hinted phrases, on top of the LM if there is
        one. Fed frames in pieces it gives the one-pass result, so live streams search as they go.
        In a chunked mode (``chunking``, default this recognizer's) beam search settles its leader's
        words every chunk (:class:`audiomodels.decoding.Settling`) as a live stream's does, so a
        chunked recognizer is a stream's offline twin in decoding too. ``phone_opinion`` (the
        :attr:`phone_check`'s model over the whole utterance, so offline only) guides beam search."""
        blank = self.labels.blank_id
        if beam_size <= 1:
            if alternatives > 1:
                raise ValueError(f"{alternatives} alternatives need beam search (beam_size >= {alternatives})")
            if bias is not None:
                raise ValueError("phrase hints need beam search (beam_size > 1)")
            return GreedySearch(blank)
        if not 1 <= alternatives <= beam_size:
            raise ValueError(f"alternatives must be 1-{beam_size} (the beam), got {alternatives}")
        scorer = self._scorer(bias)
        if phone_opinion is not None and self.phone_check is not None:
            scorer = self.phone_check.guide(scorer, phone_opinion)
        chunking = chunking or self.chunking
        separator = self.labels.word_separator_id()
        settling = Settling(chunking.chunk, separator) if chunking and separator is not None else None
        return PrefixBeam(beam_size, blank, fusion=scorer, settling=settling)

    def _scorer(self, bias: PhraseBias | None) -> PrefixScorer | None:
        """What beam search adds to the acoustic score: the LM, phrase hints on top of it, or neither."""
        return self.fusion if bias is None else BiasedFusion(bias, self.fusion)

    def transcript(
        self, log_probs: torch.Tensor, hypotheses: Sequence[list[int]], duration_s: float, *, beam_size: int = 1
    ) -> Transcript:
        """Searched hypotheses (label ids, best first) -> the best one's transcript, each aligned to
        ``log_probs`` for its own times; the runner-ups go to :attr:`Transcript.alternatives`.
        ``beam_size``: the search's, which picks the words' confidence map."""
        blank = self.labels.blank_id
        mode = "beam" if beam_size > 1 and self.fusion is not None else "greedy"
        best, *others = [
            self._transcript(log_probs, align_labels(log_probs, label_ids, blank=blank), duration_s, mode)
            for label_ids in hypotheses
        ]
        return dataclasses.replace(best, alternatives=tuple(others)) if others else best

    def align(self, waveform: np.ndarray | torch.Tensor, sample_rate: int, transcript: str) -> Transcript:
        """Force-align a known transcript (raises ``LabelError``/``AlignmentError`` when it cannot)."""
        prepared = self.prepare(waveform, sample_rate)
        prepared = prepared * np.float32(self.level_gain(prepared[self.speech_start(prepared) :]))
        label_ids = self.labels.encode_text(transcript)
        log_probs, lengths = self.emissions([prepared])
        emissions = log_probs[0, : lengths[0]]
        spans = align_labels(emissions, label_ids, blank=self.labels.blank_id)
        return self._transcript(emissions, spans, len(prepared) / self.sample_rate)

    def word_spans(self, spans: Sequence[LabelSpan]) -> list[WordSpan]:
        """An alignment's words (label spans between word separators)."""
        return group_words(spans, self.labels.word_separator_id())

    def word_confidence(self, word: WordSpan, text: str, mode: str | None) -> float:
        """P(the word ``text``, aligned as ``word``, is right) by the confidence map of ``mode``
        decoding (``"greedy"`` or ``"beam"``); the raw confidence for an alignment (``mode`` None)
        or without a map for ``mode`` (maps fitted without an LM have no beam map)."""
        if mode is None or self.calibration is None or mode not in self.calibration.maps:
            return word.confidence
        return self.calibration.confidence(mode, word, text)

    def _transcript(
        self, log_probs: torch.Tensor, spans: list[LabelSpan], duration_s: float, mode: str | None = None
    ) -> Transcript:
        """``mode``: the decoding that found the labels (None: a forced alignment, whose word
        confidences stay alignment scores). Word times and label segments' ends are moved by the
        :attr:`calibration`'s measured bias (alignments' too)."""
        shift = self.config.features.frame_shift_s

        def seconds(frame: int) -> float:
            return round(min(frame * shift, duration_s), 3)

        segment_times = [(seconds(s.start_frame), seconds(s.end_frame)) for s in spans]
        if self.calibration is not None:
            segment_times = self.calibration.segment_times(segment_times, duration_s)
        segments = tuple(
            Segment(self.labels.label(s.label_id), start, end, round(s.score, 4))
            for s, (start, end) in zip(spans, segment_times, strict=True)
        )
        word_spans = self.word_spans(spans)
        texts = [self.labels.decode(w.label_ids) for w in word_spans]
        times = [(seconds(w.start_frame), seconds(w.end_frame)) for w in word_spans]
        if self.calibration is not None:
            times = self.calibration.word_times(times, duration_s)
        words = tuple(
            Word(text, start, end, round(self.word_confidence(w, text, mode), 4))
            for w, text, (start, end) in zip(word_spans, texts, times, strict=True)
        )
        frame_labels = tuple(self.labels.label(int(i)) for i in frame_argmax(log_probs))
        text = self.labels.decode([s.label_id for s in spans])
        return Transcript(text, words, segments, frame_labels, round(duration_s, 3), shift)


def _length_sorted_batches(waveforms: Sequence[np.ndarray], max_padded_samples: float) -> list[list[int]]:
    """Indices grouped longest-first so that (batch size x longest item) stays under the budget."""
    order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]), reverse=True)
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * len(waveforms[batches[-1][0]]) <= max_padded_samples:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches
