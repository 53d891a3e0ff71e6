"Unit tests for dynmoe.gating: top-k rules, the three gate kinds, and the load-balancing losses."
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import fastcore.test as ft
from dynmoe.core import count_macs, autocast
from dynmoe.moe import combine_matrix
from dynmoe.gating import (topk_gate, GateOut, noisy_topk_load, gumbel_topk_st, Gate,
                           cv_squared, importance_loss, load_loss, switch_loss, z_loss)

def gen(seed=0): return torch.Generator().manual_seed(seed)

# ---- topk_gate -------------------------------------------------------------------------

def dense_reference(logits, k):
    "Shazeer Eqs. 3, 5: mask all but the k largest to -inf, softmax over all E."
    kth = logits.sort(dim=1, descending=True).values[:, k-1:k]
    return logits.masked_fill(logits < kth, float('-inf')).softmax(1)

@pytest.mark.parametrize('k', [1, 2, 3, 6])
def test_topk_gate_matches_dense_reference(k):
    l = torch.randn(50, 6, generator=gen(k))
    w, idx = topk_gate(l, k)
    ft.test_eq(w.shape, (50, k)); ft.test_eq(idx.dtype, torch.long)
    ft.test_close(combine_matrix(w, idx, 6), dense_reference(l, k))
    ft.test_eq(idx, l.topk(k, dim=1).indices)
    assert (w[:, :-1] >= w[:, 1:]).all()                     # largest first

def test_topk_gate_ties_go_to_lower_index():
    ft.test_eq(topk_gate(torch.zeros(3, 5), 2)[1], torch.tensor([[0, 1]] * 3))
    ft.test_eq(topk_gate(torch.tensor([[1., 3, 3, 0, 3]]), 2)[1], torch.tensor([[1, 2]]))
    ft.test_close(topk_gate(torch.zeros(3, 5), 2)[0], torch.full((3, 2), 0.5))

def test_topk_gate_renorm_false_keeps_probabilities_and_gradient():
    l = torch.randn(7, 4, generator=gen(1), requires_grad=True)
    w, idx = topk_gate(l, 1)
    ft.test_eq(w.detach(), torch.ones(7, 1))
    ft.test_eq(torch.autograd.grad(w.sum(), l)[0], torch.zeros(7, 4))
    w, idx = topk_gate(l, 2, renorm=False)
    ft.test_close(w.detach(), l.softmax(1).gather(1, idx).detach())
    assert torch.autograd.grad(w.sum(), l)[0].abs().sum() > 0

@pytest.mark.parametrize('bad,msg', [
    (lambda: topk_gate(torch.randn(2, 4), 0), 'k must be an int in [1, E=4]'),
    (lambda: topk_gate(torch.randn(2, 4), 5), 'k must be an int in [1, E=4]'),
    (lambda: topk_gate(torch.randn(2, 4), True), 'k must be an int'),
    (lambda: topk_gate(torch.randn(2, 4, 1), 1), 'must be (B, E)'),
    (lambda: topk_gate(torch.randn(4), 1), 'must be (B, E)'),
    (lambda: topk_gate([[0., 1.]], 1), 'must be a Tensor'),
    (lambda: topk_gate(torch.tensor([[0., float('nan')]]), 1), 'NaN'),
])
def test_topk_gate_errors(bad, msg): ft.test_fail(bad, contains=msg)

# ---- noisy top-k load --------------------------------------------------------------------

def load_reference(clean, noisy, std, k):
    B, E = clean.shape
    P = torch.zeros(B, E)
    for b in range(B):
        for i in range(E):
            others = torch.cat([noisy[b, :i], noisy[b, i+1:]])
            P[b, i] = torch.special.ndtr((clean[b, i] - others.sort(descending=True).values[k-1]) / std[b, i])
    return P.sum(0)

@pytest.mark.parametrize('k', [1, 2, 3])
def test_noisy_load_matches_loop(k):
    g = gen(k)
    clean = torch.randn(12, 5, generator=g); std = F.softplus(torch.randn(12, 5, generator=g))
    noisy = clean + torch.randn(12, 5, generator=g) * std
    ft.test_close(noisy_topk_load(clean, noisy, std, k), load_reference(clean, noisy, std, k))

