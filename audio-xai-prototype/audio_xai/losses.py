"""Stage 2 loss terms. Shapes: h [B, T, D] frame embeddings, w [B, T] importance, y [B] (1 = bona fide,
0 = spoof, tcm_add's convention, which is also the prototype index), mask [B, T] bool (valid frames)."""

import torch
import torch.nn.functional as F

EPS = 1e-6


SIMILARITIES = ("cosine", "dot")


def frame_similarity(h, prototypes, similarity: str = "cosine"):
    """s(h(t), p_c) -> [B, T, C]: ``cosine`` (both L2-normalised) or ``dot`` (the design's literal h(t) . p_c)."""
    if similarity == "cosine":
        return F.normalize(h, dim=-1) @ F.normalize(prototypes, dim=-1).T
    if similarity == "dot":
        return h @ prototypes.T
    raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")


def frame_contrastive(h, prototypes, y, temperature: float = 0.07, similarity: str = "cosine"):
    """l_t = -log softmax_c(s(h(t), p_c) / T)[y]  -> [B, T], s = cosine (default) or dot product."""
    logits = frame_similarity(h, prototypes, similarity) / temperature  # [B, T, C]
    return -logits.log_softmax(dim=-1).gather(-1, y[:, None, None].expand(-1, h.size(1), 1)).squeeze(-1)


OBJECTIVES = ("bonafide_null", "weighted_mean", "frames")


def importance_weighted(loss_y, loss_bona, w, mask, objective: str = "bonafide_null"):
    """Importance-weighted contrastive objective, averaged over utterances. ``loss_y`` = l_t for the utterance's
    label, ``loss_bona`` = l_t for the bona fide class (both [B, T]).

    ``bonafide_null`` (default): sum_t [w(t) l_t(y) + (1 - w(t)) l_t(bona fide)] / T per utterance. Every frame is
    explained either by its utterance's class (share w) or by the bona fide prototype (share 1 - w), so w(t) has an
    absolute scale: the share of frame t that only the spoof class explains; sum_t w(t) counts the frames attributed to
    spoofing. In a bona fide utterance both terms are equal, so w gets no contrastive gradient there (its regulariser
    keeps it low). ``weighted_mean``: sum_t w l_t / sum_t w, invariant to the scale of w (which is then free).
    ``frames`` (the design's literal sum_t w(t) l_t, / T): minimised by w = 0 unless the regularisers prevent it.
    """
    m = mask.float()
    n = m.sum(1).clamp_min(1)
    if objective == "bonafide_null":
        return (((w * loss_y + (1 - w) * loss_bona) * m).sum(1) / n).mean()
    num = (w * loss_y * m).sum(1)
    if objective == "weighted_mean":
        return (num / ((w * m).sum(1) + EPS)).mean()
    if objective == "frames":
        return (num / n).mean()
    raise ValueError(f"unknown importance_objective {objective!r}; expected one of {OBJECTIVES}")


def bonafide_importance(w, y, mask):
    """Mean importance of bona fide utterances (they should carry little importance); 0 without any."""
    bona = y == 1
    if not bona.any():
        return w.new_zeros(())
    m = mask[bona].float()
    return ((w[bona] * m).sum(1) / m.sum(1).clamp_min(1)).mean()


def temporal_smoothness(w, mask):
    """Mean squared difference of consecutive valid frames, (w(t) - w(t-1))^2."""
    pair = (mask[:, 1:] & mask[:, :-1]).float()
    return ((w[:, 1:] - w[:, :-1]) ** 2 * pair).sum() / pair.sum().clamp_min(1)


def spoof_concentration(w, y, mask):
    """Sparsity on spoof utterances: normalised entropy of q(t) = w(t) / sum w, in [0, 1] (0 = one frame)."""
    spoof = y == 0
    if not spoof.any():
        return w.new_zeros(())
    m = mask[spoof].float()
    q = w[spoof] * m / ((w[spoof] * m).sum(1, keepdim=True) + EPS)
    entropy = -(q * (q + EPS).log()).sum(1)
    return (entropy / m.sum(1).clamp_min(2).log()).mean()


def stage2_loss(h, w, prototypes, y, mask, temperature, lambdas: dict, objective: str = "bonafide_null",
                similarity: str = "cosine") -> dict:
    """All terms and the weighted total: contrastive + l_b * bonafide + l_s * smooth + l_p * sparsity."""
    loss_y = frame_contrastive(h, prototypes, y, temperature, similarity)
    loss_bona = frame_contrastive(h, prototypes, torch.ones_like(y), temperature, similarity)
    terms = {
        "contrastive": importance_weighted(loss_y, loss_bona, w, mask, objective),
        "bonafide_reg": bonafide_importance(w, y, mask),
        "temporal_smooth": temporal_smoothness(w, mask),
        "sparsity": spoof_concentration(w, y, mask),
    }
    terms["total"] = (terms["contrastive"] + lambdas["bonafide_reg"] * terms["bonafide_reg"]
                      + lambdas["temporal_smooth"] * terms["temporal_smooth"] + lambdas["sparsity"] * terms["sparsity"])
    return terms


__all__ = ["OBJECTIVES", "SIMILARITIES", "frame_similarity", "frame_contrastive", "importance_weighted",
           "bonafide_importance", "temporal_smoothness", "spoof_concentration", "stage2_loss"]
