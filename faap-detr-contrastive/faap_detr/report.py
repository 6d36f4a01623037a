"""Per-gender result table (the design's format), JSON + Markdown report, and perturbation figures."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .datasets.gender_coco import collate  # noqa: E402
from .models.generator import apply_generator  # noqa: E402

LABELS = {"men": "Male", "women": "Female"}


def _diff(a, b):
    return None if a is None or b is None else a - b


def gender_table(per_gender):
    """per_gender[gender][baseline|perturbed] = coco_ap_ar dict -> rows of AP/AR per gender and M-F gaps.

    AP = AP@[.5:.95], AR = AR@100 (COCOeval stats[0] and stats[8])."""
    rows = []
    for gender in ("men", "women"):
        for metric, key in (("AP", "AP"), ("AR", "AR100")):
            b, p = per_gender[gender]["baseline"][key], per_gender[gender]["perturbed"][key]
            rows.append({"metric": f"{LABELS[gender]} {metric}", "baseline": b, "perturbed": p, "delta": _diff(p, b)})
    gaps = []
    for metric, key in (("AP", "AP"), ("AR", "AR100")):
        gb = _diff(per_gender["men"]["baseline"][key], per_gender["women"]["baseline"][key])
        gp = _diff(per_gender["men"]["perturbed"][key], per_gender["women"]["perturbed"][key])
        change = _diff(gp, gb)
        rel = None if change is None or not gb else 100.0 * change / abs(gb)
        gaps.append({"gap": f"{metric} Gap (M-F)", "baseline": gb, "perturbed": gp, "change": change,
                     "change_percent": rel})
    return {"metrics": rows, "gaps": gaps}


def _fmt(v, digits=4, signed=False):
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def to_markdown(results):
    t = results["table"]
    lines = [f"# FAAP evaluation ({results['split']}, epsilon {results['epsilon']:.4f}, {results['space']} space, "
             f"categories: {results['categories']})", "", "## AP/AR", "",
             "| Metric | Baseline | Perturbed | Delta |", "|---|---|---|---|"]
    lines += [f"| {r['metric']} | {_fmt(r['baseline'], 3)} | {_fmt(r['perturbed'], 3)} | "
              f"{_fmt(r['delta'], 3, True)} |" for r in t["metrics"]]
    lines += ["", "## Gap", "", "| Gap | Baseline | Perturbed | Change |", "|---|---|---|---|"]
    for g in t["gaps"]:
        rel = "" if g["change_percent"] is None else f" ({g['change_percent']:+.1f}%)"
        lines.append(f"| {g['gap']} | {_fmt(g['baseline'])} | {_fmt(g['perturbed'])} | "
                     f"{_fmt(g['change'], 4, True)}{rel} |")
    return "\n".join(lines) + "\n"


def write_report(results, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(to_markdown(results))


@torch.no_grad()
def save_perturbation_figure(dataset, generator, space, n, path, device):
    """Original | perturbed | delta (magnified to the full colour range) for the first n images."""
    n = min(n, len(dataset))
    pixels, mask, _ = collate([dataset[i] for i in range(n)])
    pixels, mask = pixels.to(device), mask.to(device)
    x, delta = apply_generator(generator, pixels, mask, space)
    mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    perturbed = (x * std + mean).clamp(0, 1)
    scale = delta.abs().amax().clamp_min(1e-12)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        valid = ~mask[i]
        h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
        for ax, img, title in zip(axes[i], (pixels[i], perturbed[i], delta[i] / (2 * scale) + 0.5),
                                  ("original", "perturbed", f"delta x{0.5 / scale.item():.0f}")):
            ax.imshow(img[:, :h, :w].permute(1, 2, 0).cpu().numpy())
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
