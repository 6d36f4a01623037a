"""Stage 1: train the XLSR-Conformer-TCM detector on ASVspoof 2019 LA (tcm_add's recipe).

Weighted CE [0.1, 0.9] (spoof, bona fide), Adam, RawBoost on the training set, early stopping on dev loss,
the ``n_average`` best epochs (lowest dev loss) averaged into ``avg_{n}_best.pth`` in tcm_add's state-dict format.
"""
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common_utils.metrics import eer
from common_utils.train import (
    MetricLogger,
    all_gather_cat,
    all_reduce_mean,
    autocast_context,
    barrier,
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

from ..config import stage_dir
from ..data.dataset import ASVspoofDataset
from ..model.conformertcm import build_detector, load_tcm_checkpoint, tcm_state_dict
from ..model.ssl_frontend import load_pretrained_ssl

log = logging.getLogger(__name__)


def average_state_dicts(paths: list[Path]) -> dict:
    """Mean of floating tensors over the files; integer buffers (num_batches_tracked) from the first file."""
    states = [load_checkpoint(p) for p in paths]
    return {k: (torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v)
            for k, v in states[0].items()}


def _loader(ds, ctx, batch_size, shuffle, seed, num_workers):
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                                 drop_last=False)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


@torch.no_grad()
def predict(model, loader, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, labels, logits [N, 2]) gathered over ranks; eval mode, fp32."""
    model.eval()
    idx, labels, logits = [], [], []
    for wave, y, i in loader:
        logits.append(model(wave.to(device))[0].float())
        labels.append(y.to(device))
        idx.append(i.to(device))
    idx, labels, logits = (all_gather_cat(torch.cat(t)).cpu() for t in (idx, labels, logits))
    first = np.unique(idx.numpy(), return_index=True)[1]  # DistributedSampler pads with repeats
    return idx.numpy()[first], labels.numpy()[first], logits.numpy()[first]


def write_scores(path: Path, utt_ids, scores) -> Path:
    """tcm_add score file: one ``utt score`` line (score = bona fide logit)."""
    path.write_text("".join(f"{u} {s:.6f}\n" for u, s in zip(utt_ids, scores)))
    return path


def train_stage1(cfg, resume: str | None = None) -> dict:
    ctx = init_distributed(cfg.device)
    seed_everything(cfg.seed)
    s1 = cfg.stage1
    out = prepare_run_dir(stage_dir(cfg, "stage1"), cfg, ctx.is_main)
    model = build_detector(cfg.detector)
    if cfg.detector.ssl_pretrained:
        dropped = load_pretrained_ssl(model.ssl_model, cfg.detector.ssl_pretrained)
        log.info("SSL front-end initialised from %s (dropped pre-training tensors: %s)", cfg.detector.ssl_pretrained,
                 dropped)
    else:
        log.info("detector.ssl_pretrained is null: the SSL front-end starts from random initialisation")
    model = model.to(ctx.device)
    train_ds = ASVspoofDataset(cfg.data.root, "train", cfg.data.cut, s1.rawboost_algo, cfg.seed, cfg.data.sample_rate)
    dev_ds = ASVspoofDataset(cfg.data.root, "dev", cfg.data.cut, s1.rawboost_algo if s1.augment_dev else 0,
                             cfg.seed + 1, cfg.data.sample_rate)
    train_dl = _loader(train_ds, ctx, s1.batch_size, True, cfg.seed, cfg.data.num_workers)
    dev_dl = _loader(dev_ds, ctx, s1.eval_batch_size, False, cfg.seed, cfg.data.num_workers)
    net = DistributedDataParallel(model) if ctx.distributed else model
    opt = torch.optim.Adam(model.parameters(), lr=s1.lr, weight_decay=s1.weight_decay)
    scaler = make_grad_scaler(cfg.precision, ctx.device)
    weight = torch.tensor(list(s1.class_weights), dtype=torch.float32, device=ctx.device)
    state = {"epoch": 0, "best": [], "best_loss": float("inf"), "bad_epochs": 0, "step": 0}

    last = out / "last.pth"
    resume = resolve_resume(resume, last)
    if resume:
        ckpt = load_checkpoint(resume)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        restore_rng_state(ckpt["rng"])
        log.info("resumed from %s at epoch %d", resume, state["epoch"])

    logger = MetricLogger(out, ctx.is_main)
    (out / "epochs").mkdir(exist_ok=True)
    while state["epoch"] < s1.max_epochs and state["bad_epochs"] < s1.patience:
        epoch = state["epoch"]
        train_dl.sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        net.train()
        total, count = torch.zeros((), device=ctx.device), 0
        for it, (wave, y, _) in enumerate(progress(train_dl, f"stage1 epoch {epoch}", ctx.is_main)):
            with autocast_context(ctx.device, cfg.precision):
                logits, _ = net(wave.to(ctx.device))
            loss = F.cross_entropy(logits.float(), y.to(ctx.device), weight=weight)
            check_finite(loss, state["step"])
            scaler.scale(loss / s1.grad_accum).backward()
            if (it + 1) % s1.grad_accum == 0 or it + 1 == len(train_dl):
                if s1.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), s1.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            total += loss.detach() * len(y)
            count += len(y)
            state["step"] += 1
        train_loss = all_reduce_mean(total / count).item()
        _, y_dev, logit_dev = predict(model, dev_dl, ctx.device)
        dev_loss = F.cross_entropy(torch.from_numpy(logit_dev), torch.from_numpy(y_dev), weight=weight.cpu()).item()
        dev_eer = eer(y_dev, logit_dev[:, 1])[0]
        if dev_loss < state["best_loss"]:
            state["best_loss"], state["bad_epochs"] = dev_loss, 0
        else:
            state["bad_epochs"] += 1
        best = sorted(state["best"] + [(dev_loss, epoch)])[: s1.n_average]
        if ctx.is_main:
            if (dev_loss, epoch) in best:
                save_checkpoint(tcm_state_dict(model), out / "epochs" / f"epoch_{epoch}.pth")
            for _, e in set(state["best"]) - set(best):
                (out / "epochs" / f"epoch_{e}.pth").unlink(missing_ok=True)
        state["best"] = best
        state["epoch"] = epoch + 1
        logger.log(epoch, {"train_loss": train_loss, "dev_loss": dev_loss, "dev_eer": dev_eer})
        if ctx.is_main:
            save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                             "state": state, "rng": capture_rng_state(),
                             "config": OmegaConf.to_container(cfg, resolve=True)}, last)
    logger.close()

    avg_path = out / f"avg_{s1.n_average}_best.pth"
    if ctx.is_main:
        averaged = average_state_dicts([out / "epochs" / f"epoch_{e}.pth" for _, e in state["best"]])
        save_checkpoint(averaged, avg_path)
    barrier()  # every rank scores the averaged checkpoint
    result = {"checkpoint": str(avg_path), "epochs": state["epoch"], "best_dev_loss": state["best_loss"]}
    result.update(score_split(cfg, avg_path, s1.score_split, out / f"scores_{s1.score_split}.txt", ctx))
    cleanup_distributed()
    return result


def score_split(cfg, checkpoint, split: str, out_file: Path, ctx=None) -> dict:
    """Score ``split`` with a tcm_add-format checkpoint; writes ``utt score`` lines and returns the EER."""
    ctx = ctx or init_distributed(cfg.device)
    model = build_detector(cfg.detector).to(ctx.device)
    load_tcm_checkpoint(model, checkpoint)
    ds = ASVspoofDataset(cfg.data.root, split, cfg.data.cut, 0, cfg.seed, cfg.data.sample_rate)
    idx, labels, logits = predict(model, _loader(ds, ctx, cfg.stage1.eval_batch_size, False, cfg.seed,
                                                 cfg.data.num_workers), ctx.device)
    if ctx.is_main:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_scores(out_file, [ds.rows[i].utt_id for i in idx], logits[:, 1])
    value = eer(labels, logits[:, 1])[0]
    log.info("%s: EER %s (%d utterances) -> %s", split, value, len(idx), out_file)
    return {"scores": str(out_file), f"{split}_eer": value}
