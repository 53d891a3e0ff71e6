"""How much of a CPU training step of the static `air` network goes to page faults, and what `keep_freed_memory`
(chapter 00a) gives back. glibc's default against `keep_freed_memory()`, each in its own process.

    python benchmarks/bench_malloc.py --threads 2 --warmup 5 --steps 10                 # -> data/results/bench_malloc_air.json
    python benchmarks/bench_malloc.py --threads 2 --warmup 5 --steps 10 --kind dynmoe   # -> ..._air_dynmoe.json

One training step = forward under bf16 autocast (channels-last), label-smoothed cross-entropy summed over the
network's exits, backward, SGD step, on one fixed random batch (the data pipeline is not timed), as in
bench_compile.py. `--kind dynmoe` (or moe) times chapter 06's MoE networks, whose expert groups change size every
step: the case where a heap that is never trimmed could fragment and grow. `keep_freed_memory` is
process-wide and cannot be undone, so every block of steps runs in a fresh process: `--blocks` blocks per setting,
alternating default, keep, default, keep, ... Each block runs `--warmup` untimed steps, then `--steps` timed ones,
and reports the step times, the minor page faults per timed step and the peak resident memory. The medians are over
all timed steps of a setting; the ratio is keep / default of the two medians. Speed is never asserted in tests.
"""
import argparse, json, os, resource, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import numpy as np

def child(a):
    "One block of steps in this process; prints one JSON line."
    import torch, torch.nn.functional as F
    from dynmoe.core import keep_freed_memory
    from dynmoe.models import DynNet
    torch.set_num_threads(a.threads)
    kept = keep_freed_memory() if a.child == 'keep' else False
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch_size,), generator=g)
    torch.manual_seed(0)
    net = DynNet(a.kind, 'air').to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=1e-3, momentum=0.9, nesterov=True)
    def step():
        with torch.autocast('cpu', torch.bfloat16): logits = net(x).logits   # one per exit (static: the final one)
        sum(F.cross_entropy(l.float(), y, label_smoothing=0.2) for l in logits).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(a.warmup): step()
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f0, ts = faults(), []
    for _ in range(a.steps):
        t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
    print(json.dumps(dict(mode=a.child, kept=kept, step_s=ts, faults_per_step=(faults() - f0) / a.steps,
                          max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch-size', type=int, default=512); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=3); p.add_argument('--steps', type=int, default=8)
    p.add_argument('--blocks', type=int, default=3, help='fresh processes per setting, alternating')
    p.add_argument('--kind', default='static', choices=['static', 'branchy', 'moe', 'dynmoe'],
                   help="chapter 06's network on the air backbone (MoE kinds: the expert groups change size every step)")
    p.add_argument('--out', default=None, help='default data/results/bench_malloc_air.json (static), '
                   'bench_malloc_air_<kind>.json otherwise')
    p.add_argument('--child', choices=['default', 'keep'], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 1 or a.batch_size < 1 or a.blocks < 1:
        p.error('--steps, --warmup, --batch-size and --blocks must be >= 1')
    if a.child: return child(a)
    import torch
    torch.set_num_threads(a.threads)   # what machine_info records
    from dynmoe.core import save_results, default_command
    blocks = {'default': [], 'keep': []}
    for b in range(a.blocks):
        for mode in ('default', 'keep'):
            cmd = [sys.executable, os.path.abspath(__file__), '--child', mode, '--kind', a.kind,
                   '--batch-size', str(a.batch_size),
                   '--threads', str(a.threads), '--warmup', str(a.warmup), '--steps', str(a.steps)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode: sys.exit(f"block {b} ({mode}) failed:\n{r.stderr[-2000:]}")
            blk = json.loads(r.stdout.strip().splitlines()[-1])
            blocks[mode].append(blk)
            print(f"block {b} {mode:7s}: median step {np.median(blk['step_s']):.3f} s, "
                  f"{blk['faults_per_step']:,.0f} minor faults/step, peak RSS {blk['max_rss_mib']:,.0f} MiB", flush=True)
    out = dict(network=f'{a.kind} air', batch_size=a.batch_size, threads=a.threads,
               dtype='bf16 autocast, channels-last', blocks=a.blocks, warmup=a.warmup, steps=a.steps)
    for mode, bl in blocks.items():
        ts = [t for blk in bl for t in blk['step_s']]
        med = float(np.median(ts))
        out[mode] = dict(step_s_median=med, step_s_min=min(ts), step_s_max=max(ts), img_per_s=a.batch_size / med,
                         faults_per_step_median=float(np.median([blk['faults_per_step'] for blk in bl])),
                         max_rss_mib=max(blk['max_rss_mib'] for blk in bl), kept=all(blk['kept'] for blk in bl),
                         block_medians_s=[float(np.median(blk['step_s'])) for blk in bl])
    out['keep_over_default_step_time'] = out['keep']['step_s_median'] / out['default']['step_s_median']
    print(f"keep / default step time: {out['keep_over_default_step_time']:.2f} "
          f"({out['default']['img_per_s']:.0f} -> {out['keep']['img_per_s']:.0f} img/s)")
    save_results(a.out or f"data/results/bench_malloc_air{'' if a.kind == 'static' else '_' + a.kind}.json", out,
                 command=default_command())

if __name__ == '__main__': main()
