"""The STMT model: shapes, time order, block-causal masking, rollout, pretraining losses."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from stmt.model import build_model
from stmt.model.stmt_mae import STMTMAE, sample_mask

MAE = {"patch_size": 8, "mask_ratio": 0.5, "masking": "tube", "decoder_width": 128,
       "decoder_depth": 1, "decoder_heads": 4}  # fmt: skip

N = 64  # points per frame in these tests


def geodesic_matrix(n: int = N, seed: int = 0) -> torch.Tensor:
    """A symmetric, zero-diagonal stand-in for the template's geodesic distances."""
    pts = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return torch.cdist(pts, pts)


def clips(b: int, t: int, n: int = N, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, t, n, 3, generator=torch.Generator().manual_seed(seed))


def tiny(**kw):
    torch.manual_seed(0)
    return build_model("stmt_tiny", **{"num_classes": 5, "num_frames": 6, "num_points": N, **kw})


def test_tiny_shapes_and_rollout():
    model = tiny().eval()
    v, g = clips(2, 6), geodesic_matrix()
    assert model(v, g).shape == (2, 5)
    assert model.forward_features(v, g).shape == (2, 6 * 16, 128)
    rel = model.attention_rollout(v, g)
    assert rel.shape == (2, 6, 16)
    assert torch.allclose(rel.sum(dim=(1, 2)), torch.ones(2))
    assert (rel >= 0).all()
    # fewer frames than the model's maximum are accepted
    assert model(v[:, :3], g).shape == (2, 5)


def test_base_shapes_and_size():
    torch.manual_seed(0)
    model = build_model("stmt_base", num_classes=7, num_frames=2, num_points=N).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"stmt_base parameters: {n_params}")
    assert 25e6 < n_params < 35e6  # the released model has about 31.6 M
    with torch.no_grad():
        assert model(clips(1, 2), geodesic_matrix()).shape == (1, 7)
    assert model.width == 1024


def test_per_clip_geodesic_matches_shared():
    model = tiny().eval()
    v, g = clips(2, 4), geodesic_matrix()
    with torch.no_grad():
        shared = model(v, g)
        per_clip = model(v, g.expand(2, N, N))
    assert torch.allclose(shared, per_clip, atol=1e-5)


def test_block_causal_attention_hides_the_future():
    model = tiny().eval()
    v, g = clips(1, 6), geodesic_matrix()
    t = 2
    changed = v.clone()
    changed[:, t + 1 :] += torch.randn_like(changed[:, t + 1 :])
    P = model.num_patches
    with torch.no_grad():
        a = model.forward_features(v, g, causal=True)
        b = model.forward_features(changed, g, causal=True)
        bidirectional = model.forward_features(changed, g, causal=False)
    past = slice(0, (t + 1) * P)
    assert torch.allclose(a[:, past], b[:, past], atol=1e-5)
    assert not torch.allclose(a[:, (t + 1) * P :], b[:, (t + 1) * P :], atol=1e-3)
    # without the mask the past does see the change
    assert not torch.allclose(a[:, past], bidirectional[:, past], atol=1e-3)


def test_reversing_time_changes_logits():
    model = tiny().eval()
    v, g = clips(2, 6), geodesic_matrix()
    with torch.no_grad():
        forward, backward = model(v, g), model(v.flip(1), g)
    assert (forward - backward).abs().max() > 1e-3


