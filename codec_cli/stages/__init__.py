"""The stages as plain functions a notebook can call: extract, merge, squeeze, analyze, compare,
train_sae (and seeds, which runs one of them once per seed).

Each takes its config dataclass (codec_cli.config) and returns its summary as a dict;
none reads CLI state. The CLI (codec_cli.cli) is a thin projection of these."""
