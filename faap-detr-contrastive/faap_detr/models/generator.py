"""Light U-Net perturbation generator (delta = epsilon * tanh(.)) and how its delta is applied to a batch."""
import torch
import torch.nn.functional as F
from torch import nn

from .detr import IMAGENET_MEAN, IMAGENET_STD, normalize


class ConvBlock(nn.Module):
    """(Conv3x3 -> BN -> ReLU) x 2; the first conv carries the stride (stride 2 gives ceil(n/2))."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


class UpBlock(nn.Module):
    """Bilinear resize to the skip tensor's exact size, then Conv3x3 -> BN -> ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x, size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.relu(self.bn(self.conv(x)))


class PerturbationGenerator(nn.Module):
    """U-Net with additive skips (state-dict layout of the design's own code, so its checkpoints load).

    `epsilon` is the L-inf bound of delta in the space it is added in: a number, or one number per RGB channel
    (see `linf_bound`). It is a plain attribute (no state-dict entry, as in the design's code), set by the trainer
    each epoch and stored with its units and space in every generator file we write."""

    def __init__(self, base_channels=32, epsilon=0.05):
        super().__init__()
        c = base_channels
        self.down1 = ConvBlock(3, c, 1)
        self.down2 = ConvBlock(c, 2 * c, 2)
        self.down3 = ConvBlock(2 * c, 4 * c, 2)
        self.bottleneck = ConvBlock(4 * c, 4 * c, 1)
        self.up2 = UpBlock(4 * c, 2 * c)
        self.up1 = UpBlock(2 * c, c)
        self.out_conv = nn.Conv2d(c, 3, 3, 1, 1)
        self.epsilon = epsilon

    def pre_tanh(self, x):
        """x [B,3,H,W] -> out_conv output [B,3,H,W]."""
        h1 = self.down1(x)
        h2 = self.down2(h1)
        h3 = self.bottleneck(self.down3(h2))
        u2 = self.up2(h3, h2.shape[-2:]) + h2
        u1 = self.up1(u2, h1.shape[-2:]) + h1
        return self.out_conv(u1)

    def forward(self, x):
        """x [B,3,H,W] -> delta [B,3,H,W] with |delta[:, c]| < epsilon (or epsilon[c])."""
        eps = torch.as_tensor(self.epsilon, dtype=x.dtype, device=x.device)
        return (eps.view(1, 3, 1, 1) if eps.dim() else eps) * torch.tanh(self.pre_tanh(x))


SPACES = ("pixel", "normalized")


def linf_bound(epsilon, units, space):
    """Per-channel L-inf bound, in `space` units, of a budget `epsilon` given in `units` (both "pixel" = [0,1] image
    units or "normalized" = ImageNet-normalised units, i.e. per-channel std).

    The conversion is exact: |delta_normalised[c]| <= e  <=>  |delta_pixel[c]| <= e * std[c]. Returns a float when
    no conversion is needed, else a tuple of three floats."""
    for name, value in (("epsilon.units", units), ("generator.space", space)):
        if value not in SPACES:
            raise ValueError(f"{name} must be one of {SPACES}, got {value!r}")
    if units == space:
        return float(epsilon)
    if units == "normalized":  # -> pixel
        return tuple(float(epsilon) * s for s in IMAGENET_STD)
    return tuple(float(epsilon) / s for s in IMAGENET_STD)  # pixel units -> normalized space


def linf_in_units(delta, units, space):
    """max |delta| over a batch [B,3,H,W] added in `space`, expressed in `units` (what epsilon is given in)."""
    d = delta.detach().abs().float().amax(dim=(0, 2, 3))  # per channel
    if units != space:
        std = d.new_tensor(IMAGENET_STD)
        d = d / std if units == "normalized" else d * std
    return float(d.max())


def _normalised_bounds(ref):
    mean = ref.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = ref.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def apply_generator(generator, pixels, mask, space="pixel"):
    """Perturb a padded batch and return (DETR input, delta).

    pixels [B,3,H,W] in [0,1], zero on padding; mask [B,H,W] True on padding. The generator sees the
    ImageNet-normalised batch (zero on padding, as DETR pads).
    space="pixel" (default): x' = clamp(x + delta * valid, 0, 1) in pixel units, padding untouched; the
      returned delta is the effective pixel change.
    space="normalized" (the design's own code): delta is added to the normalised tensor everywhere,
      padding included, then clamped per channel to the normalised image of [0,1]."""
    valid = (~mask).unsqueeze(1).to(pixels.dtype)
    x_norm = normalize(pixels) * valid
    delta = generator(x_norm)
    if space == "normalized":
        lo, hi = _normalised_bounds(x_norm)
        out = torch.maximum(torch.minimum(x_norm + delta, hi), lo)
        return out, out - x_norm
    if space != "pixel":
        raise ValueError(f"perturbation space must be one of {SPACES}, got {space!r}")
    perturbed = (pixels + delta * valid).clamp(0, 1)
    return normalize(perturbed) * valid, perturbed - pixels


def generator_export(generator, proj_head, opt_g, config, epoch, epsilon, units, space, **extra):
    """A FAAP epoch file: the design's keys (`generator`, `proj_head`, `opt_g`, `args`) plus the budget it was
    trained under (`epsilon` in `epsilon_units`, added in `perturb_space`) and `epoch` (completed epochs)."""
    return {"generator": generator.state_dict(), "proj_head": proj_head.state_dict(), "opt_g": opt_g.state_dict(),
            "args": config, "epoch": epoch, "epsilon": float(epsilon), "epsilon_units": units,
            "perturb_space": space, **extra}


def load_generator(path, epsilon=None, space=None, units=None):
    """Generator from one of our FAAP files or the design's own (`generator` key, or a bare state dict).

    Returns (generator in eval mode with its bound set, epsilon, units, space). Our files store the budget; a given
    `epsilon` / `space` / `units` that disagrees with a stored one is an error. The design's files store none:
    `epsilon` is then required, and units and space default to theirs ("normalized")."""
    from common_utils.train import load_checkpoint, load_state_dict_strict

    ckpt = load_checkpoint(path)
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "out_conv.weight" not in state:
        raise ValueError(f"{path}: no generator state dict (expected key 'generator' or a bare state dict)")
    stored = {"epsilon": ckpt.get("epsilon"), "units": ckpt.get("epsilon_units"), "space": ckpt.get("perturb_space")}
    given = {"epsilon": epsilon, "units": units, "space": space}
    for key, value in given.items():
        if value is not None and stored[key] is not None and value != stored[key]:
            raise ValueError(f"{path} was trained with {key} {stored[key]!r} but {value!r} was asked for "
                             f"(eval.{key}); drop the override, or train a generator under that budget")
    eps = stored["epsilon"] if stored["epsilon"] is not None else epsilon
    if eps is None:
        raise ValueError(f"{path}: this generator file stores no epsilon (the design's own format); pass "
                         f"eval.epsilon=... (their final value was 0.09, normalized units)")
    units = stored["units"] or units or "normalized"
    space = stored["space"] or space or "normalized"
    generator = PerturbationGenerator(state["down1.net.0.weight"].shape[0], linf_bound(eps, units, space))
    load_state_dict_strict(generator, state, str(path))
    return generator.eval(), float(eps), units, space