def test_loss_falls_when_overfitting_a_tiny_batch():
    model = tiny().train()
    v, g = clips(8, 4), geodesic_matrix()
    y = torch.arange(8) % 5
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(v, g), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_every_parameter_gets_a_gradient():
    """No dead parameters (DDP would need find_unused_parameters otherwise)."""
    model = tiny().train()
    F.cross_entropy(model(clips(4, 3), geodesic_matrix()), torch.arange(4)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead
    mae = STMTMAE("stmt_tiny", {"num_frames": 6, "num_points": N}, **MAE).train()
    mvm, ffp = mae(clips(2, 3), geodesic_matrix())
    (mvm + ffp).backward()
    assert not [n for n, p in mae.named_parameters() if p.grad is None]
    assert "head" not in dict(mae.encoder.named_children())


def test_sample_mask_convention():
    for masking in ("tube", "random"):
        mask = sample_mask(3, 4, 10, 0.5, masking)
        assert mask.shape == (3, 4, 10) and mask.dtype == torch.bool
        assert (mask.reshape(3, -1).sum(dim=1) == 20).all()  # True = masked, exact share
    tube = sample_mask(2, 4, 10, 0.3, "tube")
    assert (tube == tube[:, :1]).all()  # same patches in every frame
    with pytest.raises(ValueError):
        sample_mask(1, 1, 2, 0.5, "blocks")


def test_pretraining_targets_and_losses():
    mae = STMTMAE("stmt_tiny", {"num_frames": 6, "num_points": N}, **MAE).eval()
    v, g = clips(2, 5), geodesic_matrix()
    mvm_target, ffp_target = mae.targets(v, g)
    P = mae.encoder.num_patches
    assert mvm_target.shape == (2, 5, P, 8, 3) and ffp_target.shape == (2, 4, P, 8, 3)
    # the nearest geodesic neighbour of a centre is itself: zero local offset
    assert torch.allclose(mvm_target[..., 0, :], torch.zeros(2, 5, P, 3))
    mask = sample_mask(2, 5, P, 0.5, "tube")
    latent = mae.forward_encoder(v, g, mask, causal=False)
    pred = mae.forward_decoder(latent, "mvm")
    assert pred.shape == mvm_target.shape
    # a perfect reconstruction of the masked patches gives zero MVM loss
    perfect = torch.where(mask[..., None, None], mvm_target, pred)
    mvm, ffp = mae.forward_loss(v, g, perfect, mae.forward_decoder(latent, "ffp"), mask)
    assert mvm.item() == 0.0 and ffp.item() > 0


def test_an_ensemble_is_the_mean_of_its_members():
    """members=3: three independently initialised models; logits and attention rollouts
    are the means of theirs (each clip's relevance still sums to 1)."""
    ens = tiny(members=3).eval()
    assert len(ens.members) == 3
    v, g = clips(2, 6), geodesic_matrix()
    each = torch.stack([m(v, g) for m in ens.members])
    assert not torch.allclose(each[0], each[1])  # not one model three times
    assert torch.allclose(ens(v, g), each.mean(dim=0), atol=1e-6)
    rel = ens.attention_rollout(v, g)
    expect = torch.stack([m.attention_rollout(v, g) for m in ens.members]).mean(dim=0)
    assert torch.allclose(rel, expect) and torch.allclose(rel.sum(dim=(1, 2)), torch.ones(2))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="members must be"):
            tiny(members=bad)


def test_unknown_arch_and_bad_input():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("stmt_huge", num_classes=2)
    with pytest.raises(ValueError, match="expected vertices"):
        tiny()(clips(1, 7), geodesic_matrix())  # more frames than built for


# ----------------------------------------------------------------------------- fast paths

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _logits_and_grads(model, vertices, geodesic, labels):
    model.zero_grad(set_to_none=True)
    logits = model(vertices, geodesic)
    F.cross_entropy(logits, labels).backward()
    return logits.detach().double(), {n: p.grad.double() for n, p in model.named_parameters()}


