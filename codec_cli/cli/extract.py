"""`codec extract`: SAE features per token from a model over a corpus."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import ExtractConfig


@command("extract", ExtractConfig)
def extract_command(cfg: ExtractConfig) -> Reply:
    """Extract SAE features per token from a model over a corpus: sparse, sharded, resumable."""
    from codec_cli.stages.extract import extract

    s = extract(cfg)
    line = (f"{s['rows']:,} tokens -> {s['out']}: L0 {s['l0']:.1f}, k {s['k']}, mass kept {s['mass_kept']:.2%}, "
            f"{s['bytes_per_row']:.0f} bytes/token (dense: {s['dense_bytes_per_row']:,}), "
            f"{s['tokens_per_s']:,.0f} tokens/s")
    return Reply(s, line)
