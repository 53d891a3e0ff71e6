r"""Batch-1, one-thread latency of DynMoE on onnxruntime: the stage-graph runtime against the static network.

For one backbone (`--backbone`, `--widen`) a static network and a DynMoE (4 experts of half the stage width, top-1,
route-or-exit policies) get random batch-norm statistics and opinionated gates (`dynmoe.models.randomise`): timing
depends on the exit mix and the experts' widths, not on trained weights. DynMoE's exit thresholds are fitted
(`fit_thresholds`) on calibration images so that `--exit-mix` of them leave at each exit (default: the test exit mix of
the trained DynMoE at matched accuracy in data/results/latency_bench.json). Then, at batch 1 on one
thread, on consecutive test images:

- `static`: the static network as one ONNX graph, driven with IO binding (one call per image);
- `stages`: `StageNet`, one graph per (stage, expert) with the exit head and the policy inside, IO binding;
- `stages + identity conv`: the same with an identity 1x1 conv where a graph's input feeds an identity shortcut;
- `fused (old)`, `per-segment (old)`: `OrtNet` with fused graphs / per-segment graphs (`session.run`);
- `ceiling`: one graph per path (stem to the exit the image takes, its experts known in advance), one call per image:
  zero dispatch, the most a runtime could get;
- `stages replay`, `stages bare`: the path each image took, replayed on the stage graphs with and without their
  gates and policies: their difference is what the decisions cost, measured inside the graphs.
- `stages, plain decisions`, `stages replay, plain decisions`: the same with the decisions exported as the policy
  computes them (`export_stages(lean=False)`), to measure what `LeanPolicySeg` saves (the exit-then-route rule only;
  other rules export the same either way).
- `eager static`, `eager stages` (`--eager`): the static network as one frozen TorchScript module, and
  `TorchStages` (the stage graphs as frozen TorchScript modules), one torch thread.

Each runtime runs all `--n-timed` images in a block; blocks alternate between runtimes for `--rounds` rounds (after one
warm-up round). Reported: median and interquartile range over rounds of the mean ms per image; the latency saving
(1 - runtime / static), the MAC saving and their ratio (issue 14's target: >= 0.8 on onnxruntime, >= 0.6 eager), and
the decisions' share of the stage runtime's latency (target < 2 %). Before timing, the stage runtime (and the eager
one) is checked against `DynNet.infer` on `--n-check` images: same predictions, exits, experts and MACs.

    python benchmarks/bench_stage_graphs.py --data-dir /work/shared/data                     # ResNet-20
    python benchmarks/bench_stage_graphs.py --data-dir /work/shared/data --widen 2 --out data/results/runtime/stages_resnet20x2.json
    python benchmarks/bench_stage_graphs.py --unit-weight ...    # gates renormalised over the kept expert: weight exactly 1
"""
import argparse, os, sys, tempfile, time
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe, not another
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_eager import widened

TARGETS = dict(onnxruntime=0.8, eager=0.6, decision_share=0.02)

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n', 2)[2])
    p.add_argument('--data-dir', default=None, help='folder holding cifar-10-batches-py/ (default: random images)')
    p.add_argument('--backbone', default='resnet20', help='one of dynmoe.models.BACKBONES (same for both networks)')
    p.add_argument('--widen', type=int, default=1, help='multiply every stage width of the backbone by this')
    p.add_argument('--exit-mix', default='data/results/latency_bench.json',
                   help="share of calibration images leaving at each exit, e.g. 0.5,0.25,0.25, or a latency_bench "
                        "results file: the test-image exit mix at matched accuracy there (the default)")
    p.add_argument('--expert-width', type=float, default=None,
                   help="experts' width as a fraction of the stage width (default DynNet's 0.5; airres: 0.25)")
    p.add_argument('--unit-weight', action='store_true', help='gates renormalise over the kept expert (weight exactly 1)')
    p.add_argument('--n-check', type=int, default=1000, help='test images checked against DynNet.infer')
    p.add_argument('--n-timed', type=int, default=500, help='test images per timed block')
    p.add_argument('--rounds', type=int, default=15, help='alternating blocks of each runtime')
    p.add_argument('--n-cal', type=int, default=1000, help='calibration images the thresholds are fitted on')
    p.add_argument('--eager', action='store_true', help='also time the frozen TorchScript stages against the static net')
    p.add_argument('--quick', action='store_true', help='smoke test: 64 images, 2 rounds')
    p.add_argument('--static-ckpt', default=None, help='a trained static network (last.pt); with --dynmoe-ckpt')
    p.add_argument('--dynmoe-ckpt', default=None,
                   help='a trained DynMoE (last.pt): time the trained pair, exit thresholds matched on validation')
    p.add_argument('--match-drop', type=float, default=0.5,
                   help="with trained networks whose DynMoE cannot reach the static network's validation accuracy: "
                        "match its own full-path validation accuracy minus this many points instead")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='results file (default data/results/runtime/stages_<backbone>.json)')
    a = p.parse_args(argv)
    if (a.static_ckpt is None) != (a.dynmoe_ckpt is None): p.error('give both --static-ckpt and --dynmoe-ckpt, or neither')
    if a.dynmoe_ckpt and a.data_dir is None: p.error('trained networks need real images: give --data-dir')
    if a.dynmoe_ckpt and a.unit_weight: p.error('--unit-weight changes the gates: it is for random networks, not trained ones')
    if a.quick: a.n_check, a.n_timed, a.rounds, a.n_cal = 64, 64, 2, 128
    return a

