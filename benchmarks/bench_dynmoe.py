"""Does DynMoE's MAC saving become a wall-clock saving on this CPU?

Times `DynNet.infer` (real early exit with compaction + sparse top-k experts) against the same
network's full-width, full-depth path (every expert, every exit: `model(x, reference=True)`), at
batch 1 and batch 256, with exit thresholds fitted (chapter 04's `fit_thresholds`) so that a fraction
q of the images reaching each exit leaves there (seed 003's budget schedule). Reports the speed-up
next to the MAC reduction and their ratio (goal >= 0.8). Writes data/results/bench_dynmoe.json.

    python benchmarks/bench_dynmoe.py [--data-dir ../shared/data] [--checkpoint ckpt.pt] [--threads 0]
"""
import argparse, time
import numpy as np
import torch
from dynmoe.core import save_results, set_seed, autocast
from dynmoe.models import DynNet
from dynmoe.exits import fit_thresholds, fractions_for_q

def load_images(data_dir, n, seed, dataset='cifar10'):
    "n real test images (normalised with the training split's stats) if data_dir has the dataset; else noise (said in the results)."
    try:
        from dynmoe.data import get_dataset
        ds = get_dataset(dataset, data_dir, seed=0, download=False)
        g = torch.Generator().manual_seed(seed)
        j = torch.randperm(len(ds.test), generator=g)[:n]
        mean = torch.tensor(ds.mean)[:, None, None]; std = torch.tensor(ds.std)[:, None, None]
        return (ds.test.x[j].float() / 255 - mean) / std, ds.test.y[j], f'{dataset} test split ({ds.source})'
    except (FileNotFoundError, ValueError, TypeError): return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)), None, 'random normal'

def paired(f_full, f_dyn, reps):
    "Median seconds of two callables timed alternately (full, dynamic, full, ...) so load changes hit both alike."
    a, b = [], []
    for _ in range(reps):
        t0 = time.perf_counter(); f_full(); a.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); f_dyn(); b.append(time.perf_counter() - t0)
    return float(np.median(a)), float(np.median(b))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default=None); p.add_argument('--checkpoint', default=None)
    p.add_argument('--backbone', default='resnet20'); p.add_argument('--experts', type=int, default=4); p.add_argument('--k', type=int, default=1)
    p.add_argument('--qs', default='0.25,0.5', help='fractions of images leaving at each exit they reach')
    p.add_argument('--n1', type=int, default=64, help='images timed one by one at batch 1')
    p.add_argument('--reps', type=int, default=9); p.add_argument('--bf16', action='store_true')
    p.add_argument('--threads', type=int, default=0); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='data/results/bench_dynmoe.json')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    set_seed(a.seed)
    if a.checkpoint:   # a dynmoe-train checkpoint: its config says what network it is
        from dynmoe.experiment import load_trained
        m, cfg = load_trained(a.checkpoint); dataset = cfg.dataset
    else: m, dataset = DynNet('dynmoe', a.backbone, n_experts=a.experts, k=a.k), 'cifar10'
    m = m.eval().to(memory_format=torch.channels_last)
    x, y, src = load_images(a.data_dir, 256, a.seed, dataset)
    x = x.contiguous(memory_format=torch.channels_last)
    ctx = (lambda: autocast('cpu')) if a.bf16 else (lambda: torch.autocast('cpu', enabled=False))
    full_macs = m.full_macs()
    rows = []
    with torch.inference_mode(), ctx():
        scores = m(x).exit_scores.float()
        for q in map(float, a.qs.split(',')):
            thr = fit_thresholds(scores, fractions_for_q(q, m.K))
            r = m.infer(x, thr)
            hist = torch.bincount(r.exit, minlength=m.K).tolist()
            acc = None if y is None else 100 * (r.logits.argmax(1) == y).float().mean().item()
            full_acc = None if y is None else 100 * (m(x).logits[-1].argmax(1) == y).float().mean().item()
            for batch in (1, 256):
                if batch == 256:
                    m.infer(x, thr); m(x, reference=True)   # warm-up
                    t_full, t_dyn = paired(lambda: m(x, reference=True), lambda: m.infer(x, thr), a.reps)
                    macs = r.macs.double().mean().item()
                else:  # one image at a time over the first n1 images: per-image paired medians, then means over images
                    ts = [paired(lambda: m(x[j:j+1], reference=True), lambda: m.infer(x[j:j+1], thr), a.reps) for j in range(a.n1)]
                    t_full, t_dyn = float(np.mean([t[0] for t in ts])), float(np.mean([t[1] for t in ts]))
                    macs = r.macs[:a.n1].double().mean().item()
                speedup, mac_red = t_full / t_dyn, full_macs / macs
                rows.append(dict(q=q, batch=batch, exit_hist=hist, dynmoe_acc_pct=acc, final_exit_acc_pct=full_acc, full_ms=1e3 * t_full, dynmoe_ms=1e3 * t_dyn,
                                 full_mmacs_per_img=full_macs / 1e6, dynmoe_mmacs_per_img=macs / 1e6,
                                 speedup=speedup, mac_reduction=mac_red, ratio=speedup / mac_red))
                print(f"q={q:.2f} batch={batch:3d} exits={hist} full {1e3*t_full:8.2f} ms  dynmoe {1e3*t_dyn:8.2f} ms  "
                      f"speed-up {speedup:5.2f}x  MAC reduction {mac_red:5.2f}x  ratio {speedup/mac_red:5.2f}")
    save_results(a.out, dict(model=dict(kind=m.kind, backbone=m.backbone, n_experts=m.E, k=m.k, checkpoint=a.checkpoint),
                             images=src, precision='bf16' if a.bf16 else 'fp32', threads=torch.get_num_threads(),
                             timing='full and dynamic timed alternately; median of reps; batch 1: mean over images of per-image medians', rows=rows), seed=a.seed)

if __name__ == '__main__': main()
