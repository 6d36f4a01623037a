"""Stage 2 under DDP: 2 gloo processes (forked) train 1 epoch; the ranks stay in sync and metrics are gathered."""
import json
import multiprocessing
import os
import socket

import torch
from clip_fairness_adapter.losses import build_fair_loss
from clip_fairness_adapter.model import build_encoder, load_trained
from clip_fairness_adapter.trainer import common
from clip_fairness_adapter.trainer import stage2_independent_adapter_trainer as stage2
from clip_fairness_adapter.trainer.evaluate import validate
from common_utils.train import init_distributed, load_checkpoint
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
    val = stage2.validate
    vals = []

    def validate_and_keep(model, *args):
        result = val(model, *args)
        vals.append(result["detection"])
        torch.save({k: v.detach().clone() for k, v in model.heads_state_dict().items()},
                   out_dir / f"heads_rank{rank}.pt")
        return result

    stage2.validate = validate_and_keep
    stage2.train(cfg)
    (out_dir / f"val_rank{rank}.json").write_text(json.dumps(vals))


def test_two_gloo_ranks_stay_identical_and_gather_metrics(stage1_run, data_root, clip_run, tmp_path):
    run_dir = stage1_run.parent / "ddp"  # shares the session's feature cache (built by the Stage 1 fixture)
    cfg = tiny_cfg(2, data_root, run_dir, f"stage1_checkpoint={stage1_run}/best.pth", "train.epochs=1",
                   "loss_weighting.type=dynamic", "loss_weighting.fair_warmup_epochs=0", clip=clip_run)
    fork = multiprocessing.get_context("fork")
    port = free_port()
    procs = [fork.Process(target=run_rank, args=(r, port, cfg, tmp_path)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORLD

    heads = [torch.load(tmp_path / f"heads_rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for k, v in heads[0].items():
        assert torch.equal(v, heads[1][k]), k
    state = load_checkpoint(run_dir / "last.pth")  # written by rank 0 only
    assert state["world_size"] == WORLD and len(state["rng"]) == WORLD
    for k, v in state["models"]["model"].items():
        assert torch.equal(v, heads[0][k]), k
    w = state["models"]["loss_weighting"]  # inside the DDP module: trained and synchronised
    assert w["log_var_cls"].item() != 0.0 and w["log_var_fair"].item() != 0.0

    # validation: each rank predicted its half of the split, both report the whole split's metrics ...
    vals = [json.loads((tmp_path / f"val_rank{r}.json").read_text())[-1] for r in range(WORLD)]
    ctx = init_distributed("cpu")
    encoder = build_encoder(cfg.clip)
    val_ds = common.build_split(cfg, cfg.data.val_sets, encoder, ctx)
    assert vals[0] == vals[1] and vals[0]["n"] == len(val_ds)
    # ... equal to a single-process evaluation of the final weights on the same data
    model = load_trained(cfg, encoder, run_dir / "last.pth")
    single = validate(model, common.eval_loader(val_ds, cfg, ctx), ctx.device, cfg, build_fair_loss(cfg.loss), 1)
    assert single["detection"]["auc"] == vals[0]["auc"]
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["val/auc"] == single["detection"]["auc"]
    assert abs(logged["val/sinkhorn_dist"] - single["sinkhorn_dist"]) <= 1e-5 * abs(single["sinkhorn_dist"])
