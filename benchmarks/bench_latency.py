"""Latency of a static ResNet-20 against a DynMoE ResNet-20 on a mobile proxy: onnxruntime on this CPU, ONE thread, batch 1.

Usage: python benchmarks/bench_latency.py --train-seconds 600       # train both (~10 min each), measure, write data/results/latency_*.json
       python benchmarks/bench_latency.py --preset smoke              # seconds, synthetic data: checks the script runs (writes to /tmp)
       python benchmarks/bench_latency.py --static-ckpt A/last.pt --dynmoe-ckpt B/last.pt   # measure given dynmoe-train checkpoints

What it does (chapter 12, nbs/12_export.ipynb and nbs/12_latency.ipynb, explains every step):
1. trains a static and a DynMoE ResNet-20 (dynmoe.experiment's `quick` recipe, as many epochs as fit in --train-seconds, measured
   from the step time of a few calibration steps) unless checkpoints exist in --ckpt-dir (or are given); EMA weights are used;
2. exports both with dynmoe.export.export_onnx (per-segment graphs; the static net also as one graph) and checks the
   exports against PyTorch on test images (same predictions, exits, experts);
3. measures both latency lookup tables (median over interleaved rounds);
4. picks the DynMoE's exit thresholds on the validation split: the cheapest (by LUT latency) whose validation accuracy
   reaches the static network's;
5. times every one of --n-test test images through the static one-graph export, the static per-segment export, the DynMoE
   at those thresholds and the DynMoE's deepest path (no exit), interleaved in random order per image, --repeats times;
   per image the median is kept; means over images are quoted (a mean latency is what a stream of frames costs);
6. runs a camera stream of clean / blurred / noisy test frames (dynmoe.latency.camera_stream) under a range of per-frame
   deadlines: miss rate and accuracy for static, DynMoE and deadline-aware DynMoE.
Timings are never asserted anywhere; the load average before and after is recorded.
"""
import os, time, random
from pathlib import Path
import numpy as np
import torch
from fastcore.script import call_parse, store_true
from dynmoe.core import save_results, load_results, set_seed, autocast
from dynmoe.data import get_dataset, find_cifar10, normalise
from dynmoe.experiment import make_config, run_training, load_trained, build_model, build_criterion
from dynmoe.export import export_onnx, OrtNet, check_against_torch, path_cost
from dynmoe.latency import (measure_lut, prediction_quality, exit_costs_per_image, choose_thresholds, decision_share,
                            camera_stream, deadline_report, FRAME_KINDS)

PRESETS = dict(default=dict(n_test=2000, repeats=5, lut_repeats=300, n_stream=1000, stream_repeats=3, n_curve=1000, curve_points=8),
               smoke=dict(n_test=64, repeats=2, lut_repeats=20, n_stream=64, stream_repeats=1, n_curve=32, curve_points=3))

