"""Per-epoch schedules of the design: perturbation bound epsilon, detection weight beta, contrastive warmup."""


def scheduled_epsilon(epoch, eps_start=0.05, eps_peak=0.10, eps_min=0.09, warmup=8, hold=6, cooldown=16):
    """Linear warmup eps_start -> eps_peak over epochs 0..warmup-1, hold `hold` epochs, then linear cooldown
    reaching eps_min after `cooldown` epochs (first cooldown epoch already below the peak)."""
    warmup_end = warmup - 1 if warmup > 1 else 0
    if epoch <= warmup_end:
        return eps_start + (eps_peak - eps_start) * min(epoch / max(1, warmup - 1), 1.0)
    hold_end = warmup_end + max(0, hold)
    if epoch <= hold_end or cooldown <= 0:
        return eps_peak
    p = (epoch - hold_end) / max(1, cooldown)
    return eps_min if p >= 1 else eps_peak + (eps_min - eps_peak) * p


def scheduled_beta(epoch, epochs, beta_start=0.5, beta_end=0.6):
    """Linear beta_start -> beta_end, reaching beta_end at the last epoch (epochs - 1)."""
    if epochs <= 1:
        return beta_start
    return beta_start + (beta_end - beta_start) * min(epoch / max(1, epochs - 1), 1.0)


def contrastive_warmup_weight(epoch, warmup=3):
    """epoch / warmup during warmup (0 at epoch 0), then 1."""
    return 1.0 if warmup <= 0 or epoch >= warmup else epoch / warmup