@pytest.mark.parametrize("centers", [(32, 16), (8, 4)])
@pytest.mark.parametrize("neighbors_per_clip", [False, True])
def test_float32_grouping_computes_what_the_concatenation_does(neighbors_per_clip, centers):
    # float32 splits the first grouping layer into the points' and the centres' terms
    # (u_j - u_i + Wc f_i), with u before the gather where the neighbour rows outnumber
    # the points (both levels of 32 / 16 centres) and after it where they do not (level
    # 1 of 8 centres: 8 x 8 neighbours of 64 points); float64 builds the (offset,
    # feature difference, feature) input as written.
    model = tiny(head_dropout=0.0, centers1=centers[0], centers2=centers[1]).train()
    vertices, labels = clips(4, 3), torch.arange(4)
    geodesic = geodesic_matrix()
    if neighbors_per_clip:  # (B, N, N): gathers with per-clip indices
        geodesic = torch.stack([geodesic_matrix(seed=s) for s in range(4)])
    got, got_grads = _logits_and_grads(model, vertices, geodesic, labels)
    want, want_grads = _logits_and_grads(
        model.double(), vertices.double(), geodesic.double(), labels
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # one scale for all: some gradients are zero up to rounding (the value bias of
    # offset attention cancels in x - x_r but for eps)
    scale = max(g.abs().max().item() for g in want_grads.values())
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-3, atol=1e-4 * scale, msg=name)


def test_16_bit_grouping_gives_aligned_products():
    # Under autocast the first grouping layer's (offset, f_j - f_i, f_i) input, 3 + 2C
    # channels, is padded with zeros to a multiple of 8 (GPU tensor cores want it): every
    # matrix product of the patch branches, forward and backward, then has sizes that are
    # multiples of 8, but for the 3 coordinates of the point MLP's input. (The padded
    # input's values: test_float32_grouping_computes_what_the_concatenation_does, whose
    # float64 side takes this path.)
    from torch.utils._python_dispatch import TorchDispatchMode

    products = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}
    sizes = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in products:
                sizes.update(d for a in args if isinstance(a, torch.Tensor) for d in a.shape[-2:])
            return func(*args, **(kwargs or {}))

    model = tiny().train()
    vertices, geodesic = clips(2, 4), geodesic_matrix()
    with torch.autocast("cpu", dtype=torch.bfloat16), Record():
        features = model.patch_features(vertices, geodesic)
    with Record():
        features.float().sum().backward()
    assert {3 + 2 * 32, 3 + 2 * 64} & sizes == set()  # stmt_tiny's 67 and 131 channels
    assert {d for d in sizes if d % 8} == {3}
    with torch.no_grad():
        want = model.double().patch_features(vertices.double(), geodesic.double())
    # bfloat16 keeps 8 bits: a lone feature can be 0.07 off (one thread's summation order
    # differs from two), so the whole is held to 2 % (0.8 % measured) and every element to 0.15
    error = (features.double() - want).norm() / want.norm()
    assert error < 0.02, f"bfloat16 patch features {error:.2%} off the float64 ones"
    torch.testing.assert_close(features.double(), want, rtol=0.05, atol=0.15)


@pytest.mark.parametrize(
    "name", ["stmt-realmix.ckpt", "stmt-realmix-v3.ckpt", "stmt-tiny-synthetic.ckpt"]
)
def test_shipped_checkpoints_load_and_predict_as_the_concatenation_does(name):
    from stmt import checkpoint

    path = ROOT / "checkpoints" / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    ckpt = checkpoint.read(path)
    hp = ckpt["hyper_parameters"]
    model = build_model(hp["arch"], **checkpoint.model_args(hp))
    model.load_state_dict(checkpoint.model_weights(ckpt), strict=True)  # same keys
    model.eval()
    n, t = hp["clip"]["num_points"], hp["clip"]["num_frames"]
    geodesic = ckpt["state_dict"]["geodesic"]
    vertices = clips(3, t, n) * 0.3
    with torch.no_grad():
        got = model(vertices, geodesic)
        want = model.double()(vertices.double(), geodesic.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_norm_relu_max_is_batch_norm_relu_amax(momentum):
    """The fused CPU training path gives batch norm -> ReLU -> amax's values, gradients
    (ties at zero and at a positive value included, a negative gamma and a zero one
    too) and running statistics, in float64 to rounding."""
    from stmt.ops.grouping import norm_relu_max

    torch.manual_seed(0)
    y = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64) * 2 + 0.7
    y[0, 0, 0, 1] = y[0, 0, 0, 0]  # an exact tie in every channel
    y[1, 2, 3] = 0.5  # a whole neighbourhood tied
    g = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    norms = [torch.nn.BatchNorm1d(6, momentum=momentum).double() for _ in range(2)]
    with torch.no_grad():
        norms[0].weight.copy_(torch.tensor([1.5, -0.7, 0.3, -1.2, 0.0, 0.9]))
        norms[0].bias.uniform_(-1, 1)
        norms[0].bias[4] = 0.5  # gamma 0, bias > 0: every neighbour is the max
    norms[1].load_state_dict(norms[0].state_dict())
    results = []
    for fused, norm in zip((False, True), norms):
        x = y.clone().requires_grad_()
        for _ in range(2):  # twice: the running statistics' update rule matters
            if fused:
                out = norm_relu_max(x, norm, dim=3)
                assert "NormReluMax" in type(out.grad_fn).__name__
            else:
                out = torch.relu(norm(x.reshape(-1, 6))).reshape(x.shape).amax(3)
        out.backward(g)
        results.append((out, x.grad, norm.weight.grad, norm.bias.grad, *norm.buffers()))
    for want, got in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (y.reshape(-1, 6) == 0.5).all(-1).sum() == 5  # the tied neighbourhood is there


