"Property tests for dynmoe.exits beyond the notebook's examples: other shapes, dtypes, layouts and edge cases."
import math
import pytest
import torch
import torch.nn as nn
from dynmoe.core import count_macs, autocast
from dynmoe.exits import (ExitHead, CONF_FEATURES, confidence_features, confidence, exit_distribution, temper,
                          expected_cost, run_all_exits, first_exit, early_exit, exit_macs, fractions_for_q, fit_thresholds)


def cbr(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

def conv_net(K=3, n_classes=10, seed=0):
    "K conv stages with ExitHeads, eval mode, BN running stats randomised so outputs are not degenerate."
    torch.manual_seed(seed)
    chans = [3] + [8 * 2**k for k in range(K)]
    stages = nn.ModuleList([nn.Sequential(*cbr(chans[k], chans[k+1], 1 if k == 0 else 2)) for k in range(K)])
    heads = nn.ModuleList([ExitHead(chans[k+1], n_classes, None if k == K-1 else 8) for k in range(K)])
    for m in list(stages.modules()) + list(heads.modules()):
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 2)
        if isinstance(m, nn.Linear): nn.init.normal_(m.weight, std=3.0)
    return stages.eval(), heads.eval()

def mlp_net(K=4, d=12, n_classes=5, seed=0):
    "Stages need not be convolutions: Linear stages on (B, d) inputs."
    torch.manual_seed(seed)
    stages = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.Tanh()) for _ in range(K)])
    heads = nn.ModuleList([nn.Linear(d, n_classes) for _ in range(K)])
    return stages.eval(), heads.eval()

def midpoint_thresholds(conf, qs):
    "Per-exit thresholds halfway between two samples' confidences (no sample sits on a threshold)."
    out = []
    for k, q in enumerate(qs):
        s = conf[:, k].sort().values; i = min(max(int(q * len(s)), 1), len(s) - 1)
        out.append((s[i-1] + s[i]).item() / 2)
    return out


# --- exit distribution, temperature, cost ---

@pytest.mark.parametrize('K', [1, 2, 3, 6])
def test_exit_distribution_is_eq5(K):
    p = torch.rand(50, K - 1, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    pr = exit_distribution(p)
    assert pr.shape == (50, K)
    torch.testing.assert_close(pr.sum(1), torch.ones(50, dtype=torch.float64))
    for k in range(K):
        reach = torch.prod(1 - p[:, :k], dim=1)
        torch.testing.assert_close(pr[:, k], (p[:, k] if k < K - 1 else 1) * reach)

def test_exit_distribution_gradients_finite_at_0_and_1():
    p = torch.tensor([[1., 0.3, 0.], [0., 1., 0.5], [0.2, 0.2, 1.]], requires_grad=True)
    (exit_distribution(p) * torch.arange(1., 5.)).sum().backward()
    assert torch.isfinite(p.grad).all()

def test_temper_gradients_finite_with_exact_zeros():
    for T in (0.5, 2.0):
        logit = torch.tensor([[3., -1., 0.]], requires_grad=True)
        p = torch.cat([torch.sigmoid(logit), torch.zeros(1, 1)], 1)  # an exact zero entry
        a = temper(p / p.sum(), T)
        assert a[0, 3] == 0
        (a * torch.arange(4.)).sum().backward()
        assert torch.isfinite(logit.grad).all()

def test_temper_tiny_temperature_does_not_underflow():
    pr = torch.tensor([[0.3, 0.3, 0.4], [0.25, 0.25, 0.5]])
    a = temper(pr, 1e-3)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, torch.tensor([[0., 0, 1], [0, 0, 1]]))

def test_expected_cost_per_image_costs_and_grad():
    pr = exit_distribution(torch.rand(8, 2).requires_grad_())
    c = expected_cost(pr, torch.rand(8, 3))
    assert c.shape == (8,)
    c.sum().backward()


# --- confidence ---

