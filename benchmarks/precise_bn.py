"""Diagnostic (issue 12): are the trained `air` network's BatchNorm statistics costing it accuracy?

    python benchmarks/precise_bn.py --data-dir ../shared/data --ckpt RUN/static/last.pt --images 2000,5000,10000

The `air` preset keeps BatchNorm's running statistics with momentum 0.4 (airbench's), and lookahead averages them
with the weights, so at the end of training they come from the last few batches, of augmented images, under
weights that were still moving. "Precise BN" (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm") recomputes
them once training is over: every BatchNorm layer's mean and variance averaged over N training images, read
through the final weights. PyTorch ships the pass (`torch.optim.swa_utils.update_bn`: statistics reset, momentum
None = a plain average over the batches, one forward pass in training mode, no gradient). Here the images are
un-augmented, as the test images are. It would cost one forward pass over N images at the end of training.

The checkpoint is a `dynmoe-train` / `dynmoe-compare` run (its config gives the split and the seed). Only the
validation images are read (45,000 / 5,000 split of the run's seed): this chooses, it does not report a test
figure. Writes data/results/recipe/precise_bn_seed<seed>.json with the command, commit and machine.
"""
import argparse, copy, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch

def parse_images(spec:str)->list[int]:
    "'2000,5000' -> [2000, 5000]: positive image counts."
    try: ns = [int(s) for s in spec.split(',')]
    except ValueError: ns = []
    if not ns or min(ns) < 1:
        raise ValueError(f"--images wants positive ints separated by commas, e.g. 2000,5000; got {spec!r}")
    return ns

def bn_batches(x:torch.Tensor, # uint8 training images (N, C, H, W)
               n:int, bs:int, mean, std, seed:int=0)->list[torch.Tensor]:
    "`n` of the images, drawn without replacement by `seed`, normalised, channels-last, in batches of `bs`."
    if n > len(x): raise ValueError(f"asked for the statistics of {n} images, but the training split has {len(x)}")
    from dynmoe.data import normalise
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return [normalise(x[idx[i:i + bs]], mean, std).contiguous(memory_format=torch.channels_last)
            for i in range(0, n, bs)]

def precise_bn(model:torch.nn.Module, batches, amp:bool=True)->torch.nn.Module:
    "A copy of `model` whose BatchNorm statistics are the plain average over `batches` (the original is untouched)."
    from dynmoe.core import autocast
    m = copy.deepcopy(model)
    with torch.no_grad(), autocast(torch.device('cpu'), enabled=amp):
        torch.optim.swa_utils.update_bn(batches, m)
    return m.eval()

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default='data')
    p.add_argument('--ckpt', required=True, help='a dynmoe-train checkpoint (last.pt) of a run with a validation split')
    p.add_argument('--images', default='2000,5000,10000', help='training images to average the statistics over')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default=None)
    a = p.parse_args()
    try: ns = parse_images(a.images)
    except ValueError as e: p.error(str(e))
    if not os.path.isfile(a.ckpt): p.error(f"--ckpt {a.ckpt}: no such file")
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import load_trained, load_data, quick_eval
    from dynmoe.core import save_results
    try: model, cfg = load_trained(a.ckpt)   # a broken or foreign checkpoint: a one-line error, not a traceback
    except (ValueError, KeyError, RuntimeError) as e: p.error(f"--ckpt {a.ckpt}: {e}")
    if not cfg.val_size: p.error(f"{a.ckpt} trained on every training image: no validation split to choose on")
    cfg.data_dir = a.data_dir
    try: ds = load_data(cfg)
    except (ValueError, FileNotFoundError) as e: p.error(str(e))
    model = model.to(memory_format=torch.channels_last)
    def val_top1(m)->float: return quick_eval(m, ds.valid, ds)['exit_acc_pct'][-1]   # final exit, bf16 as in training
    stored = val_top1(model)
    print(f"stored statistics (momentum {cfg.bn_momentum}, with lookahead): {stored:.2f} % validation", flush=True)
    rows = []
    for n in ns:
        batches = bn_batches(ds.train.x, n, 500, ds.mean, ds.std)
        t = time.perf_counter(); m = precise_bn(model, batches, cfg.amp); secs = time.perf_counter() - t
        acc = val_top1(m)
        rows.append(dict(images=n, valid_top1_pct=acc, diff_pp=acc - stored, seconds=secs))
        print(f"precise statistics over {n} training images: {acc:.2f} % validation ({acc - stored:+.2f} pp), "
              f"{secs:.1f} s on {a.threads} thread(s)", flush=True)
    out = a.out or f'data/results/recipe/precise_bn_seed{cfg.seed}.json'
    save_results(out, dict(ckpt=a.ckpt, model=cfg.model, backbone=cfg.backbone, epochs=cfg.epochs,
                           train_images=len(ds.train), valid_images=len(ds.valid), threads=a.threads,
                           stored_valid_top1_pct=stored, precise=rows, config=cfg.to_dict()),
                 preset=cfg.preset, seed=cfg.seed, data_dir=a.data_dir)
    print(f"-> {out}")

if __name__ == '__main__': main()
