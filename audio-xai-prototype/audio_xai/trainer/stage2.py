"""Stage 2: train the XAI module on the frozen detector's frame embeddings h(t), on the shared training engine.

The detector is read from a tcm_add-format checkpoint by the loader that reads the released ``avg_5_best.pth``, put in
eval mode in fp32 with ``requires_grad=False`` and kept outside the trainable module, so ``xai.train()`` never touches
it. h(t) is computed once into a ``FeatureCache`` (``train.use_cache``) or recomputed per batch under ``no_grad``.
"""
import logging

import torch
from common_utils.data import FeatureCache
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    all_reduce_mean,
    build_loader,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from torch.utils.data import DistributedSampler

from ..config import detector_checkpoint, stage_dir
from ..data.dataset import SpoofDataset, num_samples, pad_or_crop
from ..model.conformertcm import build_detector, freeze, load_tcm_checkpoint
from ..model.xai_stage2 import build_xai, class_means

log = logging.getLogger(__name__)


def load_frozen_detector(cfg, device="cpu"):
    """Detector from ``model.pretrained_checkpoint`` (or ``run_dir/stage1``), frozen, eval, fp32."""
    model = build_detector(cfg.detector)
    load_tcm_checkpoint(model, detector_checkpoint(cfg))
    return freeze(model.to(device))


@torch.no_grad()
def frame_embeddings(detector, wave: torch.Tensor, layer: str = "ssl") -> torch.Tensor:
    """h(t) [B, T, D] from waveforms [B, L]: ``ssl`` = the XLS-R output fed to LL, ``conformer_in`` =
    SELU(BN(LL(.))), ``hidden<k>`` = HF ``hidden_states[k]`` of the front-end (``hidden0``: before its first
    transformer layer)."""
    if layer == "ssl":
        return detector.ssl_model(wave)
    if layer == "conformer_in":
        return detector.head_input(detector.ssl_model(wave))
    if layer.startswith("hidden") and layer[6:].isdigit():
        return detector.ssl_model(wave, layer=int(layer[6:]))
    raise ValueError(f"model.feature_layer must be 'ssl', 'conformer_in' or 'hidden<k>', got {layer!r}")


class EmbeddingSource:
    """h(t) for the items of a dataset, cached on disk or recomputed: ``get(idx) -> (h [B, T, D], mask [B, T])``."""

    def __init__(self, cfg, detector, ds: SpoofDataset, device, cache: bool):
        self.detector, self.ds, self.device, self.layer = detector, ds, device, cfg.model.feature_layer
        frames = detector.ssl_model.num_frames
        self.n_frames = frames(ds.cut)
        self.n_valid = torch.tensor([frames(min(num_samples(f), ds.cut)) for f in ds.files])
        self.feats = None
        if cache:
            ckpt = detector_checkpoint(cfg)
            st = ckpt.stat()
            fingerprint = {"checkpoint": str(ckpt.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "layer": str(self.layer), "cut": ds.cut, "sample_rate": ds.sample_rate}
            root = cfg.train.cache_dir or stage_dir(cfg, "stage2") / "cache"
            index = {f: i for i, f in enumerate(ds.files)}
            self.feats = FeatureCache(root, f"tcm_add-{self.layer}", fingerprint).load_or_build(
                ds.files, lambda paths: self._extract([index[p] for p in paths]).cpu(), batch_size=16)

    def _extract(self, idx) -> torch.Tensor:
        wave = torch.stack([torch.from_numpy(pad_or_crop(self.ds.load(i, augment=False), self.ds.cut)) for i in idx])
        return frame_embeddings(self.detector, wave.to(self.device), self.layer)

    def get(self, idx: torch.Tensor):
        h = self.feats[idx].to(self.device) if self.feats is not None else self._extract(idx.tolist())
        mask = torch.arange(self.n_frames)[None] < self.n_valid[idx][:, None]
        return h.float(), mask.to(self.device)


def train_stage2(cfg, resume: str | None = None, overwrite: bool = False, detector=None) -> dict:
    ctx = init_distributed(cfg.device)
    tr = cfg.train
    out = stage_dir(cfg, "stage2")
    run = RunDir(out, ctx, resume=resume, overwrite=overwrite, tensorboard=False)
    seed_everything(cfg.seed)
    detector = detector if detector is not None else load_frozen_detector(cfg, ctx.device)
    ds = SpoofDataset(cfg.data, "train")
    source = EmbeddingSource(cfg, detector, ds, ctx.device, tr.use_cache)
    labels = torch.tensor(ds.labels)
    in_dim = source.get(torch.tensor([0]))[0].shape[-1]
    run.write_config(cfg)  # config, detector and data validated

    xai = build_xai(cfg.model, in_dim).to(ctx.device)
    protos = xai.prototypes
    if protos.mode == "fixed":  # global mean over the whole training set, set once
        sums, counts = 0.0, 0.0
        for idx in torch.arange(len(ds)).split(tr.batch_size):
            h, mask = source.get(idx)
            m, c = class_means(h, labels[idx].to(ctx.device), mask, normalize=protos.normalize)
            sums, counts = sums + m * c[:, None], counts + c
        protos.set_global_mean(sums / counts.clamp_min(1)[:, None])
    net = wrap_model(xai, ctx)
    opt = adamw([p for p in xai.parameters() if p.requires_grad], lr=tr.lr, weight_decay=tr.weight_decay)
    step = OptimStep(opt, device=ctx.device, model=net, **step_options(tr))
    state = TrainState(models={"model": xai}, optimizers={"model": opt}, steppers={"model": step})
    run.resume(state)
    sampler = DistributedSampler(range(len(ds)), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed)
    dl = build_loader(range(len(ds)), tr.batch_size, ctx, sampler=sampler)

    for epoch in range(run.start_epoch, tr.epochs):
        sampler.set_epoch(epoch)
        xai.train()
        step.begin_epoch(epoch, len(dl))
        sums = {}
        for idx in dl:
            h, mask = source.get(idx)
            y = labels[idx].to(ctx.device)
            if protos.mode == "ema":
                xai.update_prototypes(h, y, mask)
            with step.autocast():
                terms = net(h, y, mask)
            step(terms["total"])
            for k, v in terms.items():
                if k != "w":
                    sums[k] = sums.get(k, 0.0) + v.detach().float() / len(dl)
        check_finite_outputs(torch.stack(list(sums.values())), epoch + 1, "Stage 2 loss terms")
        run.end_epoch(state, {k: all_reduce_mean(v).item() for k, v in sums.items()} | {"steps": step.optimizer_steps})
    run.close()
    if ctx.is_main:
        save_checkpoint({"model": xai.state_dict(), "in_dim": in_dim}, out / "xai.pth")
    cleanup_distributed()
    return {"checkpoint": str(out / "xai.pth"), "epochs": tr.epochs, "final": run.history[-1] if run.history else {}}


def load_xai(cfg, path=None, device="cpu"):
    """The trained XAI module (``run_dir/stage2/xai.pth`` by default), eval mode."""
    ckpt = load_checkpoint(path or stage_dir(cfg, "stage2") / "xai.pth")
    xai = build_xai(cfg.model, ckpt["in_dim"])
    xai.load_state_dict(ckpt["model"])
    return xai.to(device).eval()


__all__ = ["train_stage2", "load_xai", "load_frozen_detector", "frame_embeddings", "EmbeddingSource"]
