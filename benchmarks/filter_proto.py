"""Prototype (issue 12): train the `air` preset's static network on the harder half of every batch, as chosen by a
small proxy network trained alongside it (the data filtering of airbench96_faster, made online).

    python benchmarks/filter_proto.py --data-dir ../shared/data --select proxy --epochs 14 --seed 0   # 45,000 train
    python benchmarks/filter_proto.py --data-dir ../shared/data --select stale --epochs 16 --seed 0   # / 5,000 val

For each drawn batch of `--draw` images: the proxy (the same architecture at widths 32/64/64) scores every image
(forward only, its label-smoothed loss); the main network takes one optimiser step on the `--keep` images the proxy
finds hardest; every `--proxy-every`-th batch the proxy itself takes a step on them. The proxy's minutes are counted
in the training time. Everything else is the `air` preset (`make_config('air')`) and `fit`, unchanged: the main
network sees batches of `--keep` images, so its learning rate and Muon settings are the preset's for batch 512.
With `--select stale` no proxy runs: each image is scored by the main network's own loss the last time it trained on it
(recorded by the criterion's training forward; never-seen images first). Chapter 08, "Fewer images an epoch", reads the
results; tests/test_filter_proto.py tests both filters.
"""
import argparse, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import torch, torch.nn.functional as F

