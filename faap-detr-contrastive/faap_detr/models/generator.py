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

    `epsilon` is a buffer-free attribute set by the trainer each epoch and saved in our checkpoints."""

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
        """x [B,3,H,W] -> delta [B,3,H,W] with |delta| < epsilon."""
        return self.epsilon * torch.tanh(self.pre_tanh(x))


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
        raise ValueError(f"perturbation space must be 'pixel' or 'normalized', got {space!r}")
    perturbed = (pixels + delta * valid).clamp(0, 1)
    return normalize(perturbed) * valid, perturbed - pixels
