# codec's set-up, demo, tests and benchmarks. Every target builds .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH=torch (or another pin) to get a CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.DELETE_ON_ERROR:
.PHONY: install demo test bench docs sweep-docs clean

install: $(STAMP)

$(STAMP): pyproject.toml tests/example_plugin/pyproject.toml tests/example_plugin/codec_example_plugin.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The example third-party plugin, installed the way a stranger's would be.
	$(BIN)/python -m pip install --quiet ./tests/example_plugin
	touch $(STAMP)

# The whole loop on the themes world, as the Makefile of real targets in examples/Makefile
# (docs/report.md): extract, squeeze, analyze, cluster, steer, monitor, compare, and one HTML
# report of it all, demo/report.html. Re-running it re-runs only what changed.
demo: $(STAMP)
	$(MAKE) -f examples/Makefile CODEC=$(BIN)/codec OUT=demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

docs: $(STAMP)
	$(BIN)/python -m codec_cli.cli.docs > docs/cli.md

# docs/sweep/: the tables and phase maps docs/sweep.md quotes, remade (about 20 minutes on two
# cores; --resume keeps the cells of an earlier run in build/sweep/). seeds/002's protocol at its
# failure point over ten seeds, with equal importances and with its code's decay of 0.7, and the
# relu recipe's L1 coefficient against sparsity.
SEED_002 := --grid sparsity=0.85,0.9,0.95 --grid seed=123,1,2,3,4,5,6,7,8,9 --jobs 2 --resume
sweep-docs: $(STAMP)
	$(BIN)/codec sweep toy $(SEED_002) --out build/sweep/seed-002
	$(BIN)/codec sweep toy $(SEED_002) -p importance_decay=0.7 --out build/sweep/seed-002-decay
	$(BIN)/codec sweep toy --grid sparsity=0.8:0.98:0.02 --grid sae.l1_coefficient=0.01,0.03,0.1,0.3,1 \
		--grid seed=0,1 --sae relu --jobs 2 --resume --out build/sweep/l1
	mkdir -p docs/sweep
	cp build/sweep/seed-002/cells.parquet docs/sweep/seed-002.parquet
	cp build/sweep/seed-002-decay/cells.parquet docs/sweep/seed-002-decay.parquet
	cp build/sweep/l1/cells.parquet docs/sweep/l1.parquet
	cp build/sweep/l1/maps/best_cosine.png docs/sweep/l1-best_cosine.png
	cp build/sweep/l1/maps/procrustes.png docs/sweep/l1-procrustes.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
