"Unit tests for dynmoe.models additions: the early exits' gradient scale (exit_grad) and the exit-then-route rule."
import pytest
import torch
import torch.nn.functional as F
import fastcore.test as ft
from dynmoe.models import DynNet, scale_grad, randomise

def test_scale_grad_forward_and_backward():
    x = torch.randn(3, 4, requires_grad=True)
    for a in (1.0, 0.25):
        x.grad = None
        y = scale_grad(x, a)
        assert torch.equal(y, x)
        (2 * y).sum().backward()
        ft.test_close(x.grad, torch.full_like(x, 2 * a))
    y0 = scale_grad(x, 0.0)
    assert torch.equal(y0, x)
    assert not y0.requires_grad   # 0: detached

def test_exit_grad_zero_trains_the_trunk_like_the_static_net():
    "With exit_grad=0 the early exits' losses give the trunk no gradient: BranchyNet's final exit trains as static."
    torch.manual_seed(0)
    b = DynNet('branchy', exit_grad=0.0).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = b(x)
    sum(F.cross_entropy(z, y) for z in out.logits[:-1]).backward()   # early exits only
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in [*b.stem.parameters(), *b.trunks.parameters()])
    assert b.exits[0].fc.weight.grad.abs().sum() > 0

def test_exit_grad_checked():
    with pytest.raises(ValueError, match=r'exit_grad must lie in \[0, 1\]'): DynNet('branchy', exit_grad=1.5)

def test_exit_then_route_infer_equals_reference():
    "The exit-then-route network's fast path equals its naive reference at the exit each image took."
    torch.manual_seed(0)   # conv weights from the global generator: the same network whatever ran before
    g = torch.Generator().manual_seed(0)
    m = randomise(DynNet('dynmoe', policy='exit_then_route'), g, zero_bias=False)
    x = torch.randn(32, 3, 32, 32, generator=g)
    with torch.no_grad():
        ref = m(x, reference=True)
        thr = ref.exit_scores.median(0).values
        fast = m.infer(x, thr)
    assert len(fast.exit.unique()) == 3
    for j in range(len(x)): ft.test_close(fast.logits[j], ref.logits[fast.exit[j]][j], eps=1e-4)
