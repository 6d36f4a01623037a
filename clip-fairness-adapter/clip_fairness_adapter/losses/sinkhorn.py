"""Debiased Sinkhorn divergences of many pairs of point clouds at once, in float64.

The algorithm is geomloss' ``SamplesLoss("sinkhorn", p=2, backend="tensorized")`` (symmetric log-domain Sinkhorn with
epsilon-scaling, cost |x - y|^2 / 2, debiased: S(a, b) = OT(a, b) - OT(a, a)/2 - OT(b, b)/2), reorganised for speed:

- every pair's two cross problems (a -> b, b -> a) and every *cloud's* self problem (a -> a) are rows of one stack
  ``[R, N, N]`` (clouds zero-padded to N points; padding has log-weight -inf, i.e. no mass), so one Sinkhorn
  iteration is one ``logsumexp`` over the whole stack;
- a cloud's self problem depends on the cloud alone (and the epsilon schedule), so it is solved once however many
  pairs the cloud is in (8 subgroups, 28 pairs: 8 self problems instead of 56);
- the iterations run in float64 whatever the inputs' dtype (at blur 1e-4, eps = 1e-8, float32 potentials lose the
  gradient's precision), outside autocast, without autograd; the last extrapolation step runs with autograd on the
  cost matrices as geomloss does (gradients flow into the first argument of each cost, i.e. the envelope gradient).

With a fixed ``diameter`` (the configs' 2.0: unit-norm features) every problem shares geomloss' epsilon schedule and
the result equals geomloss' per-pair loop in float64 (values and gradients, tested). ``diameter=None`` uses one
diameter for the whole stack (the bounding-box diagonal of all real points, at least ``blur``): geomloss estimates
one per pair, so its schedule may start elsewhere (results agree to ~1e-6, not bit for bit).
"""
from __future__ import annotations

import functools

import numpy as np
import torch


def subgroup_indices(subgroups: torch.Tensor, num_subgroups: int, min_samples: int) -> dict[int, torch.Tensor]:
    """{subgroup id: row indices in batch order} for ids 0..num_subgroups-1 with >= min_samples rows."""
    out = {}
    for g in range(num_subgroups):
        idx = torch.nonzero(subgroups == g, as_tuple=True)[0]
        if idx.numel() >= min_samples:
            out[g] = idx
    return out


def epsilon_schedule(diameter: float, blur: float, scaling: float, p: int = 2) -> list[float]:
    """geomloss' epsilon-scaling schedule: diameter^p, then geometric steps of scaling^p down to blur^p."""
    steps = np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))
    return [diameter ** p] + [float(np.exp(e)) for e in steps] + [blur ** p]


# exp() below about -708 returns subnormals (or 0) through a slow path (~100x slower on x86). Terms that far below the
# maximum of a logsumexp change it by less than 1e-300 relative, so they are clamped at EXP_FLOOR before exp: the same
# float64 result, at full speed.
EXP_FLOOR = -700.0


