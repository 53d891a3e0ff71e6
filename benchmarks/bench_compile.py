"""Does `torch.compile` speed up a training step of the static `air` network on this CPU? Eager against compiled.

    python benchmarks/bench_compile.py --threads 2      # -> data/results/bench_compile_air.json

One training step = forward under bf16 autocast (channels-last), label-smoothed cross-entropy, backward, SGD step,
on one fixed random batch (the data pipeline is not timed). Each mode runs `--warmup` steps (compilation happens
there, and its seconds are recorded), then `--steps` timed steps; the median step is quoted with min and max.
The two modes run one after the other in this process, eager first. Speed is never asserted in tests.
"""
import argparse, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import numpy as np
import torch, torch.nn.functional as F

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch-size', type=int, default=1024); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=3); p.add_argument('--steps', type=int, default=7)
    p.add_argument('--out', default='data/results/bench_compile_air.json')
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 1 or a.batch_size < 1: p.error('--steps, --warmup and --batch-size must be >= 1')
    torch.set_num_threads(a.threads)
    from dynmoe.models import DynNet
    from dynmoe.core import save_results
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch_size,), generator=g)
    out = {}
    for mode in ('eager', 'compiled'):
        torch.manual_seed(0)
        net = DynNet('static', 'air').to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=1e-3, momentum=0.9, nesterov=True)
        fwd = torch.compile(net) if mode == 'compiled' else net
        def step():
            with torch.autocast('cpu', torch.bfloat16): logits = fwd(x).logits[-1]
            F.cross_entropy(logits.float(), y, label_smoothing=0.2).backward()
            opt.step(); opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        for _ in range(a.warmup): step()
        warm = time.perf_counter() - t0
        ts = []
        for _ in range(a.steps):
            t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
        med = float(np.median(ts))
        out[mode] = dict(warmup_s=warm, step_s_median=med, step_s_min=min(ts), step_s_max=max(ts),
                         img_per_s=a.batch_size / med)
        print(f"{mode:8s}: warm-up {warm:.1f} s, median step {med:.3f} s ({a.batch_size / med:.0f} img/s), "
              f"min {min(ts):.3f} s, max {max(ts):.3f} s", flush=True)
    out['compiled_over_eager_step_time'] = out['compiled']['step_s_median'] / out['eager']['step_s_median']
    print(f"compiled / eager step time: {out['compiled_over_eager_step_time']:.2f}")
    save_results(a.out, dict(network='static air (118.1 MMACs/img)', batch_size=a.batch_size, threads=a.threads,
                             dtype='bf16 autocast, channels-last', **out), loadavg=os.getloadavg())

if __name__ == '__main__': main()
