"""Where data comes from: models (transformer-lens, Hugging Face directories, worlds),
SAEs (sae-lens, sparsify), corpora (files, datasets), and the features artifact."""
