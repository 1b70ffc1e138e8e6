"""Local Hugging Face model directories, read offline into transformer-lens.

A directory written by `model.save_pretrained(d)` and `tokenizer.save_pretrained(d)`
(config.json, model.safetensors, tokenizer files), e.g. a downloaded gpt2 or pythia.

transformer-lens 3.9's `HookedTransformer.from_pretrained(name, hf_model=…)` insists on
an official model name (TransformerLens#664), so `load` runs the same steps itself:
the config through `get_pretrained_model_config`, the weights through TL's converters
(`get_pretrained_state_dict`), then `load_and_process_state_dict` with the usual
processing options (fold_ln, center_writing_weights, …, with from_pretrained's defaults).
It works from the config's `model_type` (gpt2, gpt_neox, llama, mistral, qwen2, …),
never from a name, and never touches the network.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from codec_cli.errors import BadInput

OPTIONS: dict[str, Any] = {
    "fold_ln": True,
    "center_writing_weights": True,
    "center_unembed": True,
    "fold_value_biases": True,
    "refactor_factored_attn_matrices": False,
    "default_prepend_bos": None,
    "n_ctx": None,
    "first_n_layers": None,
}
"""The from_pretrained options a local directory takes, with from_pretrained's defaults."""

HUB_ONLY = {"cache_dir", "revision", "token", "local_files_only", "force_download"}
"""from_pretrained options that concern downloads only: ignored here."""


def _neutral_dir() -> tempfile.TemporaryDirectory:
    """TL picks llama and gemma configs by the *path string* and then skips the config
    itself; TL is shown a copy of config.json under a name free of both."""
    for _ in range(20):
        d = tempfile.TemporaryDirectory(prefix="codec-cfg-")
        if "llama" not in d.name.lower() and "gemma" not in d.name.lower():
            return d
        d.cleanup()
    raise BadInput("cannot make a temporary directory free of 'llama' and 'gemma'", hint="set TMPDIR")


def _tokenizer(path: Path):
    """The directory's tokenizer with add_bos_token set: otherwise TL reloads it by name
    (`get_tokenizer_with_bos`), which would mean the hub."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True, add_bos_token=True)
    except (OSError, ValueError, TypeError) as e:
        raise BadInput(f"{path}: no usable tokenizer ({type(e).__name__})",
                       hint="save the tokenizer beside the model: tokenizer.save_pretrained(dir)") from None
    tok.init_kwargs.setdefault("name_or_path", str(path))
    return tok


def load(path: Path, **options: Any):
    """A HookedTransformer from the Hugging Face directory `path` (see the module docstring),
    whose weights `models.check_weights` has checked."""
    # transformer-lens and transformers take seconds to import, and sources.models imports
    # this module whatever the source: only a Hugging Face directory pays for them.
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer
    from transformer_lens.utilities import softcap_enabled
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # codec shows its own progress; loading is quick
    unknown = set(options) - set(OPTIONS) - HUB_ONLY
    if unknown:
        raise BadInput(f"unknown model option(s) {', '.join(sorted(unknown))} for a local model directory",
                       hint=f"known: {', '.join(OPTIONS)}")
    kw = OPTIONS | {k: v for k, v in options.items() if k in OPTIONS}
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True,
                                                        use_safetensors=True).eval()
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"{path}: not a model directory codec can read ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160]})",
                       hint="give a save_pretrained directory of a causal language model") from None
    tokenizer = _tokenizer(path)
    with _neutral_dir() as tmp:
        copy = hf_config.__class__.from_dict(hf_config.to_dict())
        if copy.model_type == "gpt2" and "n_ctx" not in copy.to_dict():
            copy.n_ctx = copy.n_positions  # TL's GPT-2 branch reads n_ctx, which transformers 5 dropped
        copy.save_pretrained(tmp)
        try:
            cfg = loading.get_pretrained_model_config(
                tmp, hf_cfg=hf_config.to_dict(), fold_ln=kw["fold_ln"], device="cpu", dtype=torch.float32,
                default_prepend_bos=kw["default_prepend_bos"], first_n_layers=kw["first_n_layers"],
                n_ctx=kw["n_ctx"])
        except (NotImplementedError, ValueError, KeyError, AttributeError) as e:
            raise BadInput(f"{path}: transformer-lens cannot convert a {hf_config.model_type!r} model "
                           f"({type(e).__name__})") from None
        cfg.model_name, cfg.tokenizer_name = path.name, str(path)
        if cfg.original_architecture == "GPT2LMHeadModel" and getattr(hf_config, "n_inner", None):
            cfg.d_mlp = hf_config.n_inner  # TL assumes 4 × d_model
        state = loading.get_pretrained_state_dict(tmp, cfg, hf_model, dtype=torch.float32)
    # The guards from_pretrained applies before processing weights.
    fold, center = kw["fold_ln"], kw["center_writing_weights"]
    unembed = kw["center_unembed"] and not softcap_enabled(cfg.output_logits_soft_cap)
    if cfg.positional_embedding_type == "shortformer":
        fold = center = unembed = False
    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        fold = center = False
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=fold, center_writing_weights=center, center_unembed=unembed,
                                      fold_value_biases=kw["fold_value_biases"],
                                      refactor_factored_attn_matrices=kw["refactor_factored_attn_matrices"])
    return model.eval()
