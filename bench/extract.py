"""`codec extract` against the bare model forward plus SAE encode, all measured in this run.

Two models: the shipped `themes` world (tiny: Python overhead shows) and a random
GPT-2-shaped model (4 layers, d_model 256, an 8,192-wide TopK SAE) saved as a Hugging
Face directory, read over a text corpus. For each:

- tokens/s of the bare loop (forward up to the hook, SAE encode) and of `extract`,
  and their ratio (target: extraction costs at most 1.3x the bare loop);
- bytes per token of the sparse shards (and of the whole artifact) against dense float32;
- peak resident memory of a `codec extract` process at 10x the token budget against 1x
  (target: flat).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tiny_models  # noqa: E402

from codec_cli.sources import models
from codec_cli.artifacts import open_artifact  # noqa: E402
from codec_cli.stages.extract import ExtractConfig, Encoder, Stream, extract, open_all, windows  # noqa: E402

CODEC = Path(sys.executable).parent / "codec"


def bare(cfg: ExtractConfig) -> float:
    """Tokens/s of the forward up to the hook plus SAE encode over the same windows."""
    model, world, handle = open_all(cfg)
    hook = handle.meta.hook_name
    n_ctx = 64 if world else cfg.context
    stream = Stream(True, n_ctx, True, cfg.tokens)
    enc = Encoder(model, handle.sae, hook, None, stream, "cpu")
    batch = list(windows(cfg, stream, model, world))
    x = torch.tensor([list(map(int, w.tokens)) for w in batch])
    stop = enc.stop_at()
    rows = sum(stream.rows(w.real) for w in batch)
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), cfg.batch_size):
            _, cache = model.run_with_cache(x[i:i + cfg.batch_size], names_filter=hook, **stop)
            handle.sae.encode(cache[hook][:, 1:].flatten(0, 1))
    return rows / (time.perf_counter() - t)


LAUNCH = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(args: list[str]) -> float:
    """Peak resident memory (MiB) of one `codec` process. It is started from a small
    launcher: a child forked from this big process would count the parent's pages."""
    out = subprocess.run([sys.executable, "-c", LAUNCH, str(CODEC), "-q", *args], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return int(out.stdout) / 1024


def row(name: str, cfg: ExtractConfig) -> None:
    base = bare(cfg)
    s = extract(cfg)
    base = max(base, bare(cfg))  # the better of two baselines: noise must not flatter extract
    art = open_artifact(cfg.out)
    total = sum(m["bytes"] for m in art.manifest["files"].values()) / s["rows"]
    print(f"{name:<22}{base:>12,.0f}{s['tokens_per_s']:>12,.0f}{base / s['tokens_per_s']:>10.2f}"
          f"{s['bytes_per_row']:>10.0f}{total:>10.0f}{s['dense_bytes_per_row']:>10,}"
          f"{s['dense_bytes_per_row'] / s['bytes_per_row']:>9.0f}x")


def main() -> None:
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="codec-bench-"))
    gpt = tiny_models.hf_model(tmp / "gpt", "gpt2")
    # A GPT-2-shaped model at a size where the matrix work, not Python, dominates.
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_models.tokenizer()
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=8, n_positions=128, vocab_size=len(tok),
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(gpt)
    sae = tiny_models.sae(tmp / "sae", 256, 8192, "blocks.2.hook_resid_pre", "gpt", k=32)
    text = tmp / "corpus.jsonl"  # many short documents: tokenizing and padding are part of the cost
    text.write_text("".join(json.dumps({"text": " ".join(tiny_models.TEXT[i % 7:i % 7 + 3 + i % 5])}) + "\n"
                            for i in range(20_000)))

    themes = ExtractConfig(source="themes", tokens=100_000, batch_size=32, out=tmp / "f-themes")
    big = ExtractConfig(source=str(gpt), sae=str(sae), corpus=[text], context=128, tokens=40_000, batch_size=16,
                        out=tmp / "f-gpt")
    print(f"{'model':<22}{'bare tok/s':>12}{'extract':>12}{'x bare':>10}{'B/token':>10}{'all B/t':>10}"
          f"{'dense B/t':>10}{'smaller':>10}")
    row("themes (d_sae 256)", themes)
    row("gpt-shaped (d_sae 8k)", big)

    print(f"\n{'peak memory':<22}{'1x MiB':>12}{'10x MiB':>12}{'ratio':>10}")
    for name, args in [("themes", ["extract", "themes", "--tokens", "{n}"]),
                       ("gpt-shaped", ["extract", str(gpt), "--sae", str(sae), "--corpus", str(text),
                                       "--context", "128", "--tokens", "{n}"])]:
        base = [a.replace("{n}", "20000") for a in args] + ["--out", str(tmp / f"m1-{name}")]
        ten = [a.replace("{n}", "200000") for a in args] + ["--out", str(tmp / f"m10-{name}")]
        one_x, ten_x = peak_rss(base), peak_rss(ten)
        print(f"{name:<22}{one_x:>12,.0f}{ten_x:>12,.0f}{ten_x / one_x:>10.2f}")


if __name__ == "__main__":
    main()
