r"""Eager PyTorch latency of DynMoE against the static network: plain eval, BN folded, BN folded + glibc keeping memory.

The static ResNet-20 and DynMoE ResNet-20 (the same trunk widths; 4 experts of half the stage width, top-1) both run
`DynNet.infer` in fp32 on one torch thread, at batch 256 and at batch 1 (each of `--n1` images alone). DynMoE's exit
thresholds are fitted (`fit_thresholds`) on calibration images -- CIFAR-10 validation images with `--data-dir`,
other random images without -- so that about 50 % / 25 % / 25 % of the images leave at exit 1 / exit 2 / the final
head; the mix reached on the timed images (CIFAR-10 test images, or random ones) is recorded. Both networks get random
batch-norm statistics and opinionated gates (`randomise`): timing depends on the exit mix and expert loads, not on
trained weights.

The two networks are timed in alternating blocks of consecutive calls (a block of static calls, then a block of DynMoE
calls, repeated `--rounds` times); a batch-1 block is one pass over the `--n1` images. Reported: median and
interquartile range in ms (batch 256: over calls; batch 1: over blocks of the mean time per image), page faults per
call (`ru_minflt`), the MAC saving and latency saving (1 - DynMoE / static) and their ratio, also per round.
Targets (issue 14): ratio >= 0.85 at batch 256 and >= 0.6 at batch 1.

glibc reads its malloc settings once, when a process starts, so each allocator setting (`ALLOCATORS`) is measured in a
child process of this script started with those variables set; the parent collects the numbers and writes
data/results/bench_eager.json (with the command, commit, machine, load average and the variables).

    python benchmarks/bench_eager.py [--data-dir /work/shared/data] [--backbone resnet20] [--rounds 8] [--quick]
    python benchmarks/bench_eager.py --data-dir /work/shared/data --widen 2 --rounds 5 --calls 4 \
        --out data/results/bench_eager_x2.json    # the same trunk at twice the width (expert widths too)
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe, not another

ALLOCATORS = {   # name: malloc variables a worker process starts with (glibc's own names, see mallopt(3))
    'glibc default': {},
    'keep memory': {'MALLOC_MMAP_MAX_': '0',                   # every block from the heap, none mmap-ed (a raised
                    'MALLOC_TRIM_THRESHOLD_': str(1 << 32)},   # MMAP_THRESHOLD_ stops at 32 MiB), and freed heap
}                                                              # memory is never handed back to the OS
MALLOC_VARS = (   # cleared for the default run, so that it really is glibc's default
               'MALLOC_MMAP_MAX_', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_',
               'MALLOC_ARENA_MAX', 'GLIBC_TUNABLES', 'LD_PRELOAD')
EXIT_MIX = (0.5, 0.25, 0.25)   # share of images leaving at exit 1, exit 2, the final head
TARGETS = {256: 0.85, 1: 0.6}  # (latency saving) / (MAC saving) wanted by issue 14, per batch size
FOLDS = {'plain eval': False, 'BN folded': True}

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n', 2)[2])
    p.add_argument('--data-dir', default=None, help='folder holding cifar-10-batches-py/ (default: random images)')
    p.add_argument('--backbone', default='resnet20', help='one of dynmoe.models.BACKBONES (same for both networks)')
    p.add_argument('--widen', type=int, default=1, help='multiply every stage width of the backbone by this')
    p.add_argument('--rounds', type=int, default=8, help='alternating blocks of each network')
    p.add_argument('--calls', type=int, default=8, help='consecutive calls per block at batch 256')
    p.add_argument('--n1', type=int, default=64, help='images per batch-1 block, each run alone')
    p.add_argument('--n-cal', type=int, default=512, help='calibration images the thresholds are fitted on')
    p.add_argument('--contiguous', action='store_true', help='NCHW tensors (default: channels-last)')
    p.add_argument('--no-grad', action='store_true', help='torch.no_grad only (default: also torch.inference_mode)')
    p.add_argument('--quick', action='store_true', help='a smoke test: 2 rounds of 2 calls, 8 images at batch 1')
    p.add_argument('--expert-width', type=float, default=None,
                   help="experts' width as a fraction of the stage width (default DynNet's 0.5; the fast preset: 0.25)")
    p.add_argument('--static-ckpt', default=None, help='a trained static network (last.pt); with --dynmoe-ckpt')
    p.add_argument('--dynmoe-ckpt', default=None, help='a trained DynMoE (last.pt): time the trained pair, exit '
                   'thresholds matched on validation as bench_stage_graphs.py matches them')
    p.add_argument('--match-drop', type=float, default=0.5, help='as in bench_stage_graphs.py')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='data/results/bench_eager.json')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)       # internal: run one allocator setting
    p.add_argument('--worker-out', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if (a.static_ckpt is None) != (a.dynmoe_ckpt is None): p.error('give both --static-ckpt and --dynmoe-ckpt, or neither')
    if a.dynmoe_ckpt and a.data_dir is None: p.error('trained networks need real images: give --data-dir')
    if a.quick: a.rounds, a.calls, a.n1, a.n_cal = 2, 2, 8, 128
    return a

# ---------------------------------------------------------------------------------------------- worker: one allocator
def load_images(a)->tuple:
    "Calibration images, 256 timed images (normalised float32), and where they came from."
    if a.data_dir is None:
        g = torch.Generator().manual_seed(a.seed)
        return torch.randn(a.n_cal, 3, 32, 32, generator=g), torch.randn(256, 3, 32, 32, generator=g), 'random normal'
    from dynmoe.data import get_dataset, normalise
    ds = get_dataset('cifar10', a.data_dir, download=False)
    g = torch.Generator().manual_seed(a.seed)
    pick = lambda s, n: normalise(s.x[torch.randperm(len(s), generator=g)[:n]], ds.mean, ds.std)
    return pick(ds.valid, a.n_cal), pick(ds.test, 256), f'cifar10 valid (calibration) / test (timed): {ds.source}'

def widened(backbone:str, k:int)->str:
    "The name of `backbone` with every stage width times `k`, registered in this process's BACKBONES."
    from dynmoe.models import BACKBONES
    if k == 1: return backbone
    b = BACKBONES[backbone]
    BACKBONES[f'{backbone}x{k}'] = dict(b, widths=tuple(k * w for w in b['widths']))
    return f'{backbone}x{k}'

def build(a)->tuple:
    "The static network and DynMoE on the same backbone, random BN statistics and gates, in the benchmark's layout."
    from dynmoe.models import DynNet, randomise
    from dynmoe.core import set_seed
    set_seed(a.seed)   # the conv weights come from the global generator: the same networks in every worker
    fmt = torch.contiguous_format if a.contiguous else torch.channels_last
    if a.dynmoe_ckpt:
        from bench_stage_graphs import load_pair
        static, dyn, _ = load_pair(a)
        return static.to(memory_format=fmt), dyn.to(memory_format=fmt), fmt
    bb = widened(a.backbone, a.widen)
    ew = {} if a.expert_width is None else dict(expert_width=a.expert_width)
    static = randomise(DynNet('static', bb), a.seed).to(memory_format=fmt)
    dyn = randomise(DynNet('dynmoe', bb, **ew), a.seed + 1, zero_bias=False).to(memory_format=fmt)
    return static, dyn, fmt

def alternate(fns:dict, # name: callable of the call index c (0 .. calls-1)
              calls:int, # consecutive calls per block
              rounds:int, # blocks of each callable
              warmup:int=2, # untimed blocks of each first
             )->dict: # name: dict(t=(rounds, calls) seconds, minflt=page faults per call)
    "Time callables in alternating blocks of consecutive calls (A A A .. B B B .. A A A ..)."
    for f in fns.values():
        for c in range(calls * warmup): f(c % calls)
    out = {k: dict(t=np.zeros((rounds, calls)), minflt=0.0) for k in fns}
    for r in range(rounds):
        for k, f in fns.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for c in range(calls):
                t0 = time.perf_counter()
                f(c)
                out[k]['t'][r, c] = time.perf_counter() - t0
            out[k]['minflt'] += (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / (rounds * calls)
    return out

def time_pair(static, dyn, x, thr, batch:int, a)->dict:
    "Time static and DynMoE `infer` at `batch` (256: the whole batch; 1: each of the first n1 images alone)."
    if batch == 1:
        xs = [x[j:j + 1] for j in range(a.n1)]
        fns = {'static': lambda c: static.infer(xs[c]), 'dynmoe': lambda c: dyn.infer(xs[c], thr)}
        res, imgs = alternate(fns, a.n1, a.rounds), x[:a.n1]
    else:
        fns = {'static': lambda c: static.infer(x), 'dynmoe': lambda c: dyn.infer(x, thr)}
        res, imgs = alternate(fns, a.calls, a.rounds), x
    r = dyn.infer(imgs, thr)   # exits and MACs of exactly the timed images
    t, ex = res['dynmoe']['t'], r.exit.numpy()
    by_exit = {k: 1e3 * float(np.median(t[:, ex == k])) for k in np.unique(ex).tolist()} if batch == 1 else None
    return dict(batch=batch, times=res, exit_hist=torch.bincount(r.exit, minlength=dyn.K).tolist(),
                static_macs=static.full_macs(), dynmoe_macs=r.macs.double().mean().item(),
                dynmoe_ms_by_exit=by_exit)   # batch 1: median ms of the images that leave at each exit

def worker(a):
    "Time every (BN folding, batch) pair under the allocator this process was started with; write the raw numbers."
    from dynmoe.models import fold_bn
    from dynmoe.exits import fit_thresholds
    torch.set_num_threads(1)
    static, dyn, fmt = build(a)
    xc, x, src = load_images(a)
    xc, x = xc.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt)
    if a.dynmoe_ckpt:
        from bench_stage_graphs import load_pair, matched_thresholds
        matched = matched_thresholds(a, *load_pair(a))
        thr = torch.tensor(matched['thresholds'], dtype=torch.float32)
    else:
        matched = None
        with torch.no_grad(): thr = fit_thresholds(dyn(xc).exit_scores.float(), EXIT_MIX)
    rows = []
    ctx = torch.no_grad if a.no_grad else torch.inference_mode
    for variant, fold in FOLDS.items():
        s, d = (fold_bn(static), fold_bn(dyn)) if fold else (static, dyn)
        for batch in (256, 1):
            with ctx(): rows.append(dict(variant=variant, **time_pair(s, d, x, thr, batch, a)))
            print(f"  [{a.worker}] {variant:10s} batch {batch:3d} done", flush=True)
    env = {k: os.environ[k] for k in MALLOC_VARS if k in os.environ}
    with open(a.worker_out, 'w') as f:
        json.dump(dict(allocator=a.worker, env=env, images=src, thresholds=thr.tolist(), rows=rows, matched=matched,
                       widths=[b.channels for b in dyn.bodies], expert_widths=[b.widths for b in dyn.bodies],
                       backbone=dyn.backbone),
                  f, default=lambda o: o.tolist())

# ---------------------------------------------------------------------------------------------- parent: summary
def spread(t:np.ndarray, per_block:bool)->dict:
    "Median and interquartile range in ms: over calls, or over blocks of the mean time per call."
    v = 1e3 * (np.asarray(t).mean(1) if per_block else np.asarray(t).ravel())
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return dict(median=float(med), iqr=[float(q1), float(q3)], n=len(v))

def summarise(raw:dict, allocator:str)->dict:
    "One row of the table: medians, IQRs, page faults, savings and their ratio (median over rounds too)."
    b, ts, td = raw['batch'], np.asarray(raw['times']['static']['t']), np.asarray(raw['times']['dynmoe']['t'])
    s, d = spread(ts, b == 1), spread(td, b == 1)
    mac_saving = 1 - raw['dynmoe_macs'] / raw['static_macs']
    lat_saving = 1 - d['median'] / s['median']
    per_round = (1 - td.mean(1) / ts.mean(1)) / mac_saving   # (rounds,) the ratio from each pair of blocks
    variant = raw['variant'] + ('' if allocator == 'glibc default' else f' + {allocator}')
    return dict(batch=b, variant=variant, allocator=allocator, static_ms=round(s['median'], 3),
                dynmoe_ms=round(d['median'], 3), static_iqr_ms=s['iqr'], dynmoe_iqr_ms=d['iqr'], n_timed=s['n'],
                static_minflt_per_call=raw['times']['static']['minflt'],
                dynmoe_minflt_per_call=raw['times']['dynmoe']['minflt'],
                static_mmacs=raw['static_macs'] / 1e6, dynmoe_mmacs=raw['dynmoe_macs'] / 1e6,
                exit_hist=raw['exit_hist'], dynmoe_ms_by_exit=raw['dynmoe_ms_by_exit'],
                mac_saving=round(mac_saving, 4), latency_saving=round(lat_saving, 4),
                ratio=round(lat_saving / mac_saving, 3),
                ratio_per_round_iqr=np.percentile(per_round, [25, 75]).tolist(),
                target=TARGETS[b], target_met=bool(lat_saving / mac_saving >= TARGETS[b]))

def run_worker(name:str, a)->dict:
    "Run this script for allocator `name` in a fresh process started with its malloc variables; its raw numbers."
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
    env |= ALLOCATORS[name] | {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, 'worker.json')
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], '--worker', name, '--worker-out', out]
        subprocess.run(cmd, env=env, check=True)
        with open(out) as f: return json.load(f)

def main():
    a = parse()
    if a.worker: return worker(a)
    from dynmoe.core import save_results
    torch.set_num_threads(1)   # as in the workers, so that the machine info saved with the results says 1 thread
    load0, t0, raws = os.getloadavg(), time.time(), {}
    for name in ALLOCATORS:
        print(f"allocator: {name} {ALLOCATORS[name] or ''}", flush=True)
        raws[name] = run_worker(name, a)
    rows = sorted((summarise(r, n) for n, w in raws.items() for r in w['rows']), key=lambda r: -r['batch'])
    for r in rows:
        print(f"batch {r['batch']:3d} {r['variant']:28s} static {r['static_ms']:8.2f} ms  "
              f"dynmoe {r['dynmoe_ms']:8.2f} ms  "
              f"faults/call {r['static_minflt_per_call']:7.0f} {r['dynmoe_minflt_per_call']:7.0f}  "
              f"MAC saving {r['mac_saving']:.3f}  latency saving {r['latency_saving']:.3f}  ratio {r['ratio']:.3f}"
              f"  (target {r['target']}: {'met' if r['target_met'] else 'not met'})")
    w = next(iter(raws.values()))
    save_results(a.out, dict(rows=rows, backbone=w['backbone'], widen=a.widen, stage_widths=w['widths'],
                             expert_widths=w['expert_widths'], thresholds=w['thresholds'],
                             exit_mix_target=None if a.dynmoe_ckpt else EXIT_MIX,
                             trained=dict(static=a.static_ckpt, dynmoe=a.dynmoe_ckpt, matched=w['matched'])
                             if a.dynmoe_ckpt else None,
                             images=w['images'], precision='fp32', torch_threads=1,
                             memory_format='contiguous' if a.contiguous else 'channels_last',
                             grad_mode='no_grad' if a.no_grad else 'inference_mode',
                             allocators={n: raws[n]['env'] for n in raws}, targets=TARGETS,
                             timing=(f"alternating blocks, {a.rounds} rounds; batch 256: {a.calls} consecutive calls "
                                     f"per block, median/IQR over calls; batch 1: a block is one pass over {a.n1} "
                                     "images, median/IQR over blocks of the mean ms per image")),
                 seed=a.seed, data_dir=a.data_dir, load_avg=dict(before=load0, after=os.getloadavg()),
                 wall_s=round(time.time() - t0))
    print(f"wrote {a.out} in {time.time() - t0:.0f} s; load average before {load0}, after {os.getloadavg()}")

if __name__ == '__main__': main()
