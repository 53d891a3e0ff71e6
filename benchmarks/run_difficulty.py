"""Chapter 10's difficulty analysis on a network trained by `dynmoe-compare`, on real test images.

Usage: python benchmarks/run_difficulty.py --data-dir ../shared/data                      # the quick comparison's DynMoE
       python benchmarks/run_difficulty.py --checkpoint runs/compare_quick/dynmoe_confidence/last.pt ...

It also asks whether the policy's exit score ranks images the way an exit decision should:
the ROC AUC of the score for "this exit classifies the image correctly" (0.5 = no better than
chance, below 0.5 = inverted), next to the same AUC for the exit head's max-softmax; and the same two AUCs
for "free to exit" (this exit is right, or the final exit is wrong too: leaving costs no accuracy).

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
from dynmoe.experiment import load_trained
from dynmoe.data import get_dataset
from dynmoe.evaluation import normaliser, collect, feasible_mmacs, fit_budget
from dynmoe.difficulty import difficulty_report, summarise_difficulty
from dynmoe.exits import confidence

def auc(positive:torch.Tensor, score:torch.Tensor)->float:
    "ROC AUC: the probability that a random positive scores above a random negative, from scipy's Mann-Whitney U (ties count half)."
    from scipy.stats import mannwhitneyu
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float(mannwhitneyu(score[positive].numpy(), score[~positive].numpy()).statistic / (n1 * n0)) if n1 and n0 else float('nan')

def exit_score_diagnosis(o)->list[dict]:
    "Per early exit: how well the policy's exit score and the max-softmax rank the images that exit gets right, and the mean score by outcome."
    out, right_final = [], o.logits[:, -1].argmax(1) == o.y
    for k in range(o.K - 1):
        right = o.logits[:, k].argmax(1) == o.y
        s, c = o.scores[:, k].float(), confidence(o.logits[:, k]).float()
        groups = {f"exit{k + 1}_{'right' if a else 'wrong'}_final_{'right' if b else 'wrong'}": (right == a) & (right_final == b)
                  for a in (True, False) for b in (True, False)}
        free = right | ~right_final     # leaving here costs no accuracy against the final exit
        out.append(dict(exit_number=k + 1, acc_pct=100 * right.double().mean().item(), auc_policy_score=auc(right, s),
                        auc_maxprob=auc(right, c), free_pct=100 * free.double().mean().item(),
                        auc_free_policy_score=auc(free, s), auc_free_maxprob=auc(free, c), groups={g: dict(n=int(m.sum()), mean_policy_score=s[m].mean().item() if m.any() else None,
                                                                   mean_maxprob=c[m].mean().item() if m.any() else None)
                                                           for g, m in groups.items()}))
    return out

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
    idx = torch.tensor(rep['image_idx'])
    rep['exit_score_diagnosis'] = exit_score_diagnosis(collect(model, ds.test.x[idx], ds.test.y[idx], normalise=norm, progress=False))
    path = save_results(out, rep, preset=cfg.preset, seed=seed, checkpoint=checkpoint, checkpoint_config=cfg.to_dict(),
                        data_dir=data_dir)
    print('\n'.join(rep['summary']))
    for d in rep['exit_score_diagnosis']:
        print(f"exit {d['exit_number']}: AUC of the policy's exit score for 'this exit is right' {d['auc_policy_score']:.3f}, "
              f"of max-softmax {d['auc_maxprob']:.3f}; for 'free to exit' {d['auc_free_policy_score']:.3f} "
              f"and {d['auc_free_maxprob']:.3f}")
    print(f"wrote {path}")
