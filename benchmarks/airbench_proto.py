r"""A standalone prototype of airbench94's network and recipe (Jordan 2024), written for dynmoe to find out what the
`fast` preset should be: `--body air` is airbench94's shape (GELU, one conv per group after the pool, frozen BN
weights, max-pool head scaled by 1/9); `--body bneck` is dynmoe's `airres` (ReLU, a residual body of two half-width
convs of the same MACs); `--body res` a narrower residual variant. Same data split as dynmoe (45,000 training
images, 5,000 held out), bf16 autocast, channels-last. Not part of the package: dynmoe's own code path is
`benchmarks/recipe_ablation.py`; this script is kept so that the numbers it produced stay reproducible.

    python benchmarks/airbench_proto.py --epochs 8 --out data/results/recipe/proto_air_e8.json
    python benchmarks/airbench_proto.py --body bneck --act relu --epochs 8 --out data/results/recipe/proto_bneck_e8.json
    python benchmarks/airbench_proto.py --epochs 7.5 --val 0 --muon 0.24 --out data/results/recipe/proto_air_muon_e7.5_val0.json
"""
import torch, time, math, json, sys, argparse, torch.nn as nn, torch.nn.functional as F
from dynmoe.data import get_dataset, augment_batch
p = argparse.ArgumentParser()
p.add_argument('--epochs', type=float, default=8); p.add_argument('--widths', default='64,256,256')
p.add_argument('--bs', type=int, default=1024); p.add_argument('--lr', type=float, default=11.5)
p.add_argument('--wd', type=float, default=0.0153); p.add_argument('--ls', type=float, default=0.2)
p.add_argument('--val', type=int, default=5000); p.add_argument('--threads', type=int, default=2)
p.add_argument('--seed', type=int, default=0); p.add_argument('--no_lookahead', action='store_true')
p.add_argument('--no_whiten', action='store_true'); p.add_argument('--no_altflip', action='store_true')
p.add_argument('--data-dir', default='data'); p.add_argument('--act', default='gelu'); p.add_argument('--body', default='air'); p.add_argument('--out', default='')
p.add_argument('--muon', type=float, default=0.0, help='> 0: conv kernels take dynmoe.train.MuonSGD steps at this peak lr')
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
ds = get_dataset('cifar10', a.data_dir, val_size=a.val, seed=0)
W = [int(v) for v in a.widths.split(',')]
Act = dict(gelu=nn.GELU, relu=nn.ReLU)[a.act]
def bn(c, zero=False):
    if a.body != 'air':
        b = nn.BatchNorm2d(c, momentum=0.4)
        if zero: nn.init.zeros_(b.weight)
        return b
    b = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4); b.weight.requires_grad_(False); return b
def conv(ci, co):
    c = nn.Conv2d(ci, co, 3, padding=1, bias=False); nn.init.dirac_(c.weight.data[:ci]) if co >= ci else None; return c
class Res(nn.Module):
    def __init__(s, c, h=None):
        super().__init__(); h = h or c
        s.f = nn.Sequential(nn.Conv2d(c, h, 3, padding=1, bias=False), bn(h), Act(), nn.Conv2d(h, c, 3, padding=1, bias=False), bn(c, True)); s.a = Act()
    def forward(s, x): return s.a(x + s.f(x))
