"""Shared stage-1 pieces: config, model, transforms, manifest dataset, inference, cascade arithmetic."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import timm
import torch
from common_utils.data import DataFormatError, load_image, read_manifest
from common_utils.safe_load import read_state_dict
from common_utils.train import load_checkpoint, load_config
from omegaconf import OmegaConf
from scipy.special import expit
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "stage1.yaml"
SPLITS = ("train", "val", "test")


NULLABLE = ("model.pretrained_file",)  # null = random init (logged)
# ----------------------------------------------------------------------------- config
def get_config(path=None, overrides=()):
    """Config = configs/stage1.yaml, updated by `path` (if given) and dotted `key=value` overrides."""
    return load_config(path or DEFAULT_CONFIG, DEFAULT_CONFIG, overrides=list(overrides), nullable=NULLABLE)


def resolve_path(path, root) -> Path:
    """`path` if absolute, else relative to `root`."""
    path = Path(path)
    return path if path.is_absolute() else Path(root) / path


# ----------------------------------------------------------------------------- model
def build_model(cfg_model, pretrained: bool | None = None) -> torch.nn.Module:
    """timm model with one output logit; ImageNet weights from `pretrained_file` with the head dropped.

    The file's keys are checked against the model (every key but `classifier.*` must match by name),
    so a wrong file fails loudly instead of silently leaving layers at random init.
    """
    pretrained = cfg_model.pretrained if pretrained is None else pretrained
    if not pretrained:
        return _zero_head(timm.create_model(cfg_model.name, pretrained=False, num_classes=1,
                                            drop_rate=cfg_model.drop_rate))
    if not cfg_model.pretrained_file:
        raise ValueError("model.pretrained is true but model.pretrained_file is not set (no hub access)")
    file = Path(cfg_model.pretrained_file)
    if not file.is_file():
        raise FileNotFoundError(f"model.pretrained_file not found: {file}")
    state = read_state_dict(file, what="model.pretrained_file")  # no pickled code runs; timm gets the tensors
    model = timm.create_model(cfg_model.name, pretrained=True, num_classes=1, drop_rate=cfg_model.drop_rate,
                              pretrained_cfg_overlay=dict(state_dict=state))
    file_keys = {k for k in state if not k.startswith("classifier.")}
    model_keys = {k for k in model.state_dict() if not k.startswith("classifier.")}
    missing, unexpected = sorted(model_keys - file_keys), sorted(file_keys - model_keys)
    if missing or unexpected:
        raise KeyError(f"{file} does not fit {cfg_model.name}: missing {missing[:10]} ({len(missing)}), "
                       f"unexpected {unexpected[:10]} ({len(unexpected)})")
    return _zero_head(model)


def _zero_head(model):
    """Zero the new 1-logit classifier: every image starts at P(fake) = 0.5 instead of timm's default head init
    (whose logits reach |z| ~ 10 on a random backbone)."""
    head = model.get_classifier()
    torch.nn.init.zeros_(head.weight)
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)
    return model


def load_trained_model(checkpoint_path, cfg=None):
    """Fine-tuned stage-1 model from best_model.pth (strict load). Returns (model in eval mode, checkpoint dict)."""
    ckpt = load_checkpoint(checkpoint_path)
    if "model" not in ckpt or "config" not in ckpt:
        raise KeyError(f"{checkpoint_path}: not a stage-1 checkpoint (needs 'model' and 'config' keys)")
    saved = ckpt["config"]["model"]
    if cfg is not None and (saved["name"], saved["input_size"]) != (cfg.model.name, cfg.model.input_size):
        raise ValueError(f"{checkpoint_path} holds {saved['name']} at {saved['input_size']} px but the config says "
                         f"{cfg.model.name} at {cfg.model.input_size} px")
    model = build_model(OmegaConf.create(saved), pretrained=False)
    expected, given = model.state_dict(), ckpt["model"]
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    bad = sorted(k for k in set(given) & set(expected) if given[k].shape != expected[k].shape)
    if missing or unexpected or bad:
        raise KeyError(f"{checkpoint_path}: missing {missing}, unexpected {unexpected}, mis-shaped {bad}")
    model.load_state_dict(given, strict=True)
    return model.eval(), ckpt


def measure_gflops(model: torch.nn.Module, input_size: int) -> float:
    """Forward FLOPs (multiply-add = 2 FLOPs) of one image at input_size x input_size, in GFLOPs."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


