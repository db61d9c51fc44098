"""DDP that is right: two CPU processes (gloo) with synchronised batch norm give
the gradients of one process on the same global batch.

Each process takes half of a batch of 4 clips; the model's batch norms are
:class:`~stmt.engine.sync_batchnorm.SyncBatchNorm1d`, DDP averages the
gradients. One process on all 4 clips with plain batch norm must give the same
gradients and the same running statistics. Float64, so "the same" is tight.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from stmt.engine.sync_batchnorm import SyncBatchNorm1d, convert_sync_batchnorm
from tests.helpers.models import tiny_model
from tests.helpers.net import free_port

BATCH, T, N, CLASSES = 4, 2, 48, 3


def _model() -> nn.Module:
    return tiny_model(T, N, CLASSES).double().train()


def _data():
    gen = torch.Generator().manual_seed(1)
    vertices = torch.randn(BATCH, T, N, 3, generator=gen, dtype=torch.float64)
    rest = torch.randn(N, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    return vertices, torch.cdist(rest, rest), labels


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    grads = {f"grad:{n}": p.grad.detach().clone() for n, p in model.named_parameters()}
    buffers = {f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()}
    return {**grads, **buffers}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = _model()
        assert convert_sync_batchnorm(model) > 0
        ddp = nn.parallel.DistributedDataParallel(model)
        vertices, geodesic, labels = _data()
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        loss = F.cross_entropy(ddp(vertices[part], geodesic), labels[part])
        loss.backward()
        torch.save(_state(model), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_gradients_of_one_on_the_global_batch(tmp_path):
    mp.start_processes(
        _worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    model = _model()
    vertices, geodesic, labels = _data()
    F.cross_entropy(model(vertices, geodesic), labels).backward()
    want = _state(model)

    for got in per_rank:
        assert got.keys() == want.keys()  # same parameter and buffer names
        for name, value in want.items():
            torch.testing.assert_close(got[name], value, rtol=1e-9, atol=1e-11, msg=name)


def test_without_sync_the_two_processes_would_differ():
    # The check above has teeth: per-process batch norm gives other gradients.
    model = _model()
    vertices, geodesic, labels = _data()
    halves = []
    for part in (slice(0, 2), slice(2, 4)):
        model.zero_grad()
        F.cross_entropy(model(vertices[part], geodesic), labels[part]).backward()
        halves.append({n: p.grad.clone() for n, p in model.named_parameters()})
    model.zero_grad()
    F.cross_entropy(model(vertices, geodesic), labels).backward()
    name = "branches.0.point_mlp.0.linear.weight"
    averaged = (halves[0][name] + halves[1][name]) / 2
    assert not torch.allclose(averaged, dict(model.named_parameters())[name].grad, rtol=1e-4)


def test_one_process_is_plain_batch_norm():
    torch.manual_seed(0)
    plain, sync = nn.BatchNorm1d(5), SyncBatchNorm1d(5)
    sync.load_state_dict(plain.state_dict())
    x = torch.randn(7, 5)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)


def test_conversion_keeps_parameters_and_checkpoint_keys():
    model = _model()
    keys = list(model.state_dict())
    weight = model.head[1].weight
    n = convert_sync_batchnorm(model)
    assert n == sum(isinstance(m, SyncBatchNorm1d) for m in model.modules()) > 0
    assert not any(type(m) is nn.BatchNorm1d for m in model.modules())
    assert list(model.state_dict()) == keys
    assert model.head[1].weight is weight  # shared, not copied


@pytest.mark.parametrize(("world_size", "converted"), [(1, False), (2, True)])
def test_fit_setup_syncs_batch_norm_under_multiprocess_ddp(world_size, converted):
    from pytorch_lightning.strategies import DDPStrategy

    from stmt.engine.common import prepare_model_for_fit

    module = SimpleNamespace(
        model=_model(), _trainer=SimpleNamespace(strategy=DDPStrategy(), world_size=world_size)
    )
    prepare_model_for_fit(module, compile_model=False)
    assert any(isinstance(m, SyncBatchNorm1d) for m in module.model.modules()) is converted
