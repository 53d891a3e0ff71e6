"""Does raising lambda move images to cheaper experts, not only to earlier exits?

Trains `dynmoe_aw` (DynMoE whose stages have two narrow experts, a quarter of the stage width, and two wide ones, half
of it; chapter 11) at several values of lambda, the price of compute in the cost term of chapter 07, on a subset of
the training images for a few epochs (a short run: it shows the direction of the effect, not final accuracies).
For each lambda it reports, on the validation split:

- routing on the full path (every image through every stage): the share of images each stage sends to a wide expert,
  and the experts' mean MMACs per image;
- at the policy's default thresholds: the exit mix, mean executed MMACs per image and top-1 accuracy.

    python benchmarks/lambda_width.py --data-dir ../shared/data --lams 0,8 --max-train 15000 --epochs 4 --threads 1

Writes --out with the command, commit, machine and the runs' configs (checkpoints under --runs-dir, not committed).
"""
from fastcore.script import call_parse
import torch
from dynmoe.core import save_results
from dynmoe.compare import variant_config
from dynmoe.data import get_dataset
from dynmoe.evaluation import collect, normaliser, simulate, top1_pct
from dynmoe.experiment import run_training, load_trained

def routing_report(model, o, d)->dict:
    "Full-path routing (wide-expert share and experts' MMACs per stage) and the default-threshold operating point."
    em = model.expert_table().double()                                   # (S, E) MACs of each expert
    widths = [b.widths for b in model.bodies]
    wide = [[j for j, w in enumerate(ws) if w == max(ws)] for ws in widths]
    ex = o.experts[:, :, 0]                                              # (N, S) full path: every stage reached
    return dict(expert_widths=widths,
                wide_share_pct=[100 * torch.isin(ex[:, s], torch.tensor(wide[s])).double().mean().item()
                                for s in range(ex.shape[1])],
                expert_mmacs_full_path=(em.gather(1, ex.T).T.sum(1).mean() / 1e6).item(),
                default=dict(acc_pct=top1_pct(d.logits, o.y),
                             exit_pct=(100 * torch.bincount(d.exit, minlength=o.K).double() / len(o)).tolist(),
                             mean_mmacs=d.macs.double().mean().item() / 1e6))

@call_parse
def main(data_dir:str='data', # folder holding the dataset
         lams:str='0,8', # comma-separated values of lambda
         max_train:int=15000, # training images used (a subset: a short run)
         epochs:int=4, # epochs per run
         seed:int=0,
         threads:int=0, # torch threads (0: torch's default)
         runs_dir:str='runs/lambda_width', # where the runs train (resumable)
         out:str='data/results/adaptive/lambda_shift.json'):
    "Train dynmoe_aw at each lambda on a training subset; routing and exits on the validation split."
    if threads: torch.set_num_threads(threads)
    try: values = [float(v) for v in lams.split(',') if v.strip()]
    except ValueError: raise SystemExit(f"lambda_width: error: --lams must be comma-separated numbers, got {lams!r}")
    if not values or min(values) < 0: raise SystemExit(f"lambda_width: error: need lambdas >= 0, got {lams!r}")
    rows = []
    for lam in values:
        cfg = variant_config('dynmoe_aw', 'fast', data_dir, runs_dir, lam=lam, max_train=max_train, epochs=epochs,
                             warmup_epochs=round(0.23 * epochs, 2), seed=seed, quiet=True)   # the fast preset's 23 %
        res = run_training(cfg)
        model, _ = load_trained(f'{cfg.out_dir}/last.pt')
        ds = get_dataset(cfg.dataset, data_dir, val_size=cfg.val_size, seed=cfg.seed)
        o = collect(model, *ds.valid, normalise=normaliser(ds.mean, ds.std), progress=False)
        rows.append(dict(lam=lam, run=cfg.out_dir, train_seconds=res['train_seconds'],
                         final_exit_test_acc_pct=res['test']['exit_acc_pct'][-1],
                         **routing_report(model, o, simulate(o))))
        r = rows[-1]
        print(f"lambda {lam:g}: wide-expert share per stage {[round(v, 1) for v in r['wide_share_pct']]} %, experts "
              f"{r['expert_mmacs_full_path']:.2f} MMACs/img on the full path; default thresholds: exits "
              f"{[round(v, 1) for v in r['default']['exit_pct']]} %, {r['default']['mean_mmacs']:.2f} MMACs/img, "
              f"top-1 {r['default']['acc_pct']:.2f} % (validation)", flush=True)
    path = save_results(out, dict(variant='dynmoe_aw', lams=values, max_train=max_train, epochs=epochs, rows=rows,
                                  split='validation', note='short runs on a training subset: the direction of the '
                                  'effect, not final accuracies'), preset='fast', seed=seed, data_dir=data_dir)
    print(f"wrote {path}")
