"""Stage 1 detector: XLS-R front-end + Conformer with TCM head-token attention (tcm_add layout).

Module names follow tcm_add's ``model.py`` / ``conformer.py`` so that ``LL.*``, ``first_bn.*`` and
``conformer.*`` keys of ``avg_5_best.pth`` load unchanged; the front-end is renamed by the key map in
``ssl_frontend``. Labels follow tcm_add: class 1 = bona fide, score = logits[:, 1].
"""
import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from common_utils.safe_load import load_weights
from common_utils.train import load_state_dict_strict
from omegaconf import OmegaConf
from torch import nn

from .ssl_frontend import PRETRAINING_ONLY, SSLModel, build_wav2vec2_config, fairseq_to_hf_key, hf_to_fairseq_key

log = logging.getLogger(__name__)
SSL_PREFIX = "ssl_model.model."


def sinusoidal_embedding(n_positions: int, dim: int) -> torch.Tensor:
    """[1, n_positions, dim] table: sin on even channels, cos on odd ones, base 10000."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    rate = 10000.0 ** (2 * (torch.arange(dim) // 2) / dim).double()
    pe = pos / rate
    pe[:, 0::2] = pe[:, 0::2].sin()
    pe[:, 1::2] = pe[:, 1::2].cos()
    return pe.float()[None]


class Swish(nn.Module):
    def forward(self, x):
        return x * x.sigmoid()


class Transpose(nn.Module):
    """[B, N, C] <-> [B, C, N]."""

    def forward(self, x):
        return x.transpose(1, 2)


class GLU(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.glu(x, dim=self.dim)


class DepthWiseConv1d(nn.Module):
    """Depth-wise conv with 'same' padding (left k//2, right k//2 - (k+1)%2)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.padding = (kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2)
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x):
        return self.conv(F.pad(x, self.padding))


