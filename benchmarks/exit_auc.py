"""Does a learned exit rule rank images at least as well as max-softmax? ROC AUC on the whole test split.

Usage: python benchmarks/exit_auc.py --data-dir ../shared/data \
           --checkpoints runs/compare_quick/dynmoe/last.pt,runs/compare_quick/dynmoe_etr/last.pt \
           --out data/results/exit_then_route/exit_auc.json

For every early exit of every checkpoint: the AUC of the rule's exit score and of the same exit
head's max-softmax, for two targets -- "this exit's prediction is right" and "free to exit" (right,
or the final exit is wrong too: leaving here costs no accuracy) -- and the paired difference
(rule minus max-softmax) with a 95 % bootstrap interval over test images.
"""
import torch
from fastcore.script import call_parse
from scipy.stats import mannwhitneyu
from dynmoe.core import save_results
from dynmoe.data import get_dataset
from dynmoe.evaluation import collect, normaliser
from dynmoe.exits import confidence
from dynmoe.experiment import load_trained

def auc(positive:torch.Tensor, score:torch.Tensor)->float:
    "ROC AUC from the Mann-Whitney U statistic (ties count half); NaN if one class is empty."
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not (n1 and n0): return float('nan')
    return float(mannwhitneyu(score[positive].numpy(), score[~positive].numpy()).statistic / (n1 * n0))

def paired_diff(target:torch.Tensor, a:torch.Tensor, b:torch.Tensor, n_boot:int, seed:int)->dict:
    "AUC(a) - AUC(b) on the same images, with a 95 % percentile bootstrap interval (images resampled)."
    g = torch.Generator().manual_seed(seed)
    diffs = []
    for _ in range(n_boot):
        i = torch.randint(0, len(target), (len(target),), generator=g)
        diffs.append(auc(target[i], a[i]) - auc(target[i], b[i]))
    d = torch.tensor(diffs)
    return dict(diff=auc(target, a) - auc(target, b), ci95=[float(d.quantile(0.025)), float(d.quantile(0.975))])

def exit_aucs(o, n_boot:int, seed:int)->list[dict]:
    "Per early exit: AUCs of the rule's score and max-softmax for both targets, and their paired differences."
    right_final, rows = o.logits[:, -1].argmax(1) == o.y, []
    for k in range(o.K - 1):
        right = o.logits[:, k].argmax(1) == o.y
        s, c = o.scores[:, k].float(), confidence(o.logits[:, k]).float()
        row = dict(exit_number=k + 1, acc_pct=100 * right.double().mean().item())
        for name, t in (('right', right), ('free', right | ~right_final)):
            row[name] = dict(positives_pct=100 * t.double().mean().item(), auc_rule=auc(t, s), auc_maxprob=auc(t, c),
                             rule_minus_maxprob=paired_diff(t, s, c, n_boot, seed))
        rows.append(row)
    return rows

@call_parse
def main(checkpoints:str='runs/compare_quick/dynmoe/last.pt,runs/compare_quick/dynmoe_etr/last.pt', # comma-separated
         data_dir:str='data', # folder holding the dataset
         n_boot:int=200, # bootstrap resamples for the intervals
         seed:int=0, # bootstrap seed
         threads:int=0, # torch threads (0: torch's default)
         out:str='data/results/exit_then_route/exit_auc.json'):
    "AUC of each checkpoint's learned exit score against max-softmax, per exit, on the whole test split."
    if threads: torch.set_num_threads(threads)
    res = {}
    for ck in [c.strip() for c in checkpoints.split(',') if c.strip()]:
        model, cfg = load_trained(ck)
        if not model.has_exits: raise SystemExit(f"exit_auc: error: {ck} is a {model.kind} network without exits")
        ds = get_dataset(cfg.dataset, data_dir, val_size=cfg.val_size, seed=cfg.seed)
        o = collect(model, *ds.test, normalise=normaliser(ds.mean, ds.std), progress=False)
        res[ck] = dict(policy=model.policy_name, n_test_images=len(o), exits=exit_aucs(o, n_boot, seed))
        for r in res[ck]['exits']:
            print(f"{ck} ({model.policy_name}) exit {r['exit_number']}: " + '; '.join(
                f"{t}: rule {r[t]['auc_rule']:.3f} vs max-softmax {r[t]['auc_maxprob']:.3f} "
                f"(diff {r[t]['rule_minus_maxprob']['diff']:+.3f}, 95 % CI {r[t]['rule_minus_maxprob']['ci95'][0]:+.3f} "
                f"to {r[t]['rule_minus_maxprob']['ci95'][1]:+.3f})" for t in ('right', 'free')))
    path = save_results(out, res, preset=cfg.preset, seed=cfg.seed, data_dir=data_dir, n_boot=n_boot)
    print(f"wrote {path}")
