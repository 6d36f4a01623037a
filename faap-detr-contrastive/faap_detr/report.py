"""Result tables (the design's AP/AR and M-F gap tables, with bootstrap 95 % intervals), results over seeds, and
perturbation figures."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .datasets.gender_coco import collate  # noqa: E402
from .models.detr import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from .models.generator import apply_generator  # noqa: E402


def _fmt(v, digits=4, signed=False):
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _ci(ci, digits=3):
    return "" if not ci else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def to_markdown(results):
    t = results["table"]
    lines = [f"# FAAP evaluation ({results['split']} split, epsilon {results['epsilon']:.4f} "
             f"{results['epsilon_units']} units, added in {results['space']} space, categories: "
             f"{results['categories']})", "",
             f"Images: {results['n_images']}. Brackets: bootstrap 95 % intervals over images "
             f"({results['bootstrap']} resamples per gender, paired baseline/perturbed). Max |delta| reached: "
             f"{results['delta_linf']:.4f} ({results['epsilon_units']} units).", "", "## AP/AR", "",
             "| Metric | Baseline | Perturbed | Delta |", "|---|---|---|---|"]
    lines += [f"| {r['metric']} | {_fmt(r['baseline'], 3)}{_ci(r['baseline_ci'])} | "
              f"{_fmt(r['perturbed'], 3)}{_ci(r['perturbed_ci'])} | {_fmt(r['delta'], 3, True)} |"
              for r in t["metrics"]]
    lines += ["", "## Gap", "", "| Gap | Baseline | Perturbed | Change |", "|---|---|---|---|"]
    for g in t["gaps"]:
        rel = "" if g["change_relative"] is None else f" ({100 * g['change_relative']:+.1f}%)"
        lines.append(f"| {g['gap']} | {_fmt(g['baseline'])} | {_fmt(g['perturbed'])} | "
                     f"{_fmt(g['change'], 4, True)}{rel}{_ci(g['change_ci'], 4)} |")
    return "\n".join(lines) + "\n"


def write_report(results, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(to_markdown(results))


def seeds_table(paths):
    """Results over seeds: each table row's mean and sample std over several results.json files (Markdown)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    lines = [f"# FAAP results over {len(runs)} runs", "", "| Row | " + " | ".join(
        f"run {i}" for i in range(len(runs))) + " | mean | std |", "|---|" + "---|" * (len(runs) + 2)]
    rows = [(f"{r['metric']} {k}", [run["table"]["metrics"][i][k] for run in runs])
            for i, r in enumerate(runs[0]["table"]["metrics"]) for k in ("baseline", "perturbed")]
    rows += [(f"{g['gap']} {k}", [run["table"]["gaps"][i][k] for run in runs])
             for i, g in enumerate(runs[0]["table"]["gaps"]) for k in ("baseline", "perturbed", "change")]
    for name, values in rows:
        v = np.array([np.nan if x is None else x for x in values], dtype=float)
        std = np.nanstd(v, ddof=1) if np.sum(~np.isnan(v)) > 1 else float("nan")
        lines.append(f"| {name} | " + " | ".join(_fmt(x) for x in values) + f" | {np.nanmean(v):.4f} | {std:.4f} |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
def save_perturbation_figure(dataset, generator, space, n, path, device):
    """Original | perturbed | delta (magnified to the full colour range) for the first n images."""
    n = min(n, len(dataset))
    pixels, mask, _ = collate([dataset[i] for i in range(n)])
    pixels, mask = pixels.to(device), mask.to(device)
    x, delta = apply_generator(generator, pixels, mask, space)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    perturbed = (x * std + mean).clamp(0, 1)
    scale = delta.abs().amax().clamp_min(1e-12)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        valid = ~mask[i]
        h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
        for ax, img, title in zip(axes[i], (pixels[i], perturbed[i], delta[i] / (2 * scale) + 0.5),
                                  ("original", "perturbed", f"delta x{0.5 / scale.item():.0f}")):
            ax.imshow(img[:, :h, :w].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
