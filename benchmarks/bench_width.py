"""What a wider or narrower `air` costs per CPU training step, so that a width can be traded for epochs at the same
wall time: the static `air` network (chapter 06) with its three group widths scaled, one training step at a time.

    python benchmarks/bench_width.py --threads 2 --scales 0.75,1,1.25,1.5   # -> data/results/bench_width_air.json

One step = forward under bf16 autocast (channels-last), label-smoothed cross-entropy, backward, SGD step on one
fixed random batch, as in bench_malloc.py, with `keep_freed_memory` on (as `train_state` sets it on a CPU). Each
block of steps runs in a fresh process, the scales alternating; the median over all timed steps of a scale is its
step time, and `epochs_at_base_time` is how many epochs take as long as `--base-epochs` epochs of scale 1. Muon's
Newton-Schulz steps and the data pipeline are not timed. Speed is never asserted in tests.
"""
import argparse, json, os, resource, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import numpy as np

def widths(scale:float)->tuple:
    "`air`'s group widths (64, 256, 256) times `scale`, rounded to multiples of 16."
    return tuple(int(16 * round(w * scale / 16)) for w in (64, 256, 256))

def register(scale:float)->str:
    "Add a scaled `air` to chapter 06's BACKBONES (this process only); its name."
    from dynmoe.models import BACKBONES
    name = 'air' if scale == 1 else f'air_x{scale:g}'
    BACKBONES[name] = BACKBONES['air'] | dict(widths=widths(scale))
    return name

def child(a):
    import torch, torch.nn.functional as F
    from dynmoe.core import keep_freed_memory
    from dynmoe.models import DynNet
    torch.set_num_threads(a.threads)
    keep_freed_memory()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch_size,), generator=g)
    torch.manual_seed(0)
    net = DynNet('static', register(a.child)).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=1e-3, momentum=0.9, nesterov=True)
    def step():
        with torch.autocast('cpu', torch.bfloat16): logits = net(x).logits
        sum(F.cross_entropy(l.float(), y, label_smoothing=0.2) for l in logits).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(a.warmup): step()
    ts = []
    for _ in range(a.steps):
        t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
    print(json.dumps(dict(scale=a.child, widths=widths(a.child), step_s=ts, mmacs_per_img=net.full_macs() / 1e6)))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scales', default='0.75,1,1.25,1.5')
    p.add_argument('--batch-size', type=int, default=512); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=3); p.add_argument('--steps', type=int, default=6)
    p.add_argument('--blocks', type=int, default=2, help='fresh processes per scale, the scales alternating')
    p.add_argument('--base-epochs', type=float, default=9, help="the `air` preset's epochs at scale 1")
    p.add_argument('--out', default='data/results/bench_width_air.json')
    p.add_argument('--child', type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None: return child(a)
    scales = [float(s) for s in a.scales.split(',')]
    if 1.0 not in scales: p.error('--scales must include 1 (the base every scale is compared with)')
    if min(scales) <= 0 or a.steps < 1 or a.warmup < 1 or a.blocks < 1:
        p.error('scales must be > 0; --steps, --warmup and --blocks >= 1')
    import torch
    torch.set_num_threads(a.threads)
    from dynmoe.core import save_results, default_command
    runs = {s: [] for s in scales}
    for b in range(a.blocks):
        for s in scales:
            cmd = [sys.executable, os.path.abspath(__file__), '--child', str(s), '--batch-size', str(a.batch_size),
                   '--threads', str(a.threads), '--warmup', str(a.warmup), '--steps', str(a.steps)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode: sys.exit(f"block {b} (scale {s}) failed:\n{r.stderr[-2000:]}")
            runs[s].append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"block {b} scale {s:g} {tuple(runs[s][-1]['widths'])}: median step "
                  f"{np.median(runs[s][-1]['step_s']):.3f} s", flush=True)
    med = {s: float(np.median([t for blk in runs[s] for t in blk['step_s']])) for s in scales}
    out = dict(network='static air, group widths scaled', batch_size=a.batch_size, threads=a.threads,
               dtype='bf16 autocast, channels-last', blocks=a.blocks, warmup=a.warmup, steps=a.steps,
               base_epochs=a.base_epochs, scales={})
    for s in scales:
        out['scales'][f'{s:g}'] = dict(widths=runs[s][0]['widths'], mmacs_per_img=runs[s][0]['mmacs_per_img'],
                                       step_s_median=med[s], step_over_base=med[s] / med[1.0],
                                       epochs_at_base_time=a.base_epochs * med[1.0] / med[s],
                                       block_medians_s=[float(np.median(blk['step_s'])) for blk in runs[s]])
        print(f"scale {s:g}: {runs[s][0]['mmacs_per_img']:.1f} MMACs/img, {med[s]:.3f} s/step "
              f"({med[s] / med[1.0]:.2f} x), {a.base_epochs * med[1.0] / med[s]:.2f} epochs in the base's time")
    save_results(a.out, out, command=default_command())

if __name__ == '__main__': main()
