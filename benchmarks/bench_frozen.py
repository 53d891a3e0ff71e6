"""How much faster is a training step of the static `air` network with airbench's frozen parts (chapter 08)?

    python benchmarks/bench_frozen.py --threads 2      # -> data/results/bench_frozen_air.json

One training step, as `fit` takes it: forward under bf16 autocast (channels-last), label-smoothed cross-entropy,
backward, `MuonSGD` step with the recipe of `air_bs512_muon_0.12_mm0.7` (batch 512), on one fixed random batch
(the data pipeline is not timed). Four settings, each a fresh network with the same weights:

- `base`: the recipe as it was (5 Newton-Schulz steps, BatchNorm scales and the stem's bias trained);
- `ns3`: 3 Newton-Schulz steps;
- `ns3_bn`: and BatchNorm scales fixed at 1 (`bn_weight=False`);
- `ns3_bn_stem`: and the whitening stem's bias frozen, as after `whiten_epochs` (no gradient below the first group).

The settings run in alternating blocks of `--steps` consecutive steps, `--rounds` times (the machine is shared:
a block's noise then hits every setting alike); the median step over all blocks is quoted with each block's median.
Speed is never asserted in tests.
"""
import argparse, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's dynmoe
import numpy as np
import torch

SETTINGS = {'base': dict(), 'ns3': dict(ns_steps=3), 'ns3_bn': dict(ns_steps=3, bn_weight=False),
            'ns3_bn_stem': dict(ns_steps=3, bn_weight=False)}

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch-size', type=int, default=512); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--steps', type=int, default=6, help='consecutive steps per block')
    p.add_argument('--rounds', type=int, default=4, help='blocks per setting, alternating')
    p.add_argument('--out', default='data/results/bench_frozen_air.json')
    a = p.parse_args()
    if min(a.steps, a.rounds, a.batch_size) < 1: p.error('--steps, --rounds and --batch-size must be >= 1')
    torch.set_num_threads(a.threads)
    from dynmoe.experiment import make_config, build_model, build_criterion
    from dynmoe.train import train_state, whiten_biases
    from dynmoe.core import save_results
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch_size,), generator=g)
    recipe = dict(backbone='air', batch_size=a.batch_size, lr=0.75, lr_min=0.0525, muon_lr=0.12, muon_momentum=0.7)
    runs = {}
    for name, extra in SETTINGS.items():
        cfg = make_config('fast', model='static', dataset='synthetic', **recipe, **extra)
        torch.manual_seed(0)
        st = train_state(build_model(cfg, 10), cfg, torch.device('cpu'))   # freezes the BN scales if asked
        if name.endswith('_stem'):
            for b in whiten_biases(st.model): b.requires_grad_(False)     # what start_epoch does after whiten_epochs
        runs[name] = (st.model.train(), build_criterion(cfg, st.model), st.opts['joint'])
    def step(net, crit, opt):
        with torch.autocast('cpu', torch.bfloat16):
            loss, _ = crit(net(x), y, 'joint')
        net.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for r in runs.values(): step(*r); step(*r)   # warm-up: oneDNN primitives, Muon buffers
    times = {n: [] for n in runs}
    for _ in range(a.rounds):
        for n, r in runs.items():
            block = []
            for _ in range(a.steps):
                t = time.perf_counter(); step(*r); block.append(time.perf_counter() - t)
            times[n].append(block)
    base = float(np.median(times['base']))
    out = {}
    for n, blocks in times.items():
        med = float(np.median(blocks))
        out[n] = dict(step_s_median=med, block_medians_s=[float(np.median(b)) for b in blocks],
                      img_per_s=a.batch_size / med, speedup_vs_base=base / med)
        print(f"{n:12s}: median step {med:.3f} s ({a.batch_size / med:.0f} img/s), x{base / med:.3f} against base; "
              f"block medians {', '.join(f'{v:.3f}' for v in out[n]['block_medians_s'])} s", flush=True)
    save_results(a.out, dict(network='static air (118.1 MMACs/img)', recipe=recipe, settings=SETTINGS,
                             batch_size=a.batch_size, threads=a.threads, steps_per_block=a.steps, rounds=a.rounds,
                             dtype='bf16 autocast, channels-last', **out), loadavg=os.getloadavg())

if __name__ == '__main__': main()