# ----------------------------------------------------------------------------- data
def build_transforms(cfg, train: bool):
    """Resize (or crop) to input_size, design augmentations for training, ImageNet normalisation.

    data.preprocess: `resize` = bicubic resize to input_size (the design; its data are 256 px crops already);
    `crop` = random (train) / centre (eval) crop at native resolution, reflect-padded when smaller, which keeps
    pixel-level generator fingerprints that resizing would erase. Blur sits in RandomApply(p=augment.blur_prob);
    the design's bare GaussianBlur is blur_prob=1.0.
    """
    size = cfg.model.input_size
    if cfg.data.preprocess == "resize":
        ops = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC, antialias=True)]
    elif cfg.data.preprocess == "crop":
        ops = [transforms.RandomCrop(size, pad_if_needed=True, padding_mode="reflect") if train else
               _PadCenterCrop(size)]
    else:
        raise ValueError(f"data.preprocess must be 'resize' or 'crop', got {cfg.data.preprocess!r}")
    if train:
        a = cfg.augment
        ops += [
            transforms.RandomHorizontalFlip(p=a.hflip),
            transforms.ColorJitter(*a.color_jitter),
            transforms.RandomAffine(a.affine_degrees, translate=tuple(a.affine_translate), scale=tuple(a.affine_scale)),
            transforms.RandomApply([transforms.GaussianBlur(a.blur_kernel, sigma=tuple(a.blur_sigma))], p=a.blur_prob),
        ]
    ops += [transforms.ToTensor(), transforms.Normalize(list(cfg.model.mean), list(cfg.model.std))]
    return transforms.Compose(ops)


class _PadCenterCrop:
    """Centre crop to size x size, reflect-padding images smaller than that."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        pad_w, pad_h = max(0, self.size - w), max(0, self.size - h)
        if pad_w or pad_h:
            img = transforms.functional.pad(img, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2],
                                            padding_mode="reflect")
        return transforms.functional.center_crop(img, [self.size, self.size])


class ManifestDataset(Dataset):
    """Rows of a manifest CSV -> (image [3, S, S], label float (1 = fake), row index)."""

    def __init__(self, rows, transform):
        self.rows, self.transform = rows, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return self.transform(load_image(row.image_path)), torch.tensor(float(row.label)), i


def read_split(cfg, split: str):
    """Manifest rows of one split; bad rows raise DataFormatError naming the file and line."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    csv_path = resolve_path(cfg.data[f"{split}_manifest"], cfg.data.root)
    rows = read_manifest(csv_path, data_root=cfg.data.root, check_files=cfg.data.check_files)
    wrong = [r for r in rows if r.split != split]
    if wrong:
        raise DataFormatError(csv_path, f"split {wrong[0].split!r} in the {split} manifest", line=wrong[0].line)
    if not rows:
        raise DataFormatError(csv_path, "no rows")
    return rows