@pytest.mark.parametrize('C', [2, 10, 100])
def test_confidence_in_unit_interval_and_limits(C):
    z = torch.randn(200, C) * 5
    for m in CONF_FEATURES:
        c = confidence(z, m)
        assert c.shape == (200,) and ((c >= 0) & (c <= 1)).all(), m
        torch.testing.assert_close(confidence(torch.zeros(3, C), m), torch.full((3,), 1 / C if m == 'maxprob' else 0.))
        onehot = torch.full((1, C), -1e4); onehot[0, 1] = 0
        torch.testing.assert_close(confidence(onehot, m), torch.ones(1))

def test_confidence_sharper_logits_are_more_confident():
    z = torch.randn(100, 10)
    for m in ('maxprob', 'entropy'):
        assert (confidence(3 * z, m) > confidence(z, m)).all(), m

def test_confidence_features_differentiable():
    z = torch.randn(4, 10, requires_grad=True)
    confidence_features(z).sum().backward()
    assert torch.isfinite(z.grad).all()

def test_confidence_features_entropy_matches_definition():
    z = torch.randn(16, 7)
    p = z.softmax(-1)
    torch.testing.assert_close(confidence_features(z)[:, 1], -(p * p.log()).sum(-1))

def test_confidence_type_error():
    with pytest.raises(TypeError, match='torch.Tensor'): confidence([[1., 2.]])


# --- early exit against the naive reference ---

@pytest.mark.parametrize('make,shape', [(conv_net, (40, 3, 16, 16)), (mlp_net, (40, 12))])
@pytest.mark.parametrize('measure', CONF_FEATURES)
def test_early_exit_matches_run_all_exits(make, shape, measure):
    stages, heads = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    K = len(heads)
    with torch.no_grad():
        ref = run_all_exits(stages, heads, x)
        conf = torch.stack([confidence(r, measure) for r in ref[:-1]], 1)
        thr = midpoint_thresholds(conf, [0.7, 0.5, 0.4][:K - 1])
        out, ex = early_exit(stages, heads, x, thr, measure)
    torch.testing.assert_close(ex, first_exit(conf, thr))
    assert len(ex.unique()) >= 2  # the test exercises compaction
    torch.testing.assert_close(out, torch.stack(ref)[ex, torch.arange(len(x))], atol=1e-4, rtol=1e-4)

def test_early_exit_batch_independence_every_image():
    stages, heads = conv_net()
    x = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        conf = torch.stack([confidence(r) for r in run_all_exits(stages, heads, x)[:-1]], 1)
        thr = midpoint_thresholds(conf, [0.6, 0.5])
        out, ex = early_exit(stages, heads, x, thr)
        for i in range(64):
            o1, e1 = early_exit(stages, heads, x[i:i+1], thr)
            assert e1.item() == ex[i].item()
            torch.testing.assert_close(o1[0], out[i], atol=1e-4, rtol=1e-4)

def test_early_exit_single_exit_network():
    stages, heads = mlp_net(K=1)
    x = torch.randn(5, 12)
    with torch.no_grad():
        out, ex = early_exit(stages, heads, x, [])
        torch.testing.assert_close(out, run_all_exits(stages, heads, x)[0])
    assert (ex == 0).all()

def test_early_exit_empty_batch():
    stages, heads = conv_net()
    with torch.no_grad(): out, ex = early_exit(stages, heads, torch.randn(0, 3, 16, 16), [0.5, 0.5])
    assert out.shape == (0, 10) and ex.shape == (0,) and ex.dtype == torch.long

class _AssertChannelsLast(nn.Module):
    def forward(self, x):
        assert x.is_contiguous(memory_format=torch.channels_last), 'compaction lost channels-last'
        return x

