"""yacs configuration (upstream SPAI key names, plus the semantic-spectral keys)."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import yaml
from common_utils.train import ConfigError
from yacs.config import CfgNode as CN

log = logging.getLogger(__name__)

_C = CN()
_C.BASE = [""]
_C.MODEL_WEIGHTS = "mfm"  # spectral backbone: mfm (released spai.pth) | clip (design option, frozen open_clip)
# weights to start from: an MFM pre-training checkpoint (`encoder.*` keys: the ViT only, as upstream's --pretrained)
# or a SPAI checkpoint (spai.pth or one of our exports: the whole model)
_C.PRETRAINED = ""
_C.OUTPUT = "runs/spai"
_C.TAG = "spai"
_C.SEED = 0  # shared knob `seed`
_C.DEVICE = "auto"  # shared knob `device`: auto | cpu | cuda
_C.PRECISION = "fp32"  # shared knob `train.precision`: fp32 | bf16 | fp16 (torch.amp; replaces apex AMP_OPT_LEVEL)

_C.DATA = CN()
_C.DATA.DATA_PATH = ""
_C.DATA.CSV_ROOT = ""
_C.DATA.TEST_DATA_PATH = []
_C.DATA.TEST_DATA_CSV_ROOT = []
_C.DATA.IMG_SIZE = 224  # side of a patch (and of the frequency mask)
_C.DATA.BATCH_SIZE = 72
_C.DATA.VAL_BATCH_SIZE = 8
_C.DATA.TEST_BATCH_SIZE = 8
_C.DATA.NUM_WORKERS = 8  # shared knob `data.num_workers` (capped at the cores per rank)
_C.DATA.PREFETCH_FACTOR = 2
_C.DATA.VAL_PREFETCH_FACTOR = 2
_C.DATA.TEST_PREFETCH_FACTOR = 1
_C.DATA.AUGMENTED_VIEWS = 4  # views per training image; each view is one patch of the image's attention
# MFM pre-training (`python -m spai pretrain-mfm`; upstream MFM names): frequency mask radii (pixels of IMG_SIZE),
# probability of a low-pass (vs high-pass) corruption, RandomResizedCrop's minimal area (1.0: native-scale crops)
_C.DATA.MASK_RADIUS1 = 16
_C.DATA.MASK_RADIUS2 = 999
_C.DATA.SAMPLE_RATIO = 0.5
_C.DATA.MIN_CROP_SCALE = 0.2

_C.MODEL = CN()
_C.MODEL.SID_APPROACH = "freq_restoration"
_C.MODEL.RESOLUTION_MODE = "arbitrary"
_C.MODEL.NUM_CLASSES = 2  # upstream convention: 2 means one logit
_C.MODEL.REQUIRED_NORMALIZATION = "positive_0_1"
_C.MODEL.FEATURE_EXTRACTION_BATCH = 400
# on a CPU the chunk is at most this many patches (0: no bound). Bigger chunks cost no more arithmetic per patch but
# more kernel time: glibc returns every freed tensor above its mmap threshold to the OS and the next allocation faults
# in fresh zeroed pages (paper model, 64 patches: 0.58 s/patch of system time at chunk 64, 0.19 at 16, user time
# 1.36-1.40 either way; README, Benchmark). The outputs do not depend on the chunk: each patch is extracted alone.
_C.MODEL.FEATURE_EXTRACTION_BATCH_CPU = 16
_C.MODEL.SID_DROPOUT = 0.5
_C.MODEL.DROP_PATH_RATE = 0.1
_C.MODEL.FREEZE_BACKBONE = True
# a frozen network with random weights (ViT without PRETRAINED, CLIP without weights) is an error unless this is True
_C.MODEL.ALLOW_RANDOM_FROZEN = False
_C.MODEL.RECOVER_TARGET_TYPE = "masked"  # MFM loss on the masked frequencies only (masked) or on all (normal)

_C.MODEL.VIT = CN()
_C.MODEL.VIT.PATCH_SIZE = 16
_C.MODEL.VIT.EMBED_DIM = 768
_C.MODEL.VIT.DEPTH = 12
_C.MODEL.VIT.NUM_HEADS = 12
_C.MODEL.VIT.MLP_RATIO = 4
_C.MODEL.VIT.QKV_BIAS = True
_C.MODEL.VIT.INIT_VALUES = None
_C.MODEL.VIT.USE_APE = True
_C.MODEL.VIT.INTERMEDIATE_LAYERS = list(range(12))
_C.MODEL.VIT.PROJECTION_DIM = 1024
_C.MODEL.VIT.PROJECTION_LAYERS = 2

_C.MODEL.FRE = CN()
_C.MODEL.FRE.MASKING_RADIUS = 16
_C.MODEL.FRE.PROJECTOR_LAST_LAYER_ACTIVATION_TYPE = None  # None | gelu
_C.MODEL.FRE.ORIGINAL_IMAGE_FEATURES_BRANCH = True
# semantic-spectral enhancements (all off = base SPAI); every one enters residually, zero-initialised
_C.MODEL.FRE.EARLY_FUSION_LAYERS = []  # 0-based ViT blocks after which the semantic vector is injected
_C.MODEL.FRE.USE_FREQUENCY_AWARE_ATTENTION = False
_C.MODEL.FRE.USE_ADAPTIVE_GATING = False
_C.MODEL.FRE.USE_HIERARCHICAL_FUSION = False
_C.MODEL.FRE.USE_EXTENDED_STATISTICS = False  # 12 statistics per layer instead of 6
_C.MODEL.FRE.EXTENDED_STATISTICS_MODE = "residual"  # residual (loads spai.pth) | concat (the design's layout)
_C.MODEL.FRE.SEMANTIC_NUM_HEADS = 8
_C.MODEL.FRE.SEMANTIC_DROPOUT = 0.1

_C.MODEL.SEMANTIC = CN()
_C.MODEL.SEMANTIC.CLIP_MODEL = "ViT-B-16"  # open_clip model name, or "tiny" (random-init test tower)
_C.MODEL.SEMANTIC.CLIP_WEIGHTS = ""  # local open_clip weights file; empty = random init (logged)

_C.MODEL.PATCH_VIT = CN()
_C.MODEL.PATCH_VIT.PATCH_STRIDE = 224
_C.MODEL.PATCH_VIT.NUM_HEADS = 12
_C.MODEL.PATCH_VIT.ATTN_EMBED_DIM = 1536
_C.MODEL.PATCH_VIT.MINIMUM_PATCHES = 4

_C.MODEL.CLS_HEAD = CN()
_C.MODEL.CLS_HEAD.MLP_RATIO = 3
# normalisation of the pooled vector before the head: layernorm (upstream, spai.pth's `norm.*`) normalises each image's
# vector, which leaves features whose signal varies little across images (the similarity statistics) at a scale the
# head learns slowly; batchnorm (+ LayerNorm) standardises each feature across the batch (running statistics at test)
_C.MODEL.CLS_HEAD.INPUT_NORM = "layernorm"

_C.AUG = CN()
_C.AUG.RESIZED_CROP = True  # RandomResizedCrop as upstream; False = random crop at native scale
_C.AUG.MIN_CROP_AREA = 0.2
_C.AUG.MAX_CROP_AREA = 1.0
_C.AUG.HORIZONTAL_FLIP_PROB = 0.5
_C.AUG.VERTICAL_FLIP_PROB = 0.5
_C.AUG.ROTATION_PROB = 0.5
_C.AUG.ROTATION_DEGREES = 90
# crop_border: angle uniform in +-ROTATION_DEGREES, border cropped, resized back (upstream's albumentations
# Rotate(crop_border=True) + Resize); right_angle: a multiple of 90 degrees (lossless, no resampling)
_C.AUG.ROTATION_MODE = "crop_border"
_C.AUG.GAUSSIAN_BLUR_PROB = 0.5
_C.AUG.GAUSSIAN_BLUR_LIMIT = [3, 9]  # kernel size drawn in this range (an even draw becomes the next odd size)
_C.AUG.GAUSSIAN_BLUR_SIGMA = [0.01, 0.5]
_C.AUG.GAUSSIAN_NOISE_PROB = 0.5
_C.AUG.GAUSSIAN_NOISE_VAR = [10.0, 50.0]  # variance range on the 0-255 scale (albumentations GaussNoise default)
_C.AUG.JPEG_COMPRESSION_PROB = 0.5
_C.AUG.JPEG_MIN_QUALITY = 50
_C.AUG.JPEG_MAX_QUALITY = 100
_C.AUG.COLOR_JITTER = 0.0  # probability of a mild colour jitter
_C.AUG.MIXUP = 0.0  # mixup alpha (0 = off)
_C.AUG.CUTMIX = 0.0  # cutmix alpha (0 = off)
_C.AUG.MIXUP_PROB = 1.0
_C.AUG.MIXUP_SWITCH_PROB = 0.5
_C.AUG.MIXUP_MODE = "batch"

_C.TRAIN = CN()
_C.TRAIN.EPOCHS = 35  # shared knob `train.epochs`
_C.TRAIN.WARMUP_EPOCHS = 5
_C.TRAIN.BASE_LR = 5e-4
_C.TRAIN.WARMUP_LR = 2.5e-7
_C.TRAIN.MIN_LR = 2.5e-7
_C.TRAIN.WEIGHT_DECAY = 0.05
_C.TRAIN.LAYER_DECAY = 0.8
_C.TRAIN.CLIP_GRAD = None  # shared knob `train.grad_clip` (None or 0 = off)
_C.TRAIN.ACCUMULATION_STEPS = 1  # shared knob `train.accum_steps`
# drop: upstream's rule (losses divided by ACCUMULATION_STEPS, an epoch's trailing partial group discarded);
# mean: the shared default (the trailing group steps on its own mean)
_C.TRAIN.ACCUMULATION_RULE = "drop"
# > 0: score this many training images (a subset drawn at SEED; all if fewer) with the exported (best) weights as
# validation scores its images (eval mode, grid patches) -> train_eval.json: the fit of the model, unlike
# metrics.jsonl's train_auc (running AUC of the augmented training views under weights changing through the epoch)
_C.TRAIN.EVAL_TRAIN_IMAGES = 0
_C.TRAIN.LOSS = "bce"  # bce | focal (focal + the semantic / frequency consistency terms)
_C.TRAIN.FOCAL_ALPHA = 0.25
_C.TRAIN.FOCAL_GAMMA = 2.0
_C.TRAIN.SEMANTIC_CONSISTENCY_WEIGHT = 0.0
_C.TRAIN.FREQUENCY_CONSISTENCY_WEIGHT = 0.0
_C.TRAIN.SEMANTIC_STAGE_EPOCHS = 0  # stage 1: only the semantic modules train for this many epochs
_C.TRAIN.OPTIMIZER = CN()
_C.TRAIN.OPTIMIZER.BETAS = [0.9, 0.999]
_C.TRAIN.OPTIMIZER.EPS = 1e-8


YAML_SUFFIXES = (".yaml", ".yml")


def _merge_file(cfg: CN, path: Path) -> None:
    """Merge a YAML file (and its ``BASE`` files) into ``cfg``. Only YAML, read with ``yaml.safe_load``: yacs'
    ``merge_from_file`` would execute a ``.py`` config, so it is never called."""
    if path.suffix.lower() not in YAML_SUFFIXES:
        raise ConfigError(f"{path}: configs must be YAML files (.yaml/.yml); yacs Python configs are not executed")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    for base in data.get("BASE", [""]):
        if base:
            _merge_file(cfg, path.parent / base)
    try:
        cfg.merge_from_other_cfg(CN(data))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{path}: {' '.join(str(e).split())}") from None


def get_config(cfg_path: str | Path | None = None, opts: list | tuple = ()) -> CN:
    """Defaults, merged with a YAML (and its ``BASE`` files), then ``--opt KEY VALUE`` pairs.

    Unknown keys raise an error naming the key and the file. Returns a frozen CfgNode.
    """
    cfg = _C.clone()
    if cfg_path:
        _merge_file(cfg, Path(cfg_path))
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError) as e:
            raise ValueError(f"--opt: {e}") from None
    validate(cfg)
    cfg.freeze()
    return cfg


def validate(cfg: CN) -> None:
    if cfg.MODEL_WEIGHTS not in ("mfm", "clip"):
        raise ValueError(f"MODEL_WEIGHTS={cfg.MODEL_WEIGHTS!r}: expected mfm (the released spai.pth backbone) or "
                         "clip (the MODEL.SEMANTIC open_clip tower as spectral backbone; dinov2 needs a hub)")
    if cfg.MODEL.SID_APPROACH != "freq_restoration" or cfg.MODEL.RESOLUTION_MODE != "arbitrary":
        raise ValueError("only MODEL.SID_APPROACH=freq_restoration with RESOLUTION_MODE=arbitrary is supported")
    if cfg.MODEL.NUM_CLASSES != 2 or cfg.MODEL.REQUIRED_NORMALIZATION != "positive_0_1":
        raise ValueError("MODEL.NUM_CLASSES must be 2 (one logit) and REQUIRED_NORMALIZATION positive_0_1 "
                         "(images in [0, 1], normalised inside the model)")
    bad = [i for i in cfg.MODEL.FRE.EARLY_FUSION_LAYERS if not 0 <= i < cfg.MODEL.VIT.DEPTH]
    if bad:
        raise ValueError(f"MODEL.FRE.EARLY_FUSION_LAYERS {bad} outside 0..{cfg.MODEL.VIT.DEPTH - 1}")
    if cfg.MODEL.FRE.EXTENDED_STATISTICS_MODE not in ("residual", "concat"):
        raise ValueError(f"MODEL.FRE.EXTENDED_STATISTICS_MODE={cfg.MODEL.FRE.EXTENDED_STATISTICS_MODE!r}")
    if cfg.TRAIN.LOSS not in ("bce", "focal"):
        raise ValueError(f"TRAIN.LOSS={cfg.TRAIN.LOSS!r}: expected bce or focal")
    choices = {"MODEL.CLS_HEAD.INPUT_NORM": (cfg.MODEL.CLS_HEAD.INPUT_NORM, ("layernorm", "batchnorm")),
               "PRECISION": (cfg.PRECISION, ("fp32", "bf16", "fp16")), "DEVICE": (cfg.DEVICE, ("auto", "cpu", "cuda")),
               "TRAIN.ACCUMULATION_RULE": (cfg.TRAIN.ACCUMULATION_RULE, ("drop", "mean")),
               "AUG.ROTATION_MODE": (cfg.AUG.ROTATION_MODE, ("crop_border", "right_angle")),
               "MODEL.RECOVER_TARGET_TYPE": (cfg.MODEL.RECOVER_TARGET_TYPE, ("masked", "normal"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{key}={value!r}: expected one of {', '.join(allowed)}")
    lo, hi = cfg.AUG.GAUSSIAN_BLUR_LIMIT
    if not 1 <= lo <= hi:
        raise ValueError(f"AUG.GAUSSIAN_BLUR_LIMIT={[lo, hi]}: expected 1 <= low <= high")


# upstream's yacs names -> the shared knobs of common_utils.train (README, "Configuration")
SHARED_KNOBS = {"SEED": "seed", "DEVICE": "device", "TRAIN.EPOCHS": "train.epochs", "PRECISION": "train.precision",
                "TRAIN.CLIP_GRAD": "train.grad_clip", "TRAIN.ACCUMULATION_STEPS": "train.accum_steps",
                "DATA.NUM_WORKERS": "data.num_workers"}


def shared_train_knobs(cfg: CN) -> SimpleNamespace:
    """The training section's shared knobs under their common_utils names (for ``common_utils.train.step_options``)."""
    return SimpleNamespace(epochs=cfg.TRAIN.EPOCHS, precision=cfg.PRECISION,
                           grad_clip=float(cfg.TRAIN.CLIP_GRAD or 0.0), accum_steps=cfg.TRAIN.ACCUMULATION_STEPS)


