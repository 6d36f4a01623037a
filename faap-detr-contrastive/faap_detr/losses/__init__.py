"""DETR set criterion, score-ranked contrastive losses, one-sided Wasserstein score loss, FAAP adversarial loss."""