def load_images(a)->tuple:
    "Calibration and test images (normalised float32, NCHW), and where they came from."
    g = torch.Generator().manual_seed(a.seed)
    n_test = max(a.n_check, a.n_timed)
    if a.data_dir is None:
        return torch.randn(a.n_cal, 3, 32, 32, generator=g), torch.randn(n_test, 3, 32, 32, generator=g), 'random normal'
    from dynmoe.data import get_dataset, normalise
    ds = get_dataset('cifar10', a.data_dir, download=False)
    pick = lambda s, n: normalise(s.x[torch.randperm(len(s), generator=g)[:n]], ds.mean, ds.std).contiguous()
    return pick(ds.valid, a.n_cal), pick(ds.test, n_test), f'cifar10 valid (calibration) / test: {ds.source}'

def exit_mix(arg:str)->tuple:
    "The exit mix: comma-separated shares, or the matched-accuracy test exit histogram of a latency_bench file."
    if not arg.endswith('.json'): return tuple(float(f) for f in arg.split(','))
    from dynmoe.core import load_results
    h = np.array(load_results(arg)['results']['matched']['test_exit_hist'], dtype=float)
    return tuple((h / h.sum()).round(4).tolist())

def load_pair(a)->tuple:
    "The trained static network and DynMoE, checked to share a backbone; the DynMoE's run config."
    from dynmoe.experiment import load_trained
    (static, cs), (dyn, cd) = load_trained(a.static_ckpt), load_trained(a.dynmoe_ckpt)
    if (static.kind, dyn.kind) != ('static', 'dynmoe'):
        raise SystemExit(f"bench_stage_graphs: error: need a static and a dynmoe checkpoint, got {static.kind} and {dyn.kind}")
    if cs.backbone != cd.backbone:
        raise SystemExit(f"bench_stage_graphs: error: backbones differ ({cs.backbone} and {cd.backbone})")
    return static.float().eval(), dyn.float().eval(), cd

def matched_thresholds(a, static, dyn, cfg)->dict:
    """Exit thresholds fitted on the training run's validation split (fp32, as the runtimes compute): the cheapest in
    MACs whose accuracy reaches the static network's there; where DynMoE's full path cannot, its own full-path
    accuracy minus `--match-drop` points, and the record says so."""
    from dynmoe.data import get_dataset
    from dynmoe.evaluation import collect, normaliser
    from dynmoe.latency import choose_thresholds
    ds = get_dataset(cfg.dataset, a.data_dir, val_size=cfg.val_size, seed=cfg.seed, download=False)
    norm = normaliser(ds.mean, ds.std)
    acc = lambda o, k: 100 * (o.logits[:, k].argmax(1) == o.y).double().mean().item()
    os_, od = (collect(m, *ds.valid, normalise=norm, amp=False, progress=False) for m in (static, dyn))
    static_acc, full_acc = acc(os_, -1), acc(od, -1)
    reachable = full_acc >= static_acc
    target = static_acc if reachable else full_acc - a.match_drop
    ch = choose_thresholds(od.scores, od.logits.argmax(2) == od.y[:, None], od.path_macs.double().numpy(), target / 100)
    return dict(thresholds=ch['thresholds'], valid_images=len(od), static_valid_acc_pct=static_acc,
                dynmoe_full_path_valid_acc_pct=full_acc, static_reachable=reachable,
                target_valid_acc_pct=target, reached_valid_acc_pct=100 * ch['acc'], valid_mmacs=ch['cost'] / 1e6,
                valid_exit_hist=ch['exit_hist'],
                rule=("the static network's validation accuracy" if reachable else
                      f"unreachable: DynMoE's full path is {static_acc - full_acc:.2f} pp below the static network on "
                      f"validation, so its own full-path accuracy minus {a.match_drop} pp"))

