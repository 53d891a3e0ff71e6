"""Training speed of `dynmoe.train.fit`: images/s and achieved MAC/s per training step, bf16 autocast vs fp32.

Usage: python benchmarks/bench_train.py                        # ResNet-20, batch 128 -> data/results/bench_train.json
       python benchmarks/bench_train.py --model static,dynmoe --match-macs --batch-size 256 --threads 1   # + the static net of equal MACs
       python benchmarks/bench_train.py --preset smoke         # seconds: checks the script runs
       python benchmarks/bench_train.py --model resnet20 --batch-size 256 --steps 30 --threads 16

What is timed: the real training loop. `fit` runs one epoch over a loader that hands it the same
on-device batch `warmup + steps` times and stamps the clock each time a batch is requested, so the
gap between two stamps is one whole step of `fit` (forward under autocast, loss, NaN guard,
backward, SGD step, EMA update, metrics; `loss.item()` synchronises the device every step).
Quoted: the median over the `steps` gaps after `warmup`, with min and max.

Compute: forward MACs per image from `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs = 1 MAC,
convolutions and matrix products). A training step is counted as 3x the forward MACs (the backward
pass computes gradients for both activations and weights, about 2x the forward): an approximation,
stated in the results file. Achieved MAC/s = 3 x MACs/image x images/s.

`--model`: 'resnet20' (the CIFAR ResNet-20 of He et al. 2016, defined here) until dynmoe.models
exists; `build_model` is the hook for dynmoe's models. Speed is never asserted in tests.
"""
import time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from fastcore.script import call_parse
from dynmoe.core import amp_dtype, save_results, set_seed
from dynmoe.train import Config, fit, resolve_device

class Block(nn.Module):
    "Basic residual block: two 3x3 conv-BN, identity or 1x1-conv shortcut."
    def __init__(self, ci, co, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.BatchNorm2d(co)
        self.c2, self.b2 = nn.Conv2d(co, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co)
        self.short = nn.Sequential() if stride == 1 and ci == co else nn.Sequential(nn.Conv2d(ci, co, 1, stride, bias=False), nn.BatchNorm2d(co))
    def forward(self, x): return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))

def resnet20(n_classes=10, n=3, widths=(16, 32, 64)):
    "CIFAR ResNet-(6n+2): a 3x3 stem, three stages of n blocks, global pooling, linear classifier."
    layers, ci = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()], widths[0]
    for s, w in enumerate(widths):
        for b in range(n): layers.append(Block(ci, w, 2 if s and not b else 1)); ci = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ci, n_classes))

def build_model(name:str, n_classes:int=10)->tuple[nn.Module, object, object]:
    "The model to benchmark and its criterion and metric (None: fit's defaults)."
    if name == 'resnet20': return resnet20(n_classes), None, None
    if name.startswith('resnet20@'): return resnet20(n_classes, widths=tuple(int(w) for w in name[9:].split('/'))), None, None
    from dynmoe.models import DynNet, KINDS
    from dynmoe.losses import DynLoss
    from dynmoe.train import top1
    kind, _, backbone = name.partition(':')
    if kind not in KINDS: raise ValueError(f"unknown model {name!r}: 'resnet20' or KIND[:BACKBONE] with KIND in {KINDS}")
    net = DynNet(kind, backbone or 'resnet20', n_classes)
    return net, DynLoss(net, lam=1.0, kd=0.5), lambda out, y: top1(out.logits[-1], y)

class TimedBatches:
    "The same batch `n` times; stamps the clock whenever `fit` asks for a batch, so the gaps are whole training steps."
    def __init__(self, x, y, n): self.x, self.y, self.n, self.stamps = x, y, n, []
    def __len__(self): return self.n
    def __iter__(self):
        for _ in range(self.n):
            self.stamps.append(time.perf_counter()); yield self.x, self.y
        self.stamps.append(time.perf_counter())

def forward_macs(model, x)->float:
    "Useful forward MACs per image of a training forward (FlopCounterMode, 2 FLOPs per MAC; bucket padding excluded)."
    buckets = {m: m.bucket for m in model.modules() if hasattr(m, 'bucket')}
    for m in buckets: m.bucket = None   # exact expert sub-batches: count the work, not the padding
    with torch.no_grad(), FlopCounterMode(display=False) as fc: model.train()(x)
    for m, b in buckets.items(): m.bucket = b
    return fc.get_total_flops() / 2 / len(x)

def matched_static(target_macs:float)->str:
    "The `resnet20@w1/w2/w3` (stage widths in the ratio 1:2:4) whose forward MACs per image are closest to `target_macs`."
    x = torch.randn(2, 3, 32, 32)
    best = None
    for w in range(4, 65):
        m = forward_macs(resnet20(10, widths=(w, 2 * w, 4 * w)), x)
        if best is None or abs(m - target_macs) < abs(best[1] - target_macs): best = (w, m)
    return f'resnet20@{best[0]}/{2 * best[0]}/{4 * best[0]}'

