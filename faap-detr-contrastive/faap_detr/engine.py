"""Per-epoch loops: FAAP generator training (contrastive or adversarial), DETR training, and detection inference."""
import math

import torch
from common_utils.train import all_reduce_mean, autocast_context, check_finite, progress
from torchvision.ops import box_convert

from .losses.adversarial import discriminator_loss, fairness_loss
from .losses.wasserstein import wasserstein_1d_asymmetric
from .models.detr import normalize, postprocess
from .models.generator import apply_generator


def _to_device(targets, device):
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def image_level_scores(outputs, targets, indices):
    """Per image: mean softmax probability (all K+1 classes) of the GT class over its Hungarian-matched queries.

    -> [B]; an image without GT boxes gets a constant 0."""
    probs = outputs["pred_logits"].float().softmax(-1)
    scores = []
    for b, (src, tgt) in enumerate(indices):
        if len(src) == 0:
            scores.append(probs.new_zeros(()))
        else:
            labels = targets[b]["labels"][tgt].to(probs.device)
            scores.append(probs[b, src.to(probs.device), labels].mean())
    return torch.stack(scores)


def _num_boxes(targets, device):
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    return max(all_reduce_mean(n).item(), 1.0)


def _grad_step(loss, params, optimizer, scaler, max_norm, accum=1, step=0, n_steps=None):
    """Backward of loss / accum; every `accum` batches (and at the last one): unscale, clip to max_norm, step,
    zero the gradients. scaler=None: plain fp32. The caller zeroes the gradients before the first batch."""
    loss = loss / accum
    (loss if scaler is None else scaler.scale(loss)).backward()
    if (step + 1) % accum and step + 1 != n_steps:
        return
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)


def train_faap_epoch(cfg, epoch, weights, detr, generator, proj_head, criterion, contrastive, optimizer, scaler,
                     loader, ctx, discriminator=None, opt_d=None, step0=0):
    """One epoch of generator training. weights: dict(contrastive, beta) for this epoch.

    method "contrastive": lambda_c * w(epoch) * L_con + lambda_w * L_wass + beta * L_det.
    method "adversarial": lambda_fair * L_fair + beta * L_det after a discriminator step on detached features.
    Returns the epoch means of every logged metric (averaged over ranks)."""
    generator.train()
    proj_head.train()
    if discriminator is not None:
        discriminator.train()
    loss_cfg, device, precision = cfg.loss, ctx.device, cfg.train.precision
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    sums, n_steps = {}, 0
    for step, (pixels, mask, targets) in enumerate(progress(loader, desc=f"epoch {epoch}", enabled=ctx.is_main)):
        pixels, mask = pixels.to(device), mask.to(device)
        targets = _to_device(targets, device)
        gender = torch.tensor([t["gender"] for t in targets], device=device)
        if cfg.train.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            x, delta = apply_generator(generator, pixels, mask, cfg.generator.space)
            outputs = detr(x, mask)
        losses, indices = criterion(outputs, targets, num_boxes=_num_boxes(targets, device))
        loss_det = criterion.weighted_total(losses)
        scores = image_level_scores(outputs, targets, indices)
        feats = outputs["hs"][-1].float()  # [B,Q,C] last decoder layer
        logs = {"loss_det": loss_det.item(), "score_f": _masked_mean(scores, gender == 1),
                "score_m": _masked_mean(scores, gender == 0)}
        if cfg.method == "contrastive":
            with autocast_context(device, precision):
                emb = proj_head(feats)
            loss_con, info = contrastive(emb.float(), scores.detach())
            loss_wass = wasserstein_1d_asymmetric(scores[gender == 1], scores[gender == 0])
            total = (loss_cfg.lambda_contrastive * weights["contrastive"] * loss_con
                     + loss_cfg.lambda_wass * loss_wass + weights["beta"] * loss_det)
            logs.update(loss_contrastive=loss_con.item(), loss_wasserstein=loss_wass.item(),
                        n_positive=info["n_positive"], n_anchor=info["n_anchor"], score_gap=info["score_gap"])
        else:
            loss_d = discriminator_loss(discriminator(feats.detach()), gender)
            opt_d.zero_grad(set_to_none=True)  # drops the grads the previous generator step left in D
            _grad_step(loss_d, list(discriminator.parameters()), opt_d, None, cfg.train.max_norm)
            loss_fair = fairness_loss(discriminator(feats), gender, loss_cfg.entropy_alpha)
            total = loss_cfg.lambda_fair * loss_fair + weights["beta"] * loss_det
            logs.update(loss_disc=loss_d.item(), loss_fair=loss_fair.item())
        check_finite(total, step0 + step)
        _grad_step(total, params, optimizer, scaler, cfg.train.max_norm, cfg.train.grad_accum_steps, step,
                   len(loader))
        d = delta.detach().float()
        logs.update(loss_total=total.item(), delta_linf=d.abs().amax().item(),
                    delta_l2=d.flatten(1).norm(dim=1).mean().item())
        for k, v in logs.items():
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                sums[k] = sums.get(k, 0.0) + float(v)
        n_steps += 1
    means = {k: v / max(n_steps, 1) for k, v in sums.items()}
    return {k: all_reduce_mean(torch.tensor(v, device=device)).item() for k, v in means.items()}


