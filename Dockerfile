# speechlabel on CPU: `speechlabel serve` by default; docker-compose.yml also runs the batch job and
# training from this image. Models are mounted at /models, never baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libsndfile reads WAV/FLAC/OGG; espeak-ng phonemizes transcripts for phone models and speaks corpora.
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
USER speechlabel

EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["speechlabel", "health", "--server", "localhost:50051"]
CMD ["speechlabel", "serve", "--host", "0.0.0.0", "--port", "50051", "--models", "/models"]
