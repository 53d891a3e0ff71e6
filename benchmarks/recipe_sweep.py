r"""A seed-replicated sweep of recipe variants of one network, chosen on validation: for each named variant
(RunConfig overrides on top of a preset, `fast` unless `--preset` names another) and each seed, train with
`dynmoe.experiment.run_training` in this process and record validation top-1 (the 5,000 held-out training images),
test top-1 (plain and with flip TTA) and the training wall time. Meant for a GPU, where a run of the static network
takes seconds, so that a recipe for the slow CPU target run can be chosen on several seeds; on a CPU each run takes
as long as a `recipe_ablation.py` row.

The results file is rewritten after every run, so a sweep cut short keeps what finished. Variants are given as
`name:key=value,key=value` separated by semicolons; `base` (no overrides) is always available:

    python benchmarks/recipe_sweep.py --data-dir /work/shared/data --seeds 0,1 \
        --variants 'base:muon_lr=0.24;bs512:batch_size=512,lr=0.75,lr_min=0.0525,muon_lr=0.24'

`--preset` picks the preset the variants override (default `fast`), and a variant's own `epochs=` wins over
`--epochs`, so a wider network can be given the fewer epochs that fit the same CPU minutes (`--air-scales` adds
`air` with scaled group widths as backbone `air_x<scale>`; benchmarks/bench_width.py measures what a step costs):

    python benchmarks/recipe_sweep.py --data-dir /tmp/data --device cuda --preset air --seeds 0,1 --air-scales 1.25 \
        --variants 'base;x1.25:backbone=air_x1.25,epochs=6'

Choose on the `valid_top1_pct` means; the test columns are recorded for the report, not for the choice.
"""
import argparse, os, sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch

def parse_variants(s:str)->dict:
    """`'a:k=v,k=v;b:k=v'` -> `{'a': {...}, 'b': {...}}` (values as Python literals); a bare name has no overrides.
    Unlike `--overrides` of dynmoe-compare, a variant may set its own `epochs=`."""
    from dynmoe.compare import parse_overrides
    out = {}
    for part in s.split(';'):
        if not part.strip(): continue
        name, _, kv = part.partition(':')
        name = name.strip()
        if not name or name in out: raise ValueError(f"each variant needs a new name before ':', got {part.strip()!r}")
        pairs = [t for t in kv.split(',') if t.strip()]
        epochs = [t for t in pairs if t.partition('=')[0].strip() == 'epochs']   # per variant: same minutes, not epochs
        out[name] = parse_overrides(','.join(t for t in pairs if t not in epochs))
        if epochs:
            v = epochs[-1].partition('=')[2].strip()
            try: e = float(v)
            except ValueError: raise ValueError(f"variant {name!r}: epochs must be a number, got {v!r}") from None
            out[name]['epochs'] = int(e) if e == int(e) else e
    if not out: raise ValueError("--variants is empty")
    return out

def summarise(rows:list, key:str)->dict:
    "Mean, sample std and count of `key` per variant."
    out = {}
    for name in dict.fromkeys(r['variant'] for r in rows):
        v = np.array([r[key] for r in rows if r['variant'] == name and r[key] is not None], dtype=float)
        out[name] = dict(mean=float(v.mean()) if len(v) else None, std=float(v.std(ddof=1)) if len(v) > 1 else None,
                         n=int(len(v)))
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default='data')
    p.add_argument('--variants', required=True, help="'name:key=value,...;name:...' RunConfig overrides of --preset")
    p.add_argument('--seeds', default='0')
    p.add_argument('--model', default='static')
    p.add_argument('--preset', default='fast', help="the preset the variants override (chapter 08a's PRESETS)")
    p.add_argument('--epochs', type=float, default=None, help="override the preset's epochs (every variant alike; a "
                   "variant's own epochs=... wins)")
    p.add_argument('--air-scales', default='', help="comma-separated width scales s: variants can then name "
                   "backbone=air_x<s>, `air` with its group widths times s (benchmarks/bench_width.py)")
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default='data/results/recipe/sweep.json')
    p.add_argument('--note', default='', help='recorded in the results file (e.g. where the data copy came from)')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import make_config, run_training
    from dynmoe.core import save_results
    if a.epochs is not None and a.epochs == int(a.epochs): a.epochs = int(a.epochs)
    base = dict(model=a.model, data_dir=a.data_dir, epochs=a.epochs, device=a.device)
    try:
        if a.air_scales:
            from bench_width import register
            for s in a.air_scales.split(','): register(float(s))
        variants, seeds = parse_variants(a.variants), [int(s) for s in a.seeds.split(',') if s.strip()]
        if not seeds: raise ValueError("--seeds is empty")
        for v in variants.values():   # every variant validated before the first (long) run
            make_config(a.preset, **(base | v))
    except ValueError as e: p.error(str(e))
    rows, t_all = [], time.time()
    for seed in seeds:   # seed-major: a sweep cut short still has every variant on the first seeds
        for name, ov in variants.items():
            cfg = make_config(a.preset, **(base | ov), seed=seed, quiet=True)
            res = run_training(cfg)
            t = res['test']
            rows.append(dict(variant=name, seed=seed, overrides=ov, train_seconds=res['train_seconds'],
                             valid_top1_pct=100 * res['history'][-1]['valid_acc'] if res['n_valid'] else None,
                             test_top1_pct=t['exit_acc_pct'][-1], test_top1_tta_pct=t.get('exit_acc_tta_pct', [None])[-1],
                             train_images=res['n_train'], valid_images=res['n_valid'], epochs=cfg.epochs,
                             mmacs_per_img=t['full_path_mmacs_per_img']))
            r = rows[-1]
            valid = 'none' if r['valid_top1_pct'] is None else f"{r['valid_top1_pct']:.2f} %"
            print(f"{name:>16} seed {seed}: valid {valid}, test {r['test_top1_pct']:.2f} % "
                  f"in {r['train_seconds']:.1f} s", flush=True)
            doc = dict(model=a.model, variants=variants, seeds=seeds, device=str(cfg.device), rows=rows,
                       valid_top1_pct=summarise(rows, 'valid_top1_pct'), test_top1_pct=summarise(rows, 'test_top1_pct'),
                       test_top1_tta_pct=summarise(rows, 'test_top1_tta_pct'), wall_s=time.time() - t_all)
            save_results(a.out, doc, preset=a.preset, seed=None, data_dir=a.data_dir, note=a.note,
                         cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    print('\nvalidation top-1 (mean ± std over seeds), test top-1:')
    for name, s in doc['valid_top1_pct'].items():
        te = doc['test_top1_pct'][name]
        valid = 'none' if s['mean'] is None else f"{s['mean']:.2f} ± {s['std'] or 0:.2f} % (n={s['n']})"
        print(f"{name:>16}: {valid}, test {te['mean']:.2f} ± {te['std'] or 0:.2f} % (n={te['n']})")

if __name__ == '__main__': main()