def grp(ci, co):
    if a.body == 'air': return nn.Sequential(conv(ci, co), nn.MaxPool2d(2), bn(co), Act(), conv(co, co), bn(co), Act())
    if a.body == 'bneck': return nn.Sequential(conv(ci, co), nn.MaxPool2d(2), bn(co), Act(), Res(co, co // 2))
    return nn.Sequential(conv(ci, co), nn.MaxPool2d(2), bn(co), Act(), Res(co))
whiten = nn.Conv2d(3, 24, 2, bias=True)
head = [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(W[2], 10, bias=a.body != 'air')] if a.body in ('air', 'bneck') else \
       [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(W[2], 10)]
net = nn.Sequential(whiten, Act(), grp(24, W[0]), grp(W[0], W[1]), grp(W[1], W[2]), *head)
SCALE = 1/9
mean, std = torch.tensor(ds.mean).view(1,3,1,1), torch.tensor(ds.std).view(1,3,1,1)
def norm(u8): return ((u8.float()/255 - mean)/std).contiguous(memory_format=torch.channels_last)
# whitening init from 2x2 patches of 5000 training images
if not a.no_whiten:
    x = norm(ds.train.x[:5000])
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    cov = patches.T @ patches / len(patches)
    ev, V = torch.linalg.eigh(cov)
    filt = (V.T / torch.sqrt(ev[:, None] + 5e-4)).flip(0).view(12, 3, 2, 2)
    whiten.weight.data = torch.cat([filt, -filt]).float()
whiten.weight.requires_grad_(False)
net = net.to(memory_format=torch.channels_last)
ntr = len(ds.train.y); spe = ntr // a.bs; total = int(a.epochs * spe)
mom = 0.85; kscale = 1024 * (1 + 1/(1 - mom))
lr = a.lr / kscale; wd = a.wd * a.bs / kscale
bn_ids = {id(m.bias) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
biases = [p_ for p_ in net.parameters() if id(p_) in bn_ids]
others = [p_ for p_ in net.parameters() if p_.requires_grad and p_.ndim >= 2 and not (a.muon and p_.ndim == 4)]
kernels = [p_ for p_ in net.parameters() if p_.requires_grad and p_.ndim == 4] if a.muon else []
plain = [p_ for p_ in net.parameters() if p_.requires_grad and p_.ndim < 2 and id(p_) not in bn_ids and p_ is not whiten.bias]
wb = [whiten.bias]
groups = [dict(params=others, lr=lr, weight_decay=wd/lr), dict(params=biases, lr=lr*64, weight_decay=wd/(lr*64)),
          dict(params=wb, lr=lr*64, weight_decay=wd/(lr*64)), dict(params=plain, lr=lr, weight_decay=0),
          dict(params=kernels, lr=a.muon, weight_decay=0, momentum=0.0, muon=True, muon_momentum=0.6)]
groups = [g_ for g_ in groups if g_['params']]
for g in groups: g['base'] = g['lr']
from dynmoe.train import MuonSGD   # plain SGD for every group not marked muon=True
opt = MuonSGD(groups, momentum=mom, nesterov=True)
def sched(step):
    w = int(0.23 * total)
    return 0.2 + 0.8 * step / w if step < w else 1 - (1 - 0.07) * (step - w) / (total - w)
ema = [p_.detach().clone() for p_ in net.state_dict().values()]
xtr = ds.train.x.contiguous(memory_format=torch.channels_last); ytr = ds.train.y
sc = (1/(255*torch.tensor(ds.std))); bi = -torch.tensor(ds.mean)/torch.tensor(ds.std)
g = torch.Generator().manual_seed(a.seed)
flip0 = torch.rand(ntr, generator=g) < 0.5
step = 0; t0 = time.perf_counter(); log = []
ep = 0
while step < total:
    perm = torch.randperm(ntr, generator=g)
    if a.no_altflip: fl = torch.rand(ntr, generator=g) < 0.5
    else: fl = flip0 if ep % 2 == 0 else ~flip0
    if ep == 3: whiten.bias.requires_grad_(False)
    net.train()
    for k in range(spe):
        if step >= total: break
        idx = perm[k*a.bs:(k+1)*a.bs]
        shift = torch.randint(-2, 3, (len(idx), 2), generator=g)
        xb = augment_batch(xtr, idx, shift, fl[idx], sc, bi)
        for gr in opt.param_groups: gr['lr'] = gr['base'] * sched(step)
        with torch.autocast('cpu', torch.bfloat16):
            out = net(xb) * SCALE
        loss = F.cross_entropy(out.float(), ytr[idx], label_smoothing=a.ls, reduction='sum')
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        step += 1
        if not a.no_lookahead and step % 5 == 0:
            d = 0.95**5 * (step/total)**3
            with torch.no_grad():
                for e, p_ in zip(ema, net.state_dict().values()):
                    if p_.dtype.is_floating_point: e.lerp_(p_, 1 - d); p_.copy_(e)
    ep += 1
    log.append(dict(epoch=ep, step=step, s=time.perf_counter()-t0, loss=loss.item()/len(idx)))
    print(log[-1], flush=True)
if not a.no_lookahead:
    with torch.no_grad():
        for e, p_ in zip(ema, net.state_dict().values()):
            if p_.dtype.is_floating_point: p_.copy_(e)
train_s = time.perf_counter() - t0
net.eval()
def acc(split, tta=False):
    c = 0
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
        for i in range(0, len(split.y), 1000):
            x = norm(split.x[i:i+1000]); o = net(x).float()
            if tta: o = o + net(x.flip(-1)).float()
            c += (o.argmax(1) == split.y[i:i+1000]).sum().item()
    return c / len(split.y)
res = dict(args=vars(a), train_s=train_s, test=acc(ds.test), test_tta=acc(ds.test, True),
           valid=acc(ds.valid) if len(ds.valid.y) else None, log=log)
print(json.dumps({k: v for k, v in res.items() if k != 'log'}))
if a.out:
    from dynmoe.core import save_results
    save_results(a.out, res, seed=a.seed)