def test_noisy_load_is_the_expected_count():
    "Averaged over noise draws, the smooth load equals the average number of images each expert receives."
    g = gen(3)
    clean = torch.randn(8, 4, generator=g); std = 0.5 + torch.rand(8, 4, generator=g)
    loads, counts = [], []
    for _ in range(3000):
        noisy = clean + torch.randn(8, 4, generator=g) * std
        loads.append(noisy_topk_load(clean, noisy, std, 2))
        counts.append(torch.bincount(noisy.topk(2, dim=1).indices.flatten(), minlength=4).float())
    ft.test_close(torch.stack(loads).mean(0), torch.stack(counts).mean(0), eps=0.15)

def test_noisy_load_k_equals_e_is_constant():
    c = torch.randn(6, 3)
    ft.test_eq(noisy_topk_load(c, c, torch.ones(6, 3), 3), torch.full((3,), 6.))

# ---- Gumbel straight-through ---------------------------------------------------------------

def test_gumbel_k1_is_torch_gumbel_softmax_hard():
    l = torch.randn(9, 5, requires_grad=True); c = torch.randn(9, 5)
    torch.manual_seed(11); ours, idx, soft = gumbel_topk_st(l, 1, tau=0.7)
    torch.manual_seed(11); ref = F.gumbel_softmax(l, tau=0.7, hard=True)
    ft.test_close(ours.detach(), ref.detach())
    ft.test_close(torch.autograd.grad((ours * c).sum(), l)[0], torch.autograd.grad((ref * c).sum(), l)[0])
    ft.test_eq(idx[:, 0], ref.argmax(1))

def test_gumbel_max_samples_the_softmax():
    l = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, 4)
    _, idx, _ = gumbel_topk_st(l, 1, generator=gen(5))
    ft.test_close(torch.bincount(idx[:, 0], minlength=4) / 20000., l[0].softmax(0), eps=0.015)

@pytest.mark.parametrize('k', [1, 2, 4])
def test_gumbel_forward_is_sparse_backward_is_dense(k):
    l = torch.randn(16, 4, requires_grad=True)
    comb, idx, soft = gumbel_topk_st(l, k, tau=0.5, generator=gen(k))
    ft.test_eq((comb.detach() > 0).sum(1), torch.full((16,), k))
    ft.test_close(comb.detach().sum(1), torch.ones(16))
    ft.test_close(soft.detach().sum(1), torch.ones(16))
    g, = torch.autograd.grad((comb * torch.randn(16, 4)).sum(), l)
    if k < 4: assert (g.abs() > 0).all()                     # every logit gets a signal

# ---- Gate ------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', Gate.kinds)
@pytest.mark.parametrize('k', [1, 2, 4])
@pytest.mark.parametrize('training', [True, False])
def test_gate_outputs(kind, k, training):
    gate = Gate(16, 4, k=k, kind=kind).train(training)
    nn.init.normal_(gate.proj.weight, std=0.3)
    x = torch.randn(10, 16, generator=gen(k)).relu()
    o = gate(x)
    assert isinstance(o, GateOut)
    for f, shape in [('logits', (10, 4)), ('probs', (10, 4)), ('weights', (10, k)), ('idx', (10, k)), ('combine', (10, 4))]:
        ft.test_eq(getattr(o, f).shape, shape)
    ft.test_eq(o.idx.dtype, torch.long)
    ft.test_eq(o.combine.detach().gather(1, o.idx), o.weights.detach())
    ft.test_eq(int((o.combine.detach() != 0).sum()), 10 * k)
    ft.test_close(o.probs.detach().sum(1), torch.ones(10))
    ft.test_close(o.logits.detach(), gate.proj(x).detach())
    ft.test_eq(o.load is not None, kind == 'noisy' and training)
    if o.load is not None: ft.test_eq(o.load.shape, (4,))

@pytest.mark.parametrize('kind', Gate.kinds)
def test_gate_eval_is_deterministic_and_clean(kind):
    gate = Gate(16, 4, k=2, kind=kind).eval()
    nn.init.normal_(gate.proj.weight, std=0.3)
    x = torch.randn(10, 16)
    o1, o2 = gate(x), gate(x)
    ft.test_eq(o1.idx, o2.idx); ft.test_eq(o1.weights.detach(), o2.weights.detach())
    ft.test_eq(o1.idx, topk_gate(gate.proj(x).detach() / (gate.tau if kind == 'gumbel' else 1), 2)[1])

