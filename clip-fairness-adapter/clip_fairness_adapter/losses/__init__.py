from .dynamic_loss_weighting import DynamicFairnessLossWeighting, FixedLossWeighting, build_loss_weighting
from .fairness_loss import FairnessLoss, PairwiseFairnessLoss, Stage1Loss, build_stage1_loss, preservation_loss
from .sinkhorn import BatchedSinkhorn, epsilon_schedule, sinkhorn_loop_reference, subgroup_indices
from .stage2_fairness_loss import Stage2FairnessLoss, build_fair_loss

__all__ = ["BatchedSinkhorn", "DynamicFairnessLossWeighting", "FairnessLoss", "FixedLossWeighting",
           "PairwiseFairnessLoss", "Stage1Loss", "Stage2FairnessLoss", "build_fair_loss", "build_loss_weighting",
           "build_stage1_loss", "epsilon_schedule", "preservation_loss", "sinkhorn_loop_reference",
           "subgroup_indices"]