def calibrate_epochs(cfg, ds, seconds:float, steps:int=6)->tuple[int, float]:
    "Epochs that fit in `seconds`: time a few training steps of the model `cfg` describes (forward, loss, backward, SGD)."
    set_seed(cfg.seed)
    model = build_model(cfg, len(ds.classes)).to(memory_format=torch.channels_last); crit = build_criterion(cfg, model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = normalise(ds.train.x[:cfg.batch_size], ds.mean, ds.std), ds.train.y[:cfg.batch_size]   # channels-last
    ts = []
    for i in range(steps):
        t0 = time.perf_counter()
        with autocast('cpu'): loss, _ = crit(model(x), y, 'joint')
        opt.zero_grad(); loss.backward(); opt.step(); ts.append(time.perf_counter() - t0)
    step_s = float(np.median(ts[2:])) * 1.1   # +10 %: bi-level outer steps, EMA, evaluation
    n_train = len(ds.train) if not cfg.max_train else min(cfg.max_train, len(ds.train))
    return max(1, int(seconds / (step_s * (n_train // cfg.batch_size)))), step_s

def train(kind:str, seconds:float, data_dir:str, out:Path, seed:int, smoke:bool)->dict:
    "Train `kind` for about `seconds` with dynmoe.experiment's quick recipe (or the smoke preset); returns its run summary."
    kw = dict(model=kind, seed=seed, out_dir=str(out), quiet=True)
    if smoke: cfg = make_config('smoke', **kw)
    else:
        cfg = make_config('quick', data_dir=data_dir, **kw)
        ds = get_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size, seed=cfg.seed)
        epochs, step_s = calibrate_epochs(cfg, ds, seconds)
        steps = epochs * (len(ds.train) // cfg.batch_size)
        cfg = make_config('quick', data_dir=data_dir, epochs=epochs, warmup_epochs=min(1.0, 0.2 * epochs),
                          ema_decay=0.99 if steps < 5000 else cfg.ema_decay, **kw)   # EMA horizon ~100 steps for short runs (Config's advice)
        print(f"{kind}: {step_s:.2f} s per step -> {epochs} epochs in ~{seconds} s")
    return run_training(cfg)

@torch.no_grad()
def torch_view(model, x, bs=500)->dict:
    "One fp32 PyTorch forward over x: every exit's correctness later, exit scores, routes."
    out = {k: [] for k in ('logits', 'scores', 'experts')}
    for i in range(0, len(x), bs):
        o = model(x[i:i+bs])
        out['logits'].append(torch.stack([z.float() for z in o.logits], 1))
        if o.exit_scores is not None: out['scores'].append(o.exit_scores.float())
        out['experts'].append(torch.stack([r.idx[:, 0] if r is not None else torch.zeros(len(o.logits[0]), dtype=torch.long) for r in o.routings], 1))
    return {k: torch.cat(v) if v else None for k, v in out.items()}

def timed(runs:dict, x, repeats:int, seed:int)->dict:
    "Per image, each run in a fresh random order, `repeats` times; the median ms per image and run, and the last outputs."
    rng, names = random.Random(seed), list(runs)
    ms = {n: np.empty((len(x), repeats)) for n in names}; outs = {n: [None] * len(x) for n in names}
    for r in range(repeats):
        for j in range(len(x)):
            rng.shuffle(names)
            for n in names:
                o = runs[n](x[j:j+1]); ms[n][j, r] = float(o.ms[0]); outs[n][j] = o
    return {n: dict(ms=np.median(ms[n], 1), out=outs[n]) for n in runs}

def cat_out(outs:list)->dict:
    return dict(pred=torch.cat([o.logits.argmax(1) for o in outs]), exit=torch.cat([o.exit for o in outs]),
                macs=torch.cat([o.macs for o in outs]).double(), paths=[o.paths[0] for o in outs], forced=torch.cat([o.forced for o in outs]))

@call_parse
def main(train_seconds:int=600, # training budget per model (quick recipe, epochs from a calibrated step time)
         data_dir:str=None, # folder holding cifar-10-batches-py/ (default: dynmoe.data.find_cifar10)
         ckpt_dir:str='/tmp/dynmoe_latency', # where trained models (dynmoe-train runs) and ONNX exports go
         static_ckpt:str=None, dynmoe_ckpt:str=None, # use these dynmoe-train checkpoints instead of training
         retrain:store_true=False, # train even if ckpt_dir already holds runs
         preset:str='default', # 'default' or 'smoke' (synthetic data, seconds; results go to /tmp)
         n_test:int=None, repeats:int=None, lut_repeats:int=None, n_stream:int=None, stream_repeats:int=None, n_curve:int=None, curve_points:int=None,
         severity:int=5, # corruption severity of the stream's blurred / noisy frames
         seed:int=0,
         out:str='data/results', # results folder
        ):
    "Static vs DynMoE latency on onnxruntime (one thread, batch 1): LUT, matched-accuracy comparison, camera stream."
    if preset not in PRESETS: raise SystemExit(f"unknown preset {preset!r}; choose one of {tuple(PRESETS)}")
    P = {k: v if v is not None else PRESETS[preset][k] for k, v in dict(n_test=n_test, repeats=repeats, lut_repeats=lut_repeats, n_stream=n_stream,
                                                                         stream_repeats=stream_repeats, n_curve=n_curve, curve_points=curve_points).items()}
    smoke = preset == 'smoke'
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    out = Path('/tmp/dynmoe_latency_smoke/results' if smoke and out == 'data/results' else out)
    ckpt_dir = Path(ckpt_dir + ('_smoke' if smoke else ''))
    root = None if smoke else str(Path(find_cifar10(data_dir) or data_dir or 'data').resolve())
    load0 = list(os.getloadavg())

    # 1. models
    given = dict(static=static_ckpt, dynmoe=dynmoe_ckpt); ckpts, train_info = {}, {}
    for kind in ('static', 'dynmoe'):
        path = Path(given[kind]) if given[kind] else ckpt_dir/kind/'last.pt'
        if not given[kind] and (retrain or not path.exists()):
            t0 = time.time(); res = train(kind, train_seconds, root, ckpt_dir/kind, seed, smoke)
            train_info[kind] = dict(seconds=time.time() - t0, epochs=res['config']['epochs'], test=res['test'], trained_now=True)
        else:
            s = path.parent/'summary.json'   # written by the dynmoe-train run that made the checkpoint
            prev = load_results(s)['results'] if s.exists() else {}
            train_info[kind] = dict(trained_now=False, summary=str(s) if s.exists() else None, seconds=prev.get('train_seconds'),
                                    epochs=prev.get('config', {}).get('epochs'), test=prev.get('test'))
        ckpts[kind] = str(path); train_info[kind]['checkpoint'] = str(path)
    models = {k: load_trained(p)[0].float().eval() for k, p in ckpts.items()}
    cfg = load_trained(ckpts['dynmoe'])[1]
    ds = get_dataset(cfg.dataset, None if smoke else root, val_size=cfg.val_size, seed=cfg.seed)
    xv, xt = (normalise(s.x, ds.mean, ds.std).contiguous() for s in (ds.valid, ds.test))   # (N, C, H, W) memory, as exported
    yv, yt = ds.valid.y, ds.test.y

    # 2. export and check
    rts = {k: OrtNet(export_onnx(m, ckpt_dir/'onnx'/k, mean=ds.mean, std=ds.std)) for k, m in models.items()}
    rs, rd = rts['static'], rts['dynmoe']
    rdf = OrtNet(rd.folder, fused=True)   # the deployment runtime: graphs cut only at decision points
    thr_default = torch.tensor(rd.meta['default_thresholds'])

    # 3. latency lookup tables (interleaved rounds, medians)
    luts = {k: measure_lut(rt, xt[:1], repeats=P['lut_repeats'], seed=seed) for k, rt in rts.items()}

    # 4. thresholds on validation: cheapest (LUT ms) reaching the static network's validation accuracy
    vs, vd = torch_view(models['static'], xv), torch_view(models['dynmoe'], xv)
    static_val_acc = (vs['logits'][:, -1].argmax(1) == yv).float().mean().item()
    correct_v = (vd['logits'].argmax(2) == yv[:, None])
    cost_v = exit_costs_per_image(rd.meta, luts['dynmoe']['segments'], vd['experts'], fused=True)   # priced as the fused runtime runs
    ch = choose_thresholds(vd['scores'], correct_v, cost_v, static_val_acc)
    thr = torch.tensor(ch['thresholds'])
    chk = check_against_torch(models['dynmoe'], rd, xt[:min(1000, len(xt))], thr)
    chk_fused = check_against_torch(models['dynmoe'], rdf, xt[:min(1000, len(xt))], thr)
    chk_default = check_against_torch(models['dynmoe'], rd, xt[:min(1000, len(xt))], thr_default)
    chk_static = check_against_torch(models['static'], rs, xt[:min(1000, len(xt))])

    # 5. per-image latency on test images, interleaved
    n = min(P['n_test'], len(xt)); xs, ys = xt[:n], yt[:n]
    inf = torch.full((rd.K - 1,), float('inf'))
    T = timed({'static': lambda x: rs.infer(x, whole=True), 'static_segments': lambda x: rs.infer(x),
               'dynmoe': lambda x: rd.infer(x, thr), 'dynmoe_fused': lambda x: rdf.infer(x, thr),
               'dynmoe_deepest': lambda x: rd.infer(x, inf), 'dynmoe_fused_deepest': lambda x: rdf.infer(x, inf)}, xs, P['repeats'], seed)
    O = {k: cat_out(v['out']) for k, v in T.items()}
    static_macs = rs.macs['whole']
    def summary(k):
        o, ms = O[k], T[k]['ms']
        return dict(acc=(o['pred'] == ys).float().mean().item(), mean_ms=float(ms.mean()), median_ms=float(np.median(ms)),
                    p90_ms=float(np.percentile(ms, 90)), mean_mmacs=o['macs'].mean().item() / 1e6,
                    exit_hist=torch.bincount(o['exit'], minlength=rd.K).tolist() if k.startswith('dynmoe') else None)
    runs = {k: summary(k) for k in T}
    mac_saving = 1 - runs['dynmoe']['mean_mmacs'] * 1e6 / static_macs
    lat_saving = {k: 1 - runs[k]['mean_ms'] / runs['static']['mean_ms'] for k in ('dynmoe_fused', 'dynmoe')}
    matched = dict(static_val_acc=static_val_acc, dynmoe_val_acc=ch['acc'], thresholds=ch['thresholds'], matched_on_val=ch['matched'],
                   val_exit_hist=ch['exit_hist'], n_test_images=n, repeats=P['repeats'],
                   static_test_acc=runs['static']['acc'], dynmoe_test_acc=runs['dynmoe_fused']['acc'],
                   static_mean_ms=runs['static']['mean_ms'], dynmoe_fused_mean_ms=runs['dynmoe_fused']['mean_ms'],
                   dynmoe_segments_mean_ms=runs['dynmoe']['mean_ms'], static_segments_mean_ms=runs['static_segments']['mean_ms'],
                   static_mmacs=static_macs / 1e6, dynmoe_mean_mmacs=runs['dynmoe']['mean_mmacs'], mac_saving=mac_saving,
                   latency_saving_fused=lat_saving['dynmoe_fused'], latency_saving_segments=lat_saving['dynmoe'],
                   saving_ratio_fused=lat_saving['dynmoe_fused'] / mac_saving if mac_saving > 0 else float('nan'),
                   saving_ratio_segments=lat_saving['dynmoe'] / mac_saving if mac_saving > 0 else float('nan'),
                   speedup_fused=runs['static']['mean_ms'] / runs['dynmoe_fused']['mean_ms'], test_exit_hist=runs['dynmoe']['exit_hist'])
    prediction = {}
    for k in ('dynmoe', 'dynmoe_fused', 'dynmoe_deepest', 'dynmoe_fused_deepest'):
        pred_ms = path_cost(O[k]['paths'], luts['dynmoe']['segments'])
        prediction[k] = prediction_quality(T[k]['ms'], pred_ms)
        if k in ('dynmoe', 'dynmoe_fused'): prediction[k] |= dict(measured_ms=T[k]['ms'].tolist(), predicted_ms=pred_ms.tolist(), exit=O[k]['exit'].tolist())
    dshare = decision_share(luts['dynmoe'], full_ms=runs['dynmoe_deepest']['mean_ms'])
    dshare['mac_share'] = {k: v / models['dynmoe'].full_macs() for k, v in
                           {n_: rd.macs[n_] for n_ in dshare['decision_ms']}.items()}
    dshare['static_whole_ms'] = runs['static']['mean_ms']

    # 5b. the accuracy-latency curve: thresholds for a range of validation-accuracy targets, each timed against the static net
    lo, hi = correct_v[:, 0].float().mean().item(), choose_thresholds(vd['scores'], correct_v, cost_v, 1.0)['acc']
    nc = min(P['n_curve'], len(xt)); curve = []
    for tgt in np.linspace(lo, hi, P['curve_points']):
        c = choose_thresholds(vd['scores'], correct_v, cost_v, float(tgt)); th = torch.tensor(c['thresholds'])
        tc = timed({'static': lambda x: rs.infer(x, whole=True), 'dynmoe_fused': lambda x, th=th: rdf.infer(x, th)}, xt[:nc], P['repeats'], seed + 3)
        oc = cat_out(tc['dynmoe_fused']['out'])
        ms_s, ms_d, mm = tc['static']['ms'].mean(), tc['dynmoe_fused']['ms'].mean(), oc['macs'].mean().item()
        ls, msv = 1 - ms_d / ms_s, 1 - mm / static_macs
        curve.append(dict(val_target=float(tgt), val_acc=c['acc'], thresholds=c['thresholds'], test_acc=(oc['pred'] == yt[:nc]).float().mean().item(),
                          static_test_acc=(cat_out(tc['static']['out'])['pred'] == yt[:nc]).float().mean().item(),
                          dynmoe_mean_ms=float(ms_d), static_mean_ms=float(ms_s), dynmoe_mean_mmacs=mm / 1e6, latency_saving=float(ls),
                          mac_saving=msv, saving_ratio=float(ls / msv) if msv > 0 else float('nan'),
                          exit_hist=torch.bincount(oc['exit'], minlength=rd.K).tolist()))

    # 6. camera stream under deadlines; the deadline-aware runtime scales LUT predictions by the median measured/predicted
    #    latency ratio of the fused runtime on the timed test images (step 5: medians of --repeats runs; no labels involved)
    margin = prediction['dynmoe_fused']['median_measured_over_predicted']
    fr, fy, fk, src = camera_stream(P['n_stream'], severity=severity, seed=seed + 1, root=None if smoke else root)
    fx = rd.preprocess(fr)
    base = timed({'static': lambda x: rs.infer(x, whole=True), 'dynmoe': lambda x: rdf.infer(x, thr)}, fx, P['stream_repeats'], seed + 1)
    static_med = float(np.median(base['static']['ms']))
    deadlines = [round(static_med * f, 4) for f in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5)]
    stream = {'static': [], 'dynmoe': [], 'dynmoe, deadline-aware': []}
    class Stack:  # OrtOut-like view of per-frame runs, with per-frame median ms
        def __init__(s, outs, ms): s.logits = torch.cat([o.logits for o in outs]); s.exit = torch.cat([o.exit for o in outs]); s.forced = torch.cat([o.forced for o in outs]); s.ms = torch.from_numpy(ms)
    bs, bd = Stack(base['static']['out'], base['static']['ms']), Stack(base['dynmoe']['out'], base['dynmoe']['ms'])
    at_med = {}
    for dl in deadlines + [static_med]:
        da = timed({'aware': lambda x: rdf.infer(x, thr, deadline_ms=dl, lut=luts['dynmoe'], margin=margin)}, fx, P['stream_repeats'], seed + 2)['aware']
        ba = Stack(da['out'], da['ms'])
        reps = {name: deadline_report(o, fy, dl, fk) for name, o in (('static', bs), ('dynmoe', bd), ('dynmoe, deadline-aware', ba))}
        if dl == static_med: at_med = reps
        else:
            for name in stream: stream[name].append(reps[name])
    stream_res = dict(n_frames=len(fy), source=src, severity=severity, mix=dict(zip(FRAME_KINDS, (0.5, 0.25, 0.25))),
                      repeats=P['stream_repeats'], static_median_ms=static_med, deadlines_ms=deadlines, runs=stream, at_static_median=at_med,
                      thresholds=ch['thresholds'], deadline_margin=margin)

    load1 = list(os.getloadavg())
    common = dict(preset=preset, seed=seed)
    info = dict(threads=1, runtime=luts['dynmoe']['runtime'], loadavg_before=load0, loadavg_after=load1)
    out.mkdir(parents=True, exist_ok=True)
    save_results(out/'latency_lut.json', luts['dynmoe'], **common)
    save_results(out/'latency_lut_static.json', luts['static'], **common)
    save_results(out/'latency_stream.json', {**stream_res, **info}, **common)
    res = dict(**info, data=ds.source, checkpoints=ckpts, train=train_info,
               check_against_torch=dict(matched_thresholds=chk, matched_thresholds_fused=chk_fused, default_thresholds=chk_default, static=chk_static),
               matched=matched, runs=runs, curve=curve, prediction=prediction, decision_share=dshare, settings=P,
               lut_full_path_ms={k: decision_share(l)['full_ms'] for k, l in luts.items()})   # the LUT's deepest path
    p = save_results(out/'latency_bench.json', res, **common)
    M = matched
    print(f"static {M['static_test_acc']:.4f} acc, {M['static_mean_ms']:.3f} ms, {M['static_mmacs']:.2f} MMACs | "
          f"dynmoe {M['dynmoe_test_acc']:.4f} acc, {M['dynmoe_fused_mean_ms']:.3f} ms fused ({M['dynmoe_segments_mean_ms']:.3f} per-segment), "
          f"{M['dynmoe_mean_mmacs']:.2f} MMACs | latency saving {100*M['latency_saving_fused']:.1f} % fused ({100*M['latency_saving_segments']:.1f} % per-segment), "
          f"MAC saving {100*mac_saving:.1f} %, ratio {M['saving_ratio_fused']:.2f} fused ({M['saving_ratio_segments']:.2f}) | "
          f"LUT prediction r={prediction['dynmoe']['pearson_r']:.3f}, median rel. err {100*prediction['dynmoe']['median_rel_error']:.1f} % | "
          f"decisions {100*dshare['total_share']:.1f} % of the deepest path | {p}")
