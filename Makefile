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

# The demo rebuilds the toy world from scratch, trains an SAE on the shipped themes
# language model, extracts the themes world's SAE features (with its MLP neurons) and
# squeezes them into 32 synthetic neurons twice: linear neurons for the geometry
# (polytope, superposition-tax) and ReLU neurons, whose basis is privileged, for the
# neuron-level analyses (polysemanticity, or-gate; docs/analyses.md). Then the resid0 SAE's
# atoms are clustered into themes by the documents they fire in, and the atlas reads how a
# ReLU Squeezer of the same features spread those themes over its neurons (docs/cluster.md).
# Last, the model is steered towards one topic's theme and another topic's theme is clamped
# away, each beside its single atom and random baselines, and all eight topics are
# monitored (docs/steer.md). And on the modadd world, the Fourier structure of its neurons,
# its SAE's latents, and which latents converge across the SAE's three seeds (docs/analyses.md).
demo: $(STAMP)
	$(BIN)/codec world list
	$(BIN)/codec world build toy --out demo/toy
	$(BIN)/codec sae train themes --steps 500 --seeds 0,1,2 --out demo/sae-seeds
	$(BIN)/codec compare dictionaries demo/sae-seeds/seed-0 demo/sae-seeds/seed-1 demo/sae-seeds/seed-2 --out demo/comparison-seeds
	$(BIN)/codec extract themes --tokens 100000 --neurons blocks.0.mlp.hook_post --out demo/features
	$(BIN)/codec squeeze demo/features --m 32 --k 8 --epochs 20 --rescale max --out demo/squeezer
	$(BIN)/codec squeeze demo/features --m 32 --k 8 --epochs 20 --rescale max --neuron-act relu --out demo/squeezer-relu
	$(BIN)/codec analyze demo/squeezer demo/features -P polytope,superposition-tax --out demo/analysis
	$(BIN)/codec analyze demo/squeezer-relu demo/features -P polysemanticity,or-gate --out demo/analysis-relu
	$(BIN)/codec extract themes --sae mlp0 --tokens 100000 --neurons blocks.0.mlp.hook_post --out demo/features-mlp0
	$(BIN)/codec squeeze demo/features-mlp0 --m 256 --k 16 --epochs 10 --rescale max --neuron-act relu --out demo/squeezer-mlp0
	$(BIN)/codec compare neurons demo/squeezer-mlp0 --out demo/comparison
	$(BIN)/codec extract themes --sae resid0 --tokens 100000 --out demo/features-resid0
	$(BIN)/codec cluster demo/features-resid0 --embed coactivation --window 0 --out demo/themes
	$(BIN)/codec squeeze demo/features-resid0 --m 32 --k 4 --epochs 20 --rescale max --neuron-act relu --out demo/squeezer-resid0
	$(BIN)/codec analyze demo/squeezer-resid0 demo/themes -P themes --out demo/analysis-themes
	$(BIN)/codec steer themes --themes demo/themes --theme telescope --sweep 0:0.4:0.1 --out demo/steering
	$(BIN)/codec steer themes --themes demo/themes --theme flour --method clamp --sweep -1:0:0.5 --out demo/steering-clamp
	$(BIN)/codec monitor themes --themes demo/themes --theme flour --theme anchor --theme telescope --theme piano \
		--theme doctor --theme stadium --theme hedge --theme stock --out demo/monitoring
	$(BIN)/codec extract modadd --tokens 3481 --out demo/features-modadd
	$(BIN)/codec analyze demo/features-modadd -P fourier --out demo/analysis-modadd
	$(BIN)/codec compare dictionaries modadd:mlp modadd:mlp-s1 modadd:mlp-s2 --out demo/comparison-modadd
	$(BIN)/codec analyze demo/comparison-modadd -P stability --out demo/analysis-modadd

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
