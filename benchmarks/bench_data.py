"""Speed of dynmoe's training-data pipeline (random crop + flip + normalise + channels-last), in images/s.

Usage: python benchmarks/bench_data.py --data-dir ../shared/data      # writes data/results/bench_data.json

Measures, on the CIFAR-10 training split held as one uint8 tensor:
- `pipeline`: `dynmoe.data.FastLoader` iterated as in training (permutation, random draws, batches);
- `variants`: the batch transform alone, for the chosen implementation (`index_select`, i.e.
  `dynmoe.data.augment_batch`) and the alternatives tried while choosing it, on identical batches.
Each figure is the median over `--reps` repetitions of `--batches` batches; fp32 and bf16
output, batch sizes 256 and 512. Speed is never asserted in tests; this file is the record.
"""
import argparse, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from dynmoe.core import save_results
from dynmoe.data import FastLoader, augment_batch, get_dataset

def per_image(ctx, idx, shift, flip, dtype):
    "Naive reference: pad, slice, flip and normalise one image at a time."
    x, p, mean, std = ctx['x'], ctx['pad'], ctx['mean'], ctx['std']
    out = torch.empty(len(idx), 3, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
    for k, (i, (dy, dx), f) in enumerate(zip(idx.tolist(), shift.tolist(), flip.tolist())):
        w = F.pad(x[i:i+1].float(), (p,)*4, mode='reflect')[0, :, p+dy:p+dy+32, p+dx:p+dx+32]
        out[k] = ((w.flip(-1) if f else w)/255 - mean)/std
    return out

def normalise(xb, ctx, dtype):
    "(B, H, W, C) uint8 -> (B, C, H, W) channels-last `dtype`, with the (H*W*C,) scale/bias patterns dynmoe uses."
    B, H, W, C = xb.shape
    return xb.reshape(B, -1).float().mul_(ctx['scale_full']).add_(ctx['bias_full']).to(dtype).view(B, H, W, C).permute(0, 3, 1, 2)

def nchw_to_nhwc(x): return x.permute(0, 2, 3, 1).contiguous()

def shift_masks(ctx, idx, shift, flip, dtype):
    "airbench's batch_crop for r > 2: reflect-padded data, one masked copy per row shift, then per column shift."
    xp, p = ctx['xpad'][idx], ctx['pad']                                   # (B, 3, 40, 40)
    B = len(idx)
    tmp = torch.empty(B, 3, 32, xp.shape[3], dtype=torch.uint8)
    for s in range(-p, p + 1):
        m = shift[:, 0] == s
        tmp[m] = xp[m, :, p+s:p+s+32, :]
    out = torch.empty(B, 3, 32, 32, dtype=torch.uint8)
    for s in range(-p, p + 1):
        m = shift[:, 1] == s
        out[m] = tmp[m, :, :, p+s:p+s+32]
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return normalise(nchw_to_nhwc(out), ctx, dtype)

def unfold(ctx, idx, shift, flip, dtype):
    "Every 32x32 window of the padded batch as an unfold view; advanced indexing picks one per image."
    xp, p = ctx['xpad'][idx], ctx['pad']
    win = xp.unfold(2, 32, 1).unfold(3, 32, 1)                               # (B, 3, 9, 9, 32, 32) view
    out = win[torch.arange(len(idx)), :, shift[:, 0] + p, shift[:, 1] + p]   # (B, 3, 32, 32)
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return normalise(nchw_to_nhwc(out), ctx, dtype)

def padded_gather(ctx, idx, shift, flip, dtype):
    "Reflect-padded channels-last data; advanced indexing with broadcast row and column indices."
    p, ar = ctx['pad'], torch.arange(32)
    rows = shift[:, :1] + p + ar                                              # (B, 32)
    cols = shift[:, 1:] + p + torch.where(flip[:, None], 31 - ar, ar)        # (B, 32)
    return normalise(ctx['xpad_nhwc'][idx[:, None, None], rows[:, :, None], cols[:, None, :]], ctx, dtype)  # (B, 32, 32, 3)

def row_gather(ctx, idx, shift, flip, dtype):
    "Rows instead of pixels: a width-padded copy plus a mirrored one; one index_select of 96-byte rows via an overlapping view."
    p, N, (H, W, C) = ctx['pad'], len(ctx['x']), (32, 32, 3)
    Wp = W + 2*p
    rows = (torch.arange(H) + shift[:, :1]).abs(); rows = torch.where(rows >= H, 2*(H - 1) - rows, rows)  # reflect in height
    start = torch.where(flip, p - shift[:, 1], p + shift[:, 1])               # window start in the (mirrored) padded row
    src = idx + N*flip.long()
    off = (((src[:, None]*H + rows)*Wp + start[:, None])*C).view(-1)          # (B*H,) byte offsets
    return normalise(ctx['row_view'].index_select(0, off).view(len(idx), H, W, C), ctx, dtype)

def index_select_c3(ctx, idx, shift, flip, dtype):
    "The chosen gather, but normalised by broadcasting (C,) vectors over the innermost, size-3 dim (first version)."
    xb = augment_batch(ctx['x_cl'], idx, shift, flip).to(torch.uint8).permute(0, 2, 3, 1)    # (B, H, W, C) uint8 view
    return torch.mul(xb, ctx['scale']).add_(ctx['bias']).to(dtype).permute(0, 3, 1, 2)

def index_select(ctx, idx, shift, flip, dtype):
    "The chosen one (dynmoe.data.augment_batch): reflect + shift + flip folded into one flat pixel index."
    return augment_batch(ctx['x_cl'], idx, shift, flip, ctx['scale'], ctx['bias'], 'reflect', dtype)

VARIANTS = dict(index_select=index_select, index_select_c3=index_select_c3, row_gather=row_gather, padded_gather=padded_gather,
                unfold=unfold, shift_masks=shift_masks, per_image=per_image)

def stats(times, n_img):
    t = np.array(times)
    return dict(median_img_per_s=float(n_img/np.median(t)), min_img_per_s=float(n_img/t.max()),
                max_img_per_s=float(n_img/t.min()), reps=len(t))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data-dir', default='data', help='folder holding cifar-10-batches-py/')
    ap.add_argument('--out', default='data/results/bench_data.json')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads (the goal is stated for 2 cores)')
    ap.add_argument('--reps', type=int, default=15, help='timed rounds (median reported)')
    ap.add_argument('--batches', type=int, default=10, help='batches per job and round (per_image: 2)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--skip-variants', action='store_true', help='time only the FastLoader pipeline')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    ds = get_dataset('cifar10', a.data_dir, download=False, seed=a.seed)
    x, dev = ds.train.x, torch.device(a.device)
    res = dict(threads=a.threads, device=str(dev), n_train=len(x), image=list(x.shape[1:]), pad=4, pad_mode='reflect',
               reps=a.reps, batches_per_rep=a.batches, goal_img_per_s=50_000, pipeline={}, variants={})
    cfgs = [(dt, bs) for dt in (torch.float32, torch.bfloat16) for bs in (256, 512)]
    name = lambda dt, bs: f"{'fp32' if dt == torch.float32 else 'bf16'} b{bs}"
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)

    # Every (what, config) job is timed once per round, round-robin, so a burst of load from other
    # processes on a shared machine hits all of them alike instead of whichever ran at that moment.
    jobs = {}
    for dt, bs in cfgs:  # the pipeline as training sees it: permutation, random draws, batches
        dl = FastLoader(*ds.train, bs, mean=ds.mean, std=ds.std, device=dev, dtype=dt, seed=a.seed)
        state = dict(it=iter(dl))
        def run(dl=dl, state=state):
            for _ in range(a.batches):
                try: next(state['it'])
                except StopIteration: state['it'] = iter(dl); next(state['it'])
            sync()
        jobs[('pipeline', name(dt, bs))] = (run, a.batches*bs)

    if not a.skip_variants and dev.type == 'cpu':
        std_t, mean_t = torch.tensor(ds.std), torch.tensor(ds.mean)
        xpad = F.pad(x.float(), (4,)*4, mode='reflect').to(torch.uint8)                 # (N, 3, 40, 40)
        xpw = nchw_to_nhwc(F.pad(x.float(), (4, 4, 0, 0), mode='reflect').to(torch.uint8))  # (N, 32, 40, 3): width only
        tab = torch.cat([xpw, xpw.flip(2)]).view(-1)                                    # + mirrored copy, as bytes
        ctx = dict(x=x, pad=4, mean=mean_t[:, None, None], std=std_t[:, None, None], scale=1/(255*std_t), bias=-mean_t/std_t,
                   scale_full=(1/(255*std_t)).repeat(1024), bias_full=(-mean_t/std_t).repeat(1024),
                   xpad=xpad, xpad_nhwc=nchw_to_nhwc(xpad), x_cl=x.contiguous(memory_format=torch.channels_last),
                   row_view=tab.as_strided((tab.numel() - 96 + 1, 96), (1, 1)))
        res['extra_bytes'] = dict(index_select=0, row_gather=tab.numel(), padded_gather=xpad.numel(), unfold=xpad.numel(), shift_masks=xpad.numel())
        g = torch.Generator().manual_seed(a.seed)
        for vname, fn in VARIANTS.items():
            nb = 2 if vname == 'per_image' else a.batches
            for dt, bs in cfgs:
                perm = torch.randperm(len(x), generator=g)
                draws = [(perm[k*bs:(k+1)*bs], torch.randint(-4, 5, (bs, 2), generator=g), torch.rand(bs, generator=g) < 0.5) for k in range(nb)]
                ref = index_select(ctx, *draws[0], dt)   # every variant must compute the same batch
                torch.testing.assert_close(fn(ctx, *draws[0], dt).float(), ref.float(), atol=2e-2 if dt == torch.bfloat16 else 1e-5, rtol=0)
                def run(fn=fn, draws=draws, dt=dt):
                    for d in draws: fn(ctx, *d, dt)
                jobs[(vname, name(dt, bs))] = (run, nb*bs)

    times = {k: [] for k in jobs}
    for r in range(a.reps + 1):
        for k, (fn, n) in jobs.items():
            t0 = time.perf_counter(); fn(); t = time.perf_counter() - t0
            if r: times[k].append(t)  # round 0 is warm-up
        res.setdefault('loadavg_1min_per_round', []).append(os.getloadavg()[0])
        print(f"round {r}/{a.reps} done, load {os.getloadavg()[0]:.2f}", flush=True)
    for (what, cfg), (_, n) in jobs.items():
        st = stats(times[(what, cfg)], n)
        (res['pipeline'] if what == 'pipeline' else res['variants'].setdefault(what, {}))[cfg] = st
        print(f"{what:>15} {cfg}: {st['median_img_per_s']:>10,.0f} img/s", flush=True)

    res['goal_met'] = min(v['median_img_per_s'] for v in res['pipeline'].values()) > res['goal_img_per_s']
    p = save_results(a.out, res, seed=a.seed, data_dir=a.data_dir, loadavg_before=load0, loadavg_after=os.getloadavg())
    print(f"goal (> {res['goal_img_per_s']:,} img/s for every pipeline setting) met: {res['goal_met']}; wrote {p}")

if __name__ == '__main__': main()
