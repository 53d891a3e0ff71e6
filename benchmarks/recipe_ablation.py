r"""One-line ablations of the `fast` recipe (airbench94's ingredients on `airres`, chapter 08a): the static network
trained with the whole recipe, or with one ingredient switched back to the plain choice, at the same epochs.

Each run trains `dynmoe.experiment.run_training` in this process (torch threads as given) and writes
data/results/recipe/<ablation>.json with the command, commit, machine, the training wall time, the final-exit test
top-1 (plain and with flip test-time augmentation) and the per-epoch history. Runs are independent: start several
ablations one after the other, or in separate processes with one thread each.

    python benchmarks/recipe_ablation.py --data-dir /work/shared/data --ablation full --threads 2
    python benchmarks/recipe_ablation.py --data-dir /work/shared/data --ablation no_lookahead --threads 1
"""
import argparse, os, sys, time
from pathlib import Path
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch

ABLATIONS = {   # name: RunConfig overrides that undo one ingredient of the fast preset
    'full':          {},
    'no_lookahead':  dict(lookahead=0),                     # plain SGD weights (no slow copy)
    'random_flip':   dict(flip=True),                       # a fresh coin per image and epoch
    'no_bias_boost': dict(bn_bias_lr=1.0),                  # BatchNorm biases at the common learning rate
    'no_whiten':     dict(whiten=False),                    # the 2x2 stem trained from a random init
    'ls_0.1':        dict(label_smoothing=0.1),             # seed 003's label smoothing instead of airbench's 0.2
    'bn_mom_0.1':    dict(bn_momentum=0.1),                 # PyTorch's BatchNorm momentum
    'muon_0.24':     dict(muon_lr=0.24),                    # Muon for the conv kernels, airbench94_muon's lr
    'muon_0.12':     dict(muon_lr=0.12),                    # ... at half of it (twice its steps at batch 1024)
    'muon_0.36':     dict(muon_lr=0.36),                    # ... and at 1.5 times it
    # batch 512: twice the steps per epoch, no slower on a CPU; SGD lr halved (the same lr per image and decay per
    # epoch as airbench's decoupled form), Muon's lr per step kept or cut
    'bs512_muon_0.24': dict(batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.24),
    'bs512_muon_0.17': dict(batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.17),
    'bs512_muon_0.12': dict(batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12),  # best of sweep_h100.json
    'bs512_muon_0.12_mm0.7': dict(batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7),  # ..._b512
    # airbench94's own shape (chapter 06's `air`: GELU, one full-width conv after each pool, no skip), same recipe
    'air':           dict(backbone='air'),
    'air_muon_0.24': dict(backbone='air', muon_lr=0.24),
    'air_bs512_muon_0.12_mm0.7': dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12,
                                      muon_momentum=0.7),   # the H100 sweep's choice for airres, on air
    # + airbench's frozen parts and airbench94_muon's 3 Newton-Schulz steps (chapter 08, "What airbench keeps still"):
    # the stem's bias trains 3 epochs, BatchNorm scales stay 1; faster steps, so more epochs fit in the same minutes
    'air_frozen':    dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                          ns_steps=3, whiten_epochs=3, bn_weight=False),
    'air_frozen_bnw': dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                           ns_steps=3, whiten_epochs=3),   # the same with BatchNorm scales trained
    # the `air` preset given more epochs than 15 CPU minutes hold (run with --epochs 12): warm-up and the stem's
    # training stretched with them (23 % and a third of the epochs), as the GPU sweep data/results/device/ ran it
    'air_long':      dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                          ns_steps=3, warmup_epochs=2.76, whiten_epochs=4),
    # progressive resizing (chapter 08): air_long whose first 7 epochs train on 24 x 24 crops, about half the cost of an
    # epoch of whole images on this CPU (run with --epochs 12: about the minutes of 9 epochs of the preset)
    'air_crop24':    dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                          ns_steps=3, warmup_epochs=2.76, whiten_epochs=4, crop_size=24, crop_epochs=7),
    # small images first (chapter 08): the `air` preset whose first 6 epochs train on whole images shrunk to 16 x 16,
    # about 0.28 of the cost of an epoch at 32 x 32 on this CPU (run with --epochs 13: 6 small + 7 whole epochs);
    # the same training as benchmarks/scale_proto.py --sizes 16:6,32:7, batch for batch (tests/test_scale_proto.py)
    # the `air` preset plus an EMA of the weights (decay 0.99 a step, a horizon of about one epoch) on top of lookahead:
    # it costs no MACs, and the history holds the EMA's validation accuracy next to the plain weights', epoch by epoch
    'air_ema':       dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                          ns_steps=3, whiten_epochs=3, ema_decay=0.99),
    'air_small16':   dict(backbone='air', batch_size=512, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7,
                          ns_steps=3, whiten_epochs=3, downscale_size=16, downscale_epochs=6),
}

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default='data')
    p.add_argument('--ablation', default='full', choices=list(ABLATIONS))
    p.add_argument('--epochs', type=float, default=None, help="override the preset's epochs (the same for every run; "
                   "a fraction such as 8.5 ends the last epoch early)")
    p.add_argument('--model', default='static')
    p.add_argument('--val-size', type=int, default=None, help="override the preset's 5,000 held-out training images "
                   "(0: train on all 50,000, as airbench does; the history then has no validation accuracy)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default=None, help='default data/results/recipe/<ablation>[_e<epochs>][_seed<s>].json')
    p.add_argument('--runs-dir', default=None, help="train in <runs-dir>/compare_fast/static (the 'full' static run "
                   "then is the one `dynmoe-compare --preset fast` reuses); default: no checkpoint")
    a = p.parse_args()
    if a.epochs is not None and a.epochs == int(a.epochs): a.epochs = int(a.epochs)   # 8.0 -> 8: the same file name
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import make_config, run_training
    from dynmoe.core import save_results
    keep = {}
    if a.runs_dir:   # the folder dynmoe-compare trains this variant in (dynmoe.compare.variant_config)
        from dynmoe.compare import run_stem
        keep = dict(out_dir=str(Path(a.runs_dir)/run_stem('fast', epochs=a.epochs, seed=a.seed or None)/a.model),
                    resume=True)
    if a.runs_dir and a.val_size is not None: p.error('--runs-dir trains the comparison run, which keeps its val_size')
    cfg = make_config('fast', model=a.model, data_dir=a.data_dir, epochs=a.epochs, seed=a.seed, quiet=True,
                      val_size=a.val_size,
                      **ABLATIONS[a.ablation], **keep)
    t0 = time.time()
    res = run_training(cfg)
    stem = (a.ablation + (f'_e{a.epochs}' if a.epochs else '') + (f'_val{a.val_size}' if a.val_size is not None else '')
            + (f'_seed{a.seed}' if a.seed else ''))
    out = a.out or f'data/results/recipe/{stem}.json'
    t = res['test']
    doc = dict(ablation=a.ablation, overrides=ABLATIONS[a.ablation], model=a.model, epochs=cfg.epochs,
               threads=a.threads, train_seconds=res['train_seconds'], wall_s=time.time() - t0,
               test_top1_pct=t['exit_acc_pct'][-1], test_top1_tta_pct=t.get('exit_acc_tta_pct', [None])[-1],
               mmacs_per_img=t['full_path_mmacs_per_img'], train_images=res['n_train'], valid_images=res['n_valid'],
               valid_top1_pct=100 * res['history'][-1]['valid_acc'] if res['n_valid'] else None,
               config=res['config'], history=res['history'])
    save_results(out, doc, preset='fast', seed=a.seed, data_dir=a.data_dir, loadavg=os.getloadavg())
    print(f"{a.ablation}: {doc['test_top1_pct']:.2f} % ({doc['test_top1_tta_pct']:.2f} % with flip TTA) in "
          f"{doc['train_seconds']:.0f} s of training, {a.threads} thread(s) -> {out}")

if __name__ == '__main__': main()