def semantic_enabled(cfg: CN) -> bool:
    fre = cfg.MODEL.FRE
    return bool(fre.EARLY_FUSION_LAYERS or fre.USE_FREQUENCY_AWARE_ATTENTION or fre.USE_ADAPTIVE_GATING)


def config_from_mapping(mapping: dict, source: str = "checkpoint") -> CN:
    """Build our config from a saved one (upstream CfgNode as a plain dict, or ours).

    Only keys our defaults know are taken; upstream's legacy keys (MFM pre-training, Swin, ResNet, ...)
    are dropped and listed in the log. Returns a frozen CfgNode.
    """
    cfg, ignored = _C.clone(), []

    def merge(dst: CN, src: dict, prefix: str):
        for k, v in src.items():
            if k not in dst or (v is None and dst[k] is not None):  # upstream's None = "use the default"
                ignored.append(prefix + k)
            elif isinstance(dst[k], CN):
                merge(dst[k], v, f"{prefix}{k}.")
            else:
                dst[k] = type(dst[k])(v) if isinstance(dst[k], (list, tuple)) and v is not None else v

    merge(cfg, mapping, "")
    if ignored:
        log.info("%s: ignored %d config keys this implementation does not use (%s, ...)",
                 source, len(ignored), ignored[0])
    validate(cfg)
    cfg.freeze()
    return cfg


def load_yaml_config(path: str | Path) -> CN:
    """A saved config YAML (e.g. upstream's merged config) through :func:`config_from_mapping`."""
    with open(path) as f:
        return config_from_mapping(yaml.safe_load(f), source=str(path))