def _masked_mean(x, m):
    return x[m].mean().item() if m.any() else float("nan")


def train_detr_epoch(cfg, epoch, model, criterion, optimizer, scaler, loader, ctx, step0=0):
    """Supervised DETR training (used to give the demo a detector to freeze). Returns mean losses."""
    model.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    sums, n = {}, 0
    for step, (pixels, mask, targets) in enumerate(progress(loader, desc=f"detr {epoch}", enabled=ctx.is_main)):
        pixels, mask = pixels.to(ctx.device), mask.to(ctx.device)
        targets = _to_device(targets, ctx.device)
        with autocast_context(ctx.device, cfg.train.precision):
            outputs = model(normalize(pixels) * (~mask).unsqueeze(1), mask)
        losses, _ = criterion(outputs, targets, num_boxes=_num_boxes(targets, ctx.device))
        total = criterion.weighted_total(losses)
        check_finite(total, step0 + step)
        _grad_step(total, params, optimizer, scaler, cfg.detr_train.max_norm)
        for k, v in {"loss": total, **losses}.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        n += 1
    return {k: all_reduce_mean(torch.tensor(v / max(n, 1), device=ctx.device)).item() for k, v in sums.items()}


@torch.no_grad()
def backbone_features(model, dataset, device):
    """Frozen-backbone features of every image, unpadded, computed once and reused each epoch.

    -> (list of [C,h,w], list of targets)."""
    feats, targets = [], []
    for i in progress(range(len(dataset)), desc="backbone features"):
        pixels, target = dataset[i]
        feats.append(model.backbone[0].body(normalize(pixels[None].to(device)))["0"][0])
        targets.append(target)
    return feats, targets


def pad_features(feats):
    """list of [C,h,w] -> [B,C,H,W] zero-padded, mask [B,H,W] True on padding."""
    h = max(f.shape[1] for f in feats)
    w = max(f.shape[2] for f in feats)
    out = feats[0].new_zeros(len(feats), feats[0].shape[0], h, w)
    mask = torch.ones(len(feats), h, w, dtype=torch.bool, device=feats[0].device)
    for i, f in enumerate(feats):
        out[i, :, : f.shape[1], : f.shape[2]] = f
        mask[i, : f.shape[1], : f.shape[2]] = False
    return out, mask


def train_detr_cached_epoch(cfg, epoch, model, criterion, optimizer, feats, targets, ctx, step0=0):
    """DETR training on cached features of a frozen backbone: the transformer and heads learn.

    Shuffled with a generator seeded from (seed, epoch). Every rank runs the same batches (the step is cheap),
    so replicas stay identical without gradient communication."""
    model.train()
    bs = cfg.detr_train.batch_size
    order = torch.randperm(len(feats), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)).tolist()
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    sums = {}
    for step, idx in enumerate(batches):
        f, m = pad_features([feats[i] for i in idx])
        tgts = _to_device([targets[i] for i in idx], ctx.device)
        outputs = model.forward_features(f, m)
        losses, _ = criterion(outputs, tgts, num_boxes=_num_boxes(tgts, ctx.device))
        total = criterion.weighted_total(losses)
        check_finite(total, step0 + step)
        _grad_step(total, params, optimizer, None, cfg.detr_train.max_norm)
        for k, v in {"loss": total, **losses}.items():
            sums[k] = sums.get(k, 0.0) + v.item()
    return {k: v / max(len(batches), 1) for k, v in sums.items()}


@torch.no_grad()
def predict(detr, loader, device, generator=None, space="pixel", precision="fp32"):
    """COCO results for every image (all queries, no threshold), with or without the generator's perturbation."""
    results = []
    for pixels, mask, targets in loader:
        pixels, mask = pixels.to(device), mask.to(device)
        with autocast_context(device, precision):
            if generator is None:
                x = normalize(pixels) * (~mask).unsqueeze(1)
            else:
                x = apply_generator(generator, pixels, mask, space)[0]
            outputs = detr(x, mask)
        outputs = {k: outputs[k].float() for k in ("pred_logits", "pred_boxes")}
        sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
        for t, det in zip(targets, postprocess(outputs, sizes)):
            xywh = box_convert(det["boxes"], "xyxy", "xywh").tolist()
            for s, lab, box in zip(det["scores"].tolist(), det["labels"].tolist(), xywh):
                results.append({"image_id": t["image_id"], "category_id": lab, "bbox": box, "score": s})
    return results
