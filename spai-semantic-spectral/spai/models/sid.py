"""SPAI: spectral AI-generated image detection at any resolution, with optional semantic-spectral fusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ..config import semantic_enabled
from .backbones import CLIPSpectralBackbone, SemanticTower
from .filters import filter_image_frequencies, generate_circular_mask
from .fusion import AdaptiveGating, EarlyFusionGate, FrequencyAwareCrossAttention, HierarchicalFusion, zero_linear
from .vision_transformer import VisionTransformer

PAIRS = ("orig-low", "orig-high", "low-high")
# per-layer statistics of the three cosine similarities, in per-patch-vector order (blocks of N layers)
BASE_STATISTICS = [f"{s}({p})" for p in PAIRS for s in ("mean", "std")]
EXTRA_STATISTICS = [f"{s}({p})" for p in PAIRS for s in ("min", "max")]
STATISTICS_12 = BASE_STATISTICS + EXTRA_STATISTICS

# parameter-name prefixes of the semantic-spectral modules (stage 1 of training; absent from spai.pth)
SEMANTIC_MODULES = ("mfvit.early_fusion_gates.", "mfvit.features_processor.cross_attention.",
                    "mfvit.features_processor.hierarchical_fusion.", "mfvit.features_processor.adaptive_gating.",
                    "mfvit.features_processor.extra_statistics.")
SEMANTIC_TOWER = "mfvit.semantic_tower."


def side_init(factory):
    """Build a module without consuming the global RNG: the enhancements' modules draw their initial values from a
    forked stream, so that at the same seed every tensor base SPAI has is initialised identically with or without
    them (a fair comparison starts from the same initialisation)."""
    with torch.random.fork_rng(devices=[]):
        return factory()


class Projector(nn.Module):
    """[LN] -> (Dropout, Linear, act) x layers, last act configurable -> Dropout -> LN. Keys match upstream."""

    def __init__(self, d_in, d_out, layers=2, last_activation=None, dropout=0.5, input_norm=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_in) if input_norm else nn.Identity()
        mods, d = [], d_in
        for i in range(layers):
            act = nn.GELU() if i < layers - 1 or last_activation == "gelu" else nn.Identity()
            mods += [nn.Dropout(dropout), nn.Linear(d, d_out), act]
            d = d_out
        self.projector = nn.Sequential(*mods, nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(d_out)

    def forward(self, x):
        return self.norm2(self.projector(self.norm1(x)))


class FeatureSpecificProjector(nn.Module):
    """One projector per intermediate layer: [P, N, L, D] -> [P, N, L, D']."""

    def __init__(self, n_layers, d_in, d_out, layers, last_activation, dropout):
        super().__init__()
        self.projectors = nn.ModuleList(Projector(d_in, d_out, layers, last_activation, dropout)
                                        for _ in range(n_layers))

    def forward(self, x):
        return torch.stack([p(x[:, i]) for i, p in enumerate(self.projectors)], dim=1)


class FeatureImportanceProjector(nn.Module):
    """Spectral context vector of the original image: [P, N, L, D'] -> [P, D'].

    Token mean and (unbiased) std per layer -> proj1 -> softmax(alpha)-weighted sum over layers -> proj2.
    Both projectors end in GELU, as upstream's do whatever the configured last activation.
    """

    def __init__(self, n_layers, dim, layers, dropout):
        super().__init__()
        self.alpha = nn.Parameter(torch.randn(1, n_layers, dim))
        self.proj1 = Projector(2 * dim, dim, layers, "gelu", dropout, input_norm=False)
        self.proj2 = Projector(dim, dim, layers, "gelu", dropout, input_norm=False)

    def forward(self, x):
        x = self.proj1(torch.cat([x.mean(dim=2), x.std(dim=2)], dim=-1))  # [P, N, D']
        return self.proj2((F.softmax(self.alpha, dim=1) * x).sum(dim=1))


class FrequencyRestorationEstimator(nn.Module):
    """Per-patch vector from the ViT tokens of the original, low- and high-pass images.

    Input: three [P, N, L, D] token stacks (+ semantic vector [P, S] and tokens [P, T, W] when enabled).
    Output: [P, C] with C = 6N + D' (base layout: see BASE_STATISTICS, then the context vector), and an aux
    dict for the consistency losses.
    """

    def __init__(self, cfg, sem_dim: int = 0, sem_width: int = 0):
        super().__init__()
        vit, fre = cfg.MODEL.VIT, cfg.MODEL.FRE
        n, d, p = len(vit.INTERMEDIATE_LAYERS), vit.EMBED_DIM, vit.PROJECTION_DIM
        drop = cfg.MODEL.SID_DROPOUT
        self.patch_projector = FeatureSpecificProjector(n, d, p, vit.PROJECTION_LAYERS,
                                                        fre.PROJECTOR_LAST_LAYER_ACTIVATION_TYPE, drop)
        self.original_features_processor = (FeatureImportanceProjector(n, p, vit.PROJECTION_LAYERS, drop)
                                            if fre.ORIGINAL_IMAGE_FEATURES_BRANCH else None)
        self.extended = fre.USE_EXTENDED_STATISTICS
        self.semantic = bool(sem_dim)  # the semantic tower feeds this estimator or the fusion gates
        self.concat_extended = self.extended and fre.EXTENDED_STATISTICS_MODE == "concat"
        self.out_dim = (12 if self.concat_extended else 6) * n + (p if self.original_features_processor else 0)
        if self.extended and not self.concat_extended:
            self.extra_statistics = side_init(lambda: zero_linear(6 * n, self.out_dim))
        if fre.USE_FREQUENCY_AWARE_ATTENTION:
            self.cross_attention = side_init(lambda: FrequencyAwareCrossAttention(
                p, sem_width, fre.SEMANTIC_NUM_HEADS, fre.SEMANTIC_DROPOUT))
        if fre.USE_HIERARCHICAL_FUSION:
            if self.original_features_processor is None:
                raise ValueError("MODEL.FRE.USE_HIERARCHICAL_FUSION needs ORIGINAL_IMAGE_FEATURES_BRANCH")
            self.hierarchical_fusion = side_init(lambda: HierarchicalFusion(p))
        if fre.USE_ADAPTIVE_GATING:
            self.adaptive_gating = side_init(lambda: AdaptiveGating(self.out_dim, sem_dim))

    def forward(self, orig, low, high, sem_vector=None, sem_tokens=None):
        feats = {"orig": self.patch_projector(orig), "low": self.patch_projector(low),
                 "high": self.patch_projector(high)}
        aux = {}
        if hasattr(self, "cross_attention"):
            feats, aux["semantic"] = self.cross_attention(feats, sem_tokens)
        aux["frequency"] = {c: f.mean(dim=(1, 2)) for c, f in feats.items()}  # [P, D'] each
        o, lo, hi = feats["orig"], feats["low"], feats["high"]
        sims = [F.cosine_similarity(a, b, dim=-1, eps=1e-8) for a, b in ((o, lo), (o, hi), (lo, hi))]  # [P, N, L]
        stats = [t for s in sims for t in (s.mean(dim=-1), s.std(dim=-1))]  # 6 x [P, N]
        extra = [t for s in sims for t in (s.amin(dim=-1), s.amax(dim=-1))] if self.extended else []
        parts = stats + extra if self.concat_extended else stats
        if self.original_features_processor is not None:
            ctx = self.original_features_processor(o)
            if hasattr(self, "hierarchical_fusion"):
                ctx = self.hierarchical_fusion(ctx, lo, hi)
            parts = parts + [ctx]
        x = torch.cat(parts, dim=-1)
        if hasattr(self, "extra_statistics"):
            x = x + self.extra_statistics(torch.cat(extra, dim=-1))
        if hasattr(self, "adaptive_gating"):
            x = self.adaptive_gating(x, sem_vector)
        return x, aux


class MFViT(nn.Module):
    """One 224 patch -> per-patch vector: FFT split, three ViT passes, frequency restoration estimator.

    forward(x [P, 3, S, S] in [0, 1]) -> ([P, C], aux).
    """

    def __init__(self, cfg):
        super().__init__()
        vit, fre, size = cfg.MODEL.VIT, cfg.MODEL.FRE, cfg.DATA.IMG_SIZE
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        if cfg.MODEL_WEIGHTS == "clip":  # the design's option; the default MFM ViT is what spai.pth holds
            sem = cfg.MODEL.SEMANTIC
            self.vit = CLIPSpectralBackbone(sem.CLIP_MODEL, sem.CLIP_WEIGHTS, vit.INTERMEDIATE_LAYERS)
            width, image = self.vit.tower.width, self.vit.tower.image_size
            if (width, image, len(self.vit.blocks)) != (vit.EMBED_DIM, size, vit.DEPTH):
                raise ValueError(f"MODEL_WEIGHTS=clip: {sem.CLIP_MODEL} has width {width}, image size {image}, "
                                 f"{len(self.vit.blocks)} blocks; set MODEL.VIT.EMBED_DIM, DATA.IMG_SIZE and "
                                 "MODEL.VIT.DEPTH to match")
            mean, std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        else:
            self.vit = VisionTransformer(size, vit.PATCH_SIZE, vit.EMBED_DIM, vit.DEPTH, vit.NUM_HEADS,
                                         vit.MLP_RATIO, vit.QKV_BIAS, cfg.MODEL.DROP_PATH_RATE, vit.INIT_VALUES,
                                         vit.USE_APE, vit.INTERMEDIATE_LAYERS)
        self.register_buffer("frequencies_mask", generate_circular_mask(size, fre.MASKING_RADIUS))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.frozen_backbone = cfg.MODEL.FREEZE_BACKBONE or cfg.MODEL_WEIGHTS == "clip"
        self.vit.requires_grad_(not self.frozen_backbone)
        self.clip_backbone = cfg.MODEL_WEIGHTS == "clip"
        sem_dim = sem_width = 0
        if semantic_enabled(cfg):
            if not self.clip_backbone:  # with a CLIP backbone its own tower gives the semantic context (one copy)
                self.semantic_tower = side_init(lambda: SemanticTower(cfg.MODEL.SEMANTIC.CLIP_MODEL,
                                                                      cfg.MODEL.SEMANTIC.CLIP_WEIGHTS))
            tower = self.semantic()
            sem_dim, sem_width = tower.embed_dim, tower.width
        if fre.EARLY_FUSION_LAYERS:
            self.early_fusion_gates = side_init(lambda: nn.ModuleDict(
                {str(i): EarlyFusionGate(vit.EMBED_DIM, sem_dim) for i in fre.EARLY_FUSION_LAYERS}))
        self.features_processor = FrequencyRestorationEstimator(cfg, sem_dim, sem_width)
        self.out_dim = self.features_processor.out_dim

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            self.vit.eval()  # a frozen backbone keeps drop-path off (upstream left it in train mode)
        return self

    def semantic(self) -> SemanticTower | None:
        """The frozen CLIP tower giving the semantic context: its own module, or the CLIP backbone's tower."""
        if self.clip_backbone:
            return self.vit.tower
        return getattr(self, "semantic_tower", None)

    def forward(self, x: torch.Tensor):
        low, high = filter_image_frequencies(x, self.frequencies_mask)
        images = [x, low.clamp(0, 1), high.clamp(0, 1)]
        sem_vector = sem_tokens = None
        hooks = None
        if self.features_processor.semantic:
            sem_vector, sem_tokens = self.semantic()(x)
            if self.clip_backbone:
                self.vit.release_hooks()
        if hasattr(self, "early_fusion_gates"):
            hooks = {int(i): (lambda t, g=g: g(t, sem_vector)) for i, g in self.early_fusion_gates.items()}
        # a frozen ViT needs autograd only after the first fusion gate (gradients flow back to the gates)
        grad_from = 0 if not self.frozen_backbone else (min(hooks) + 1 if hooks else len(self.vit.blocks) + 1)
        orig, low, high = [self.vit((im - self.mean) / self.std, hooks, grad_from) for im in images]  # [P, N, L, D]
        return self.features_processor(orig, low, high, sem_vector, sem_tokens)


class ClassificationHead(nn.Module):
    def __init__(self, dim, num_classes=1, mlp_ratio=3, dropout=0.5):
        super().__init__()
        hidden = dim * mlp_ratio
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(x)


class PatchBasedMFViT(nn.Module):
    """Any-resolution SPAI: per-patch vectors pooled by spectral context attention, then a 1-logit head.

    forward(x) with x a tensor [B, V, 3, S, S] (training: V augmented views, each view one patch, so no patch
    straddles two views), a tensor [B, 3, H, W] (same-size images: grid patches) or a list of [3, H, W] /
    [1, 3, H, W] images of any size (grid at PATCH_STRIDE, five-crop below MINIMUM_PATCHES).
    Returns logits [B, 1] (and, with return_aux, the aux dict of the per-patch features).
    """

    def __init__(self, cfg):
        super().__init__()
        pv = cfg.MODEL.PATCH_VIT
        self.img_size, self.stride, self.min_patches = cfg.DATA.IMG_SIZE, pv.PATCH_STRIDE, pv.MINIMUM_PATCHES
        self.feature_extraction_batch = cfg.MODEL.FEATURE_EXTRACTION_BATCH
        self.cpu_chunk_bound = cfg.MODEL.FEATURE_EXTRACTION_BATCH_CPU
        self.mfvit = MFViT(cfg)
        dim, self.heads = self.mfvit.out_dim, pv.NUM_HEADS
        if pv.ATTN_EMBED_DIM % pv.NUM_HEADS:
            raise ValueError(f"PATCH_VIT.NUM_HEADS={pv.NUM_HEADS} must divide ATTN_EMBED_DIM={pv.ATTN_EMBED_DIM}")
        self.dim_head = pv.ATTN_EMBED_DIM // pv.NUM_HEADS
        self.patch_aggregator = nn.Parameter(torch.randn(self.heads, 1, self.dim_head))
        self.to_kv = nn.Linear(dim, 2 * pv.ATTN_EMBED_DIM, bias=False)
        self.to_out = nn.Sequential(nn.Linear(pv.ATTN_EMBED_DIM, dim, bias=False), nn.Dropout(cfg.MODEL.SID_DROPOUT))
        self.attn_drop = nn.Dropout(cfg.MODEL.SID_DROPOUT)
        self.norm = nn.LayerNorm(dim)
        if cfg.MODEL.CLS_HEAD.INPUT_NORM == "batchnorm":
            self.feature_norm = nn.BatchNorm1d(dim)
        self.cls_head = ClassificationHead(dim, 1, cfg.MODEL.CLS_HEAD.MLP_RATIO, cfg.MODEL.SID_DROPOUT)

    def patches_attention(self, x: torch.Tensor, return_attn: bool = False):
        """x [B, P, C] -> pooled [B, C] (and attention [B, heads, 1, P])."""
        B, P, _ = x.shape
        k, v = (t.reshape(B, P, self.heads, self.dim_head).transpose(1, 2) for t in self.to_kv(x).chunk(2, dim=-1))
        attn = torch.softmax(self.patch_aggregator @ k.transpose(-2, -1) * self.dim_head ** -0.5, dim=-1)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(B, -1)  # [B, heads*d]
        out = self.to_out(out)
        return (out, attn) if return_attn else out

    def patchify(self, image: torch.Tensor, allow_five_crop: bool = True) -> torch.Tensor:
        """[3, H, W] -> [n, 3, S, S]: row-major grid at the stride; five-crop if fewer than MINIMUM_PATCHES."""
        S = self.img_size
        _, H, W = image.shape
        if H < S or W < S:
            raise ValueError(f"image of {H}x{W} is smaller than the {S} px patch; pad it first")
        grid = image.unfold(1, S, self.stride).unfold(2, S, self.stride)  # [3, nh, nw, S, S]
        grid = grid.permute(1, 2, 0, 3, 4).reshape(-1, 3, S, S)
        if allow_five_crop and grid.shape[0] < self.min_patches:
            return torch.stack(TF.five_crop(image, S))
        return grid

    def extract(self, patches: torch.Tensor, chunk: int | None):
        """Per-patch vectors in chunks of ``chunk`` patches: [P, 3, S, S] -> [P, C], aux (concatenated).

        On a CPU the chunk is at most ``MODEL.FEATURE_EXTRACTION_BATCH_CPU`` patches (0: no bound), where bigger
        chunks only add page-fault time per patch; the result does not depend on the chunk."""
        chunk = chunk or patches.shape[0]
        if patches.device.type == "cpu" and self.cpu_chunk_bound > 0:
            chunk = min(chunk, self.cpu_chunk_bound)
        outs = [self.mfvit(patches[i:i + chunk]) for i in range(0, patches.shape[0], chunk)]
        feats = torch.cat([o[0] for o in outs])
        aux = {k: {c: torch.cat([o[1][k][c] for o in outs]) for c in outs[0][1][k]} for k in outs[0][1]}
        return feats, aux

    def forward(self, x, feature_extraction_batch: int | None = None, return_aux: bool = False):
        chunk = feature_extraction_batch or self.feature_extraction_batch
        if isinstance(x, torch.Tensor) and x.dim() == 5:
            if x.shape[-2:] != (self.img_size, self.img_size):
                raise ValueError(f"views of {tuple(x.shape[-2:])} px; each view must be one {self.img_size} px patch")
            patches = list(x)
        else:
            if isinstance(x, torch.Tensor):
                images, five_crop = list(x), False
            else:
                images, five_crop = [im[0] if im.dim() == 4 else im for im in x], True
            patches = [self.patchify(im, five_crop) for im in images]
        feats, aux = self.extract(torch.cat(patches), chunk)
        pooled = [self.patches_attention(f[None]) for f in feats.split([p.shape[0] for p in patches])]
        x = self.norm(torch.cat(pooled))  # [B, C]
        if hasattr(self, "feature_norm"):
            x = self.feature_norm(x)
        logits = self.cls_head(x)
        return (logits, aux) if return_aux else logits
