"""Chapter 10's difficulty analysis on a network trained by `dynmoe-compare`, on real test images.

Usage: python benchmarks/run_difficulty.py --data-dir ../shared/data                      # the quick comparison's DynMoE
       python benchmarks/run_difficulty.py --checkpoint runs/compare_quick/dynmoe_confidence/last.pt ...

The exit thresholds are fitted on the validation split (seed 003's q schedule, chapter 09) for a
budget `--budget-frac` of the way from the cheapest exit to the full network, so that images really
spread over the exits; the policy's default thresholds send almost every image out at exit 1.
Then `difficulty_report` relates corruption severity (blur, noise, 1-5), final-exit loss and
margin, and class to the exit taken and the experts chosen, on `--n` test images.
Writes `--out` with the command, commit, preset and seed (checkpoints are not committed; the
checkpoint's own config is stored in the file).
"""
from fastcore.script import call_parse
import torch
from dynmoe.core import save_results
from dynmoe.cli import load_trained
from dynmoe.data import get_dataset
from dynmoe.evaluation import normaliser, collect, feasible_mmacs, fit_budget
from dynmoe.difficulty import difficulty_report, summarise_difficulty

@call_parse
def main(checkpoint:str='runs/compare_quick/dynmoe/last.pt', # a last.pt written by dynmoe-train / dynmoe-compare
         data_dir:str='data', # folder holding the dataset
         n:int=2000, # test images analysed (a fixed random subset)
         budget_frac:float=0.5, # target budget: this fraction of the way from the cheapest exit to the full path
         seed:int=0, # picks the subset and the corruption noise
         threads:int=0, # torch threads (0: torch's default)
         out:str='data/results/difficulty_quick.json'):
    "Difficulty report of a trained network at a fitted budget; JSON with provenance."
    if not 0 <= budget_frac <= 1: raise SystemExit(f"run_difficulty: error: budget_frac must lie in [0, 1], got {budget_frac}")
    if threads: torch.set_num_threads(threads)
    model, cfg = load_trained(checkpoint)
    if not model.has_exits: raise SystemExit(f"run_difficulty: error: {checkpoint} is a {model.kind} network without exits")
    ds = get_dataset(cfg.dataset, data_dir, val_size=cfg.val_size, seed=cfg.seed)
    norm = normaliser(ds.mean, ds.std)
    ov = collect(model, *ds.valid, normalise=norm)
    lo, hi = feasible_mmacs(ov)
    target = lo + budget_frac * (hi - lo)
    f = fit_budget(ov, target)
    rep = difficulty_report(model, tuple(ds.test), norm, n=n, thresholds=f['thresholds'], seed=seed)
    rep['budget'] = dict(frac=budget_frac, target_mmacs=target, valid_mmacs=f['fitted_mmacs'], q=f['q'])
    rep['summary'] = summarise_difficulty(rep)
    path = save_results(out, rep, preset=cfg.preset, seed=seed, checkpoint=checkpoint, checkpoint_config=cfg.to_dict(),
                        data_dir=data_dir)
    print('\n'.join(rep['summary'])); print(f"wrote {path}")
