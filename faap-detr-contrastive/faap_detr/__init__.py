"""FAAP for a frozen DETR: perturbation generator, score-ranked contrastive loss, Wasserstein score alignment."""
