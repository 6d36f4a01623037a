"""Per-epoch loops: FAAP generator training (contrastive or adversarial) and DETR training (full or cached features).

Every optimisation step goes through an `OptimStep` of common_utils (one per optimizer)."""
import torch
from common_utils.train import all_reduce_mean, progress

from .datasets.gender_coco import flip_item
from .models.detr import normalize
from .models.generator import apply_generator, linf_in_units


def to_device(targets, device):
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def num_boxes(targets, device):
    """Boxes in the batch averaged over ranks, at least 1 (upstream's normaliser of the box losses)."""
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    return max(all_reduce_mean(n).item(), 1.0)


class EpochMeans:
    """Running sums of logged scalars -> per-epoch means averaged over ranks (None values are skipped)."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, logs):
        for k, v in logs.items():
            if v is not None:
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
                self.counts[k] = self.counts.get(k, 0) + 1

    def means(self, device):
        return {k: all_reduce_mean(torch.tensor(self.sums[k] / self.counts[k], device=device)).item()
                for k in sorted(self.sums)}


def train_faap_epoch(epoch, loader, detr, generator, objective, steps, ctx, space, units, proj_head=None,
                     discriminator=None, channels_last=False):
    """One epoch of generator training; returns the epoch means of every logged metric (averaged over ranks).

    generator / proj_head / discriminator: the modules to call (DDP-wrapped where distributed); steps: OptimStep per
    optimizer ({"generator"} or {"generator", "discriminator"}). With a discriminator (adversarial method) each batch
    first steps it on detached features, then the generator against it (its weights take no gradient from that)."""
    generator.train()
    for m in (proj_head, discriminator):
        if m is not None:
            m.train()
    step_g, step_d = steps["generator"], steps.get("discriminator")
    for s in steps.values():
        s.begin_epoch(epoch, len(loader))
    means = EpochMeans()
    for pixels, mask, targets in progress(loader, desc=f"epoch {epoch}", enabled=ctx.is_main):
        pixels, mask = pixels.to(ctx.device), mask.to(ctx.device)
        targets = to_device(targets, ctx.device)
        gender = torch.tensor([t["gender"] for t in targets], device=ctx.device)
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with step_g.autocast():
            x, delta = apply_generator(generator, pixels, mask, space)
            outputs = detr(x, mask)
        feats = outputs["hs"][-1].float()  # [B,Q,C] last decoder layer
        nb = num_boxes(targets, ctx.device)
        if discriminator is None:
            with step_g.autocast():
                emb = proj_head(feats)
            total, logs = objective(outputs, targets, gender, epoch, nb, emb)
        else:
            with step_d.autocast():
                loss_d = objective.discriminator_loss(discriminator(feats.detach()), gender)
            step_d(loss_d)
            bare = getattr(discriminator, "module", discriminator)
            bare.requires_grad_(False)  # the generator's loss must leave no gradient in the discriminator
            with step_g.autocast():
                disc_logits = bare(feats)
            bare.requires_grad_(True)
            total, logs = objective(outputs, targets, gender, epoch, nb, disc_logits)
            logs["loss_disc"] = loss_d.item()
        logged = step_g(total)
        d = delta.detach().float()
        logs.update(loss_total=logged["loss"], delta_linf=linf_in_units(d, units, space),
                    delta_l2=d.flatten(1).norm(dim=1).mean().item())
        means.add(logs)
    return means.means(ctx.device)


def train_detr_epoch(epoch, loader, model, criterion, step, ctx):
    """Supervised DETR training on images (trained backbone). Returns mean losses over the epoch and ranks."""
    model.train()
    step.begin_epoch(epoch, len(loader))
    means = EpochMeans()
    for pixels, mask, targets in progress(loader, desc=f"detr {epoch}", enabled=ctx.is_main):
        pixels, mask = pixels.to(ctx.device), mask.to(ctx.device)
        targets = to_device(targets, ctx.device)
        with step.autocast():
            outputs = model(normalize(pixels) * (~mask).unsqueeze(1), mask)
        losses, _ = criterion(outputs, targets, num_boxes=num_boxes(targets, ctx.device))
        logged = step(criterion.weighted_total(losses))
        means.add({"loss": logged["loss"], **{k: v.item() for k, v in losses.items()}})
    return means.means(ctx.device)


@torch.no_grad()
def backbone_features(model, dataset, device, flip=False, batch_size=64):
    """Frozen-backbone features of every image, unpadded, computed once and reused each epoch; with `flip`, also of
    every image flipped horizontally (entries N..2N-1). Images of the same size go through the backbone together
    (no padding, so each feature is the one of the image alone).

    -> (list of [C,h,w], list of targets)."""
    items = [dataset[i] for i in range(len(dataset))]
    if flip:
        items += [flip_item(pixels, target) for pixels, target in items]
    by_size = {}
    for i, (pixels, _) in enumerate(items):
        by_size.setdefault(tuple(pixels.shape[1:]), []).append(i)
    feats = [None] * len(items)
    for idx in by_size.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            pixels = torch.stack([items[i][0] for i in chunk]).to(device)
            for i, f in zip(chunk, model.backbone[0].body(normalize(pixels))["0"]):
                feats[i] = f
    return feats, [t for _, t in items]


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


def cached_batches(n, batch_size, seed, epoch, views=1):
    """Shuffled index batches of a cached-feature epoch over n images, each image in one of `views` cached views
    (index i + n * view) drawn at random; from a generator seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g)
    order = (order + n * torch.randint(views, (n,), generator=g)).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train_detr_cached_epoch(epoch, batches, model, criterion, step, feats, targets, ctx):
    """DETR training on cached features of a frozen backbone: the transformer and heads learn.

    Every rank runs the same batches (the step is cheap), so replicas stay identical without communication."""
    model.train()
    step.begin_epoch(epoch, len(batches))
    means = EpochMeans()
    for idx in batches:
        f, m = pad_features([feats[i] for i in idx])
        tgts = to_device([targets[i] for i in idx], ctx.device)
        with step.autocast():
            outputs = model.forward_features(f, m)
        losses, _ = criterion(outputs, tgts, num_boxes=float(max(sum(len(t["labels"]) for t in tgts), 1)))
        logged = step(criterion.weighted_total(losses))
        means.add({"loss": logged["loss"], **{k: v.item() for k, v in losses.items()}})
    return {k: v / max(means.counts[k], 1) for k, v in means.sums.items()}
