"""dynmoe.train beyond the notebook: multi-process training (DDP over Gloo on CPU, launched by torchrun),
a hard-killed process resuming to the same weights, atomic checkpoint writes, and the log files."""
import os, subprocess, sys, textwrap
from pathlib import Path
import pytest
import torch, torch.nn as nn
import fastcore.test as ft
from dynmoe.train import Config, TensorLoader, fit, load_checkpoint, read_csv, save_checkpoint

# One script for every run below, so that all of them build the same model and data. Modes:
#   joint   : a small conv net without BatchNorm (DDP on 2 ranks must equal 1 process on the full batch)
#   bilevel : a net with BatchNorm, dropout and a policy gate, trained bi-level
#   straight / kill / resume : the bilevel net on a torch DataLoader, 2 epochs; 'kill' dies with os._exit mid-epoch 2
WORKER = textwrap.dedent('''
    import os, sys, torch, torch.nn as nn, torch.nn.functional as F
    from pathlib import Path
    from dynmoe.core import set_seed
    from dynmoe.train import Config, TensorLoader, fit, dist_env, top1
    mode, out = sys.argv[1], Path(sys.argv[2])
    rank, world, _ = dist_env()

    class PolicyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head, self.gate = nn.Linear(8, 4), nn.Linear(1, 1)
        def forward(self, x):
            logits = self.head(self.body(x))
            return logits, torch.sigmoid(self.gate(logits.softmax(1).amax(1, keepdim=True))).squeeze(1)
        def classifier_parameters(self): return [*self.body.parameters(), *self.head.parameters()]
        def policy_parameters(self): return self.gate.parameters()

    def criterion(out, y, part):
        logits, a = out
        ce = F.cross_entropy(logits.float(), y, reduction='none')
        loss = ((ce.detach() - 1.0) * a).mean() if part == 'outer' else (ce * (a + 1)).mean()
        return loss, {'ce': ce.mean().item()}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()   # 4 learnable classes
    xt, yt, xv, yv = x[:256], y[:256], x[256:], y[256:]
    set_seed(0)
    # on the CPU even where a GPU is visible: Gloo ranks, and exact resumption (chapter 08, 'Resuming a killed run')
    cfg = dict(batch_size=32, lr=0.05, ema_decay=0.9, amp=False, quiet=True, tensorboard=False, device='cpu')
    if mode == 'joint':
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        st = fit(model, TensorLoader(xt, yt, 32, rank=rank, world_size=world),
                 TensorLoader(xv, yv, 32, shuffle=False, drop_last=False, rank=rank, world_size=world),
                 Config(epochs=3, out_dir=str(out / f'joint_w{world}'), **cfg))
    elif mode == 'bilevel':
        st = fit(PolicyNet(), TensorLoader(xt, yt, 32, rank=rank, world_size=world),
                 TensorLoader(xv, yv, 32, shuffle=False, drop_last=False, rank=rank, world_size=world),
                 Config(epochs=3, outer_every=2, **cfg), criterion, lambda o, y: top1(o[0], y))
    else:  # straight / kill / resume, on a standard torch DataLoader with its own generator
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
        if mode == 'kill':
            class KillAt:  # the process dies, without any cleanup, when it asks for batch 13 (epoch 2, batch 6)
                def __init__(self, dl): self.dl, self.n, self.generator = dl, 0, dl.generator
                def __len__(self): return len(self.dl)
                def __iter__(self):
                    for b in self.dl:
                        if self.n == 13: os._exit(137)
                        self.n += 1; yield b
            dl = KillAt(dl)
        if mode == 'resume': set_seed(123); PolicyNet()  # a different process state before resuming
        run_dir = out / ('straight' if mode == 'straight' else 'killed')
        st = fit(PolicyNet(), dl, TensorLoader(xv, yv, 32, shuffle=False, drop_last=False),
                 Config(epochs=2, outer_every=3, ckpt_every=4, out_dir=str(run_dir), resume=mode == 'resume', **cfg),
                 criterion, lambda o, y: top1(o[0], y))
    torch.save(dict(model=st.model.state_dict(), ema=st.ema.state_dict(), history=st.history),
               out / f'{mode}_rank{rank}_of{world}.pt')
''')

