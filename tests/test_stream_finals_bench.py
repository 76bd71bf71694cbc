"""benchmarks/stream_finals.py: each variant's finals are scored as the recognizer they stand for
scores the same utterances offline, and the wait for each final is measured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from audiomodels.config import Chunking
from audiomodels.recognizer import Recognizer
from service.sessions import StreamSettings
from tests.bench_scripts import benchmark_module, speech_manifest
from training.evaluate import evaluate


def test_chunked_and_full_context_finals_score_as_their_offline_twins(
    trained: tuple[Path, list[float]], speech_files: dict[str, Path], tmp_path: Path
) -> None:
    manifest, utterances = speech_manifest(speech_files, tmp_path)
    recognizer = Recognizer.from_checkpoint(trained[0])
    chunked = StreamSettings("pcm16", 16000, beam_size=4)
    full = dataclasses.replace(chunked, full_context_finals=True)
    with benchmark_module("stream_finals.py") as bench:
        result = bench.score({"chunked": (recognizer, chunked), "full context": (recognizer, full)}, manifest, None)

    assert result["utterances"] == len(utterances) and result["audio_s"] > 0
    streaming: Chunking = recognizer.config.model.streaming
    twins = {"chunked": Recognizer(recognizer.config, recognizer.model, chunking=streaming), "full context": recognizer}
    for variant, twin in twins.items():
        row = result["variants"][variant]
        offline = evaluate(twin, utterances, beam_size=4).summary()["rates"]
        assert (row["cer"], row["wer"]) == (round(offline["cer"], 4), round(offline["wer"], 4)), variant
        assert 0 < row["final_latency_ms"]["p50"] <= row["final_latency_ms"]["p95"] and row["real_time_factor"] > 0
