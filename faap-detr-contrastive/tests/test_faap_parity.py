"""Projection head, generator, contrastive / Wasserstein losses and schedules against the design's own code
(shared/fixtures/parity/faap_upstream), run in that code's settings (normalised-space epsilon, int() counts)."""
import copy

import pytest
import torch
from conftest import fixture_dir
from faap_detr.losses.contrastive import AdaptiveScoreContrastiveLoss, BidirectionalScoreContrastiveLoss
from faap_detr.losses.wasserstein import resize_sorted, wasserstein_1d_asymmetric
from faap_detr.models.detr import IMAGENET_MEAN, IMAGENET_STD
from faap_detr.models.generator import PerturbationGenerator, apply_generator, load_generator
from faap_detr.models.projection_head import ProjectionHead
from faap_detr.schedules import contrastive_warmup_weight, scheduled_beta, scheduled_epsilon
from safetensors.torch import load_file

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def fx():
    d = fixture_dir("faap_upstream")
    return d, load_file(d / "faap_losses_io.safetensors")


def test_projection_head(fx):
    d, io = fx
    head = ProjectionHead(256, 512, 128)
    head.load_state_dict(torch.load(d / "projection_head.pth", weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.allclose(head.eval()(io["input_hs"]), io["proj_eval_out"], **TOL)
        out = head.train()(io["input_hs"])
    assert torch.allclose(out, io["proj_train_out"], **TOL)
    bn = head.net[1]
    assert torch.allclose(bn.running_mean, io["proj_train_running_mean_after"], **TOL)
    assert torch.allclose(bn.running_var, io["proj_train_running_var_after"], **TOL)
    assert bn.num_batches_tracked.item() == io["proj_train_num_batches_tracked_after"].item()


@pytest.mark.parametrize("suffix", ["", "_b7"])
def test_contrastive_losses(fx, suffix):
    _, io = fx
    emb, scores = io[f"input_embeddings{suffix}"], io[f"input_scores{suffix}"]
    z = emb.clone().requires_grad_(True)
    loss, info = AdaptiveScoreContrastiveLoss(0.1, 0.4, 0.4, 2, rounding="floor")(z, scores)
    loss.backward()
    pre = f"contrastive{suffix}_"
    assert abs(loss.item() - io[pre + "loss"].item()) < 1e-6
    assert torch.allclose(z.grad, io[pre + "grad_embeddings"], **TOL)
    assert torch.equal(info["positive_indices"], io[pre + "positive_indices"])
    assert torch.equal(info["anchor_indices"], io[pre + "anchor_indices"])
    assert info["n_positive"] == io[pre + "n_positive"].item() and info["n_anchor"] == io[pre + "n_anchor"].item()
    assert abs(info["score_gap"] - io[pre + "score_gap"].item()) < 1e-6
    z = emb.clone().requires_grad_(True)
    loss, info = BidirectionalScoreContrastiveLoss(0.1, 0.4, 0.4, 1.0, 0.3, 2, rounding="floor")(z, scores)
    loss.backward()
    pre = f"bidirectional{suffix}_"
    assert abs(loss.item() - io[pre + "loss"].item()) < 1e-6
    assert abs(info["loss_a2p"] - io[pre + "loss_a2p"].item()) < 1e-6
    assert abs(info["loss_p2p"] - io[pre + "loss_p2p"].item()) < 1e-6
    assert torch.allclose(z.grad, io[pre + "grad_embeddings"], **TOL)


@pytest.mark.parametrize("suffix", ["", "_rev"])
def test_wasserstein(fx, suffix):
    _, io = fx
    f = io[f"input_female_scores{suffix}"].clone().requires_grad_(True)
    m = io[f"input_male_scores{suffix}"].clone().requires_grad_(True)
    loss = wasserstein_1d_asymmetric(f, m)
    loss.backward()
    pre = "wass" + suffix + "_"
    assert abs(loss.item() - io[pre + "loss"].item()) < 1e-6
    assert torch.allclose(f.grad, io[pre + "grad_female"], **TOL)
    assert m.grad is None and not io[pre + "grad_male"].any()  # male side detached
    k = max(len(f), len(m))
    assert torch.allclose(resize_sorted(f.detach().sort().values, k), io[pre + "female_sorted_resized"], **TOL)
    assert torch.allclose(resize_sorted(m.detach().sort().values, k), io[pre + "male_sorted_resized"], **TOL)


SCHEDULES = {
    "default": dict(epochs=30, eps=(0.05, 0.1, 0.09, 8, 6, 16), warm=3, beta=(0.5, 0.6)),
    "alt1": dict(epochs=12, eps=(0.02, 0.08, 0.04, 1, 2, 5), warm=0, beta=(0.3, 0.9)),
    "alt2": dict(epochs=6, eps=(0.05, 0.1, 0.09, 3, 0, 0), warm=1, beta=(0.5, 0.6)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules(fx, name):
    _, io = fx
    s = SCHEDULES[name]
    epochs = range(s["epochs"])
    eps = torch.tensor([scheduled_epsilon(e, *s["eps"]) for e in epochs], dtype=torch.float64)
    beta = torch.tensor([scheduled_beta(e, s["epochs"], *s["beta"]) for e in epochs], dtype=torch.float64)
    w = torch.tensor([contrastive_warmup_weight(e, s["warm"]) for e in epochs], dtype=torch.float64)
    assert (eps - io[f"sched_{name}_epsilon"]).abs().max() < 1e-12
    assert (beta - io[f"sched_{name}_beta"]).abs().max() < 1e-12
    assert (w - io[f"sched_{name}_contrastive_weight"]).abs().max() < 1e-12


def _generator(d):
    g = PerturbationGenerator(32, epsilon=0.05)
    g.load_state_dict(torch.load(d / "generator.pth", weights_only=True), strict=True)
    g.epsilon = 0.1
    return g


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_generator_and_normalised_space_application(fx, mode):
    d, io = fx
    g = getattr(_generator(d), mode)()
    x, mask = io["input_images"], io["input_images_mask"]
    with torch.no_grad():
        assert torch.allclose(g.pre_tanh(copy.deepcopy(x)), io[f"gen_{mode}_pre_tanh"], **TOL)
    g = getattr(_generator(d), mode)()  # fresh BN buffers for the train-mode forward below
    # the design's input is already normalised with zero padding: recover the [0,1] pixels our API takes
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (x * std + mean) * (~mask).unsqueeze(1)
    with torch.no_grad():
        perturbed, _ = apply_generator(g, pixels, mask, space="normalized")
    assert torch.allclose(perturbed, io[f"gen_{mode}_perturbed"], **TOL)
    with torch.no_grad():
        delta = getattr(_generator(d), mode)()(x)
    assert torch.allclose(delta, io[f"gen_{mode}_delta"], **TOL)
    assert delta[1][:, mask[1]].abs().max() > 0  # the design's code perturbs the padding too


def test_generator_odd_sizes(fx):
    d, io = fx
    with torch.no_grad():
        delta = _generator(d).eval()(io["input_images_odd"])
    assert torch.allclose(delta, io["gen_eval_odd_delta"], **TOL)


def test_design_checkpoint_loads_into_ours(fx, tmp_path):
    d, io = fx
    gen_sd = torch.load(d / "generator.pth", weights_only=True)
    head_sd = torch.load(d / "projection_head.pth", weights_only=True)
    ckpt = {"epoch": 29, "generator": gen_sd, "proj_head": head_sd, "args": {"epsilon": 0.05, "epochs": 30}}
    torch.save(ckpt, tmp_path / "epoch_0029.pth")
    with pytest.raises(ValueError, match="no epsilon"):
        load_generator(tmp_path / "epoch_0029.pth")
    g, eps, units, space = load_generator(tmp_path / "epoch_0029.pth", epsilon=0.1)
    assert eps == 0.1 and units == space == "normalized" and not g.training
    with torch.no_grad():
        assert torch.allclose(g(io["input_images"]), io["gen_eval_delta"], **TOL)
    torch.save(gen_sd, tmp_path / "bare.pth")  # a bare state dict also loads
    assert load_generator(tmp_path / "bare.pth", epsilon=0.1)[1] == 0.1
