"""Tiny offline stand-ins for hub models and SAEs: a random GPT-2 and a random Llama
saved as Hugging Face directories with a byte-level BPE tokenizer, and random SAEs in
sae-lens and sparsify formats. Real formats, real loaders; only the weights are random."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "sparse autoencoders find features in the activations of language models",
    "monday tuesday wednesday thursday friday saturday sunday",
    "0123456789 !?.,;:'\"()[]{} abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
] * 20


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<pad>")


def hf_model(out: Path, kind: str = "gpt2") -> Path:
    """A random 2-layer causal LM of `kind` (gpt2 or llama), saved with save_pretrained."""
    tok = tokenizer()
    torch.manual_seed(0)
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=len(tok),
                                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                             num_key_value_heads=2, intermediate_size=64,
                                             max_position_embeddings=64, vocab_size=len(tok)))
    with torch.no_grad():  # random norms are exactly 1 and 0; perturb them so that folding matters
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def sae(out: Path, d_in: int, d_sae: int, hook: str, model_name: str, architecture: str = "topk", k: int = 4,
        seed: int = 0, reshape: str = "none", **metadata) -> Path:
    """A random sae-lens SAE saved in sae-lens's format."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    meta = SAEMetadata(hook_name=hook, model_name=model_name, context_size=16, prepend_bos=True, **metadata)
    if architecture == "topk":
        s = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, metadata=meta, reshape_activations=reshape))
    else:
        s = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta, reshape_activations=reshape))
    with torch.no_grad():
        for p in s.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    s.save_model(out)
    return out


def as_sparsify(sae_dir: Path, out: Path, hookpoint: str, model_name: str) -> Path:
    """Rewrite a sae-lens TopK SAE in EleutherAI sparsify's format (as its
    SparseCoder.save_to_disk writes it: one folder per hookpoint, run config beside)."""
    from safetensors.torch import save_file
    from sae_lens import SAE

    s = SAE.load_from_disk(sae_dir)
    W_enc, b_enc, W_dec = s.W_enc.detach(), s.b_enc.detach(), s.W_dec.detach()
    if getattr(s.cfg, "rescale_acts_by_decoder_norm", False):  # sparsify has no such flag: fold it in
        n = W_dec.norm(dim=-1)
        W_dec, W_enc, b_enc = W_dec / n[:, None], W_enc * n, b_enc * n
    (out / hookpoint).mkdir(parents=True)
    save_file({"encoder.weight": W_enc.T.contiguous(), "encoder.bias": b_enc.contiguous(),
               "W_dec": W_dec.contiguous(), "b_dec": s.b_dec.detach().contiguous()},
              out / hookpoint / "sae.safetensors")
    (out / hookpoint / "cfg.json").write_text(json.dumps({
        "activation": "topk", "expansion_factor": s.cfg.d_sae // s.cfg.d_in, "normalize_decoder": True,
        "num_latents": s.cfg.d_sae, "k": s.cfg.k, "multi_topk": False, "skip_connection": False,
        "transcode": False, "d_in": s.cfg.d_in}))
    (out / "config.json").write_text(json.dumps({"model": model_name, "ctx_len": 16, "hookpoints": [hookpoint]}))
    return out / hookpoint
