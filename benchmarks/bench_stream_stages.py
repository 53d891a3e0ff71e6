r"""A camera stream under per-frame deadlines on the stage-graph runtime: static, StageNet, deadline-aware StageNet.

The stream is `dynmoe.latency.camera_stream` (CIFAR-10 test frames, 50 % clean, 25 % blurred, 25 % noisy at
`--severity`). Three runtimes, batch 1, one thread:

- `static`: the static network as one ONNX graph driven with IO binding (as in `bench_stage_graphs.py`);
- `stages`: `StageNet` at the exit thresholds, which knows nothing of deadlines;
- `stages, deadline-aware`: `StageNet._run_deadline` (what `StageNet.infer(deadline_ms=...)` runs): after an exit it
  does not take by threshold, the frame leaves there anyway ("forced") when the time so far plus `margin` times the
  next stage graph's median ms (`StageNet.measure_stage_ms`) would pass the deadline. One runtime per deadline, and
  one with an infinite deadline (what the check itself costs).

With `--static-ckpt/--dynmoe-ckpt` the trained pair is used and DynMoE's thresholds are matched on the training run's
validation split exactly as `bench_stage_graphs.py` does (its `load_pair`, `matched_thresholds`); without, a
random-weight pair (`bench_stage_graphs.build`) with thresholds fitted to `--exit-mix`. The stage runtime is checked
against `DynNet.infer` on the first `--n-check` frames.

Timing: a calibration pass (static and stages alternating, `--cal-rounds` rounds) gives the static network's median ms
per frame; the deadlines are `--deadlines` times it. The margin is, unless `--margin` is given, the median over frames
of the stage runtime's measured ms over the stage table's sum along the frame's path (calibration pass). Then every
runtime runs all frames as one block of consecutive frames; blocks alternate between runtimes in a fresh random order
per round, for `--rounds` rounds. A frame's ms is its median over rounds (the lower median for an even count: an
observed round), and a deadline-aware frame's answer is the one of that same round. Reported per deadline and runtime:
`deadline_report` (miss rate, accuracy, accuracy counting late frames as wrong, per frame kind) on those frames, the
same figures of every round taken as a stream of its own (`per_round`), and per runtime the median ms per frame.

    python benchmarks/bench_stream_stages.py --data-dir /work/shared/data \
        --static-ckpt runs/compare_fast/static/last.pt --dynmoe-ckpt runs/compare_fast/dynmoe/last.pt
    python benchmarks/bench_stream_stages.py --quick --out /tmp/stream_quick.json      # smoke: random ResNet-20 pair
"""
import argparse, os, random, sys, tempfile, time
from pathlib import Path
from types import SimpleNamespace
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe, not another
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stage_graphs import load_pair, matched_thresholds, build, load_images, exit_mix, bound_call, spread

FACTORS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5)
QUICK_FACTORS = (0.5, 0.8, 1.0, 1.25)
AWARE = 'stages, deadline-aware'

def log(*a): print(*a, file=sys.stderr, flush=True)

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n', 2)[2])
    p.add_argument('--data-dir', default=None, help='folder holding cifar-10-batches-py/ (default: synthetic frames)')
    p.add_argument('--static-ckpt', default=None, help='a trained static network (last.pt); with --dynmoe-ckpt')
    p.add_argument('--dynmoe-ckpt', default=None, help='a trained DynMoE (last.pt): thresholds matched on validation')
    p.add_argument('--match-drop', type=float, default=0.5, help='as in bench_stage_graphs.py')
    p.add_argument('--backbone', default='resnet20', help='random pair only: one of dynmoe.models.BACKBONES')
    p.add_argument('--widen', type=int, default=1, help='random pair only: multiply every stage width by this')
    p.add_argument('--expert-width', type=float, default=None, help='random pair only: as in bench_stage_graphs.py')
    p.add_argument('--exit-mix', default='data/results/latency_bench.json',
                   help='random pair only: as in bench_stage_graphs.py')
    p.add_argument('--n-cal', type=int, default=1000, help='random pair only: calibration images for the thresholds')
    p.add_argument('--n-frames', type=int, default=1000, help='frames in the stream')
    p.add_argument('--severity', type=int, default=5, help='corruption severity of the blurred and noisy frames (1-5)')
    p.add_argument('--deadlines', default=','.join(map(str, FACTORS)),
                   help="deadlines as multiples of the static network's median ms per frame")
    p.add_argument('--margin', type=float, default=None,
                   help='multiplies the predicted ms of the next stage graph (default: calibrated, see above)')
    p.add_argument('--rounds', type=int, default=5, help='alternating blocks of each runtime')
    p.add_argument('--cal-rounds', type=int, default=3, help='rounds of the calibration pass (static and stages)')
    p.add_argument('--stage-repeats', type=int, default=200, help='timed rounds of measure_stage_ms')
    p.add_argument('--n-check', type=int, default=500, help='frames checked against DynNet.infer')
    p.add_argument('--quick', action='store_true',
                   help='smoke test: 64 frames, 2 rounds, 1 calibration round, 4 deadlines, 20 stage repeats')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='data/results/runtime/stream_stages.json', help='results file')
    a = p.parse_args(argv)
    if (a.static_ckpt is None) != (a.dynmoe_ckpt is None):
        p.error('give both --static-ckpt and --dynmoe-ckpt, or neither')
    if a.dynmoe_ckpt and a.data_dir is None: p.error('trained networks need real images: give --data-dir')
    if a.quick:
        a.n_frames, a.rounds, a.cal_rounds, a.stage_repeats, a.n_check, a.n_cal = 64, 2, 1, 20, 64, 128
        if a.deadlines == ','.join(map(str, FACTORS)): a.deadlines = ','.join(map(str, QUICK_FACTORS))
    a.factors = [float(f) for f in a.deadlines.split(',')]
    a.unit_weight, a.n_timed = False, 0   # what build and load_images read
    return a