class ProxyFilter:
    "Wrap a training loader: each batch is cut to the `keep` images a proxy network finds hardest."
    def __init__(self, base, proxy, opt, cfg, keep:int, every:int, device):
        self.base, self.proxy, self.opt, self.cfg = base, proxy, opt, cfg
        self.keep, self.every, self.device = keep, every, device
        self.n, self.seconds = 0, 0.0
    def __len__(self): return len(self.base)
    def __getattr__(self, k):   # set_epoch, set_crop, generator, ... are the wrapped loader's
        if k == 'base': raise AttributeError(k)   # not set yet (e.g. while unpickling): no endless recursion
        return getattr(self.base, k)
    def __iter__(self):
        from dynmoe.train import to_device, lr_at
        cfg = self.cfg
        total = cfg.epochs * len(self.base) / self.every
        warm = cfg.warmup_epochs * len(self.base) / self.every
        for x, y in self.base:
            t = time.perf_counter()
            x, y = to_device(x, self.device, cfg.channels_last), y.to(self.device)
            self.proxy.train()
            with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16):
                loss = F.cross_entropy(self.proxy(x).logits[-1].float(), y, reduction='none',
                                       label_smoothing=cfg.label_smoothing)
            idx = loss.topk(self.keep).indices.sort().values
            xs, ys = x[idx], y[idx]
            if self.n % self.every == 0:
                lr = lr_at(self.n // self.every, int(total), cfg.lr, cfg.lr_min, int(warm), cfg.schedule)
                for g in self.opt.param_groups: g['lr'] = lr * g.get('lr_scale', 1.0)
                with torch.autocast(self.device.type, torch.bfloat16):
                    l = F.cross_entropy(self.proxy(xs).logits[-1].float(), ys, label_smoothing=cfg.label_smoothing)
                self.proxy.zero_grad(set_to_none=True); l.backward(); self.opt.step()
            self.n += 1
            self.seconds += time.perf_counter() - t
            yield xs, ys

class StaleFilter:
    "Wrap a training loader: each batch is cut to the `keep` images whose loss was highest when last trained on."
    def __init__(self, base, keep:int, label_smoothing:float):
        self.base, self.keep, self.ls = base, keep, label_smoothing
        self.loss = torch.full((len(base.y),), 1e9)   # never seen: first in line (ties broken at random below)
        self.cur, self.seconds = None, 0.0
    def __len__(self): return len(self.base)
    __getattr__ = ProxyFilter.__getattr__
    def __iter__(self):
        order, bs = self.base.order(self.base.epoch), self.base.bs   # FastLoader's batch k is order[k*bs:(k+1)*bs]
        for k, (x, y) in enumerate(self.base):
            idx = order[k*bs:(k + 1)*bs]
            sel = (self.loss[idx] + 1e-6 * torch.rand(len(idx))).topk(self.keep).indices.sort().values
            self.cur = idx[sel]
            yield x[sel], y[sel]
    def record(self, logits, y):
        "Store the per-image loss of the batch just yielded (called by the criterion on the training forward)."
        if self.cur is None: return
        t = time.perf_counter()
        self.loss[self.cur] = F.cross_entropy(logits.detach().float(), y, reduction='none',
                                              label_smoothing=self.ls).cpu()
        self.cur = None
        self.seconds += time.perf_counter() - t

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', default='data')
    p.add_argument('--epochs', type=float, default=14)
    p.add_argument('--draw', type=int, default=1024); p.add_argument('--keep', type=int, default=512)
    p.add_argument('--select', default='proxy', choices=['proxy', 'stale'],
                   help="who scores the images: a small proxy network, or the main network's own loss when it last "
                        "trained on each image (free; never-seen images first)")
    p.add_argument('--proxy-every', type=int, default=4)
    p.add_argument('--proxy-widths', default='32,64,64')
    p.add_argument('--val-size', type=int, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--out', default=None)
    a = p.parse_args()
    if not 0 < a.keep <= a.draw: p.error(f'--keep must be in [1, --draw={a.draw}], got {a.keep}')
    if a.proxy_every < 1: p.error(f'--proxy-every must be >= 1, got {a.proxy_every}')
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import (make_config, load_data, init_stem, build_model, build_criterion, final_top1,
                                   quick_eval)
    from dynmoe.train import fit, make_optimizers, resolve_device
    from dynmoe.models import BACKBONES, DynNet
    from dynmoe.core import save_results, set_seed
    BACKBONES['air_proxy'] = BACKBONES['air'] | dict(widths=tuple(int(w) for w in a.proxy_widths.split(',')))
    try:
        cfg = make_config('air', model='static', data_dir=a.data_dir, epochs=a.epochs, seed=a.seed, quiet=True,
                          val_size=a.val_size)
        set_seed(cfg.seed)
        ds = load_data(cfg)
    except (ValueError, FileNotFoundError) as e: p.error(str(e))
    model = init_stem(build_model(cfg, len(ds.classes), ds.train.x.shape[-1]), ds, whiten=cfg.whiten)
    # built in both modes: its initialisation draws from the global generator that the stale filter's tie-breaks then
    # continue, so the committed stale runs reproduce draw for draw
    proxy = init_stem(DynNet('static', 'air_proxy', len(ds.classes), bn_momentum=cfg.bn_momentum), ds)
    dev = resolve_device(cfg.device)
    proxy = proxy.to(dev).to(memory_format=torch.channels_last)
    tdl, vdl, _ = ds.loaders(a.draw, eval_batch_size=500, seed=cfg.seed, pad=cfg.translate, flip=cfg.flip)
    crit = build_criterion(cfg, model)
    if a.select == 'proxy':
        fdl = ProxyFilter(tdl, proxy, make_optimizers(proxy, cfg)['joint'], cfg, a.keep, a.proxy_every, dev)
        criterion = crit
    else:
        fdl = StaleFilter(tdl, a.keep, cfg.label_smoothing)
        def criterion(o, y, part='joint'):
            fdl.record(o.logits[-1], y)
            return crit(o, y, part)
    t0 = time.time()
    st = fit(model, fdl, vdl, cfg, criterion=criterion, metric=final_top1)
    secs = time.time() - t0
    test = quick_eval(model, ds.test, ds, tta=cfg.tta)
    ptest = quick_eval(proxy, ds.test, ds) if a.select == 'proxy' else None
    stem = (('stale' if a.select == 'stale' else '') + f"filter_k{a.keep}of{a.draw}_e{a.epochs:g}"
            + (f"_val{a.val_size}" if a.val_size is not None else '') + (f"_seed{a.seed}" if a.seed else ''))
    out = a.out or f'data/results/recipe/{stem}.json'
    method = 'proxy data filtering (online)' if a.select == 'proxy' else "the main network's last loss per image"
    doc = dict(method=method,
               draw=a.draw, keep=a.keep, proxy_every=a.proxy_every,
               proxy_widths=BACKBONES['air_proxy']['widths'], epochs=cfg.epochs, threads=a.threads,
               train_seconds=secs, proxy_seconds=fdl.seconds,
               test_top1_pct=test['exit_acc_pct'][-1], test_top1_tta_pct=test.get('exit_acc_tta_pct', [None])[-1],
               proxy_test_top1_pct=ptest and ptest['exit_acc_pct'][-1],
               mmacs_per_img=test['full_path_mmacs_per_img'],
               proxy_mmacs_per_img=ptest and ptest['full_path_mmacs_per_img'],
               train_images=len(ds.train), valid_images=len(ds.valid),
               valid_top1_pct=100 * st.history[-1]['valid_acc'] if len(ds.valid) else None,
               config=cfg.to_dict(), history=st.history)
    save_results(out, doc, preset='air', seed=a.seed, data_dir=a.data_dir, loadavg=os.getloadavg())
    print(f"valid {doc['valid_top1_pct']} test {doc['test_top1_pct']:.2f} % (TTA {doc['test_top1_tta_pct']:.2f}); "
          f"proxy {doc['proxy_test_top1_pct']} %; {secs:.0f} s training ({fdl.seconds:.0f} s selecting) -> {out}")

if __name__ == '__main__': main()