def relative_path(path, root) -> str:
    """Path as written relative to the data root when it lies below it (stable key for joins)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


@torch.no_grad()
def predict_logits(model, rows, cfg, device="cpu", desc="infer") -> np.ndarray:
    """Logits [N] of `model` on manifest-like rows (need `.image_path`), eval transforms, in row order."""
    loader = DataLoader(ManifestDataset(rows, build_transforms(cfg, train=False)), batch_size=cfg.eval.batch_size,
                        shuffle=False, num_workers=cfg.data.num_workers)
    model.eval().to(device)
    out = []
    for x, _, _ in loader:
        out.append(model(x.to(device)).float().reshape(-1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- calibration math
def sigmoid(z):
    return expit(np.asarray(z, dtype=np.float64))


def calibrated_probs(logits, temperature: float) -> np.ndarray:
    """P(fake) = sigmoid(z / T)."""
    return sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def load_temperature(path) -> float:
    """T from calibration_temp.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m cascade_fast_filter calibrate` first")
    data = json.loads(path.read_text())
    if "temperature" not in data:
        raise KeyError(f"{path}: no 'temperature' key")
    return float(data["temperature"])


# ----------------------------------------------------------------------------- cascade arithmetic
def settled_mask(p_fake, threshold: float, rule: str = "p_real") -> np.ndarray:
    """Samples stage 1 settles as real. p_real: 1 - P(fake) >= t. design: P(fake) > t (the design's defect:
    it settles confident *fakes* as real)."""
    p_fake = np.asarray(p_fake, dtype=np.float64)
    if rule == "p_real":
        return (1.0 - p_fake) >= threshold
    if rule == "design":
        return p_fake > threshold
    raise ValueError(f"unknown settle rule {rule!r}; expected 'p_real' or 'design'")


def expected_cost(c1: float, c2: float, filtration: float) -> float:
    """Average cost per sample of the cascade: every sample pays C1, the unsettled (1 - filtration) also C2."""
    return c1 + (1.0 - filtration) * c2


def analyze_cascade_thresholds(p_fake, labels, thresholds, rule="p_real", c1=None, c2=None) -> dict:
    """Per threshold: filtration, leakage (fakes settled / fakes), precision of the settled set (real share),
    real specificity (reals settled / reals), class-prior bound on filtration, expected cost when c1/c2 given."""
    p_fake, labels = np.asarray(p_fake, dtype=np.float64), np.asarray(labels).astype(int)
    n, n_fake = len(labels), int((labels == 1).sum())
    n_real = n - n_fake
    real_share = n_real / n if n else float("nan")
    out = {}
    for t in thresholds:
        settled = settled_mask(p_fake, t, rule)
        n_settled = int(settled.sum())
        leaked = int((settled & (labels == 1)).sum())
        real_settled = n_settled - leaked
        filtration = n_settled / n if n else float("nan")
        leakage = leaked / n_fake if n_fake else None
        row = {
            "threshold": float(t),
            "n_settled": n_settled,
            "filtration_rate": filtration,
            "leakage_rate": leakage,
            "false_negatives": leaked,
            "settled_precision": real_settled / n_settled if n_settled else None,
            "real_specificity": real_settled / n_real if n_real else None,
            "filtration_bound": real_share + (leakage or 0.0) * (1.0 - real_share),
        }
        if c1 is not None and c2 is not None:
            row["expected_cost_gflops"] = expected_cost(c1, c2, filtration)
        out[f"{t:.2f}" if round(t, 2) == t else str(t)] = row
    return out


def to_jsonable(obj):
    """Nested dicts/lists/numpy scalars -> plain JSON types; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def read_score_csv(path, data_root) -> tuple[dict, float | None]:
    """Stage-2 scores CSV `image_path,score[,cost_gflops]` (score = P(fake), higher = fake; paths relative to
    data_root or absolute). Returns ({resolved path str: score}, mean declared cost in GFLOPs or None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage-2 score CSV not found: {path}")
    scores, costs = {}, []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image_path", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DataFormatError(path, f"missing column(s) {sorted(missing)} (need image_path,score)")
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
                cost = float(row["cost_gflops"]) if row.get("cost_gflops") not in (None, "") else None
            except ValueError as err:
                raise DataFormatError(path, str(err), line=line) from None
            if not math.isfinite(score):
                raise DataFormatError(path, f"score {row['score']!r} is not finite", line=line)
            key = str(resolve_path(row["image_path"], data_root).resolve())
            if key in scores:
                raise DataFormatError(path, f"duplicate image_path {row['image_path']!r}", line=line)
            scores[key] = score
            if cost is not None:
                costs.append(cost)
    return scores, (float(np.mean(costs)) if costs else None)


def write_score_csv(path, image_paths, logits, p_fake, cost_gflops: float):
    """Inference CSV, usable as a stage-2 score CSV: image_path,logit,p_fake,score,cost_gflops."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "logit", "p_fake", "score", "cost_gflops"])
        for p, z, q in zip(image_paths, logits, p_fake):
            writer.writerow([p, f"{z:.6f}", f"{q:.6f}", f"{q:.6f}", f"{cost_gflops:.6f}"])
    return path
