"""Stage 1: train the XLSR-Conformer-TCM detector (tcm_add's recipe) on the shared training engine.

Weighted CE [0.1, 0.9] (spoof, bona fide), Adam over every parameter (the SSL front-end is fine-tuned, as tcm_add's
``--FT_W2V True``), RawBoost on the training set, early stopping on dev loss; the ``n_average`` best epochs (lowest
dev loss) are kept in tcm_add's state-dict format under ``epochs/`` and averaged into ``avg_{n}_best.pth``.
Run state (``last.pth``, ``metrics.jsonl``) is ``common_utils.train``'s; the best-epoch list, the patience counter
and "stopped early" travel in its ``extra``.
"""
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common_utils.metrics import eer
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    all_gather_cat,
    all_reduce_mean,
    barrier,
    build_loader,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    step_options,
    unwrap_model,
    wrap_model,
)
from torch.utils.data import DistributedSampler

from ..config import stage_dir
from ..data.dataset import SpoofDataset
from ..model.conformertcm import build_detector, load_tcm_checkpoint, tcm_state_dict
from ..model.ssl_frontend import load_pretrained_ssl

log = logging.getLogger(__name__)


def average_state_dicts(paths: list[Path]) -> dict:
    """Mean of floating tensors over the files; integer buffers (num_batches_tracked) from the first file."""
    states = [load_checkpoint(p) for p in paths]
    return {k: (torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v)
            for k, v in states[0].items()}


def loader(ds, ctx, batch_size: int, shuffle: bool, seed: int, num_workers: int):
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                                 drop_last=False)
    return build_loader(ds, batch_size, ctx, sampler=sampler, num_workers=num_workers)


