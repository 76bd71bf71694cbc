# Newcomer entry points: make install | make test | make demo | make bench (| make voices: more corpus voices)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The held-out split of the seed-0 12-hour corpus that the accuracy benchmarks score.
TEST_SPLIT := data/corpus/test.jsonl
# espeak-ng/flite/festival(+voices) speak the synthetic corpus; fortunes is its text source (all Debian main).
SYSTEM_PACKAGES := espeak-ng sox libsndfile1 flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes
# RHVoice, SVOX Pico and MBROLA (Debian contrib/non-free, also spoken by festival: festvox-us1...): the corpus's
# female and accented English voices; festival's British rab and don voices (contrib: the festival-extra engine).
VOICE_PACKAGES := festvox-rablpc16k festvox-don rhvoice rhvoice-english libttspico-utils mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-us1 festvox-us2 festvox-us3 festvox-en1
MUSIC_PACKAGES := extremetuxracer-data frozen-bubble-data
NONFREE_SOURCES := /etc/apt/sources.list.d/speechlabel-nonfree.sources
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages voices corpora test demo bench bench-accuracy bench-streaming bench-robustness bench-warps bench-phone-check bench-char-check bench-search bench-word-times bench-stream-finals bench-pack bench-levels bench-phrases gpu-inputs corpus-kokoro calibrate clean

install: $(STAMP)