# ---------------------------------------------------------------------------------------------- networks
def networks(a)->tuple:
    "Static network, DynMoE, exit thresholds, how they were chosen, the frames' normalisation (mean, std)."
    from dynmoe.data import get_dataset, find_cifar10
    from dynmoe.exits import fit_thresholds
    if a.dynmoe_ckpt:
        static, dyn, cfg = load_pair(a)
        matched = matched_thresholds(a, static, dyn, cfg)
        ds = get_dataset(cfg.dataset, a.data_dir, val_size=cfg.val_size, seed=cfg.seed, download=False)
        how = dict(static=a.static_ckpt, dynmoe=a.dynmoe_ckpt, matched=matched)
        return static, dyn, torch.tensor(matched['thresholds'], dtype=torch.float32), how, (ds.mean, ds.std)
    static, dyn = build(a)
    xc, _, src = load_images(a)
    mix = exit_mix(a.exit_mix)
    with torch.no_grad(): thr = fit_thresholds(dyn(xc).exit_scores.float(), mix)
    root = find_cifar10(a.data_dir)
    ds = get_dataset('cifar10', root, download=False) if root else get_dataset('synthetic')
    return static, dyn, thr, dict(random_pair=a.backbone, exit_mix_target=mix, calibration=src), (ds.mean, ds.std)

# ---------------------------------------------------------------------------------------------- timing
def run_block(f, n:int, ms:np.ndarray, keep=None):
    "Frames 0..n-1 through `f` back to back; each call's ms into `ms`, its result to `keep(j, result)` (untimed)."
    for j in range(n):
        t0 = time.perf_counter()
        r = f(j)
        ms[j] = (time.perf_counter() - t0) * 1e3
        if keep is not None: keep(j, r)

class Recorder:
    "Per round and frame: ms, and for the stage runtimes logits, exit, forced."
    def __init__(self, rounds:int, n:int, n_classes:int):
        self.ms = np.zeros((rounds, n))
        self.logits = np.zeros((rounds, n, n_classes), np.float32)
        self.exit, self.forced = np.zeros((rounds, n), np.int64), np.zeros((rounds, n), bool)
        self.r = 0
    def keep(self, j, res):
        k, _, z, *f = res
        self.logits[self.r, j], self.exit[self.r, j] = z[0], k
        self.forced[self.r, j] = bool(f and f[0])

def alternate(fns:dict, recs:dict, n:int, rounds:int, seed:int, keep:bool=True):
    "Blocks of all `n` frames per runtime, alternating in a fresh random order per round."
    rng, names = random.Random(seed), list(fns)
    for r in range(rounds):
        rng.shuffle(names)
        for k in names:
            rec = recs[k]
            rec.r = r
            run_block(fns[k], n, rec.ms[r], rec.keep if keep and k != 'static' else None)

