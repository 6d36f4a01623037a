"""One-sided 1-D Wasserstein loss pulling the female detection-score distribution up to the male one."""
import torch
import torch.nn.functional as F


def resize_sorted(x, k):
    """Sorted [n] -> [k] by linear interpolation at positions linspace(0, n-1, k) (unchanged if n == k)."""
    n = x.numel()
    if n == k:
        return x
    pos = torch.linspace(0, n - 1, k, device=x.device, dtype=torch.float32)
    lo, hi = pos.floor().long(), pos.ceil().long()
    w = (pos - lo.to(pos)).to(x.dtype)
    return x[lo] * (1 - w) + x[hi] * w


def wasserstein_1d_asymmetric(female, male):
    """mean(relu(q_m - q_f)) over matched quantiles; male side detached, so only female scores get gradient.

    female [n_f], male [n_m] -> scalar; 0 if either side is empty."""
    if female.numel() == 0 or male.numel() == 0:
        return female.sum() * 0.0 if female.numel() else female.new_zeros(())
    f = female.sort().values
    m = male.detach().sort().values
    k = max(f.numel(), m.numel())
    return F.relu(resize_sorted(m, k) - resize_sorted(f, k)).mean()