class Scale(nn.Module):
    def __init__(self, scale: float, fn: nn.Module):
        super().__init__()
        self.scale, self.fn = scale, fn

    def forward(self, x):
        return self.fn(x) * self.scale


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x):
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), Swish(), nn.Dropout(0.0), nn.Linear(dim * mult, dim),
                                 nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    """LayerNorm -> pointwise conv -> GLU -> depth-wise conv -> BatchNorm1d -> Swish -> pointwise conv."""

    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 31):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(nn.LayerNorm(dim), Transpose(), nn.Conv1d(dim, inner * 2, 1), GLU(1),
                                 DepthWiseConv1d(inner, kernel_size), nn.BatchNorm1d(inner), Swish(),
                                 nn.Conv1d(inner, dim, 1), Transpose(), nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class HeadTokenAttention(nn.Module):
    """MHSA with one extra 'head token' per head (TCM; arXiv 2210.05958 head tokens).

    x [B, N, C] (N = 1 class token + T frames) -> (x [B, N, C], attn [B, H, N+H, N+H]). Each head token is the
    time mean of that head's channel slice, projected to C (ht_proj), layer-normed per dh-chunk, GELU, plus
    ``pos_embed``. After attention the head tokens and the frame mean are added to the class token.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 36):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        inner = dim_head * heads
        self.qkv = nn.Linear(dim, inner * 3, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.ht_proj = nn.Linear(dim_head, dim)
        self.ht_norm = nn.LayerNorm(dim_head)
        self.pos_embed = nn.Parameter(torch.zeros(1, heads, dim))

    def forward(self, x: torch.Tensor):
        B, N, C = x.shape
        H, dh = self.heads, C // self.heads
        ht = x.reshape(B, N, H, dh).mean(dim=1)                              # [B, H, dh]
        ht = self.ht_proj(ht).reshape(B, H, H, dh)                           # [B, H, C] in dh chunks
        ht = F.gelu(self.ht_norm(ht)).flatten(2) + self.pos_embed            # [B, H, C]
        x = torch.cat([x, ht], dim=1)                                        # [B, N+H, C]
        q, k, v = self.qkv(x).reshape(B, N + H, 3, H, dh).permute(2, 0, 3, 1, 4)  # each [B, H, N+H, dh]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)     # [B, H, N+H, N+H]
        x = self.proj((attn @ v).transpose(1, 2).reshape(B, N + H, C))
        cls, frames, ht = torch.split(x, [1, N - 1, H], dim=1)
        cls = cls + ht.mean(dim=1, keepdim=True) + frames.mean(dim=1, keepdim=True)
        return torch.cat([cls, frames], dim=1), attn


class ConformerBlock(nn.Module):
    """ff1 (x0.5) -> TCM attention -> conv module -> ff2 (x0.5) -> post LayerNorm, all residual."""

    def __init__(self, dim: int, heads: int, kernel_size: int, ff_mult: int = 4, conv_expansion: int = 2):
        super().__init__()
        self.ff1 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult)))
        self.attn = PreNorm(dim, HeadTokenAttention(dim, heads, dim // heads))
        self.conv = ConvModule(dim, conv_expansion, kernel_size)
        self.ff2 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult)))
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.ff1(x) + x
        a, attn = self.attn(x)
        x = a + x
        x = self.conv(x) + x
        x = self.ff2(x) + x
        return self.post_norm(x), attn


class MyConformer(nn.Module):
    """[B, T, E] -> (logits [B, 2], attention maps: list of [B, H, 1+T+H, 1+T+H])."""

    def __init__(self, emb_size: int = 144, heads: int = 4, kernel_size: int = 31, n_encoders: int = 4,
                 ffmult: int = 4, exp_fac: int = 2):
        super().__init__()
        self.positional_emb = nn.Parameter(sinusoidal_embedding(10000, emb_size), requires_grad=False)
        block = ConformerBlock(emb_size, heads, kernel_size, ffmult, exp_fac)
        self.encoder_blocks = nn.ModuleList([copy.deepcopy(block) for _ in range(n_encoders)])
        self.class_token = nn.Parameter(torch.rand(1, emb_size))
        self.fc5 = nn.Linear(emb_size, 2)

    def forward(self, x: torch.Tensor):
        x = x + self.positional_emb[:, : x.size(1)]
        x = torch.cat([self.class_token.expand(x.size(0), 1, -1), x], dim=1)  # [B, 1+T, E]
        attns = []
        for block in self.encoder_blocks:
            x, attn = block(x)
            attns.append(attn)
        return self.fc5(x[:, 0]), attns


class TCMDetector(nn.Module):
    """XLSR-Conformer-TCM. wave [B, L] raw 16 kHz -> (logits [B, 2], attention maps); score = logits[:, 1]."""

    def __init__(self, ssl_config, emb_size: int = 144, heads: int = 4, kernel_size: int = 31, num_encoders: int = 4):
        super().__init__()
        self.ssl_model = SSLModel(ssl_config)
        self.LL = nn.Linear(self.ssl_model.out_dim, emb_size)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU()
        self.conformer = MyConformer(emb_size, heads, kernel_size, num_encoders)

    def head_input(self, ssl_feat: torch.Tensor) -> torch.Tensor:
        """SSL features [B, T, D] -> conformer input SELU(BN(LL(.))) [B, T, E]."""
        return self.selu(self.first_bn(self.LL(ssl_feat)[:, None]))[:, 0]

    def classify(self, ssl_feat: torch.Tensor):
        """SSL features [B, T, D] -> (logits [B, 2], attention maps)."""
        return self.conformer(self.head_input(ssl_feat))

    def forward(self, wave: torch.Tensor):
        return self.classify(self.ssl_model(wave))


def build_detector(cfg) -> TCMDetector:
    """Detector from the ``detector`` config section (``ssl`` = the Wav2Vec2 architecture of the front-end)."""
    ssl = OmegaConf.to_container(cfg.ssl) if OmegaConf.is_config(cfg.ssl) else dict(cfg.ssl)
    return TCMDetector(build_wav2vec2_config(**ssl), cfg.emb_size, cfg.heads, cfg.kernel_size, cfg.num_encoders)


def convert_tcm_state_dict(state: dict, source: str = "checkpoint") -> dict:
    """tcm_add state dict (fairseq front-end names) -> our names; pre-training heads dropped with a log line."""
    out, dropped, unknown = {}, [], []
    for key, value in state.items():
        if not key.startswith(SSL_PREFIX):
            out[key] = value
            continue
        sub = key[len(SSL_PREFIX):]
        if sub.startswith(PRETRAINING_ONLY):
            dropped.append(key)
            continue
        hf = fairseq_to_hf_key(sub)
        if hf is None:
            unknown.append(key)
        else:
            out[SSL_PREFIX + hf] = value
    if unknown:
        raise KeyError(f"{source}: front-end keys with no mapping to Wav2Vec2Model: {unknown}")
    if dropped:
        log.info("%s: dropped %d wav2vec2 pre-training tensors (mask_emb/quantizer/project_q/final_proj): %s",
                 source, len(dropped), ", ".join(dropped))
    return out


def tcm_state_dict(model: TCMDetector) -> dict:
    """Our detector's state dict in tcm_add's format (``ssl_model.model.*`` in fairseq names)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith(SSL_PREFIX):
            key = SSL_PREFIX + hf_to_fairseq_key(key[len(SSL_PREFIX):])
        out[key] = value.detach().clone()
    return out


def load_tcm_checkpoint(model: TCMDetector, state, source: str = "checkpoint") -> None:
    """Strictly load a tcm_add-format state dict (path or dict); errors list missing/unexpected/mis-shaped keys."""
    if isinstance(state, (str, Path)):
        source = str(state)
        state = load_weights(state, what="tcm_add checkpoint")
    load_state_dict_strict(model, convert_tcm_state_dict(state, source), source)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, fp32, no gradients (the Stage 2 detector)."""
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


__all__ = ["TCMDetector", "MyConformer", "build_detector", "load_tcm_checkpoint", "tcm_state_dict",
           "convert_tcm_state_dict", "freeze", "sinusoidal_embedding"]