@torch.no_grad()
def predict(model, dl, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, labels, logits [N, 2]) gathered over ranks; eval mode, fp32."""
    model.eval()
    idx, labels, logits = [], [], []
    for wave, y, i in dl:
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


def _epoch_file(out: Path, epoch: int) -> Path:
    return out / "epochs" / f"epoch_{epoch}.pth"


def train_stage1(cfg, resume: str | None = None, overwrite: bool = False) -> dict:
    ctx = init_distributed(cfg.device)
    s1 = cfg.stage1
    out = stage_dir(cfg, "stage1")
    run = RunDir(out, ctx, resume=resume, overwrite=overwrite, tensorboard=False)
    seed_everything(cfg.seed)
    train_ds = SpoofDataset(cfg.data, "train", s1.rawboost_algo, cfg.seed)
    dev_ds = SpoofDataset(cfg.data, "dev", s1.rawboost_algo if s1.augment_dev else 0, cfg.seed + 1)
    train_dl = loader(train_ds, ctx, s1.batch_size, True, cfg.seed, cfg.data.num_workers)
    dev_dl = loader(dev_ds, ctx, s1.eval_batch_size, False, cfg.seed, cfg.data.num_workers)
    model = build_detector(cfg.detector)
    if cfg.detector.ssl_pretrained:
        dropped = load_pretrained_ssl(model.ssl_model, cfg.detector.ssl_pretrained)
        log.info("SSL front-end initialised from %s (dropped pre-training tensors: %s)", cfg.detector.ssl_pretrained,
                 dropped)
    else:
        log.info("detector.ssl_pretrained is null: the SSL front-end starts from random initialisation")
    run.write_config(cfg)  # config, data and initial weights validated

    net = wrap_model(model, ctx)
    opt = torch.optim.Adam(model.parameters(), lr=s1.lr, weight_decay=s1.weight_decay)
    schedulers = {}
    if s1.lr_schedule == "cosine":  # per optimizer step, to 0 at the hard stop (tcm_add keeps the rate constant)
        steps = s1.epochs * math.ceil(len(train_dl) / s1.accum_steps)
        schedulers["model"] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    elif s1.lr_schedule != "constant":
        raise ValueError(f"stage1.lr_schedule must be 'constant' or 'cosine', got {s1.lr_schedule!r}")
    step = OptimStep(opt, device=ctx.device, model=net, scheduler=schedulers.get("model"), **step_options(s1))
    state = TrainState(models={"model": model}, optimizers={"model": opt}, schedulers=schedulers,
                       steppers={"model": step})
    resumed = run.resume(state)
    extra = resumed.extra if resumed else {"best": [], "best_loss": math.inf, "bad_epochs": 0, "stopped": False}
    weight = torch.tensor(list(s1.class_weights), dtype=torch.float32, device=ctx.device)
    if ctx.is_main:
        (out / "epochs").mkdir(exist_ok=True)

    for epoch in range(run.start_epoch, s1.epochs):
        if extra["stopped"]:
            break
        train_dl.sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        net.train()
        step.begin_epoch(epoch, len(train_dl))
        total, count = torch.zeros((), device=ctx.device), 0
        for wave, y, _ in train_dl:
            with step.autocast():
                logits, _ = net(wave.to(ctx.device))
            loss = F.cross_entropy(logits.float(), y.to(ctx.device), weight=weight)
            step(loss)
            total += loss.detach() * len(y)
            count += len(y)
        train_loss = all_reduce_mean(total / count).item()
        _, y_dev, logit_dev = predict(model, dev_dl, ctx.device)
        check_finite_outputs(torch.from_numpy(logit_dev), epoch + 1, "dev logits")
        dev_loss = F.cross_entropy(torch.from_numpy(logit_dev), torch.from_numpy(y_dev), weight=weight.cpu()).item()
        dev_eer = eer(y_dev, logit_dev[:, 1])[0]
        if dev_loss < extra["best_loss"]:
            extra["best_loss"], extra["bad_epochs"] = dev_loss, 0
        else:
            extra["bad_epochs"] += 1
        extra["stopped"] = extra["bad_epochs"] >= s1.patience
        best = sorted(extra["best"] + [[dev_loss, epoch]])[: s1.n_average]
        if ctx.is_main and [dev_loss, epoch] in best:  # the export is written before the epoch's run state
            save_checkpoint(tcm_state_dict(unwrap_model(net)), _epoch_file(out, epoch))
        extra["best"] = best
        run.end_epoch(state, {"train_loss": train_loss, "dev_loss": dev_loss, "dev_eer": dev_eer,
                              "steps": step.optimizer_steps}, extra=extra)
        if ctx.is_main:  # epochs that left the best list (also any left by an interrupted run)
            keep = {_epoch_file(out, e) for _, e in best}
            for stale in set((out / "epochs").glob("epoch_*.pth")) - keep:
                stale.unlink()
    run.close()

    avg_path = out / f"avg_{s1.n_average}_best.pth"
    if ctx.is_main:
        save_checkpoint(average_state_dicts([_epoch_file(out, e) for _, e in extra["best"]]), avg_path)
    barrier()  # every rank scores the averaged checkpoint
    result = {"checkpoint": str(avg_path), "epochs": len(run.history), "stopped_early": extra["stopped"],
              "best_dev_loss": extra["best_loss"]}
    result.update(score_split(cfg, avg_path, s1.score_split, out / f"scores_{s1.score_split}.txt", ctx))
    cleanup_distributed()
    return result


def score_split(cfg, checkpoint, split: str, out_file: Path, ctx=None) -> dict:
    """Score ``split`` of ``data.root`` (``data.layout``) with a tcm_add-format checkpoint through the
    released-checkpoint loader; writes ``utt score`` lines (score = bona fide logit) and returns the utterance EER."""
    ctx = ctx or init_distributed(cfg.device)
    model = build_detector(cfg.detector)
    load_tcm_checkpoint(model, checkpoint)
    model = model.to(ctx.device)
    ds = SpoofDataset(cfg.data, split)
    idx, labels, logits = predict(model, loader(ds, ctx, cfg.stage1.eval_batch_size, False, cfg.seed,
                                                cfg.data.num_workers), ctx.device)
    check_finite_outputs(torch.from_numpy(logits), 0, f"{split} logits")
    if ctx.is_main:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_scores(out_file, [ds.utterances[i].utt_id for i in idx], logits[:, 1])
    value = eer(labels, logits[:, 1])[0]
    log.info("%s (%s): EER %s (%d utterances) -> %s", split, cfg.data.layout, value, len(idx), out_file)
    return {"scores": str(out_file), f"{split}_eer": value, "layout": cfg.data.layout, "n": int(len(idx))}
