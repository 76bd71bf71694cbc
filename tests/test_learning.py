"""The whole path learns: real espeak-ng speech -> features -> BiGRU-CTC -> greedy decode recovers the text.

The tiny model is trained by the session fixture ``trained`` in conftest.py (the gRPC tests serve
it too). Also covers the Recognizer API (batch == single, words and segments with times); the
``speechlabel transcribe`` job is tested in test_batch.py.
"""

from __future__ import annotations

import pytest

from audiomodels.audio import load_audio
from audiomodels.recognizer import Recognizer

pytestmark = pytest.mark.slow


def test_loss_falls_and_greedy_decoding_recovers_the_text(trained, speech_files) -> None:
    path, losses = trained
    assert losses[-1] < 0.1 * losses[0], f"loss went {losses[0]:.2f} -> {losses[-1]:.2f}"
    recognizer = Recognizer.from_checkpoint(path)
    for text, wav in speech_files.items():
        waveform = load_audio(wav, target_rate=22050)  # a different input rate is resampled by the recognizer
        transcript = recognizer.transcribe(waveform, 22050)
        assert transcript.text == text
        assert recognizer.transcribe(waveform, 22050, beam_size=4).text == text


def test_words_and_segments_have_consistent_times(trained, speech_files) -> None:
    recognizer = Recognizer.from_checkpoint(trained[0])
    text, wav = next(iter(speech_files.items()))
    transcript = recognizer.transcribe(load_audio(wav), 16000)
    assert [w.word for w in transcript.words] == text.split()
    assert "".join(s.label for s in transcript.segments) == text
    ends = [0.0]
    for segment in transcript.segments:
        assert ends[-1] <= segment.start_s < segment.end_s <= transcript.duration_s
        assert 0.0 < segment.score <= 1.0
        ends.append(segment.end_s)
    for word in transcript.words:
        assert 0.0 <= word.start_s < word.end_s <= transcript.duration_s and 0 < word.confidence <= 1
    assert len(transcript.frame_labels) == recognizer.featurizer.num_model_frames(int(transcript.duration_s * 16000))


def test_batch_equals_single_and_align_a_given_transcript(trained, speech_files) -> None:
    recognizer = Recognizer.from_checkpoint(trained[0])
    waveforms = [load_audio(p) for p in speech_files.values()]
    batch = recognizer.transcribe_batch([(w, 16000) for w in waveforms])
    singles = [recognizer.transcribe(w, 16000) for w in waveforms]
    assert [t.text for t in batch] == [t.text for t in singles]
    assert [t.segments for t in batch] == [t.segments for t in singles]
    aligned = recognizer.align(waveforms[0], 16000, "Hello, World!")  # normalized before alignment
    assert [w.word for w in aligned.words] == ["hello", "world"]
    assert aligned.words[0].end_s <= aligned.words[1].start_s