def build(a)->tuple:
    "The static network and DynMoE on the same backbone: random BN statistics (marked trained) and gates."
    from dynmoe.models import DynNet, randomise
    from dynmoe.core import set_seed
    from dynmoe.export import _routers
    set_seed(a.seed)
    bb = widened(a.backbone, a.widen)
    static = randomise(DynNet('static', bb), a.seed, mark_trained=True)
    ew = {} if a.expert_width is None else dict(expert_width=a.expert_width)
    dyn = randomise(DynNet('dynmoe', bb, **ew), a.seed + 1, zero_bias=False, mark_trained=True)
    if a.unit_weight:
        for g in _routers(dyn): g.renorm = True   # top-1: the softmax over the one kept logit is exactly 1
    return static, dyn

# ---------------------------------------------------------------------------------------------- the ceiling
def path_graphs(dyn, routes:set, folder, weighted:bool)->dict:
    "One ONNX graph per path (exit k, experts): stem to exit k, decisions computed, no dispatch; {path: session}."
    import torch.nn as nn
    from dynmoe.export import StemGraph, StageGraph, _fold, _export_graphs, _outs, ort_session
    m, _ = _fold(dyn)
    class PathGraph(nn.Module):
        def __init__(self, k, experts):
            super().__init__()
            self.first, last = StemGraph(m, weighted), m.spec.exit_stage(k)
            self.stages = nn.ModuleList(StageGraph(m, s, experts[s], weighted) for s in range(last + 1))
            n_scores = min(last + 1, m.S - 1) if m.has_exits else 0   # every policy on the path, the exit's too
            self.in_names, self.out_names = ['x'], ['z'] + [f'score{s}' for s in range(n_scores)]
        def forward(self, x):
            env = dict(zip(self.first.out_names, _outs(self.first(x))))
            scores = []
            for g in self.stages:
                out = dict(zip(g.out_names, _outs(g(*(env[n] for n in g.in_names)))))
                if 'score' in out: scores.append(out['score'])
                env = {n.removesuffix('_next'): v for n, v in out.items()}
            return (out['z'], *scores)   # the scores too: the decisions are computed
    x = torch.zeros(1, m.in_ch, m.img_size, m.img_size)
    graphs = {f'path.{k}.' + '.'.join(map(str, ex)): (PathGraph(k, ex), (x,)) for k, ex in sorted(routes)}
    files = _export_graphs(graphs, folder, 'paths', 20)
    return {r: ort_session(folder/files[f'path.{r[0]}.' + '.'.join(map(str, r[1]))]) for r in sorted(routes)}

def bound_call(sess, x_buf:np.ndarray):
    "`sess` bound to the input buffer `x_buf` and to output buffers allocated once: a call that runs it."
    from dynmoe.export import _bound, _DTYPES
    outs = {o.name: np.zeros(o.shape, _DTYPES[o.type]) for o in sess.get_outputs()}
    return _bound(sess, {sess.get_inputs()[0].name: x_buf}, outs)

# ---------------------------------------------------------------------------------------------- timing
def alternate(fns:dict, n:int, rounds:int, warmup:int=1)->dict:
    "Time callables of the image index in alternating blocks, each a pass over images 0..n-1; (rounds,) ms per image."
    for f in fns.values():
        for _ in range(warmup):
            for j in range(n): f(j)
    t = {k: np.zeros(rounds) for k in fns}
    for r in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for j in range(n): f(j)
            t[k][r] = (time.perf_counter() - t0) * 1e3 / n
    return t

def spread(v)->dict:
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return dict(median_ms=float(med), iqr_ms=[float(q1), float(q3)])

def summarise(t:dict, base:str, mac_saving:float, names)->dict:
    "Per runtime: median/IQR ms per image, latency saving against `base`, and (latency saving) / (MAC saving)."
    rows = {}
    for k in names:
        per_round = (1 - t[k] / t[base]) / mac_saving   # paired: the blocks of one round
        lat = 1 - np.median(t[k]) / np.median(t[base])
        rows[k] = spread(t[k]) | dict(latency_saving=float(lat), ratio=float(lat / mac_saving),
                                      ratio_per_round_iqr=np.percentile(per_round, [25, 75]).tolist())
    return rows

