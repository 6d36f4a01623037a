"""XLS-R front-end on transformers' ``Wav2Vec2Model`` and the fairseq <-> HF key map.

tcm_add stores the front-end as ``ssl_model.model.<fairseq wav2vec2 key>``. fairseq cannot be imported on
Python 3.11, so the same network is built with transformers (stable layer norm, layer-norm conv extractor,
conv bias, every dropout and masking off) and the weights are renamed on load / save.
"""
import re
from pathlib import Path

import torch
from common_utils.safe_load import load_weights
from common_utils.train import load_state_dict_strict
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

# fairseq pre-training heads with no counterpart in a plain Wav2Vec2Model (dropped on load, with a log line)
PRETRAINING_ONLY = ("mask_emb", "quantizer.", "project_q.", "final_proj.")

XLSR_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
                 num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)

# (fairseq regex, HF template); weight norm g/v of the positional conv uses torch parametrizations in HF
_FS2HF = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", r"encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", r"encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
]


def _invert(pattern: str, template: str):
    """Turn one (regex, template) rule around: HF regex -> fairseq template."""
    groups = re.findall(r"\((.*?)\)", pattern)
    inv_pat, inv_tpl = re.escape(template), pattern
    for i, g in enumerate(groups, 1):
        inv_pat = inv_pat.replace(re.escape(f"\\{i}"), f"({g})")
        inv_tpl = inv_tpl.replace(f"({g})", f"\\{i}", 1)
    return inv_pat, inv_tpl.replace("\\.", ".")


_HF2FS = [_invert(p, t) for p, t in _FS2HF]


def _rename(key: str, rules) -> str | None:
    for pattern, template in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return m.expand(template)
    return None


def fairseq_to_hf_key(key: str) -> str | None:
    """fairseq wav2vec2 key (without ``ssl_model.model.``) -> HF ``Wav2Vec2Model`` key; None if unknown."""
    return _rename(key, _FS2HF)


def hf_to_fairseq_key(key: str) -> str | None:
    """Inverse of :func:`fairseq_to_hf_key`."""
    return _rename(key, _HF2FS)


def build_wav2vec2_config(**arch) -> Wav2Vec2Config:
    """XLS-R-style config from the architecture keys of ``XLSR_300M`` (each required): stable layer norm,
    layer-norm conv extractor, conv bias, no dropout or masking."""
    missing = sorted(set(XLSR_300M) - set(arch))
    unknown = sorted(set(arch) - set(XLSR_300M))
    if missing or unknown:
        raise ValueError(f"detector.ssl: missing keys {missing}, unknown keys {unknown}")
    arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in arch.items()}
    return Wav2Vec2Config(
        **arch, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, hidden_act="gelu",
        feat_extract_activation="gelu", layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
        mask_feature_prob=0.0, apply_spec_augment=False)


class SSLModel(nn.Module):
    """Raw 16 kHz waveform [B, L] (not normalised) -> frame embeddings [B, T, D], T = conv output length.

    ``forward`` returns the last hidden state (after ``encoder.layer_norm``), i.e. fairseq's
    ``features_only=True['x']`` that tcm_add feeds to ``LL``. ``layer=k`` returns HF ``hidden_states[k]``.
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.model = Wav2Vec2Model(config)
        self.out_dim = config.hidden_size

    def forward(self, wave: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        if wave.ndim == 3:  # [B, L, 1] as in tcm_add
            wave = wave[..., 0]
        out = self.model(wave, output_hidden_states=layer is not None)
        return out.last_hidden_state if layer is None else out.hidden_states[layer]

    def num_frames(self, num_samples: int) -> int:
        """Frames produced by the conv feature extractor for ``num_samples`` samples (20 ms hop)."""
        n = num_samples
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = (n - k) // s + 1
        return max(n, 0)


HF_PRETRAINING_ONLY = ("quantizer.", "project_q.", "project_hid.", "masked_spec_embed")


def load_pretrained_ssl(ssl: SSLModel, path) -> list[str]:
    """Initialise the front-end from pre-trained XLS-R weights (Stage 1 starts from these, as tcm_add does).

    Accepts HF files (``model.safetensors`` / ``pytorch_model.bin`` of e.g. facebook/wav2vec2-xls-r-300m; keys with or
    without ``wav2vec2.``; legacy ``weight_g/weight_v`` pos-conv names) or a plain fairseq wav2vec2 state dict
    (renamed with the key map). Pre-training heads are dropped and returned; everything else must match strictly.
    """
    path = Path(path)
    state = load_weights(path, what="detector.ssl_pretrained")  # safetensors or torch file, no pickled code runs
    if "encoder.pos_conv.0.bias" in state or "post_extract_proj.weight" in state:  # fairseq names
        dropped = [k for k in state if k.startswith(PRETRAINING_ONLY)]
        unknown = [k for k in state if k not in dropped and fairseq_to_hf_key(k) is None]
        if unknown:
            raise KeyError(f"{path}: keys with no mapping to Wav2Vec2Model: {unknown}")
        state = {fairseq_to_hf_key(k): v for k, v in state.items() if k not in dropped}
    else:
        state = {k.removeprefix("wav2vec2."): v for k, v in state.items()}
        dropped = [k for k in state if k.startswith(HF_PRETRAINING_ONLY)]
        state = {k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
                  .replace("conv.weight_v", "conv.parametrizations.weight.original1"): v
                 for k, v in state.items() if k not in dropped}
    load_state_dict_strict(ssl.model, state, str(path))
    return dropped