@pytest.mark.parametrize('kind', Gate.kinds)
def test_gate_gets_task_gradient_at_k1(kind):
    gate = Gate(16, 4, k=1, kind=kind).train()
    x = torch.randn(10, 16).relu()
    o = gate(x)
    (o.combine * torch.randn(10, 4)).sum().backward()
    assert gate.proj.weight.grad.abs().sum() > 0

def test_gate_init():
    x = torch.randn(256, 32).relu()
    for kind in ('noisy', 'gumbel'):
        g = Gate(32, 4, kind=kind)
        ft.test_eq(g.proj.weight.detach(), torch.zeros(4, 32)); ft.test_eq(g.proj.bias.detach(), torch.zeros(4))
        usage = torch.bincount(g.train()(x).idx.flatten(), minlength=4) / 256
        assert usage.min() > 0.1, (kind, usage)               # the noise routes at random at first
    g = Gate(32, 4, kind='noisy'); ft.test_eq(g.noise.weight.detach(), torch.zeros(4, 32))
    assert (Gate(32, 4)(x).probs - 0.25).abs().max() < 0.05   # 'topk': near-uniform probabilities

def test_gate_fp32_under_autocast():
    with autocast('cpu'):
        o = Gate(16, 4, k=2, kind='noisy').train()(torch.randn(3, 16).bfloat16())
    ft.test_eq({t.dtype for t in (o.logits, o.probs, o.weights, o.combine, o.load)}, {torch.float32})

@pytest.mark.parametrize('kind', Gate.kinds)
def test_gate_macs_match_flop_counter(kind):
    for training in (False, True):
        g = Gate(64, 4, kind=kind).train(training)
        ft.test_eq(count_macs(g, torch.zeros(7, 64)), 7 * g.macs(training))
    ft.test_eq(Gate(64, 4, kind=kind).macs(), 256)
    ft.test_eq(Gate(64, 4, kind=kind).macs(training=True), 512 if kind == 'noisy' else 256)

@pytest.mark.parametrize('bad,msg', [
    (lambda: Gate(8, 4, k=5), 'k must be an int in [1, n_experts=4]'),
    (lambda: Gate(8, 4, k=0), 'k must be an int'),
    (lambda: Gate(8, 4, kind='hash'), 'kind must be one of'),
    (lambda: Gate(8, 4, kind='gumbel', tau=0.0), 'tau must be > 0'),
    (lambda: Gate(8, 4, tau=-2), 'tau must be > 0'),
    (lambda: Gate(8, 4, kind='gumbel', renorm=False), 'always renormalises'),
    (lambda: Gate(8, 4)(torch.randn(2, 8, 4, 4)), 'Gate expects pooled features (B, 8)'),
    (lambda: Gate(8, 4)(torch.randn(2, 7)), 'got (2, 7)'),
    (lambda: Gate(8, 4)(torch.full((2, 8), float('nan'))), 'NaN'),
])
def test_gate_errors(bad, msg): ft.test_fail(bad, contains=msg)

# ---- losses ----------------------------------------------------------------------------------

def test_cv_squared():
    ft.test_eq(cv_squared(torch.ones(5)), 0.)
    ft.test_close(cv_squared(torch.tensor([4., 0, 0, 0, 0])), 4.)
    ft.test_close(cv_squared(torch.tensor([1., 2, 3])), torch.tensor([1., 2, 3]).var(unbiased=False) / 4)
    ft.test_eq(cv_squared(torch.tensor([3.])), 0.)
    ft.test_eq(cv_squared(torch.zeros(4)), 0.)
    ft.test_fail(lambda: cv_squared(torch.ones(2, 2)), contains='1-d tensor')

def balanced_and_collapsed(B=40, E=4):
    bal = (torch.full((B, E), 1 / E), torch.arange(B).remainder(E)[:, None])
    col = (F.one_hot(torch.zeros(B, dtype=torch.long), E).float(), torch.zeros(B, 1, dtype=torch.long))
    return bal, col