# ---------------------------------------------------------------------------------------------- main
def onnx_runtimes(a, static, dyn, thr, folder)->tuple:
    "Export both networks every way; the runtimes and the export seconds."
    from dynmoe.export import export_onnx, export_stages, OrtNet, StageNet
    t0 = time.time()
    rs = OrtNet(export_onnx(static, folder/'static', fused=False))
    export_onnx(dyn, folder/'dyn')
    export_stages(dyn, folder/'dyn', bare=True)
    export_stages(dyn, folder/'dyn_id', ident=True)
    export_stages(dyn, folder/'dyn_plain', lean=False)   # decisions as the policy computes them (before LeanPolicySeg)
    rts = dict(segments=OrtNet(folder/'dyn'), fused=OrtNet(folder/'dyn', fused=True), stages=StageNet(folder/'dyn'),
               bare=StageNet(folder/'dyn', bare=True), ident=StageNet(folder/'dyn_id'), plain=StageNet(folder/'dyn_plain'))
    return rs, rts, time.time() - t0

def checks(dyn, rts:dict, x, thr, eager)->dict:
    "Each dynamic runtime against `DynNet.infer` on `x`."
    from dynmoe.export import check_against_torch
    out = {k: check_against_torch(dyn, rts[k], x, thr) for k in ('stages', 'ident', 'fused', 'plain')}
    if eager is not None: out['eager stages'] = check_against_torch(dyn, eager, x, thr)
    return out

def timed_fns(a, rs, rts, thr, xs, routes, ceiling, eager)->dict:
    "name: callable of the image index, for every runtime timed."
    thr_l = thr.tolist()
    xb = np.zeros_like(xs[0])
    static_call = bound_call(rs.sessions['whole'], xb)
    def static(j):
        np.copyto(xb, xs[j])
        static_call()
    ceil_calls = {r: bound_call(s, xb) for r, s in ceiling.items()}
    def ceil(j):
        np.copyto(xb, xs[j])
        ceil_calls[routes[j]]()
    st, bare = rts['stages'], rts['bare']
    fns = {'static': static, 'stages': lambda j: st._run(xs[j], thr_l),
           'stages + identity conv': lambda j: rts['ident']._run(xs[j], thr_l),
           'fused (old)': lambda j: rts['fused']._one(xs[j], thr_l, None, None),
           'per-segment (old)': lambda j: rts['segments']._one(xs[j], thr_l, None, None), 'ceiling': ceil,
           'stages replay': lambda j: st.replay(xs[j], *routes[j]), 'stages bare': lambda j: bare.replay(xs[j], *routes[j]),
           'stages, plain decisions': lambda j: rts['plain']._run(xs[j], thr_l),
           'stages replay, plain decisions': lambda j: rts['plain'].replay(xs[j], *routes[j])}
    if eager is not None:
        ts, es = eager
        xt = [torch.from_numpy(x) for x in xs]
        def eager_static(j):
            with torch.inference_mode(): es(xt[j])   # as TorchStages._run runs
        fns |= {'eager static': eager_static, 'eager stages': lambda j: ts._run(xt[j], thr_l)}
    return fns

