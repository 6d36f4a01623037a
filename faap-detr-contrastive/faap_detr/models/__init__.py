"""DETR (frozen detector), perturbation generator, projection head and gender discriminator."""
