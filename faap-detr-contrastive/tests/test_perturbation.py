"""Pixel-space L-inf bound, untouched padding, and a DETR that stays frozen while the generator learns."""
import torch
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate
from faap_detr.main import build_criterion, build_frozen_detr, load_cfg
from faap_detr.models.detr import normalize
from faap_detr.models.generator import PerturbationGenerator, apply_generator


def _batch():
    g = torch.Generator().manual_seed(0)
    items = [(torch.rand(3, 40, 56, generator=g), None), (torch.rand(3, 29, 33, generator=g), None)]
    return collate(items)[:2]


def test_pixel_space_bound_and_padding():
    pixels, mask = _batch()
    gen = PerturbationGenerator(8, epsilon=0.07)
    torch.nn.init.normal_(gen.out_conv.weight, std=5.0)  # saturate tanh so the bound is actually reached
    x, delta = apply_generator(gen, pixels, mask, "pixel")
    perturbed = pixels + delta
    assert delta.abs().max() <= 0.07 + 1e-6
    assert delta.abs().max() > 0.05
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    pad = mask.unsqueeze(1).expand_as(pixels)
    assert torch.all(delta[pad] == 0) and torch.all(x[pad] == 0)  # padding untouched, zero as DETR pads
    assert torch.allclose(x[~pad], normalize(perturbed)[~pad], atol=1e-6)


def test_normalized_space_perturbs_padding():
    pixels, mask = _batch()
    gen = PerturbationGenerator(8, epsilon=0.1)
    x, delta = apply_generator(gen, pixels, mask, "normalized")
    assert delta[mask.unsqueeze(1).expand_as(pixels)].abs().max() > 0  # the design's behaviour, kept as option


def test_detr_frozen_while_generator_learns(tiny_cfg_args):
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov)
    detr = build_frozen_detr(cfg)
    detr.train()  # must stay in eval mode
    assert not detr.training and not detr.detr.training
    assert all(not p.requires_grad for p in detr.parameters())
    before = {k: v.clone() for k, v in detr.state_dict().items()}
    ds = GenderCocoDataset(cfg.data.root, "train", image_size=64, max_size=96)
    pixels, mask, targets = collate([ds[i] for i in (0, 1, 6, 7)])
    gen = PerturbationGenerator(8, epsilon=0.1)
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-3)
    crit = build_criterion(cfg)
    for _ in range(2):
        x, _ = apply_generator(gen, pixels, mask)
        losses, _ = crit(detr(x, mask), targets)
        opt.zero_grad()
        crit.weighted_total(losses).backward()
        assert gen.out_conv.weight.grad.abs().sum() > 0  # gradients reach the generator through DETR
        opt.step()
    assert all(p.grad is None for p in detr.parameters())
    assert all(torch.equal(before[k], v) for k, v in detr.state_dict().items())
