r"""A seed-replicated sweep of `fast`-recipe variants of one network, chosen on validation: for each named variant
(RunConfig overrides on top of the preset) and each seed, train with `dynmoe.experiment.run_training` in this
process and record validation top-1 (the 5,000 held-out training images), test top-1 (plain and with flip TTA) and
the training wall time. Meant for a GPU, where a run of the static network takes seconds, so that a recipe for the
slow CPU target run can be chosen on several seeds; on a CPU each run takes as long as a `recipe_ablation.py` row.

The results file is rewritten after every run, so a sweep cut short keeps what finished. Variants are given as
`name:key=value,key=value` separated by semicolons; `base` (no overrides) is always available:

    python benchmarks/recipe_sweep.py --data-dir /work/shared/data --seeds 0,1 \
        --variants 'base:muon_lr=0.24;bs512:batch_size=512,lr=0.75,lr_min=0.0525,muon_lr=0.24'

Choose on the `valid_top1_pct` means; the test columns are recorded for the report, not for the choice.
"""
import argparse, os, sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch

def parse_variants(s:str)->dict:
    "`'a:k=v,k=v;b:k=v'` -> `{'a': {...}, 'b': {...}}` (values as Python literals); a bare name has no overrides."
    from dynmoe.compare import parse_overrides
    out = {}
    for part in s.split(';'):
        if not part.strip(): continue
        name, _, kv = part.partition(':')
        name = name.strip()
        if not name or name in out: raise ValueError(f"each variant needs a new name before ':', got {part.strip()!r}")
        out[name] = parse_overrides(kv)
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
    p.add_argument('--variants', required=True, help="'name:key=value,...;name:...' RunConfig overrides of 'fast'")
    p.add_argument('--seeds', default='0')
    p.add_argument('--model', default='static')
    p.add_argument('--epochs', type=int, default=None, help="override the preset's epochs (every variant alike)")
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default='data/results/recipe/sweep.json')
    p.add_argument('--note', default='', help='recorded in the results file (e.g. where the data copy came from)')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import make_config, run_training
    from dynmoe.core import save_results
    try:
        variants, seeds = parse_variants(a.variants), [int(s) for s in a.seeds.split(',') if s.strip()]
        if not seeds: raise ValueError("--seeds is empty")
        for v in variants.values():   # every variant validated before the first (long) run
            make_config('fast', model=a.model, data_dir=a.data_dir, epochs=a.epochs, device=a.device, **v)
    except ValueError as e: p.error(str(e))
    rows, t_all = [], time.time()
    for seed in seeds:   # seed-major: a sweep cut short still has every variant on the first seeds
        for name, ov in variants.items():
            cfg = make_config('fast', model=a.model, data_dir=a.data_dir, epochs=a.epochs, seed=seed, quiet=True,
                              device=a.device, **ov)
            res = run_training(cfg)
            t = res['test']
            rows.append(dict(variant=name, seed=seed, overrides=ov, train_seconds=res['train_seconds'],
                             valid_top1_pct=100 * res['history'][-1]['valid_acc'] if res['n_valid'] else None,
                             test_top1_pct=t['exit_acc_pct'][-1], test_top1_tta_pct=t.get('exit_acc_tta_pct', [None])[-1],
                             train_images=res['n_train'], valid_images=res['n_valid'], epochs=cfg.epochs))
            r = rows[-1]
            valid = 'none' if r['valid_top1_pct'] is None else f"{r['valid_top1_pct']:.2f} %"
            print(f"{name:>16} seed {seed}: valid {valid}, test {r['test_top1_pct']:.2f} % "
                  f"in {r['train_seconds']:.1f} s", flush=True)
            doc = dict(model=a.model, variants=variants, seeds=seeds, device=str(cfg.device), rows=rows,
                       valid_top1_pct=summarise(rows, 'valid_top1_pct'), test_top1_pct=summarise(rows, 'test_top1_pct'),
                       test_top1_tta_pct=summarise(rows, 'test_top1_tta_pct'), wall_s=time.time() - t_all)
            save_results(a.out, doc, preset='fast', seed=None, data_dir=a.data_dir, note=a.note,
                         cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    print('\nvalidation top-1 (mean ± std over seeds), test top-1:')
    for name, s in doc['valid_top1_pct'].items():
        te = doc['test_top1_pct'][name]
        valid = 'none' if s['mean'] is None else f"{s['mean']:.2f} ± {s['std'] or 0:.2f} % (n={s['n']})"
        print(f"{name:>16}: {valid}, test {te['mean']:.2f} ± {te['std'] or 0:.2f} % (n={te['n']})")

if __name__ == '__main__': main()