def test_norm_relu_max_in_evaluation_is_the_three_steps_exactly():
    """In evaluation the max comes first (without gradients) or the three steps run as
    written (with them): either way batch norm -> ReLU -> amax's floats, bit for bit,
    a negative gamma (the min pooled there) and a zero one included."""
    from stmt.ops.grouping import norm_relu_max

    torch.manual_seed(1)
    norm = torch.nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.3, -0.8, 0.0, 0.4]))
        norm.bias.copy_(torch.tensor([0.1, 0.2, 0.3, -0.5]))
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    y = torch.randn(3, 5, 4) * 3
    want = torch.relu(norm(y.reshape(-1, 4))).reshape(3, 5, 4).amax(1)
    with torch.no_grad():
        pooled = norm_relu_max(y, norm, dim=1)
    assert torch.equal(pooled, want)
    assert torch.equal(norm_relu_max(y.requires_grad_(), norm, dim=1), want)
    assert (want[:, 1] > 0).any() and (want == 0).any()  # a negative gamma pooled, ReLU cut
    assert int(norm.num_batches_tracked) == 0  # evaluation updates nothing


def test_pooled_evaluation_asks_no_value_of_a_device_tensor():
    """Off the CPU the pooled path takes the min beside the max without asking whether a
    gamma is negative (a host sync per level): on the meta device, where asking fails."""
    from stmt.ops.grouping import _max_then_norm_relu

    norm = torch.nn.BatchNorm1d(4).eval().to("meta")
    y = torch.empty(3, 5, 2, 4, device="meta")
    with torch.no_grad():
        assert _max_then_norm_relu(y, norm, 2).shape == (3, 5, 4)
    with pytest.raises(RuntimeError):
        bool((norm.weight < 0).any())  # what the CPU path asks