def test_losses_balanced_vs_collapsed():
    (bp, bi), (cp, ci) = balanced_and_collapsed()
    ft.test_eq(importance_loss(bp), 0.); ft.test_close(importance_loss(cp), 3.)
    ft.test_eq(load_loss(torch.full((4,), 10.)), 0.); ft.test_close(load_loss(torch.tensor([40., 0, 0, 0])), 3.)
    ft.test_close(switch_loss(bp, bi, 4), 1.); ft.test_close(switch_loss(cp, ci, 4), 4.)
    assert importance_loss(torch.tensor([[.4, .3, .2, .1]] * 40)) > 0

def switch_loop(probs, idx, E):
    B, k = idx.shape
    return E * sum(sum(int(e in idx[b].tolist()) for b in range(B)) / (B * k) * probs[:, e].mean() for e in range(E))

@pytest.mark.parametrize('k', [1, 2, 3])
def test_switch_loss_matches_loop(k):
    p = torch.randn(30, 5, generator=gen(k)).softmax(1)
    idx = p.topk(k, dim=1).indices
    ft.test_close(switch_loss(p, idx, 5), switch_loop(p, idx, 5))

def test_z_loss():
    ft.test_close(z_loss(torch.zeros(3, 4)), torch.log(torch.tensor(4.)) ** 2)
    l = torch.randn(16, 4, generator=gen(2))
    ft.test_close(z_loss(l), (torch.logsumexp(l, 1) ** 2).mean())
    assert z_loss(l) < z_loss(5 * l)

def test_losses_reach_gate_parameters():
    gate = Gate(16, 4, k=2, kind='noisy').train()
    nn.init.normal_(gate.proj.weight, std=0.2)
    x = torch.randn(64, 16, generator=gen(4)).relu()
    for loss in (lambda o: importance_loss(o.probs), lambda o: importance_loss(o.combine), lambda o: load_loss(o.load),
                 lambda o: switch_loss(o.probs, o.idx, 4), lambda o: z_loss(o.logits)):
        gate.zero_grad(); loss(gate(x)).backward()
        assert gate.proj.weight.grad.abs().sum() > 0
    gate.zero_grad(); load_loss(gate(x).load).backward()
    assert gate.noise.weight.grad.abs().sum() > 0

@pytest.mark.parametrize('kind,balance', [('topk', 'switch'), ('noisy', 'switch'), ('noisy', 'shazeer'), ('gumbel', 'switch')])
def test_balancing_loss_undoes_a_collapsed_router(kind, balance):
    "Start with every image on expert 0; minimising the balancing loss alone spreads the images out."
    torch.manual_seed(0)
    gate = Gate(16, 4, kind=kind).train()
    with torch.no_grad(): gate.proj.bias.copy_(torch.tensor([4., 0, 0, 0])); gate.proj.weight.normal_(0, 0.3)
    x = torch.randn(256, 16, generator=gen(6))
    usage = lambda: torch.bincount(gate.eval()(x).idx.flatten(), minlength=4) / 256
    assert usage()[0] > 0.9
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    for _ in range(200):
        o = gate.train()(x)
        loss = switch_loss(o.probs, o.idx, 4) if balance == 'switch' else importance_loss(o.probs) + load_loss(o.load)
        opt.zero_grad(); loss.backward(); opt.step()
    u = usage()
    assert u.max() < 0.5 and u.min() > 0.05, u

@pytest.mark.parametrize('bad,msg', [
    (lambda: importance_loss(torch.ones(4)), 'gates must be (B, E)'),
    (lambda: load_loss(None), 'only a noisy gate in training'),
    (lambda: switch_loss(torch.ones(4, 3), torch.zeros(4, 1, dtype=torch.long), 4), 'need probs (B, E=4)'),
    (lambda: switch_loss(torch.ones(4, 4), torch.zeros(3, 1, dtype=torch.long), 4), 'same B'),
    (lambda: switch_loss(torch.ones(4, 4), torch.zeros(4, dtype=torch.long), 4), 'idx (B, k)'),
    (lambda: z_loss(torch.ones(4)), 'logits must be (B, E)'),
])
def test_loss_errors(bad, msg): ft.test_fail(bad, contains=msg)
