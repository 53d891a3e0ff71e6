"""How close a CPU training step of `air` already runs to what this CPU can multiply: the bf16 matrix-product rate
(large square products under torch, the best case for oneDNN) against the rate the training step of
benchmarks/bench_width.py reaches, counted as 3 x its forward MACs (forward, and the gradients of the inputs and of
the weights, each about one forward) x 2 FLOPs per MAC.

    python benchmarks/bench_peak.py --threads 2   # -> data/results/bench_peak.json

It reads the step times of data/results/bench_width_air.json.

The matrix products run in blocks of `--reps` after a warm-up; the median over all timed products is the rate.
Speed is never asserted in tests.
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import numpy as np
import torch

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--sizes', default='1024,2048,4096')
    p.add_argument('--reps', type=int, default=5); p.add_argument('--blocks', type=int, default=3)
    p.add_argument('--width-file', default='data/results/bench_width_air.json')
    p.add_argument('--out', default='data/results/bench_peak.json')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from dynmoe.core import save_results, default_command, load_results
    from dynmoe.core import keep_freed_memory
    keep_freed_memory()
    rates = {}
    for n in [int(s) for s in a.sizes.split(',')]:
        x, y = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
        for _ in range(2): x @ y   # warm-up
        ts = []
        for _ in range(a.blocks):
            for _ in range(a.reps):
                t = time.perf_counter(); x @ y; ts.append(time.perf_counter() - t)
        rates[n] = dict(gflops_median=2 * n**3 / np.median(ts) / 1e9, seconds_median=float(np.median(ts)))
        print(f"bf16 {n} x {n} x {n}: {rates[n]['gflops_median']:.0f} GFLOP/s", flush=True)
    best = max(r['gflops_median'] for r in rates.values())
    out = dict(threads=a.threads, matmul_bf16={str(k): v for k, v in rates.items()}, matmul_best_gflops=best)
    if os.path.exists(a.width_file):
        w = load_results(a.width_file)
        r = w['results']
        step = {}
        for s, v in r['scales'].items():
            g = 3 * v['mmacs_per_img'] * 1e6 * 2 * r['batch_size'] / v['step_s_median'] / 1e9
            step[s] = dict(gflops=g, of_matmul=g / best)
            print(f"air x{s} training step: about {g:.0f} GFLOP/s, {100 * g / best:.0f} % of the best product",
                  flush=True)
        out |= dict(width_file=a.width_file, width_commit=w['meta']['git_commit'], step_rate=step)
    save_results(a.out, out, command=default_command())

if __name__ == '__main__': main()
