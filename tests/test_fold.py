"Tests of dynmoe.models.fold_bn / fold_conv_bn: a folded network infers what the original infers (exits, experts, MACs, logits)."
import pytest
import torch
import torch.nn as nn
from dynmoe.models import DynNet, randomise, fold_bn, fold_conv_bn

def _bns(m): return [u for u in m.modules() if isinstance(u, nn.modules.batchnorm._BatchNorm)]

@pytest.fixture(scope='module')
def images():
    "Calibration images (the thresholds come from them) and other test images: none of these sits on a threshold."
    xc, x = torch.randn(2, 64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return xc, x

CASES = [('static', {}), ('static', dict(backbone='vgg')), ('branchy', dict(policy='confidence')), ('moe', {}), ('moe', dict(k=2)),
         ('dynmoe', {}), ('dynmoe', dict(route='noisy', k=2)), ('dynmoe', dict(policy='budget_gater', exit_hidden=16)),
         ('dynmoe', dict(exit_hidden=32, expert_width=[0.25, 0.5, 0.5, 1.0])), ('dynmoe', dict(backbone='vgg')),
         ('dynmoe', dict(zero_last_bn=True)), ('static', dict(backbone='air')),
         ('dynmoe', dict(backbone='air', expert_width=0.25))]

@pytest.mark.parametrize('kind,kw', CASES, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in CASES])
def test_folded_infers_the_same(kind, kw, images):
    "Every kind, backbone, policy, routing and head: same exits, experts and MACs, logits within 1e-4; no BN left."
    kw = dict(kw)
    zero = kw.pop('zero_last_bn', False)
    torch.manual_seed(0)   # the conv weights come from the global generator: the same network whatever ran before
    m = randomise(DynNet(kind, **kw), 3, zero_bias=False)
    if zero:   # the experts' last BN as initialised (gamma = 0: identity residual), in every block of every stage
        for body in m.bodies:
            for experts in body.blocks:
                for e in experts: nn.init.zeros_(e.bn2.weight)
    xc, x = images
    with torch.no_grad(): thr = m(xc).exit_scores.median(0).values if m.has_exits else None
    f = fold_bn(m)
    a, b = m.infer(x, thr), f.infer(x, thr)
    assert torch.equal(a.exit, b.exit) and torch.equal(a.experts, b.experts) and torch.equal(a.macs, b.macs)
    assert (a.logits - b.logits).abs().max() < 1e-4
    if m.has_exits: assert len(a.exit.unique()) == m.K, a.exit.bincount()   # the thresholds reach every exit
    assert not _bns(f) and _bns(m)
    assert f.macs_table() == m.macs_table()

def test_folded_batch_one_and_channels_last(images):
    "One image at a time and channels-last layout give what the whole batch gives."
    torch.manual_seed(0)
    m = randomise(DynNet('dynmoe'), 4, zero_bias=False).to(memory_format=torch.channels_last)
    xc, x = images
    with torch.no_grad(): thr = m(xc).exit_scores.median(0).values
    f = fold_bn(m)
    assert f.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    big = f.infer(x.contiguous(memory_format=torch.channels_last), thr)
    ref = m.infer(x, thr)
    assert torch.equal(big.exit, ref.exit) and (big.logits - ref.logits).abs().max() < 1e-4
    for j in (0, 5, 63):
        one = f.infer(x[j:j + 1], thr)
        assert one.exit[0] == big.exit[j] and torch.equal(one.experts[0], big.experts[j])
        assert (one.logits[0] - big.logits[j]).abs().max() < 1e-4

def test_original_unchanged():
    "Folding works on a copy: the original's parameters and buffers are untouched."
    m = randomise(DynNet('dynmoe'), 5)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    f = fold_bn(m)
    after = m.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not m.training and not f.training
    assert not any(p.requires_grad for p in f.parameters()) and all(p.requires_grad for p in m.parameters())

@pytest.mark.parametrize('conv_bias,affine', [(False, True), (True, True), (False, False), (True, False)])
def test_fold_conv_bn(conv_bias, affine):
    "One pair: with or without a conv bias and BN affine parameters, zero gammas included."
    g = torch.Generator().manual_seed(6)
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(6, affine=affine)
    bn.running_mean.normal_(0, 1, generator=g)
    bn.running_var.uniform_(0.1, 2, generator=g)
    if affine:
        bn.weight.data.normal_(0, 1, generator=g)
        bn.weight.data[:2] = 0
        bn.bias.data.normal_(0, 1, generator=g)
    bn.eval()
    z = torch.randn(3, 4, 8, 8, generator=g)
    with torch.no_grad():
        want = bn(conv(z))
        got = fold_conv_bn(conv, bn)(z)
    assert (got - want).abs().max() < 1e-5

def test_clear_errors():
    "Training mode, a BN that follows no conv, a BN without running statistics, a channel mismatch."
    m = DynNet('static')
    with pytest.raises(RuntimeError, match='call model.eval'): fold_bn(m.train())
    with pytest.raises(ValueError, match='follow no conv'): fold_bn(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)).eval())
    with pytest.raises(ValueError, match='without running statistics'):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ValueError, match='batch-norm of 4 channels after a conv of 5'): fold_conv_bn(nn.Conv2d(3, 5, 1), nn.BatchNorm2d(4))

def test_fold_airres_pool_trunk():
    "airres's trunks are conv - max-pool - BN: folded where every BN scale is positive, kept (and still exact) elsewhere."
    torch.manual_seed(0)
    m = DynNet('dynmoe', 'airres', expert_width=0.25, policy='exit_then_route')
    randomise(m)
    with torch.no_grad(): m.trunks[1][2].weight[0] = -0.5          # one negative scale: max-pool does not commute
    m.eval()
    f = fold_bn(m)
    kept = [n for n, mod in f.named_modules() if isinstance(mod, nn.BatchNorm2d)]
    assert kept == ['trunks.1.2'], kept
    x = torch.randn(8, 3, 32, 32)
    a, b = m.infer(x), f.infer(x)
    assert torch.equal(a.exit, b.exit) and torch.equal(a.experts, b.experts)
    assert (a.logits - b.logits).abs().max() < 1e-4
