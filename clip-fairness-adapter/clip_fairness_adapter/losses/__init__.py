from .dynamic_loss_weighting import DynamicFairnessLossWeighting, FixedLossWeighting, build_loss_weighting
from .fairness_loss import FairnessLoss, PairwiseFairnessLoss, Stage1Loss, preservation_loss
from .sinkhorn import BatchedSinkhorn, pad_clouds, subgroup_indices
from .stage2_fairness_loss import Stage2FairnessLoss

__all__ = ["BatchedSinkhorn", "DynamicFairnessLossWeighting", "FairnessLoss", "FixedLossWeighting",
           "PairwiseFairnessLoss", "Stage1Loss", "Stage2FairnessLoss", "build_loss_weighting", "pad_clouds",
           "preservation_loss", "subgroup_indices"]