def main():
    a = parse()
    torch.set_num_threads(1)
    from dynmoe.core import save_results
    from dynmoe.exits import fit_thresholds
    from dynmoe.export import StaticWhole, TorchStages, _frozen, _fold, weight_is_one
    import onnxruntime
    load0, t_start = os.getloadavg(), time.time()
    matched = None
    if a.dynmoe_ckpt:
        static, dyn, cfg = load_pair(a)
        xc, xt, src = load_images(a)
        matched = matched_thresholds(a, static, dyn, cfg)
        thr, mix = torch.tensor(matched['thresholds'], dtype=torch.float32), None
    else:
        static, dyn = build(a)
        xc, xt, src = load_images(a)
        mix = exit_mix(a.exit_mix)
        with torch.no_grad(): thr = fit_thresholds(dyn(xc).exit_scores.float(), mix)
    folder = tempfile.mkdtemp(prefix='bench_stages_')
    from pathlib import Path
    folder = Path(folder)
    rs, rts, export_s = onnx_runtimes(a, static, dyn, thr, folder)
    eager = None
    if a.eager:
        ws = _fold(static)[0]
        eager = (TorchStages(dyn), _frozen(StaticWhole(ws), (xt[:1],)))
    chk = checks(dyn, rts, xt[:a.n_check], thr, eager[0] if eager else None)
    xs = [x[None].numpy().copy() for x in xt[:a.n_timed]]                 # (1, C, H, W) float32 each
    o = rts['stages'].infer(xt[:a.n_timed], thr)
    routes = [(int(k), tuple(e[:, 0].tolist())) for k, e in zip(o.exit, o.experts)]
    routes = [(k, ex[:rts['stages'].spec.exit_stage(k) + 1]) for k, ex in routes]
    ceiling = path_graphs(dyn, set(routes), folder, rts['stages'].meta['weighted'])
    fns = timed_fns(a, rs, rts, thr, xs, routes, ceiling, eager)
    t = alternate(fns, a.n_timed, a.rounds)
    static_macs, dyn_macs = static.full_macs(), o.macs.double().mean().item()
    mac_saving = 1 - dyn_macs / static_macs
    onnx_names = ['stages', 'stages + identity conv', 'fused (old)', 'per-segment (old)', 'ceiling', 'stages replay', 'stages bare',
                  'stages, plain decisions', 'stages replay, plain decisions']
    rows = summarise(t, 'static', mac_saving, ['static'] + onnx_names)
    if a.eager: rows |= summarise(t, 'eager static', mac_saving, ['eager static', 'eager stages'])
    dec = t['stages replay'] - t['stages bare']                             # (rounds,) ms per image, paired
    decision = dict(ms=spread(dec), share=float(np.median(dec / t['stages'])),
                    share_iqr=np.percentile(dec / t['stages'], [25, 75]).tolist())
    dec0 = t['stages replay, plain decisions'] - t['stages bare']          # the same, decisions as the policy computes them
    decision['plain'] = dict(ms=spread(dec0), share=float(np.median(dec0 / t['stages, plain decisions'])),
                             share_iqr=np.percentile(dec0 / t['stages, plain decisions'], [25, 75]).tolist())
    load1 = os.getloadavg()
    res = dict(backbone=rts['stages'].meta['backbone'], widths=[b.channels for b in dyn.bodies],
               expert_widths=[b.widths for b in dyn.bodies], weighted=rts['stages'].meta['weighted'],
               unit_weight=a.unit_weight, weight_is_one=weight_is_one(dyn), images=src, exit_mix_target=mix,
               trained=dict(static=a.static_ckpt, dynmoe=a.dynmoe_ckpt, matched=matched) if matched else None,
               thresholds=thr.tolist(), exit_hist=torch.bincount(o.exit, minlength=dyn.K).tolist(),
               n_paths=len(set(routes)), static_mmacs=static_macs / 1e6, dynmoe_mmacs=dyn_macs / 1e6,
               mac_saving=mac_saving, runtimes=rows, decision=decision, checks=chk, targets=TARGETS,
               calls_per_image={k: 2 + min(k, dyn.S - 1) for k in range(dyn.K)},
               onnxruntime=onnxruntime.__version__, threads=1, export_s=export_s,
               timing=(f"batch 1, 1 thread; alternating blocks of {a.n_timed} consecutive images per runtime, "
                       f"{a.rounds} rounds after 1 warm-up round; median and IQR over rounds of the mean ms per image"),
               raw_ms={k: v.tolist() for k, v in t.items()})
    out = a.out or f"data/results/runtime/stages_{res['backbone']}{'_unitw' if a.unit_weight else ''}.json"
    save_results(out, res, seed=a.seed, data_dir=a.data_dir, load_avg=dict(before=load0, after=load1),
                 wall_s=round(time.time() - t_start))
    for k, r in rows.items():
        print(f"{k:18s} {r['median_ms']:.4f} ms [{r['iqr_ms'][0]:.4f}, {r['iqr_ms'][1]:.4f}]  "
              f"latency saving {r['latency_saving']:+.3f}  ratio {r['ratio']:+.3f}")
    print(f"MACs: static {static_macs / 1e6:.2f} MMACs, dynmoe {dyn_macs / 1e6:.2f} MMACs (saving {mac_saving:.3f}); "
          f"exits {res['exit_hist']}; decisions {decision['ms']['median_ms'] * 1e3:.1f} us = "
          f"{100 * decision['share']:.2f} % of the stage runtime (plain decisions: {decision['plain']['ms']['median_ms'] * 1e3:.1f} us "
          f"= {100 * decision['plain']['share']:.2f} %); checks "
          + ', '.join(f"{k}: {c['disagree_not_near']} disagree, same MACs {c['same_macs']:.3f}" for k, c in chk.items()))
    print(f"wrote {out}; load average before {load0}, after {load1}")

if __name__ == '__main__': main()
