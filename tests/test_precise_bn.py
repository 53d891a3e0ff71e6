"The pieces of benchmarks/precise_bn.py: which images it averages over, and that the statistics are their average."
import pytest, torch, torch.nn as nn
import fastcore.test as ft

def test_parse_images(load_benchmark):
    pb = load_benchmark('precise_bn')
    ft.test_eq(pb.parse_images('2000,5000'), [2000, 5000])
    for bad in ['', '0', '-5', '2000,x', '1.5']:
        with pytest.raises(ValueError, match='positive ints'): pb.parse_images(bad)

def test_bn_batches(load_benchmark):
    pb = load_benchmark('precise_bn')
    x = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8)
    bs = pb.bn_batches(x, 25, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    ft.test_eq([len(b) for b in bs], [10, 10, 5])
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in bs)
    again = pb.bn_batches(x, 25, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    for b, c in zip(bs, again): ft.test_eq(b, c)   # the same draw for the same seed
    # 25 distinct images of the 30: each normalised image matches one source image
    src = (x.float() / 255 - 0.5) / 0.25
    flat = torch.cat(bs).flatten(1)
    hits = (flat[:, None] - src.flatten(1)[None]).abs().amax(-1) < 1e-5
    ft.test_eq(hits.sum(1), torch.ones(25, dtype=torch.long)); ft.test_eq(hits.any(0).sum().item(), 25)
    with pytest.raises(ValueError, match='has 30'): pb.bn_batches(x, 31, 10, (0.5,) * 3, (0.25,) * 3)

def test_precise_bn_is_the_average_over_the_images(load_benchmark):
    pb = load_benchmark('precise_bn')
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5, momentum=0.4), nn.ReLU())
    batches = [torch.randn(8, 3, 6, 6) + 2 for _ in range(4)]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = pb.precise_bn(net, batches, amp=False)
    assert not m.training
    with torch.no_grad(): h = net[0](torch.cat(batches))   # what the BatchNorm layer sees, all 32 images
    ft.test_close(m[1].running_mean, h.mean((0, 2, 3)), eps=1e-5)
    # the variance is the average of the per-batch (unbiased) variances: close to the pooled one for these batches
    ft.test_close(m[1].running_var, h.var((0, 2, 3)), eps=0.1)
    ft.test_eq(m[1].momentum, 0.4)   # update_bn puts the momentum back
    for k, v in net.state_dict().items(): ft.test_eq(v, before[k])   # the original model is untouched
    ft.test_ne(m[1].running_mean, before['1.running_mean'])
