from .additive_adapter import AdditiveAdapter
from .checkpoint_io import read_stage1_adapter, read_stage2_heads
from .clip_backbone import CLIP_MEAN, CLIP_STD, FrozenCLIPImageEncoder, build_encoder, load_clip
from .cross_attention_fusion import CrossAttentionFusionWithDynamicGate
from .fairness_adapter import FairnessAdapter, build_stage1_model
from .stage2_independent_adapter_model import Stage2IndependentAdapterModel, build_model, load_trained

__all__ = ["AdditiveAdapter", "CLIP_MEAN", "CLIP_STD", "CrossAttentionFusionWithDynamicGate", "FairnessAdapter",
           "FrozenCLIPImageEncoder", "Stage2IndependentAdapterModel", "build_encoder", "build_model",
           "build_stage1_model", "load_clip", "load_trained", "read_stage1_adapter", "read_stage2_heads"]