# Debian packages the product needs (speech synthesis for corpora and tests, audio I/O); only missing ones.
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Opt-in: adds Debian's contrib/non-free components (in a sources file of their own) for the voice packages,
# and fetches Kokoro's English voice tables (npm kokoro-js, sha512-checked) into data/kokoro-voices.
voices:
	python3 training/fetch_kokoro_voices.py
	@missing=$$(for p in $(VOICE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing voice packages (Debian non-free): $$missing"; \
		$(SUDO) sh training/debian-nonfree-sources.sh $(NONFREE_SOURCES); \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | system-packages
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

test: install
	$(PY) -m ruff check --quiet .
	$(PY) -m pytest

demo: install
	$(PY) -m service.demo

bench: install
	$(PY) benchmarks/features.py
	$(PY) benchmarks/audio_decode.py
	$(PY) benchmarks/batch_transcribe.py --minutes 30 --checkpoint models/char.ckpt

# Shipped char model (plain, with its LM, and phone-checked) vs PocketSphinx and Whisper tiny.en on the held-out test split of the seed-0 corpus
# (its first 174 utterances, 11.7 min: the test split of the 4-hour plan; the peers run at 3-4x real time).
bench-accuracy: install $(TEST_SPLIT)
	$(PY) -m pip install -q -e '.[bench]'
	OMP_NUM_THREADS=1 $(PY) benchmarks/accuracy.py --manifest data/corpus/test.jsonl --limit 174 --checkpoint models/char.ckpt --phone-check

# Live streams under load (batching on vs off), accuracy in full-context vs chunked streaming mode,
# endpointing, and what interims say before their finals per decoder.
bench-streaming: install $(TEST_SPLIT)
	$(PY) benchmarks/stream_load.py --streams 10,25,50,75,100,125,150 --modes on,off
	$(PY) benchmarks/streaming_accuracy.py --checkpoints models/char.ckpt models/phone.ckpt
	$(PY) benchmarks/endpointing.py
	$(PY) benchmarks/endpointing.py --first-pause 0 --out benchmarks/results/endpointing_mid_sentence.json
	$(PY) benchmarks/stream_interims.py

# Clean held-out speech vs the same in white, pink and brown noise at 30-5 dB SNR, in three rooms, on a phone line and through Opus and AAC at call bitrates, both shipped models.
bench-robustness: install $(TEST_SPLIT) data/music
	$(PY) benchmarks/robustness.py --checkpoints models/char.ckpt models/phone.ckpt --recordings data/music

# Real music for bench-robustness (nothing can be downloaded from the web here, but Debian's game data
# carries composed soundtracks): Extreme Tux Racer's and Frozen Bubble's music, unpacked, not installed.
data/music:
	rm -rf $@.tmp && mkdir -p $@.tmp
	$(SUDO) apt-get update -qq
	cd $@.tmp && apt-get download -qq $(MUSIC_PACKAGES) && for deb in *.deb; do dpkg -x $$deb unpacked; done
	mkdir -p $@.tmp/music
	find $@.tmp/unpacked \( -path '*/etr/music/*.ogg' -o -name '*zik*.ogg' \) -exec cp {} $@.tmp/music/ \;
	mv $@.tmp/music $@ && rm -rf $@.tmp

# Both shipped models plainly vs with the warp ensemble (--warps), greedy and beam 8 + LM, on dev and the held-out tests.
bench-warps: install corpora
	$(PY) benchmarks/warp_ensemble.py --checkpoints models/char.ckpt models/phone.ckpt

# The char model's beam (8 and 32, + LM) as it ranks itself, re-ranked by the phone model, and guided and re-ranked (--phone-check), dev and held-out tests.
bench-phone-check: install corpora
	$(PY) benchmarks/phone_check.py

# The searches alone on the same log-probs (100 test utterances, both shipped models): greedy, our beam search
# (8 and 32, with and without the LM) and flashlight's C++ beam search (the dev extra's flashlight-text) beside it.
bench-search: install $(TEST_SPLIT)
	OMP_NUM_THREADS=1 $(PY) benchmarks/beam_search.py

# Word start and end times of both shipped models against espeak-ng's true times, raw and calibrated, clean and in noise.
bench-word-times: install $(TEST_SPLIT)
	$(PY) benchmarks/word_times.py --noise-snr-db 20

# The phone model's beam (8 and 32, + LM) as it ranks itself and ranked with the char model's reading (--char-check), dev and held-out tests.
bench-char-check: install corpora
	$(PY) benchmarks/char_check.py

# Live streams' finals, chunked vs decoded again whole (full_context_finals), with and without the phone check:
# errors and the wait for each final.
bench-stream-finals: install corpora
	$(PY) benchmarks/stream_finals.py

# Both shipped models on held-out speech at -10 to -70 dBFS and on noise alone, with and without the level gain.
bench-levels: install $(TEST_SPLIT)
	$(PY) benchmarks/levels.py

# Phrase hints: the words the char model's LM does not know, hinted among distractors, per boost (dev tunes, test reports).
bench-phrases: install $(TEST_SPLIT)
	$(PY) benchmarks/phrase_hints.py --manifest data/corpus/dev.jsonl --boosts 1 1.5 2 2.5 3 4 --out benchmarks/results/phrase_hints_dev.json
	$(PY) benchmarks/phrase_hints.py --boosts 1 2 3

# A feature pack's size, rounding and the char model's greedy CER on packed vs exact features (test split).
bench-pack: install $(TEST_SPLIT)
	$(PY) benchmarks/feature_pack.py

# The inputs of a GPU fine-tuning round (training/gpu_round.sh; README, Training on a lent GPU) in gpu/:
# the char model in float16, 100 dev utterances as FLAC and a feature pack filling the rest of 60 MB.
# Refit the shipped models' word confidence maps (models/NAME.calibration.json) on the dev sets,
# reporting on the held-out test sets; needed whenever a shipped checkpoint changes.
CALIBRATION_SETS := $(foreach c,corpus corpus-voices corpus-extra corpus-kokoro,--manifest data/$(c)/dev.jsonl --heldout data/$(c)/test.jsonl)
calibrate: install corpora corpus-kokoro
	$(PY) -m service.cli calibrate --checkpoint models/char.ckpt $(CALIBRATION_SETS)
	$(PY) -m service.cli calibrate --checkpoint models/phone.ckpt $(CALIBRATION_SETS)
gpu-inputs: install corpora corpus-kokoro
	rm -rf gpu
	$(PY) -m training.gpu_inputs --out gpu --init models/char.ckpt --dev data/corpus/dev.jsonl data/corpus-kokoro/dev.jsonl \
		--train data/corpus/train.jsonl data/corpus-voices/train.jsonl data/corpus-voices/train.jsonl \
		data/corpus-extra/train.jsonl data/corpus-kokoro/train.jsonl data/corpus-kokoro/train.jsonl \
		--feature-cache runs/feature_cache

$(TEST_SPLIT): | install
	$(VENV)/bin/speechlabel corpus synth --out data/corpus --hours 12 --seed 0 --engines espeak-ng,flite,festival,piper

# The shipped models' three training corpora, as the README's Retraining recipe names them (12-16 min on 2 cores;
# deterministic, so a fresh machine gets the same utterances and the same held-out test splits).
corpora: $(TEST_SPLIT) data/corpus-voices/test.jsonl data/corpus-extra/test.jsonl

data/corpus-voices/test.jsonl: | install voices
	$(VENV)/bin/speechlabel corpus synth --out data/corpus-voices --hours 4 --seed 0 \
		--engines rhvoice,pico,mbrola --hold-out cmu-slt --sentence-offset 10000

data/corpus-extra/test.jsonl: | install voices
	$(VENV)/bin/speechlabel corpus synth --out data/corpus-extra --hours 5 --seed 0 --engines festival-extra \
		--hold-out cmu-slt,mbrola-us3,pico-lh0 --sentence-offset 13100

# The Kokoro corpus of the shipped char model's latest round (models/HISTORY.md, seed 26): 2.7 h of
# Kokoro-82M's neural voices, six held out (about an hour on 2 cores; not in `corpora` for that hour).
corpus-kokoro: data/corpus-kokoro/test.jsonl

data/corpus-kokoro/test.jsonl: | install voices
	$(VENV)/bin/speechlabel corpus synth --out data/corpus-kokoro --hours 2.5 --seed 0 --jobs 2 --engines kokoro \
		--hold-out kokoro-af_bella,kokoro-af_sky,kokoro-am_fenrir,kokoro-am_michael,kokoro-bf_emma,kokoro-bm_lewis \
		--sentence-offset 17000

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