@pytest.mark.parametrize("layers", [(6,), (8, 6)])
def test_group_max_in_evaluation_is_its_reference(layers):
    """Evaluation without gradients (``stmt classify``): a level of one layer pools ``u``
    before adding the centres' term (:func:`_max_then_norm_relu`), more layers pool after
    the last; the values of ``group_max_reference`` (float32 rounding apart, as in
    training: the first layer's product split) and of the sum then the three steps bit for
    bit."""
    from stmt.model.stmt import shared_mlp
    from stmt.ops import grouping

    torch.manual_seed(2)
    B, T, N, C, k, m = 2, 3, 16, 5, 4, 6
    xyz, feat = torch.randn(B, T, N, 3), torch.randn(B, T, N, C)
    idx = torch.randint(0, N, (B, T, m, k))
    mlp = shared_mlp(3 + 2 * C, layers)
    with torch.no_grad():
        for layer in mlp:
            layer.norm.weight.uniform_(-1, 1)  # negative gammas: the min is pooled there
            layer.norm.running_mean.uniform_(-1, 1)
    mlp.eval()
    with torch.no_grad():
        got = grouping.group_max(mlp, xyz, feat, idx, m)
        want = grouping.group_max_reference(mlp, xyz, feat, idx, m)
        u, centre = grouping._split_first_layer(mlp[0].linear.weight, xyz, feat, idx, m)
        y = u + centre[:, :, :, None]
        for prev, layer in itertools.pairwise(mlp):
            y = layer.linear(torch.relu(prev.norm(y.reshape(-1, y.shape[-1]))).reshape(y.shape))
        summed = torch.relu(mlp[-1].norm(y.reshape(-1, y.shape[-1]))).reshape(y.shape).amax(3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got, summed)
    assert (got > 0).any() and (got == 0).any()


