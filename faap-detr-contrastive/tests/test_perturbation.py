"""The L-inf budget: units converted exactly between spaces, bounds reached and never exceeded, untouched padding,
and a DETR that stays frozen while the generator learns."""
import pytest
import torch
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate
from faap_detr.main import load_cfg
from faap_detr.models.detr import IMAGENET_STD, normalize
from faap_detr.models.generator import PerturbationGenerator, apply_generator, linf_bound, linf_in_units
from faap_detr.train_faap import build_frozen_detr


def _batch():
    g = torch.Generator().manual_seed(0)
    items = [(torch.rand(3, 40, 56, generator=g), None), (torch.rand(3, 29, 33, generator=g), None)]
    return collate(items)[:2]


def _saturated(bound):
    gen = PerturbationGenerator(8, epsilon=bound)
    torch.nn.init.normal_(gen.out_conv.weight, std=5.0)  # saturate tanh so the bound is actually reached
    return gen


def test_design_units_in_pixel_space_are_converted_exactly():
    assert linf_bound(0.1, "normalized", "normalized") == 0.1 and linf_bound(0.02, "pixel", "pixel") == 0.02
    assert linf_bound(0.1, "normalized", "pixel") == pytest.approx(tuple(0.1 * s for s in IMAGENET_STD))
    assert linf_bound(0.0229, "pixel", "normalized") == pytest.approx(tuple(0.0229 / s for s in IMAGENET_STD))
    pixels, mask = _batch()
    gen = _saturated(linf_bound(0.1, "normalized", "pixel"))
    x, delta = apply_generator(gen, pixels, mask, "pixel")
    valid = ~mask.unsqueeze(1).expand_as(pixels)
    for c, s in enumerate(IMAGENET_STD):
        assert delta[:, c][valid[:, c]].abs().max() <= 0.1 * s + 1e-6  # |delta_pixel| <= eps * std per channel
    # the same perturbation seen in normalised units: |delta_norm| = |delta_pixel| / std <= eps, and reached
    d_norm = (x - normalize(pixels))[valid]
    assert 0.09 < d_norm.abs().max() <= 0.1 + 1e-5
    assert 0.09 < linf_in_units(delta, "normalized", "pixel") <= 0.1 + 1e-6


def test_pixel_space_bound_and_padding():
    pixels, mask = _batch()
    x, delta = apply_generator(_saturated(0.07), pixels, mask, "pixel")
    perturbed = pixels + delta
    assert 0.05 < delta.abs().max() <= 0.07 + 1e-6
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    pad = mask.unsqueeze(1).expand_as(pixels)
    assert torch.all(delta[pad] == 0) and torch.all(x[pad] == 0)  # padding untouched, zero as DETR pads
    assert torch.allclose(x[~pad], normalize(perturbed)[~pad], atol=1e-6)
    assert linf_in_units(delta, "pixel", "pixel") == pytest.approx(delta.abs().max().item())


def test_normalized_space_perturbs_padding():
    pixels, mask = _batch()
    x, delta = apply_generator(PerturbationGenerator(8, epsilon=0.1), pixels, mask, "normalized")
    assert delta[mask.unsqueeze(1).expand_as(pixels)].abs().max() > 0  # the design's behaviour, kept as option
    assert delta.abs().max() <= 0.1 + 1e-6


def test_detr_frozen_while_generator_learns(tiny_cfg_args):
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov)
    detr, crit, _ = build_frozen_detr(cfg)
    detr.train()  # must stay in eval mode
    assert not detr.training and not detr.detr.training
    assert all(not p.requires_grad for p in detr.parameters())
    before = {k: v.clone() for k, v in detr.state_dict().items()}
    ds = GenderCocoDataset(cfg.data.root, "train", image_size=64, max_size=96)
    pixels, mask, targets = collate([ds[i] for i in (0, 1, 6, 7)])
    gen = PerturbationGenerator(8, epsilon=0.1)
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-3)
    for _ in range(2):
        x, _ = apply_generator(gen, pixels, mask)
        losses, _ = crit(detr(x, mask), targets)
        opt.zero_grad()
        crit.weighted_total(losses).backward()
        assert gen.out_conv.weight.grad.abs().sum() > 0  # gradients reach the generator through DETR
        opt.step()
    assert all(p.grad is None for p in detr.parameters())
    assert all(torch.equal(before[k], v) for k, v in detr.state_dict().items())