def test_early_exit_bf16_channels_last_self_consistent():
    stages, heads = conv_net()
    stages = nn.ModuleList([nn.Sequential(_AssertChannelsLast(), s) for s in stages]).to(memory_format=torch.channels_last)
    heads = heads.to(memory_format=torch.channels_last)
    x = torch.randn(48, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast('cpu'):
        conf = torch.stack([confidence(r) for r in run_all_exits(stages, heads, x)[:-1]], 1)
        thr = midpoint_thresholds(conf, [0.6, 0.5])
        out, ex = early_exit(stages, heads, x, thr)
    assert len(ex.unique()) >= 2
    c = confidence(out)
    for k in range(2):  # every image that left at exit k did so on the logits it returned
        assert (c[ex == k] >= thr[k]).all()

def test_early_exit_macs_are_the_sum_of_exit_macs():
    stages, heads = conv_net()
    x = torch.randn(32, 3, 16, 16)
    em = exit_macs(stages, heads, x)
    assert (em.diff() > 0).all()
    with torch.no_grad():
        conf = torch.stack([confidence(r) for r in run_all_exits(stages, heads, x)[:-1]], 1)
        thr = midpoint_thresholds(conf, [0.5, 0.5])
        _, ex = early_exit(stages, heads, x, thr)
        assert count_macs(early_exit, stages, heads, x, thr) == int(em[ex].sum())
        assert count_macs(run_all_exits, stages, heads, x) == 32 * int(em[-1])

@pytest.mark.parametrize('bad,msg', [([0.5], 'K-1 = 2'), ([[0.5, 0.5]], 'K-1 = 2'), ([0.5, 1.01], r'must lie in \[0, 1\]'),
                                     ([float('-inf'), 0.5], r'must lie in \[0, 1\]'), ([0.5, float('nan')], 'must not be NaN')])
def test_early_exit_bad_thresholds(bad, msg):
    stages, heads = conv_net()
    with pytest.raises(ValueError, match=msg): early_exit(stages, heads, torch.randn(2, 3, 16, 16), bad)

def test_early_exit_bad_input():
    stages, heads = conv_net()
    x = torch.randn(2, 3, 16, 16); x[1, 2, 3, 4] = float('inf')
    with pytest.raises(ValueError, match='NaN or inf'): early_exit(stages, heads, x, [0.5, 0.5])
    with pytest.raises(TypeError, match='torch.Tensor'): early_exit(stages, heads, [[1.]], [0.5, 0.5])
    with pytest.raises(TypeError, match='nn.Module'): early_exit([lambda x: x] * 3, heads, torch.randn(1, 3, 16, 16), [0.5, 0.5])


# --- threshold calibration ---

@pytest.mark.parametrize('q', [0.1, 0.33, 0.5, 0.9, 1.0])
def test_fit_thresholds_reproduces_q_schedule(q):
    conf = torch.rand(777, 4, generator=torch.Generator().manual_seed(int(q * 100)))
    f = fractions_for_q(q, 5)
    counts = first_exit(conf, fit_thresholds(conf, f)).bincount(minlength=5)
    assert ((counts - f * 777).abs() <= 1).all(), (counts, f * 777)
    assert counts.sum() == 777

def test_fit_thresholds_float64_and_ties():
    conf = torch.rand(100, 2, dtype=torch.float64)
    t = fit_thresholds(conf, [0.2, 0.3, 0.5])
    assert t.dtype == torch.float64
    tied = torch.full((100, 2), 0.5)  # ties: everyone passes together, documented behaviour
    counts = first_exit(tied, fit_thresholds(tied, [0.2, 0.3, 0.5])).bincount(minlength=3)
    assert counts.tolist() == [100, 0, 0]

def test_fit_thresholds_errors():
    conf = torch.rand(10, 2)
    with pytest.raises(ValueError, match='non-empty'): fit_thresholds(torch.rand(0, 2), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match='NaN'): fit_thresholds(torch.full((3, 2), float('nan')), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match='sum to 1'): fit_thresholds(conf, [0.2, 0.3, 0.6])
    with pytest.raises(ValueError, match='K = 3'): fit_thresholds(conf, [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match='q must be'): fractions_for_q(1.5, 3)


# --- exit heads ---

def test_exit_head_odd_and_tiny_feature_maps():
    for hw in (1, 3, 7):
        for hidden in (None, 4):
            assert ExitHead(8, 3, hidden).eval()(torch.randn(2, 8, hw, hw)).shape == (2, 3)

def test_exit_head_rejects_bool_and_float_sizes():
    with pytest.raises(ValueError, match='in_ch'): ExitHead(True, 3)
    with pytest.raises(ValueError, match='n_classes'): ExitHead(8, 3.0)