def median_round(rec:Recorder)->np.ndarray:
    "(n,) per frame, the round with its (lower) median ms."
    return np.argsort(rec.ms, axis=0, kind='stable')[(rec.ms.shape[0] - 1) // 2]

def view(rec:Recorder, r:np.ndarray, static_logits=None, static_exit:int=0):
    "An OrtOut-like view of frame j as run in round r[j]: its answer and ms (the static network's answers are fixed)."
    n = rec.ms.shape[1]
    j, t = np.arange(n), torch.from_numpy
    if static_logits is not None:
        return SimpleNamespace(logits=static_logits, exit=torch.full((n,), static_exit),
                               forced=torch.zeros(n, dtype=torch.bool), ms=t(rec.ms[r, j].copy()))
    return SimpleNamespace(logits=t(rec.logits[r, j].copy()), exit=t(rec.exit[r, j].copy()),
                           forced=t(rec.forced[r, j].copy()), ms=t(rec.ms[r, j].copy()))

def frame_summary(ms)->dict:
    ms = np.asarray(ms)
    return dict(median_ms=float(np.median(ms)), mean_ms=float(ms.mean()), p90_ms=float(np.percentile(ms, 90)))

# ---------------------------------------------------------------------------------------------- main
def main():
    a = parse()
    torch.set_num_threads(1)
    import onnxruntime
    from dynmoe.core import save_results
    from dynmoe.data import normalise
    from dynmoe.export import export_onnx, export_stages, OrtNet, StageNet, check_against_torch
    from dynmoe.latency import camera_stream, deadline_report, prediction_quality, FRAME_KINDS
    load0, t_start = list(os.getloadavg()), time.time()

    log('networks and thresholds ...')
    static, dyn, thr, how, (mean, std) = networks(a)
    fr, fy, fk, src = camera_stream(a.n_frames, severity=a.severity, seed=a.seed + 1, root=a.data_dir)
    xf = normalise(fr, mean, std).float().contiguous()                    # (N, C, H, W) normalised frames
    xs = [x[None].numpy().copy() for x in xf]                             # (1, C, H, W) float32 each
    n, thr_l = len(xs), thr.tolist()

    log('export and checks ...')
    folder = Path(tempfile.mkdtemp(prefix='bench_stream_'))
    rs = OrtNet(export_onnx(static, folder/'static', fused=False))
    st = StageNet(export_stages(dyn, folder/'dyn'))
    nc = min(a.n_check, n)
    chk = check_against_torch(dyn, st, xf[:nc], thr)
    ref = st.infer(xf, thr)                                               # the stage runtime's answers (timing-free)
    so = rs.infer(xf, whole=True)                                         # the static network's answers
    with torch.no_grad(): static_ref = static.infer(xf[:nc]).logits.argmax(1)
    chk_static = dict(n=nc, same_prediction=(so.logits[:nc].argmax(1) == static_ref).float().mean().item())

    xb = np.zeros_like(xs[0])
    static_call = bound_call(rs.sessions['whole'], xb)
    def static_fn(j):
        np.copyto(xb, xs[j])
        static_call()
    stages_fn = lambda j: st._run(xs[j], thr_l)

    log(f'calibration: {a.cal_rounds} round(s) of static and stages over {n} frames ...')
    cal = {k: Recorder(a.cal_rounds, n, st.n_classes) for k in ('static', 'stages')}
    alternate(dict(static=static_fn, stages=stages_fn), cal, n, a.cal_rounds, a.seed)
    static_cal = float(np.median(np.median(cal['static'].ms, 0)))
    deadlines = [round(f * static_cal, 4) for f in a.factors]

    log('stage latency table ...')
    stage_ms = st.measure_stage_ms(xs[0], repeats=a.stage_repeats, seed=a.seed)
    path_ms = lambda ex: stage_ms['first'] + sum(stage_ms[f'stage.{s}.{e}'] for s, e in enumerate(ex) if e >= 0)
    pred = np.array([path_ms(ex[:, 0].tolist()) for ex in ref.experts])   # the table's sum along each frame's path
    meas = np.median(cal['stages'].ms, 0)
    quality = prediction_quality(meas, pred)
    margin = a.margin if a.margin is not None else quality['median_measured_over_predicted']
    nxt = st._next_ms(stage_ms, margin)

    fns = dict(static=static_fn, stages=stages_fn)
    aware = {dl: f'{AWARE} @ {dl:.4f} ms' for dl in deadlines + [float('inf')]}
    for dl, name in aware.items(): fns[name] = lambda j, dl=dl: st._run_deadline(xs[j], thr_l, nxt, dl)
    recs = {k: Recorder(a.rounds, n, st.n_classes) for k in fns}
    log(f'timing: {len(fns)} runtimes x {a.rounds} rounds x {n} frames, deadlines {deadlines} ms, '
        f'margin {margin:.3f} ...')
    alternate(fns, recs, n, a.rounds, a.seed + 1)

    sl = lambda k: (so.logits, rs.K - 1) if k == 'static' else (None, 0)
    views = {k: view(rec, median_round(rec), *sl(k)) for k, rec in recs.items()}
    def rounds_report(k, dl)->dict:   # each round as a run of the stream of its own: 'all' of deadline_report per round
        reps = [deadline_report(v, fy, dl, ms=v.ms)['all']
                for v in (view(recs[k], np.full(n, r), *sl(k)) for r in range(a.rounds))]
        return {m: [p[m] for p in reps] for m in ('miss_rate', 'acc', 'acc_on_time', 'forced')}
    same_as_ref = {k: dict(exit=float((v.exit == ref.exit).float().mean()),
                           prediction=float((v.logits.argmax(1) == ref.logits.argmax(1)).float().mean()))
                   for k, v in views.items() if k == 'stages' or k == aware[float('inf')]}
    stream = {'static': [], 'stages': [], AWARE: []}
    for dl in deadlines:
        for name, v in (('static', views['static']), ('stages', views['stages']), (AWARE, views[aware[dl]])):
            k = aware[dl] if name == AWARE else name
            rep = deadline_report(v, fy, dl, fk, ms=v.ms)
            stream[name].append(rep | dict(deadline_ms=dl, per_round=rounds_report(k, dl)))
    runtimes = {k: frame_summary(v.ms) | dict(per_round_mean_ms=spread(recs[k].ms.mean(1))) for k, v in views.items()}
    load1 = list(os.getloadavg())

    res = dict(stream=dict(n_frames=n, source=src, severity=a.severity, mix=dict(zip(FRAME_KINDS, (0.5, 0.25, 0.25))),
                           frames_per_kind=torch.bincount(fk, minlength=len(FRAME_KINDS)).tolist(), seed=a.seed + 1),
               networks=how, backbone=st.meta['backbone'], thresholds=thr_l,
               exit_hist=torch.bincount(ref.exit, minlength=st.K).tolist(),
               static_mmacs=static.full_macs() / 1e6, dynmoe_mean_mmacs=ref.macs.double().mean().item() / 1e6,
               checks=dict(stages=chk, static_whole=chk_static, timed_runs_vs_infer=same_as_ref),
               calibration=dict(rounds=a.cal_rounds, static_median_ms=static_cal,
                                stages_median_ms=float(np.median(meas))),
               deadline_factors=a.factors, deadlines_ms=deadlines, static_median_ms=runtimes['static']['median_ms'],
               stage_ms=stage_ms, stage_ms_repeats=a.stage_repeats, margin=margin,
               margin_rule='given (--margin)' if a.margin is not None else
                           "median over frames of the stage runtime's measured ms / the stage table's sum along its "
                           "path",
               stage_table_prediction=quality,
               runtimes=runtimes, runs=stream, aware_runtime_names={str(k): v for k, v in aware.items()},
               onnxruntime=onnxruntime.__version__, threads=1,
               timing=(f"batch 1, 1 thread; per runtime one block of the {n} consecutive frames, blocks alternating in "
                       f"a fresh random order per round, {a.rounds} rounds after a {a.cal_rounds}-round calibration "
                       f"pass (static and stages); a frame's ms is its median over rounds (lower median if even: an "
                       f"observed round) and a deadline-aware frame's answer is that round's; deadlines are multiples "
                       f"of the calibration pass's static median ms per frame"),
               block_mean_ms={k: r.ms.mean(1).tolist() for k, r in recs.items()})   # (rounds,) per runtime
    save_results(a.out, res, preset='quick' if a.quick else None, seed=a.seed, data_dir=a.data_dir,
                 load_avg=dict(before=load0, after=load1), wall_s=round(time.time() - t_start))

    med = lambda k: runtimes[k]['median_ms']
    print(f"{n} frames ({src}); static {med('static'):.3f} ms/frame, stages {med('stages'):.3f}, deadline-aware at inf "
          f"{med(aware[float('inf')]):.3f}; margin {margin:.3f}; check: {chk['disagree_not_near']} disagree not near a "
          f"threshold, same MACs {chk['same_macs']:.3f}")
    print(f"{'deadline':>14s} {'runtime':24s} {'miss':>6s} {'acc':>6s} {'on time':>8s} {'forced':>7s} {'med ms':>7s}")
    for i, dl in enumerate(deadlines):
        for name in stream:
            r = stream[name][i]['all']
            print(f"{dl:8.3f} ({a.factors[i]:.2f}) {name:24s} {r['miss_rate']:6.3f} {r['acc']:6.3f} "
                  f"{r['acc_on_time']:8.3f} {r['forced']:7.3f} {r['median_ms']:7.3f}")
    print(f"wrote {a.out}; load average before {load0}, after {load1}")

if __name__ == '__main__': main()
