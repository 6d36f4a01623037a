"""Original FAAP objective: a discriminator predicts gender from decoder features; the generator fools it."""
import torch.nn.functional as F


def discriminator_loss(logits, gender):
    """logits [B,2], gender [B] (0 male, 1 female) -> CE."""
    return F.cross_entropy(logits, gender)


def fairness_loss(logits, gender, alpha=1.0):
    """L_fair = -(CE(D(h), y) + alpha * H(D(h))): maximise the discriminator's error and its uncertainty."""
    logp = logits.log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1).mean()
    return -(F.cross_entropy(logits, gender) + alpha * entropy)