PRESETS = dict(default=dict(batch_size=128, steps=20, warmup=5), smoke=dict(batch_size=16, steps=3, warmup=1))

@call_parse
def main(model:str='static,dynmoe', # comma-separated model names (see build_model): resnet20 or KIND[:BACKBONE]
         preset:str='default', # 'default' or 'smoke'; explicit options below override it
         batch_size:int=None, # images per step (default: preset's)
         steps:int=None, # timed steps (default: preset's)
         warmup:int=None, # untimed steps first (kernel selection, allocator)
         dtypes:str='bf16,fp32', # comma-separated: bf16 (autocast where it pays, see dynmoe.core.amp_dtype) and/or fp32
         device:str='auto', # 'auto', 'cpu', 'cuda', ...
         threads:int=0, # torch CPU threads (0: leave torch's default)
         seed:int=0,
         match_macs:bool=False, # also time the static ResNet-20 (narrower widths) whose forward MACs match the last model's
         out:str='data/results/bench_train.json', # results file
        ):
    "Median training-step time, images/s and achieved MAC/s of `fit` for `model`, bf16 vs fp32."
    if preset not in PRESETS: raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    bs, steps, warmup = batch_size or p['batch_size'], steps or p['steps'], warmup if warmup is not None else p['warmup']
    if threads: torch.set_num_threads(threads)
    dev = resolve_device(device)
    results = dict(device=str(dev), batch_size=bs, steps=steps, warmup=warmup, threads=torch.get_num_threads(),
                   macs_note='forward MACs from torch.utils.flop_counter (2 FLOPs = 1 MAC), expert padding excluded; a training step counted as 3x forward',
                   timing_note='whole fit() steps (forward, loss, backward, SGD, EMA, metrics, bi-level outer steps); median over steps after warmup',
                   models={})
    names = model.split(',')
    if match_macs:
        set_seed(seed); net, _, _ = build_model(names[-1])
        target = forward_macs(net, torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last))
        names.append(matched_static(target)); results['matched_static'] = dict(to=names[-2], model=names[-1])
        print(f"static network of equal executed MACs for {names[-2]} ({target/1e6:.2f} MMACs/img): {names[-1]}")
    for name in names:
        runs = {}
        for dt in dtypes.split(','):
            if dt not in ('bf16', 'fp32'): raise ValueError(f"dtypes must be bf16 and/or fp32, got {dt!r}")
            set_seed(seed)
            net, crit, metric = build_model(name)
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(bs, 3, 32, 32, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (bs,), generator=g).to(dev)
            macs = forward_macs(net.to(dev), x)
            dl = TimedBatches(x, y, warmup + steps)
            cfg = Config(epochs=1, batch_size=bs, amp=dt == 'bf16', device=str(dev), quiet=True, seed=seed, ema_decay=0.999)
            fit(net, dl, cfg=cfg, criterion=crit, metric=metric)
            ts = np.diff(dl.stamps)[warmup:]                      # seconds per step, after warmup
            med = float(np.median(ts))
            runs[dt] = dict(autocast_dtype=str(amp_dtype(dev)) if dt == 'bf16' else 'none (fp32)',
                            step_ms_median=1e3 * med, step_ms_min=1e3 * float(ts.min()), step_ms_max=1e3 * float(ts.max()),
                            img_per_s_median=bs / med, train_gmacs_per_s_median=3 * macs * bs / med / 1e9)
            print(f"{name} {dt}: {1e3*med:.1f} ms/step (min {1e3*ts.min():.1f}, max {1e3*ts.max():.1f}), "
                  f"{bs/med:.0f} img/s, {3*macs*bs/med/1e9:.1f} GMAC/s (training = 3x forward {macs/1e6:.2f} MMACs)")
        results['models'][name] = dict(forward_macs_per_image=macs, train_macs_per_image=3 * macs, runs=runs)
    if match_macs:  # the comparison: DynMoE vs the static network of equal executed MACs, same run
        a, b = results['models'][names[-2]]['runs'], results['models'][names[-1]]['runs']
        results['matched_static']['macs_per_s_ratio'] = {dt: a[dt]['train_gmacs_per_s_median'] / b[dt]['train_gmacs_per_s_median'] for dt in a}
        print('MAC/s of', names[-2], 'relative to', names[-1], results['matched_static']['macs_per_s_ratio'])
    if len(names) > 1:  # MAC/s of each model relative to the first, per precision, measured in this one run
        base = results['models'][names[0]]['runs']
        results['macs_per_s_ratio_vs_' + names[0]] = {n: {dt: r['train_gmacs_per_s_median'] / base[dt]['train_gmacs_per_s_median']
                                                          for dt, r in results['models'][n]['runs'].items()} for n in names[1:]}
        print(results['macs_per_s_ratio_vs_' + names[0]])
    path = save_results(out, results, preset=preset, seed=seed)
    print(f"wrote {path}")