def run_worker(tmp_path, mode, nproc=1, check=True):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    cmd = [sys.executable, str(script), mode, str(tmp_path)]
    if nproc > 1: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] + cmd[1:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check: assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

def result(tmp_path, mode, rank, world): return torch.load(tmp_path / f'{mode}_rank{rank}_of{world}.pt')

def assert_close(a:dict, b:dict, atol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=atol, rtol=0, msg=lambda m: f'{k}: {m}')

def test_ddp_two_ranks_match_one_process(tmp_path):
    "Two Gloo ranks each training on half of every batch end with identical weights, equal to one process on whole batches."
    run_worker(tmp_path, 'joint', nproc=2)
    run_worker(tmp_path, 'joint', nproc=1)
    r0, r1, single = (result(tmp_path, 'joint', *rw) for rw in ((0, 2), (1, 2), (0, 1)))
    assert_close(r0['model'], r1['model'], atol=0)                 # DDP keeps the ranks bit-identical
    assert_close(r0["model"], single["model"], atol=1e-6)          # same maths, different summation order
    assert_close(r0["ema"], single["ema"], atol=1e-6)
    for a, b in zip(r0['history'], single['history']):              # metrics are summed over ranks
        for k in ('train_loss', 'train_acc', 'valid_loss', 'valid_acc'): assert a[k] == pytest.approx(b[k], abs=1e-5), k
    assert r0['history'][-1]['train_loss'] < r0['history'][0]['train_loss']
    # only rank 0 writes: one log with one row per epoch, one checkpoint that says it came from 2 processes
    assert len(read_csv(tmp_path / 'joint_w2' / 'log.csv')) == 3
    assert len(load_checkpoint(tmp_path / 'joint_w2' / 'last.pt')['ranks']) == 2
    assert sorted(p.name for p in (tmp_path / 'joint_w2').iterdir()) == ['last.pt', 'log.csv']

def test_ddp_bilevel_keeps_ranks_in_sync(tmp_path):
    "Bi-level training (two backward passes per outer step, parameters unused in one of them) under DDP."
    run_worker(tmp_path, 'bilevel', nproc=2)
    r0, r1 = result(tmp_path, 'bilevel', 0, 2), result(tmp_path, 'bilevel', 1, 2)
    params = [k for k in r0['model'] if 'running' not in k and 'num_batches' not in k]  # BatchNorm statistics stay per-rank
    assert_close({k: r0['model'][k] for k in params}, {k: r1['model'][k] for k in params}, atol=0)
    h = r0['history']
    assert h[-1]['train_loss'] < h[0]['train_loss'], h

def test_hard_killed_process_resumes_to_same_weights(tmp_path):
    "A process killed with os._exit mid-epoch (torch DataLoader, dropout, BatchNorm, EMA, two optimisers) resumes exactly."
    run_worker(tmp_path, 'straight')
    r = run_worker(tmp_path, 'kill', check=False)
    assert r.returncode == 137, r.stderr[-2000:]
    ck = load_checkpoint(tmp_path / 'killed' / 'last.pt')
    assert (ck['epoch'], ck['step'], ck['epoch_step']) == (1, 12, 4)   # last checkpoint: step 12, mid-epoch 2
    run_worker(tmp_path, 'resume')
    ref, res = result(tmp_path, 'straight', 0, 1), result(tmp_path, 'resume', 0, 1)
    assert_close(ref['model'], res['model'], atol=1e-7)
    assert_close(ref['ema'], res['ema'], atol=1e-7)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ('seconds', 'img_per_s')} for r in h]
    assert strip(ref['history']) == strip(res['history'])

def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    "A save that dies half-way never replaces last.pt: it is written to a temporary file and renamed."
    m = nn.Linear(4, 2)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    st = fit(m, TensorLoader(x, y, 16), cfg=Config(epochs=1, batch_size=16, quiet=True, out_dir=str(tmp_path), tensorboard=False))
    before = load_checkpoint(tmp_path / 'last.pt')
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        f.write(b'half a checkpoint'); raise KeyboardInterrupt('killed while saving')
    monkeypatch.setattr(torch, 'save', dying_save)
    with pytest.raises(KeyboardInterrupt): save_checkpoint(tmp_path / 'last.pt', st, Config(epochs=1, batch_size=16), before['ranks'])
    monkeypatch.setattr(torch, 'save', real_save)
    after = load_checkpoint(tmp_path / 'last.pt')
    assert after['step'] == before['step'] == 4
    assert_close(after['model'], before['model'], atol=0)