@pytest.mark.parametrize("rows", [50, 8 * 4096 + 13])  # one product; row blocks + a remainder
@pytest.mark.parametrize("bias", [False, True])
def test_point_linear_over_parts_is_linear_over_their_concatenation(rows, bias, monkeypatch):
    """``point_linear([xyz, f], w, b)`` on the CPU with gradients (:class:`_PointLinear`):
    the values and gradients of ``F.linear(torch.cat([xyz, f], -1), w, b)``, no gradient
    for a part that needs none; the weight gradient over row blocks when rows are many."""
    from stmt.ops import point_mlp as points
    from stmt.ops.point_mlp import point_linear

    gen = torch.Generator().manual_seed(0)
    xyz = torch.randn(rows, 3, dtype=torch.float64, generator=gen)
    feat = torch.randn(rows, 5, dtype=torch.float64, generator=gen).requires_grad_()
    weight = torch.randn(4, 8, dtype=torch.float64, generator=gen).requires_grad_()
    b = torch.randn(4, dtype=torch.float64, generator=gen).requires_grad_() if bias else None
    g = torch.randn(rows, 4, dtype=torch.float64, generator=gen)
    bmm_calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a: bmm_calls.append(a[0].shape) or bmm(*a))

    out = point_linear([xyz, feat], weight, b)
    assert "PointLinear" in type(out.grad_fn).__name__
    inputs = (feat, weight, b) if bias else (feat, weight)
    got = torch.autograd.grad(out, inputs, g)
    want_out = F.linear(torch.cat([xyz, feat], -1), weight, b)
    want = torch.autograd.grad(want_out, inputs, g)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)
    for a, w in zip(got, want, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-10)
    assert xyz.grad is None
    blocked = rows >= points._ROW_BLOCKS * points._MIN_BLOCK_ROWS
    assert bmm_calls == ([(points._ROW_BLOCKS, 8, rows // points._ROW_BLOCKS)] if blocked else [])


def test_linear_module_is_nn_linear():
    """``point_mlp.Linear``: ``nn.Linear``'s parameters and state-dict keys, and in float32
    CPU training (oneDNN's products) its values and gradients, input, weight and bias,
    for a non-contiguous input too."""
    from stmt.ops import point_mlp as points
    from stmt.ops.point_mlp import Linear

    torch.manual_seed(0)
    ours, plain = Linear(24, 40), torch.nn.Linear(24, 40)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    rows = points.ONEDNN_MIN_ROWS // 6 + 100
    x = torch.randn(6, 24, rows).transpose(1, 2).requires_grad_()  # (6, rows, 24), not contiguous
    g = torch.randn(6, rows, 40)
    out = ours(x)
    assert "PointLinear" in type(out.grad_fn).__name__
    got = torch.autograd.grad(out, (x, ours.weight, ours.bias), g)
    ref = plain.double()
    want_out = ref(x.double())
    want = torch.autograd.grad(want_out, (x, ref.weight, ref.bias), g.double())
    torch.testing.assert_close(out, want_out.float(), rtol=1e-5, atol=1e-5)
    for a, w in zip(got, want, strict=True):
        torch.testing.assert_close(a, w.float(), rtol=1e-4, atol=1e-4)
    assert "PointLinear" not in type(ours(x[:, :10]).grad_fn).__name__  # few rows: F.linear


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_point_layers_product_is_f_linear(bias, relu, monkeypatch):
    """``points._linear``, the point layers' product outside autograd: ``F.linear``'s
    values (ReLU'd if asked) in float32, by oneDNN's linear where this torch has it (a
    transposed weight view included), and as ``F.linear`` where a graph is recorded."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from stmt.ops import dispatch
    from stmt.ops import point_mlp as points

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(points.ONEDNN_MIN_ROWS + 100, 35, generator=gen)
    weight = torch.randn(35, 64, generator=gen).t()  # (64, 35), a transposed view
    b = torch.randn(64, generator=gen) if bias else None
    want = F.linear(x.double(), weight.double(), None if b is None else b.double())
    want = want.clamp_min(0) if relu else want
    ops = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops.append(func.name())
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Record():
        got = points._linear(x, weight, b, relu=relu)
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    if relu:
        assert (got == 0).any() and (got > 0).any()
    if torch.backends.mkldnn.is_available():  # (every x86 build of torch)
        assert dispatch.onednn_linear_works()
        assert "mkldnn::_linear_pointwise" in ops, ops

    ops.clear()
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # oneDNN off: F.linear
    with torch.no_grad(), Record():
        got = points._linear(x, weight, b, relu=relu)
    assert not any(op.startswith("mkldnn::") for op in ops), ops
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)

    ops.clear()
    w = weight.detach().requires_grad_()
    with Record():
        got = points._linear(x, w, b, relu=relu)
    assert not any(op.startswith("mkldnn::") for op in ops), ops
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(got.sum(), w)
    assert grad.shape == w.shape


@pytest.mark.parametrize("form", ["shared", "per clip", "per frame"])
def test_gather_neighbors_picks_each_frames_rows(form):
    """``gather_neighbors`` with (M, K), (B, M, K) or (B, T, M, K) indices gives
    ``x[b, t, idx]`` of each frame, and its backward adds the gradient of every pick
    (repeated picks included) to the row it came from; ``gather_with_centres`` that
    and ``x[:, :, :m]``, with the gradients of both."""
    from stmt.ops.neighbors import gather_neighbors, gather_with_centres

    gen = torch.Generator().manual_seed(0)
    B, T, N, M, K, C = 2, 3, 7, 4, 3, 5
    x = torch.randn(B, T, N, C, dtype=torch.float64, generator=gen).requires_grad_()
    shape = {"shared": (M, K), "per clip": (B, M, K), "per frame": (B, T, M, K)}[form]
    idx = torch.randint(0, N, shape, generator=gen)
    idx.view(-1)[:2] = 5  # a row picked twice
    full = idx.expand(B, T, M, K) if idx.ndim == 2 else idx
    full = full[:, None].expand(B, T, M, K) if idx.ndim == 3 else full
    b = torch.arange(B)[:, None, None, None]
    t = torch.arange(T)[None, :, None, None]
    want = x[b, t, full]  # (B, T, M, K, C)
    g = torch.randn(B, T, M, K, C, dtype=torch.float64, generator=gen)
    got = gather_neighbors(x, idx)
    assert got.shape == (B, T, M, K, C)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(got, x, g)
    (want_grad,) = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)

    # with the centres [0:m] as well, through one autograd node on the CPU
    m = 2
    got, centres = gather_with_centres(x, idx, m)
    assert "GatherWithCentres" in type(centres.grad_fn).__name__
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(centres, x[:, :, :m], rtol=0, atol=0)
    g_centres = torch.randn(B, T, m, C, dtype=torch.float64, generator=gen)
    (grad,) = torch.autograd.grad((got, centres), x, (g, g_centres))
    (want_grad,) = torch.autograd.grad((x[b, t, full], x[:, :, :m]), x, (g, g_centres))
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("input_grad", [False, True])
def test_linear_norm_relu_folds_batch_norm_into_the_product(momentum, input_grad):
    """The CPU training path of the point MLP's first layer (3 input channels: batch norm
    folded into the product, statistics from the inputs' moments) gives linear -> batch
    norm -> ReLU's values, gradients and running statistics, in float64 to rounding;
    with 8 input channels the layer runs as written."""
    from stmt.ops import point_mlp as points
    from stmt.ops.point_mlp import linear_norm_relu

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 6, 3, dtype=torch.float64, generator=gen) * 0.3 + 0.2
    g = torch.randn(4, 5, 6, 7, dtype=torch.float64, generator=gen)
    layers = [torch.nn.Linear(3, 7, bias=False).double() for _ in range(2)]
    norms = [torch.nn.BatchNorm1d(7, momentum=momentum).double() for _ in range(2)]
    with torch.no_grad():
        norms[0].weight.copy_(torch.tensor([1.5, -0.7, 0.3, -1.2, 0.0, 0.9, 2.0]))
        norms[0].bias.uniform_(-1, 1, generator=gen)
    norms[1].load_state_dict(norms[0].state_dict())
    layers[1].load_state_dict(layers[0].state_dict())
    results = []
    for folded, layer, norm in zip((False, True), layers, norms):
        xi = x.clone().requires_grad_(input_grad)
        for _ in range(2):  # twice: the running statistics' update rule matters
            if folded:
                out = linear_norm_relu(xi, layer, norm)
                assert "PointLinear" in _first_node(out)  # folded: one product node
            else:
                out = torch.relu(norm(layer(xi).reshape(-1, 7))).reshape(4, 5, 6, 7)
        out.backward(g)
        results.append((out, layer.weight.grad, norm.weight.grad, norm.bias.grad, *norm.buffers()))
        if input_grad:
            results[-1] += (xi.grad,)
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()  # the ReLU cuts
    for want, got in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    wide = torch.randn(10, 8, dtype=torch.float64, generator=gen)
    wide_layer = torch.nn.Linear(8, 7, bias=False).double()
    out = linear_norm_relu(wide, wide_layer, norms[1])
    assert "PointLinear" not in _first_node(out)  # batch norm as written
    assert points.FOLD_MAX_INPUTS < 8


def _first_node(out: torch.Tensor) -> str:
    """The name of the autograd node under ``out``'s closing reshape."""
    return type(out.grad_fn.next_functions[0][0]).__name__


@pytest.mark.parametrize("centers", [16, 4])  # neighbour rows beyond the points, or not
def test_group_max_is_its_reference(centers):
    """``group_max`` (in float32 training: the split first layer, fused batch norm, ReLU
    and max) gives ``group_max_reference``'s values, gradients and running statistics."""
    import copy

    from stmt.model.stmt import shared_mlp
    from stmt.ops.grouping import group_max, group_max_reference

    torch.manual_seed(0)
    B, T, N, C, k = 2, 3, 16, 5, 4
    xyz = torch.randn(B, T, N, 3).requires_grad_()
    feat = torch.randn(B, T, N, C).requires_grad_()
    idx = torch.randint(0, N, (B, T, centers, k))
    mlp = shared_mlp(3 + 2 * C, (8, 6)).train()
    ref_mlp = copy.deepcopy(mlp)
    g = torch.randn(B, T, centers, 6)
    results = []
    for fn, layers in ((group_max, mlp), (group_max_reference, ref_mlp)):
        out = fn(layers, xyz, feat, idx, centers)
        grads = torch.autograd.grad(out, (xyz, feat, *layers.parameters()), g)
        results.append((out, *grads, *(b.clone() for b in layers.buffers())))
    assert "NormReluMax" in type(results[0][0].grad_fn).__name__  # the fused path
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
