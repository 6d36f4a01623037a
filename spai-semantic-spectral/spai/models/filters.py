"""FFT low/high-pass filtering with SPAI's circular mask."""
from __future__ import annotations

import torch


def generate_circular_mask(size: int, radius: int) -> torch.Tensor:
    """int64 [size, size] mask, 1 where the distance from the centre is below ``radius``.

    As upstream, the centred axis is |[-(size/2 - 1) .. 0, 0 .. size/2 - 1]| (a double zero), so the circle's
    centre sits half a bin off the DC bin after ``fftshift`` (856 ones for size 224, radius 16).
    """
    half = size // 2
    axis = torch.cat([torch.arange(-(half - 1), 1), torch.arange(0, size - half)]).abs().float()
    dist = torch.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
    return (dist < radius).long()


def filter_image_frequencies(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``image`` [..., H, W] into low- and high-pass parts (real, unclamped), both shaped like it."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        spectrum = torch.fft.fftshift(torch.fft.fft2(image.float()), dim=(-2, -1))
        mask = mask.to(spectrum.real.dtype)
        low = torch.fft.ifft2(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))).real
        high = torch.fft.ifft2(torch.fft.ifftshift(spectrum * (1 - mask), dim=(-2, -1))).real
    return low, high
