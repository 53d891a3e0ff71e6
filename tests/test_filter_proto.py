"The batch filters of benchmarks/filter_proto.py: which images of a drawn batch reach the main network."
import copy, types
import torch, torch.nn as nn, torch.nn.functional as F
import fastcore.test as ft
from dynmoe.data import FastLoader
from dynmoe.train import Config

def _loader(n=40, bs=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return FastLoader(x, y, bs, train=True, pad=0, flip=False, seed=0), x, y

def _plain(x):   # what FastLoader makes of uint8 images with its default mean 0.5 and std 0.25, no augmentation
    return (x.float() / 255 - 0.5) / 0.25

def test_stale_filter_keeps_the_highest_last_losses(load_benchmark):
    fp = load_benchmark('filter_proto')
    dl, x, y = _loader()
    f = fp.StaleFilter(dl, keep=4, label_smoothing=0.0)
    ft.test_eq(len(f), len(dl))
    seen, g = set(), torch.Generator().manual_seed(1)
    for epoch in range(2):
        dl.set_epoch(epoch)
        order = dl.order(epoch)
        for k, (xb, yb) in enumerate(f):
            ft.test_eq(len(yb), 4)
            unseen = [i for i in order[k*dl.bs:(k + 1)*dl.bs].tolist() if i not in seen]
            kept = set(f.cur.tolist())
            assert len(kept & set(unseen)) == min(4, len(unseen)), "never-seen images go first"
            assert torch.allclose(xb.float(), _plain(x[f.cur]), atol=1e-5)   # the batch is the images `cur` names
            ft.test_eq(yb, y[f.cur])
            seen |= kept
            f.record(torch.randn(4, 10, generator=g), yb)
            ft.test_eq(f.cur, None)   # recorded once: an evaluation forward afterwards records nothing
    # with every loss known, each batch keeps its `keep` highest
    f.loss = torch.arange(len(y), dtype=torch.float32).flip(0)   # image i has loss 39 - i
    order = dl.order(dl.epoch)
    for k, (xb, yb) in enumerate(f):
        idx = order[k*dl.bs:(k + 1)*dl.bs]
        ft.test_eq(set(f.cur.tolist()), set(idx.sort().values[:4].tolist()))   # the lowest indices: highest losses
        f.cur = None

class _Tiny(nn.Module):
    "A proxy stand-in: one linear layer on the mean colour, returning a `NetOut`-like object."
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)
    def forward(self, x): return types.SimpleNamespace(logits=[self.fc(x.float().mean((2, 3)))])

def test_proxy_filter_keeps_the_proxys_hardest_and_trains_it_every_nth_batch(load_benchmark):
    fp = load_benchmark('filter_proto')
    dl, x, y = _loader()
    torch.manual_seed(0)
    proxy = _Tiny()
    opt = torch.optim.SGD(proxy.parameters(), lr=0.1)
    cfg = Config(epochs=1, lr=0.5, warmup_epochs=0, label_smoothing=0.0)
    f = fp.ProxyFilter(dl, proxy, opt, cfg, keep=3, every=2, device=torch.device('cpu'))
    order, it = dl.order(dl.epoch), iter(f)
    for k in range(len(f)):
        was = copy.deepcopy(proxy)   # the proxy as it scores batch k (its step on the batch comes after the scores)
        xb, yb = next(it)
        idx = order[k*dl.bs:(k + 1)*dl.bs]
        with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
            loss = F.cross_entropy(was(_plain(x[idx])).logits[-1].float(), y[idx], reduction='none')
        ft.test_eq(len(yb), 3)
        hard = idx[loss.topk(3).indices.sort().values]   # kept in their order in the drawn batch
        ft.test_eq(yb, y[hard])
        assert torch.allclose(xb.float(), _plain(x[hard]), atol=1e-5)   # the images too, in their batch order
        stepped = not torch.equal(was.fc.weight, proxy.fc.weight)
        ft.test_eq(stepped, k % 2 == 0)   # every `every`-th batch, starting with the first
