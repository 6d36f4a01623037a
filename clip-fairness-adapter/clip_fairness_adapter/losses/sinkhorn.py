"""Many Sinkhorn divergences in one batched geomloss call (padding rows get weight 0, so sizes may differ)."""
from __future__ import annotations

import torch
from geomloss import SamplesLoss


def subgroup_indices(subgroups: torch.Tensor, num_subgroups: int, min_samples: int) -> dict[int, torch.Tensor]:
    """{subgroup id: row indices in batch order} for ids 0..num_subgroups-1 with >= min_samples rows."""
    out = {}
    for g in range(num_subgroups):
        idx = torch.nonzero(subgroups == g, as_tuple=True)[0]
        if idx.numel() >= min_samples:
            out[g] = idx
    return out


class BatchedSinkhorn:
    """``SamplesLoss("sinkhorn", p, blur, scaling, backend="tensorized")`` over P pairs of point clouds at once.

    __call__(xs: list of [n_i, D], ys: list of [m_i, D]) -> [P] divergences. Clouds are zero-padded to
    [P, max n, D] / [P, max m, D] with weights 1/n_i on real rows and 0 on padding, which is exact: a padding row
    carries no mass and receives exactly zero gradient. The cost is geomloss' |x-y|^2/2 (p=2), debiased.
    ``diameter`` bounds the largest distance (2 for unit-norm features); None -> bounding-box diagonal of the real
    points (at least ``blur``): geomloss' own estimate would include padding and fails when all points coincide.
    """

    def __init__(self, blur: float = 1e-4, p: int = 2, scaling: float = 0.9, diameter: float | None = None):
        self.blur, self.p, self.scaling, self.diameter = blur, p, scaling, diameter

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) != len(ys) or not xs:
            raise ValueError(f"need the same non-zero number of x and y clouds, got {len(xs)} and {len(ys)}")
        x, a = pad_clouds(xs)
        y, b = pad_clouds(ys)
        diameter = self.diameter
        if diameter is None:
            pts = torch.cat([*xs, *ys]).detach()
            diameter = max((pts.max(0).values - pts.min(0).values).norm().item(), self.blur)
        return self.padded(x, a, y, b, diameter)

    def padded(self, x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor,
               diameter: float) -> torch.Tensor:
        """Divergences [P] of padded clouds x [P,N,D] (weights a [P,N]) and y [P,M,D] (weights b [P,M])."""
        loss = SamplesLoss("sinkhorn", p=self.p, blur=self.blur, scaling=self.scaling, diameter=diameter,
                           backend="tensorized")
        return loss(a, x, b, y)


def pad_clouds(clouds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[P, N, D] zero-padded points and [P, N] weights (1/n_i on real rows, 0 on padding)."""
    n_max = max(c.shape[0] for c in clouds)
    pts = clouds[0].new_zeros(len(clouds), n_max, clouds[0].shape[1])
    w = clouds[0].new_zeros(len(clouds), n_max)
    for i, c in enumerate(clouds):
        if c.shape[0] == 0:
            raise ValueError(f"cloud {i} is empty")
        pts[i, : c.shape[0]] = c
        w[i, : c.shape[0]] = 1.0 / c.shape[0]
    return pts, w
