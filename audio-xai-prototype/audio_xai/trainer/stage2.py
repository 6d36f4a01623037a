"""Stage 2: train the XAI module on the frozen detector's frame embeddings h(t).

The detector is loaded from a tcm_add-format checkpoint, put in eval mode in fp32 with ``requires_grad=False``
and kept outside the trainable module, so ``xai.train()`` never touches it. h(t) is computed once into a
``FeatureCache`` (``train.use_cache``) or recomputed per batch under ``no_grad``.
"""
import logging
import time

import torch
from common_utils.data import FeatureCache
from common_utils.train import (
    MetricLogger,
    autocast_context,
    capture_rng_state,
    check_finite,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
    make_grad_scaler,
    prepare_run_dir,
    progress,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..config import detector_checkpoint, stage_dir
from ..data.dataset import ASVspoofDataset, num_samples, pad_or_crop
from ..model.conformertcm import build_detector, freeze, load_tcm_checkpoint
from ..model.xai_stage2 import build_xai, class_means

log = logging.getLogger(__name__)


def load_frozen_detector(cfg, device="cpu"):
    """Detector from ``model.pretrained_checkpoint`` (or ``run_dir/stage1``), frozen, eval, fp32."""
    model = build_detector(cfg.detector)
    load_tcm_checkpoint(model, detector_checkpoint(cfg))
    return freeze(model.to(device))


@torch.no_grad()
def frame_embeddings(detector, wave: torch.Tensor, layer="ssl") -> torch.Tensor:
    """h(t) [B, T, D] from waveforms [B, L]: 'ssl' = the XLS-R output fed to LL, 'conformer_in' =
    SELU(BN(LL(.))), an int k = HF ``hidden_states[k]``."""
    if layer == "ssl":
        return detector.ssl_model(wave)
    if layer == "conformer_in":
        return detector.head_input(detector.ssl_model(wave))
    return detector.ssl_model(wave, layer=int(layer))


class EmbeddingSource:
    """h(t) for the items of a dataset, cached on disk or recomputed: ``get(idx) -> (h [B, T, D], mask [B, T])``."""

    def __init__(self, cfg, detector, ds: ASVspoofDataset, device, cache: bool):
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


def train_stage2(cfg, resume: str | None = None, detector=None) -> dict:
    ctx = init_distributed(cfg.device)
    seed_everything(cfg.seed)
    tr = cfg.train
    out = prepare_run_dir(stage_dir(cfg, "stage2"), cfg, ctx.is_main)
    detector = detector if detector is not None else load_frozen_detector(cfg, ctx.device)
    ds = ASVspoofDataset(cfg.data.root, "train", cfg.data.cut, 0, cfg.seed, cfg.data.sample_rate)
    t0 = time.perf_counter()
    source = EmbeddingSource(cfg, detector, ds, ctx.device, tr.use_cache)
    labels = torch.tensor(ds.labels)
    in_dim = source.get(torch.tensor([0]))[0].shape[-1]
    xai = build_xai(cfg.model, in_dim).to(ctx.device)
    protos = xai.prototypes

    if protos.mode == "fixed":  # global mean over the whole training set, set once
        sums, counts = 0.0, 0.0
        for idx in torch.arange(len(ds)).split(tr.batch_size):
            h, mask = source.get(idx)
            m, c = class_means(h, labels[idx].to(ctx.device), mask, normalize=protos.normalize)
            sums, counts = sums + m * c[:, None], counts + c
        protos.set_global_mean(sums / counts.clamp_min(1)[:, None])

    net = DistributedDataParallel(xai) if ctx.distributed else xai
    opt = torch.optim.Adam([p for p in xai.parameters() if p.requires_grad], lr=tr.lr, weight_decay=tr.weight_decay)
    scaler = make_grad_scaler(cfg.precision, ctx.device)
    sampler = DistributedSampler(range(len(ds)), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed)
    loader = DataLoader(range(len(ds)), batch_size=tr.batch_size, sampler=sampler)
    start, step = 0, 0
    last = out / "last.pth"
    resume = resolve_resume(resume, last)
    if resume:
        ckpt = load_checkpoint(resume)
        xai.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start, step = ckpt["epoch"], ckpt["step"]
        restore_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d", resume, start)

    logger = MetricLogger(out, ctx.is_main)
    for epoch in range(start, tr.epochs):
        sampler.set_epoch(epoch)
        xai.train()
        sums = {}
        for it, idx in enumerate(progress(loader, f"stage2 epoch {epoch}", ctx.is_main)):
            h, mask = source.get(idx)
            y = labels[idx].to(ctx.device)
            if protos.mode == "ema":
                protos.update(h, y, mask)
            with autocast_context(ctx.device, cfg.precision):
                terms = net(h, y, mask)
            check_finite(terms["total"], step)
            scaler.scale(terms["total"] / tr.grad_accum).backward()
            if (it + 1) % tr.grad_accum == 0 or it + 1 == len(loader):
                if tr.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(xai.parameters(), tr.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            for k, v in terms.items():
                if k != "w":
                    sums[k] = sums.get(k, 0.0) + v.item() / len(loader)
            step += 1
        logger.log(epoch, sums)
        if ctx.is_main:
            save_checkpoint({"model": xai.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                             "epoch": epoch + 1, "step": step, "rng": capture_rng_state(), "in_dim": in_dim,
                             "config": OmegaConf.to_container(cfg, resolve=True)}, last)
    logger.close()
    if ctx.is_main:
        save_checkpoint({"model": xai.state_dict(), "in_dim": in_dim}, out / "xai.pth")
    cleanup_distributed()
    return {"checkpoint": str(out / "xai.pth"), "epochs": tr.epochs, "seconds": time.perf_counter() - t0,
            "final": sums if tr.epochs > start else {}}


def load_xai(cfg, path=None, device="cpu"):
    """The trained XAI module (``run_dir/stage2/xai.pth`` by default), eval mode."""
    ckpt = load_checkpoint(path or stage_dir(cfg, "stage2") / "xai.pth")
    xai = build_xai(cfg.model, ckpt["in_dim"])
    xai.load_state_dict(ckpt["model"])
    return xai.to(device).eval()


__all__ = ["train_stage2", "load_xai", "load_frozen_detector", "frame_embeddings", "EmbeddingSource"]
