from .additive_adapter import AdditiveAdapter
from .checkpoint_io import read_stage1_adapter
from .clip_backbone import CLIP_MEAN, CLIP_STD, FrozenCLIPImageEncoder
from .cross_attention_fusion import CrossAttentionFusionWithDynamicGate
from .fairness_adapter import FairnessAdapter
from .stage2_independent_adapter_model import Stage2IndependentAdapterModel

__all__ = ["AdditiveAdapter", "CLIP_MEAN", "CLIP_STD", "CrossAttentionFusionWithDynamicGate", "FairnessAdapter",
           "FrozenCLIPImageEncoder", "Stage2IndependentAdapterModel", "read_stage1_adapter"]