def _logsumexp(s: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dimension of ``s`` [..., M] (rows hold at least one finite entry)."""
    m = s.detach().amax(-1, keepdim=True)
    return m.squeeze(-1) + (s - m).clamp_min(EXP_FLOOR).exp().sum(-1).log()


def _iterate(potentials: torch.Tensor, cost: torch.Tensor, log_w: torch.Tensor, partner: torch.Tensor,
             eps: float | torch.Tensor) -> torch.Tensor:
    """One symmetric Sinkhorn update of every row of the stack: f <- (f + softmin_eps(C, log w + f_partner / eps)) / 2.

    potentials [R, N]; cost [R, N, N] (row r: points of its row cloud x columns of its column cloud); log_w [R, N]
    (column log-weights); partner [R]: the row whose potential lives on row r's columns (a <-> b swap; itself for a
    self problem); eps: a number, or a 0-d tensor under ``torch.compile`` (one graph for every epsilon).
    """
    h = log_w + potentials.index_select(0, partner) / eps
    lse = _logsumexp(h.unsqueeze(1) - cost / eps)
    return 0.5 * (potentials - eps * lse)


class BatchedSinkhorn:
    """Debiased Sinkhorn divergences (geomloss' algorithm, p = 2) of many pairs of clouds in one stack.

    ``pairs(clouds, pairs)`` -> [P] divergences S(clouds[i], clouds[j]) for each (i, j), every self problem solved once
    per cloud; ``__call__(xs, ys)`` -> [P] divergences S(xs[p], ys[p]) (every cloud distinct). Clouds are [n, D]
    tensors of any float dtype with uniform weights 1/n; results and gradients come back in the clouds' dtype.
    ``compile=True`` runs the iteration through ``torch.compile`` (dynamic shapes).
    """

    def __init__(self, blur: float = 1e-4, p: int = 2, scaling: float = 0.9, diameter: float | None = None,
                 compile: bool = False):
        if p != 2:
            raise ValueError(f"only p=2 (cost |x-y|^2/2) is implemented, got p={p}")
        if not 0 < scaling < 1:
            raise ValueError(f"sinkhorn scaling must be in (0, 1), got {scaling}")
        self.blur, self.p, self.scaling, self.diameter = float(blur), p, float(scaling), diameter
        self.compiled = compile
        self.step = torch.compile(_iterate, dynamic=True) if compile else _iterate

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) != len(ys) or not xs:
            raise ValueError(f"need the same non-zero number of x and y clouds, got {len(xs)} and {len(ys)}")
        return self.pairs([*xs, *ys], [(i, len(xs) + i) for i in range(len(xs))])

    def schedule(self, points: torch.Tensor) -> list[float]:
        """The epsilon schedule for ``points`` [T, D] (all real points of the stack)."""
        diameter = self.diameter
        if diameter is None:
            pts = points.detach()
            diameter = max(float((pts.max(0).values - pts.min(0).values).norm()), self.blur)
        return epsilon_schedule(diameter, self.blur, self.scaling, self.p)

    def pairs(self, clouds: list[torch.Tensor], pairs: list[tuple[int, int]]) -> torch.Tensor:
        for k, c in enumerate(clouds):
            if c.ndim != 2 or c.shape[0] == 0:
                raise ValueError(f"cloud {k} must be a non-empty [n, D] tensor, got shape {tuple(c.shape)}")
        return self.stacked(torch.cat(clouds), [c.shape[0] for c in clouds], pairs)

    def stacked(self, points: torch.Tensor, sizes: list[int], pairs: list[tuple[int, int]]) -> torch.Tensor:
        """Divergences [P] of ``pairs`` of clouds given as consecutive row blocks of ``points`` [T, D]: cloud k is
        the next ``sizes[k]`` rows (so a loss gathers its clouds with one index operation)."""
        if not pairs:
            raise ValueError("no pairs given")
        if min(sizes) < 1 or sum(sizes) != points.shape[0]:
            raise ValueError(f"cloud sizes {sizes} must be >= 1 and add up to the {points.shape[0]} points")
        device, n_pairs = points.device, len(pairs)
        used = sorted({k for pair in pairs for k in pair})
        self_row = {k: 2 * n_pairs + s for s, k in enumerate(used)}
        first, second = [i for i, _ in pairs], [j for _, j in pairs]
        index = functools.partial(torch.tensor, device=device)
        rows = index(first + second + used)  # row r: potential on the points of cloud rows[r] ...
        cols = index(second + first + used)  # ... transported to cloud cols[r]
        partner = index(list(range(n_pairs, 2 * n_pairs)) + list(range(n_pairs)) + [self_row[k] for k in used])
        with torch.autocast(device.type, enabled=False):
            x = points.double()
            n = index(sizes)
            slot = torch.arange(int(n.max()), device=device)
            real = slot < n.unsqueeze(1)  # [K, N]
            weights = real / n.unsqueeze(1).double()  # 1/n_k on real rows, 0 on padding
            log_w = torch.where(real, weights.log(), float("-inf"))
            # point index of each padded slot; padding points at a zero row appended after the T real ones
            at = torch.where(real, (torch.cumsum(n, 0) - n).unsqueeze(1) + slot, points.shape[0])
            # geomloss' cost(x, y.detach()) = (|x|^2 - 2 x.y + |y|^2) / 2: the gradient flows into the row cloud only
            sq = torch.nn.functional.pad((x * x).sum(1), (0, 1))
            gram = torch.nn.functional.pad(x @ x.detach().T, (0, 1, 0, 1))
            r_at, c_at = at.index_select(0, rows), at.index_select(0, cols)  # [R, N]
            cost = (sq[r_at].unsqueeze(2) - 2 * gram[r_at.unsqueeze(2), c_at.unsqueeze(1)]
                    + sq.detach()[c_at].unsqueeze(1)) / 2
            log_w_col = log_w.index_select(0, cols)
            eps_list = self.schedule(x)
            with torch.no_grad():
                c = cost.detach()
                eps = eps_list[0]
                f = -eps * _logsumexp(log_w_col.unsqueeze(1) - c / eps)
                for eps in eps_list:
                    f = self.step(f, c, log_w_col, partner, torch.tensor(eps, device=device) if self.compiled else eps)
                h = log_w_col + f.index_select(0, partner) / eps
            f = -eps * _logsumexp(h.unsqueeze(1) - cost / eps)  # last extrapolation, with autograd
            f_aa, g_bb = f.index_select(0, index([self_row[i] for i in first])), \
                f.index_select(0, index([self_row[j] for j in second]))
            div = (weights.index_select(0, index(first)) * (f[:n_pairs] - f_aa)).sum(1) + \
                (weights.index_select(0, index(second)) * (f[n_pairs:2 * n_pairs] - g_bb)).sum(1)
        return div.to(points.dtype)


def sinkhorn_loop_reference(xs, ys, blur: float, scaling: float, diameter: float | None) -> torch.Tensor:
    """The per-pair geomloss loop (one ``SamplesLoss`` call per pair): what the tests and the bench compare with."""
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, diameter=diameter, backend="tensorized")
    return torch.stack([loss(x, y) for x, y in zip(xs, ys)])


__all__ = ["BatchedSinkhorn", "epsilon_schedule", "sinkhorn_loop_reference", "subgroup_indices"]