def test_logs_csv_and_tensorboard(tmp_path):
    "out_dir gets log.csv (one row per epoch, the documented columns) and TensorBoard event files."
    pytest.importorskip('tensorboard')
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    fit(nn.Linear(4, 2), TensorLoader(x, y, 16), TensorLoader(x, y, 32, shuffle=False),
        Config(epochs=2, batch_size=16, quiet=True, out_dir=str(tmp_path), log_every=1, ema_decay=0.5))
    rows = read_csv(tmp_path / 'log.csv')
    assert [r['epoch'] for r in rows] == [1, 2]
    assert list(rows[0]) == ['epoch', 'train_loss', 'train_acc', 'valid_loss', 'valid_acc', 'ema_valid_loss', 'ema_valid_acc',
                             'lr', 'seconds', 'img_per_s']
    assert list((tmp_path / 'tb').glob('events.out.tfevents.*'))

def test_resume_true_without_checkpoint_starts_afresh(tmp_path):
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    st = fit(nn.Linear(4, 2), TensorLoader(x, y, 16), cfg=Config(epochs=1, batch_size=16, quiet=True, out_dir=str(tmp_path), resume=True, tensorboard=False))
    assert st.step == 2 and (tmp_path / 'last.pt').exists()
    with pytest.raises(FileNotFoundError, match='not found'):
        fit(nn.Linear(4, 2), TensorLoader(x, y, 16), cfg=Config(epochs=1, batch_size=16, quiet=True, resume=str(tmp_path / 'nope.pt')))

def test_bad_inputs():
    with pytest.raises(TypeError, match='must have a len'):
        fit(nn.Linear(4, 2), iter([(torch.randn(2, 4), torch.tensor([0, 1]))]), cfg=Config(epochs=1, quiet=True))
    with pytest.raises(ValueError, match='yields no batches'):
        fit(nn.Linear(4, 2), TensorLoader(torch.randn(8, 4), torch.zeros(8).long(), 16), cfg=Config(epochs=1, quiet=True))

class Killed(Exception): pass

class KillAt:
    "A loader wrapper that raises `Killed` when batch `at` (counted over the run) is requested; passes set_epoch on."
    def __init__(self, dl, at): self.dl, self.at, self.n = dl, at, 0
    def __len__(self): return len(self.dl)
    def set_epoch(self, epoch): self.dl.set_epoch(epoch)
    def __iter__(self):
        for b in self.dl:
            if self.n == self.at: raise Killed()
            self.n += 1; yield b

def test_fast_loader_trains_and_resumes(tmp_path):
    "dynmoe.data.FastLoader (augmenting, seeded per epoch through set_epoch) in fit: learns, and resumes mid-epoch exactly."
    from dynmoe.core import set_seed
    from dynmoe.data import FastLoader, make_synthetic
    tr, va = make_synthetic(384, size=16), make_synthetic(128, size=16, sample_seed=1)
    def run(out_dir, kill_at=None, resume=False):
        set_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        dl = FastLoader(tr.x, tr.y, 32, train=True)
        if kill_at is not None: dl = KillAt(dl, kill_at)
        cfg = Config(epochs=3, batch_size=32, lr=0.1, ema_decay=0.9, amp=False, quiet=True, tensorboard=False,
                     out_dir=str(out_dir), ckpt_every=5, resume=resume)
        return fit(net, dl, FastLoader(va.x, va.y, 64, train=False), cfg)
    ref = run(tmp_path / 'straight')
    assert ref.history[-1]['train_loss'] < ref.history[0]['train_loss']
    with pytest.raises(Killed): run(tmp_path / 'killed', kill_at=17)   # epoch 2 (12 batches per epoch), after the step-15 checkpoint
    assert load_checkpoint(tmp_path / 'killed' / 'last.pt')['epoch_step'] == 3
    res = run(tmp_path / 'killed', resume=True)
    assert_close(ref.model.state_dict(), res.model.state_dict(), atol=1e-7)
    assert_close(ref.ema.state_dict(), res.ema.state_dict(), atol=1e-7)

def test_bilevel_split_needs_no_other_import():
    "DynNet owns its phi/theta split: bi-level training must not depend on `dynmoe.losses` having been imported."
    code = ("import sys; from dynmoe.models import DynNet; from dynmoe.train import Config, make_optimizers; "
            "assert 'dynmoe.losses' not in sys.modules; "
            "opts = make_optimizers(DynNet('dynmoe'), Config(bilevel=True)); print(sorted(opts))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ft.test_eq(out.stdout.strip(), "['inner', 'outer']")
