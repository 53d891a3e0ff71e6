"""Prototype (issue 12): train the `air` preset's static network on downscaled images in its first epochs.

    python benchmarks/scale_proto.py --data-dir ../shared/data --sizes 16:4,32:8 --seed 0   # 45,000 train / 5,000 val
    python benchmarks/scale_proto.py --data-dir ../shared/data --sizes 16:4,32:8 --seed 0 --val-size 0   # all 50,000

`--sizes 16:4,32:8` trains 4 epochs on whole images shrunk to 16x16 pixels, then 8 epochs at the full 32x32
(12 epochs in all). A convolution's multiply-accumulates scale with the pixels it visits, so an epoch at 16x16 costs
about a quarter of a full one; the network (global pooling before its classifier) takes any size. Unlike the
progressive resizing of chapter 08 (random crops, which show part of an image at full scale), every image stays
whole here, at a smaller scale. The shrinking runs after the loader's augmentation (translate, alternating flip),
by bilinear interpolation with antialiasing. Everything else is the `air` preset (`make_config('air')`) and `fit`,
unchanged; the learning-rate schedule counts steps, so the small epochs are part of it. Chapter 08, "Small images
first", reads the results; tests/test_scale_proto.py tests the wrapper.
"""
import argparse, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch, torch.nn.functional as F

def parse_sizes(spec:str)->list[int]:
    "'16:4,32:8' -> the image side of every epoch in turn: [16, 16, 16, 16, 32, ...] (12 entries)."
    sizes = []
    for part in spec.split(','):
        side, _, n = part.partition(':')
        if not (side.strip().isdigit() and n.strip().isdigit() and int(side) > 0 and int(n) > 0):
            raise ValueError(f"--sizes wants SIDE:EPOCHS pairs with positive ints, e.g. 16:4,32:8; got {part!r}")
        sizes += [int(side)] * int(n)
    return sizes

class ScaledLoader:
    "Wrap a training loader: the batches of epoch `e` are resized to `sizes[e]` pixels a side (the last for later)."
    def __init__(self, base, sizes:list[int]):
        self.base, self.sizes = base, sizes
    def __len__(self): return len(self.base)
    def __getattr__(self, k):   # set_epoch, generator, ... are the wrapped loader's
        if k == 'base': raise AttributeError(k)   # not set yet (e.g. while unpickling): no endless recursion
        return getattr(self.base, k)
    def side(self, epoch:int)->int: return self.sizes[min(epoch, len(self.sizes) - 1)]
    def __iter__(self):
        s = self.side(self.base.epoch)   # the epoch this iteration runs (FastLoader counts it; fit sets it first)
        for x, y in self.base:
            if x.shape[-2:] != (s, s):
                x = F.interpolate(x.float(), size=(s, s), mode='bilinear', antialias=True,
                                  align_corners=False).to(x.dtype)
            yield x, y

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default='data')
    p.add_argument('--sizes', default='16:4,32:8', help="SIDE:EPOCHS pairs in order; their epochs add up to the run")
    p.add_argument('--val-size', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default=None)
    a = p.parse_args()
    try: sizes = parse_sizes(a.sizes)
    except ValueError as e: p.error(str(e))
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import (make_config, load_data, init_stem, build_model, build_criterion, final_top1,
                                   quick_eval)
    from dynmoe.train import fit
    from dynmoe.core import save_results, set_seed
    try:
        cfg = make_config('air', model='static', data_dir=a.data_dir, epochs=len(sizes), seed=a.seed, quiet=True,
                          val_size=a.val_size)
        set_seed(cfg.seed)
        ds = load_data(cfg)
    except (ValueError, FileNotFoundError) as e: p.error(str(e))
    full = ds.train.x.shape[-1]
    if max(sizes) > full: p.error(f"--sizes: no side may exceed the images' {full} pixels, got {max(sizes)}")
    if sizes[-1] != full:
        p.error(f"--sizes must end at the full {full} pixels (the test images' size), got {sizes[-1]}")
    model = init_stem(build_model(cfg, len(ds.classes), full), ds, whiten=cfg.whiten)
    tdl, vdl, _ = ds.loaders(cfg.batch_size, eval_batch_size=500, seed=cfg.seed, pad=cfg.translate, flip=cfg.flip)
    t0 = time.time()
    st = fit(model, ScaledLoader(tdl, sizes), vdl, cfg, criterion=build_criterion(cfg, model), metric=final_top1)
    secs = time.time() - t0
    test = quick_eval(model, ds.test, ds, tta=cfg.tta)
    stem = ('scale_' + a.sizes.replace(':', 'x').replace(',', '_')
            + (f"_val{a.val_size}" if a.val_size is not None else '') + (f"_seed{a.seed}" if a.seed else ''))
    out = a.out or f'data/results/recipe/{stem}.json'
    doc = dict(method='downscaled images in the first epochs', sizes=a.sizes, epochs=cfg.epochs, threads=a.threads,
               train_seconds=secs,
               test_top1_pct=test['exit_acc_pct'][-1], test_top1_tta_pct=test.get('exit_acc_tta_pct', [None])[-1],
               mmacs_per_img=test['full_path_mmacs_per_img'],
               train_images=len(ds.train), valid_images=len(ds.valid),
               valid_top1_pct=100 * st.history[-1]['valid_acc'] if len(ds.valid) else None,
               config=cfg.to_dict(), history=st.history)
    save_results(out, doc, preset='air', seed=a.seed, data_dir=a.data_dir, loadavg=os.getloadavg())
    print(f"valid {doc['valid_top1_pct']} test {doc['test_top1_pct']:.2f} % (TTA {doc['test_top1_tta_pct']:.2f}); "
          f"{secs:.0f} s training -> {out}")

if __name__ == '__main__': main()
