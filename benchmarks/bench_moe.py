"""Does fixed-shape bucketing pay for sparse MoE dispatch on this CPU?

Times a 2-block MoE stage body (C channels, HxW, E experts, top-k) in eval mode over a stream of
fresh random routings (every call sees new per-expert sub-batch sizes) with exact shapes,
power-of-two buckets, multiple-of-16 buckets and 'auto' buckets, and the dense all-experts
reference, in fp32 and under bf16 autocast (where oneDNN JIT-compiles AMX kernels per shape).
Writes data/results/bench_moe.json.

    python benchmarks/bench_moe.py [--batch 256] [--calls 60] [--threads 0]
"""
import argparse, time
import numpy as np
import torch
from dynmoe.core import save_results, set_seed, count_macs, autocast
from dynmoe.moe import MoEConv, random_routing, combine_matrix

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, default=256); p.add_argument('--channels', type=int, default=32)
    p.add_argument('--hw', type=int, default=16); p.add_argument('--experts', type=int, default=4)
    p.add_argument('--k', type=int, default=1); p.add_argument('--calls', type=int, default=60)
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: leave the default)')
    p.add_argument('--seed', type=int, default=0); p.add_argument('--out', default='data/results/bench_moe.json')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    g = set_seed(a.seed)
    x = torch.randn(a.batch, a.channels, a.hw, a.hw).contiguous(memory_format=torch.channels_last)
    routings = [random_routing(a.batch, a.experts, a.k, g) for _ in range(a.calls)]
    modes = {}
    for prec in ('fp32', 'bf16'):
      for name, bucket in [('exact shapes', None), ('pow2 buckets', 'pow2'), ('multiple-of-16 buckets', 16), ("'auto' buckets", 'auto'), ('dense all-experts reference', 'dense')]:
        torch.manual_seed(a.seed)  # same weights for every mode
        m = MoEConv(a.channels, a.experts, n_blocks=2, bucket=None if bucket == 'dense' else bucket).eval()
        m = m.to(memory_format=torch.channels_last)
        ts = []
        with torch.inference_mode(), autocast('cpu', enabled=prec == 'bf16'):
            for j, (w, i) in enumerate(routings):
                t0 = time.perf_counter()
                if bucket == 'dense': m.forward_dense(x, combine_matrix(w, i, a.experts))
                else: m(x, w, i)
                ts.append(time.perf_counter() - t0)
        ts = np.array(ts[5:]) * 1e3  # first calls: warm-up
        w, i = routings[0]
        macs = count_macs(m.forward_dense, x, combine_matrix(w, i, a.experts)) if bucket == 'dense' else count_macs(m, x, w, i)
        modes[f'{prec} {name}'] = dict(precision=prec, median_ms=float(np.median(ts)), mean_ms=float(ts.mean()),
                                       p90_ms=float(np.percentile(ts, 90)), executed_mmacs_per_batch=macs / 1e6)
        print(f"{prec} {name:30s} median {np.median(ts):7.2f} ms  mean {ts.mean():7.2f} ms  p90 {np.percentile(ts, 90):7.2f} ms  {macs/1e6:8.1f} MMACs executed")
    for name, bucket in [('exact shapes', None), ("'auto' buckets", 'auto'), ('pow2 buckets', 'pow2')]:
        torch.manual_seed(a.seed)   # training: forward + backward under bf16 autocast, batch-norm in training mode
        m = MoEConv(a.channels, a.experts, n_blocks=2, bucket=bucket).train().to(memory_format=torch.channels_last)
        ts = []
        for w, i in routings:
            xg = x.clone().requires_grad_()
            t0 = time.perf_counter()
            with autocast('cpu'): y = m(xg, w, i)
            y.float().square().mean().backward()
            ts.append(time.perf_counter() - t0)
        ts = np.array(ts[5:]) * 1e3
        modes[f'train bf16 {name}'] = dict(precision='bf16 train (fwd+bwd)', median_ms=float(np.median(ts)), mean_ms=float(ts.mean()),
                                            p90_ms=float(np.percentile(ts, 90)), executed_mmacs_per_batch=None)
        print(f"train bf16 {name:24s} median {np.median(ts):7.2f} ms  mean {ts.mean():7.2f} ms")
    save_results(a.out, dict(batch=a.batch, channels=a.channels, hw=a.hw, n_experts=a.experts, k=a.k, calls=a.calls,
                             threads=torch.get_num_threads(), modes=modes), seed=a.seed)

if __name__ == '__main__': main()
