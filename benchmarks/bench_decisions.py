r"""What the gates and policies cost inside the stage graphs, measured as paired per-image differences.

`bench_stage_graphs.py` measures the decisions' cost as the difference of two block medians (the same paths replayed
with and without gates and policies). On a quiet machine that works; when other processes share the CPU, whole
blocks slow down and the difference of two ~3 ms medians drowns a ~0.05 ms effect. Here every image's path is
replayed three ways back to back -- without decisions (`bare`), with the decisions as the policy computes them
(`plain`, `export_stages(lean=False)`) and with `LeanPolicySeg` (`lean`) -- in a rotating order, `--reps` times, and
the decisions' cost is, per image, the difference of the fastest of its repetitions with and without decisions, and
then the median over images. A slow time slice hits one call, not a block, and the fastest repetition skips it (the
median of the raw paired differences is kept too).

    python benchmarks/bench_decisions.py --data-dir /work/shared/data \
        --static-ckpt runs/compare_fast/static/last.pt --dynmoe-ckpt runs/compare_fast/dynmoe/last.pt

The static checkpoint is read only to choose the exit thresholds as `bench_stage_graphs.py` does (matched on the
validation split). Writes --out with the command, commit, machine and load average.
"""
import argparse, os, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe, not another
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stage_graphs import load_pair, matched_thresholds, load_images

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True, help='folder holding cifar-10-batches-py/')
    p.add_argument('--static-ckpt', required=True, help='the trained static network (thresholds are matched to it)')
    p.add_argument('--dynmoe-ckpt', required=True, help='the trained DynMoE whose decisions are timed')
    p.add_argument('--match-drop', type=float, default=0.5, help='as in bench_stage_graphs.py')
    p.add_argument('--n-timed', type=int, default=500, help='test images, each replayed three ways per repetition')
    p.add_argument('--reps', type=int, default=7, help='repetitions over the images')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='data/results/runtime/decisions_fast_trained.json')
    a = p.parse_args(argv)
    a.n_check, a.n_cal = a.n_timed, 1   # what load_images reads
    return a

def main():
    a = parse()
    torch.set_num_threads(1)
    from dynmoe.core import save_results
    from dynmoe.export import export_stages, StageNet
    load0, t0 = os.getloadavg(), time.time()
    static, dyn, cfg = load_pair(a)
    _, xt, src = load_images(a)
    matched = matched_thresholds(a, static, dyn, cfg)
    thr = torch.tensor(matched['thresholds'], dtype=torch.float32)
    folder = Path(tempfile.mkdtemp(prefix='bench_decisions_'))
    export_stages(dyn, folder/'lean', bare=True)
    export_stages(dyn, folder/'plain', lean=False)
    rts = dict(bare=StageNet(folder/'lean', bare=True), lean=StageNet(folder/'lean'), plain=StageNet(folder/'plain'))
    o = rts['lean'].infer(xt, thr)
    spec = rts['lean'].spec
    routes = [(int(k), tuple(e[:, 0].tolist())[:spec.exit_stage(int(k)) + 1]) for k, e in zip(o.exit, o.experts)]
    xs = [x[None].numpy().copy() for x in xt]
    names, t = list(rts), {n: np.zeros((a.reps, len(xs))) for n in rts}
    for n in names: rts[n].replay(xs[0], *routes[0])                                  # warm-up
    for r in range(a.reps):
        for j, x in enumerate(xs):
            for n in names[(j + r) % 3:] + names[:(j + r) % 3]:                       # rotate who goes first
                s = time.perf_counter(); rts[n].replay(x, *routes[j]); t[n][r, j] = time.perf_counter() - s
    ms = {n: 1e3 * v for n, v in t.items()}
    best = {n: v.min(0) for n, v in ms.items()}                                     # (images,) fastest repetition
    per_image = lambda n: float(np.median(best[n]))
    diff = {n: best[n] - best['bare'] for n in ('lean', 'plain')}                     # (images,) paired
    raw = {n: ms[n] - ms['bare'] for n in ('lean', 'plain')}                          # (reps, images) paired
    row = lambda n: dict(median_us=1e3 * float(np.median(diff[n])),
                         iqr_us=(1e3 * np.percentile(diff[n], [25, 75])).tolist(),
                         share=float(np.median(diff[n])) / per_image(n),
                         raw_median_us=1e3 * float(np.median(raw[n])),
                         raw_iqr_us=(1e3 * np.percentile(raw[n], [25, 75])).tolist())
    res = dict(images=src, n_images=len(xs), reps=a.reps, thresholds=thr.tolist(), matched=matched,
               exit_hist=torch.bincount(o.exit, minlength=dyn.K).tolist(),
               per_image_ms={n: per_image(n) for n in names}, lean=row('lean'), plain=row('plain'),
               timing=("batch 1, 1 thread; every image's path replayed without decisions, with the plain and with the "
                       "lean decisions, back to back in rotating order, --reps times; per image the fastest repetition "
                       "of each; median over images of the paired differences; share = that median over the median "
                       "ms per image of the same runtime (raw_*: the same over all repetitions, not only the fastest)"))
    save_results(a.out, res, seed=a.seed, data_dir=a.data_dir, checkpoints=dict(static=a.static_ckpt, dynmoe=a.dynmoe_ckpt),
                 load_avg=dict(before=load0, after=os.getloadavg()), wall_s=round(time.time() - t0))
    for n in ('plain', 'lean'):
        print(f"{n:6s} decisions {res[n]['median_us']:.1f} us per image (IQR {res[n]['iqr_us'][0]:.1f} .. "
              f"{res[n]['iqr_us'][1]:.1f}) = {100 * res[n]['share']:.2f} % of {res['per_image_ms'][n]:.3f} ms")
    print(f"wrote {a.out}; load average before {load0}, after {os.getloadavg()}")

if __name__ == '__main__': main()
