"""Stage 2 under DDP: 2 gloo processes (forked) train 1 epoch; the ranks stay in sync and metrics are gathered."""
import json
import multiprocessing
import os
import socket

import pytest
import torch
from clip_fairness_adapter.trainer import common
from clip_fairness_adapter.trainer import stage2_independent_adapter_trainer as stage2
from clip_fairness_adapter.trainer.evaluate import validate
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import build_fair_loss, load_trained
from conftest import tiny_cfg

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, port: int, cfg, out_dir) -> None:
    """One forked rank: train with the torchrun environment, dump its final heads and its validation result."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    save, val = common.save, stage2.validate
    vals = []

    def save_and_dump(state, run_dir, ctx, best=False):
        save(state, run_dir, ctx, best)
        torch.save(state["model_state_dict"], out_dir / f"heads_rank{rank}.pt")

    def validate_and_keep(*args):
        result = val(*args)
        vals.append(result["detection"])
        return result

    common.save, stage2.validate = save_and_dump, validate_and_keep
    stage2.train(cfg)
    (out_dir / f"val_rank{rank}.json").write_text(json.dumps(vals))


def test_two_gloo_ranks_stay_identical_and_gather_metrics(stage1_run, data_root, tmp_path):
    run_dir = stage1_run.parent / "ddp"  # shares the session's feature cache (built by the Stage 1 fixture)
    cfg = tiny_cfg(2, data_root, run_dir, f"stage1_checkpoint={stage1_run}/last.pth", "train.epochs=1",
                   "loss_weighting.type=dynamic")
    fork = multiprocessing.get_context("fork")
    port = free_port()
    procs = [fork.Process(target=run_rank, args=(r, port, cfg, tmp_path)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORLD

    heads = [torch.load(tmp_path / f"heads_rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for k, v in heads[0].items():
        assert torch.equal(v, heads[1][k]), k
    ckpt = torch.load(run_dir / "last.pth", weights_only=True)  # written by rank 0 only
    for k, v in ckpt["model_state_dict"].items():
        assert torch.equal(v, heads[0][k]), k
    w = ckpt["loss_weighting_state_dict"]
    assert w["log_var_cls"].item() != 0.0 and w["log_var_fair"].item() != 0.0  # trained, and synced via the ckpt

    # validation: each rank predicted its half of the split, both report the whole split's metrics ...
    vals = [json.loads((tmp_path / f"val_rank{r}.json").read_text())[-1] for r in range(WORLD)]
    ctx = common.setup(cfg)
    encoder = common.build_encoder(cfg, ctx)
    val_ds = common.build_split(cfg, cfg.data.val_csvs, encoder, ctx)
    assert vals[0] == vals[1] and vals[0]["n"] == len(val_ds)
    # ... equal to a single-process evaluation of the final weights on the same data
    model = load_trained(cfg, ctx, encoder, run_dir / "last.pth")
    single = validate(model, common.eval_loader(val_ds, cfg), ctx.device, cfg, build_fair_loss(cfg))
    assert single["detection"]["auc"] == vals[0]["auc"]
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["val/auc"] == single["detection"]["auc"]
    # features of different batch compositions: equal up to float rounding
    assert logged["val/sinkhorn_dist"] == pytest.approx(single["sinkhorn_dist"], rel=1e-5)
