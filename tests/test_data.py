"Unit tests for dynmoe.data: file layouts, bad input, splits, the fast loader's augmentation, corruptions."
import io, os, pickle, tarfile, time, zipfile
from contextlib import redirect_stdout
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import fastcore.test as ft
import dynmoe.data as dd
from dynmoe.data import (DATA_SOURCES, FastLoader, Split, augment_batch, channel_stats, corrupt, data_tour, ensure_dataset,
                         extract_archive, fetch, file_md5, find_cifar10, get_dataset, load_cifar10, load_cifar100,
                         load_tinyimagenet, make_fake_cifar, make_fake_tinyimagenet, make_synthetic, normalise,
                         read_cifar_batch, sample_images, split_train_valid)

REAL = find_cifar10()   # a real CIFAR-10 only where the user points DYNMOE_DATA (CI's second run does)

@pytest.fixture
def offline_sources(monkeypatch):
    "Point every dataset URL at a closed local port: no test ever downloads for real."
    for k, v in list(DATA_SOURCES.items()):
        monkeypatch.setitem(DATA_SOURCES, k, v | dict(url=f"http://127.0.0.1:9/{Path(v['url']).name}"))

# ---------------------------------------------------------------- layouts

def test_cifar10_layout_roundtrip(tmp_path):
    make_fake_cifar(tmp_path, 'cifar10', n=12)
    train, test, classes = load_cifar10(tmp_path, download=False)
    ft.test_eq((len(train), len(test), len(classes)), (60, 12, 10))
    ft.test_eq((train.x.dtype, train.y.dtype, tuple(train.x.shape[1:])), (torch.uint8, torch.int64, (3, 32, 32)))
    d = pickle.load(open(tmp_path/'cifar-10-batches-py'/'data_batch_2', 'rb'), encoding='latin1')
    ft.test_eq(train.x[12:24].reshape(12, -1).numpy(), d['data'])       # rows are 1024 R, 1024 G, 1024 B
    ft.test_eq(train.y[12:24].tolist(), d['labels'])

def test_cifar100_layout(tmp_path):
    make_fake_cifar(tmp_path, 'cifar100', n=150)
    train, test, classes = load_cifar100(tmp_path, download=False)
    ft.test_eq((len(train), len(test), len(classes)), (150, 150, 100))
    assert 0 <= int(train.y.min()) and int(train.y.max()) < 100 and len(train.y.unique()) > 10

def test_tinyimagenet_layout(tmp_path):
    folder = make_fake_tinyimagenet(tmp_path, n_classes=2, n_train=3, n_val=2)
    tr, te, names = load_tinyimagenet(tmp_path, download=False)
    ft.test_eq((tuple(tr.x.shape), tuple(te.x.shape)), ((6, 3, 64, 64), (4, 3, 64, 64)))
    ft.test_eq(names, ['thing 0', 'thing 1'])
    (folder/'words.txt').unlink()
    ft.test_eq(load_tinyimagenet(tmp_path, download=False)[2], ['n00000000', 'n00000001'])   # no words.txt: wnids

def test_env_var_root(tmp_path, monkeypatch):
    make_fake_cifar(tmp_path, n=4)
    monkeypatch.setenv('DYNMOE_DATA', str(tmp_path))
    ft.test_eq(len(load_cifar10(download=False)[0]), 20)

def test_existing_folder_read_without_md5(tmp_path):
    make_fake_cifar(tmp_path, n=4)  # its bytes match no published checksum
    ft.test_eq(ensure_dataset('cifar10', tmp_path, download=True), tmp_path/'cifar-10-batches-py')

# ---------------------------------------------------------------- bad input

def _batch(path, n=4, **over):
    d = {'data': np.zeros((n, 3072), np.uint8), 'labels': list(range(n))} | over
    path.write_bytes(pickle.dumps(d, protocol=2)); return path

def test_bad_files(tmp_path):
    f = _batch(tmp_path/'b')
    good = f.read_bytes()
    for cut in (10, len(good)//2, len(good) - 3):
        f.write_bytes(good[:cut]); ft.test_fail(lambda: read_cifar_batch(f), contains='truncated')
    _batch(f, data=np.zeros((4, 3071), np.uint8)); ft.test_fail(lambda: read_cifar_batch(f), contains='expected 4 images x 3072')
    _batch(f, data=np.zeros((5, 3072), np.uint8)); ft.test_fail(lambda: read_cifar_batch(f), contains='expected 4 images x 3072')
    _batch(f, labels=[0, 1, 2, 10]); ft.test_fail(lambda: read_cifar_batch(f), contains='labels must lie in [0, 10)')
    _batch(f, labels=[0, -1, 2, 3]); ft.test_fail(lambda: read_cifar_batch(f), contains='labels must lie')
    _batch(f, labels=[0.5, 1, 2, 3]); ft.test_fail(lambda: read_cifar_batch(f), contains='list of ints')
    _batch(f, labels=[]); ft.test_fail(lambda: read_cifar_batch(f), contains='non-empty')
    f.write_bytes(pickle.dumps([1, 2])); ft.test_fail(lambda: read_cifar_batch(f), contains='expected a dict')
    f.write_bytes(pickle.dumps({'data': os.system})); ft.test_fail(lambda: read_cifar_batch(f), contains='refusing to load')
    ft.test_fail(lambda: read_cifar_batch(tmp_path/'missing'), contains='not found')
    _batch(f, labels=list(range(4))); ft.test_fail(lambda: read_cifar_batch(f, 'fine_labels', 100), contains="no 'fine_labels'")

def test_bad_layouts(tmp_path):
    folder = make_fake_cifar(tmp_path, n=4)
    (folder/'test_batch').unlink()
    ft.test_fail(lambda: load_cifar10(tmp_path, download=False), contains="missing ['test_batch']")
    make_fake_cifar(tmp_path, n=4)
    (folder/'batches.meta').write_bytes(pickle.dumps({'label_names': ['a', 'b']}))
    ft.test_fail(lambda: load_cifar10(tmp_path, download=False), contains='expected 10')
    f100 = make_fake_cifar(tmp_path, 'cifar100', n=4)
    (f100/'meta').unlink()
    ft.test_fail(lambda: load_cifar100(tmp_path, download=False), contains="missing ['meta']")
    tf = make_fake_tinyimagenet(tmp_path, n_classes=2, n_train=2, n_val=1)
    (tf/'val'/'val_annotations.txt').write_text('val_0.JPEG\n')
    ft.test_fail(lambda: load_tinyimagenet(tmp_path, download=False), contains="expected 'file<TAB>wnid")
    (tf/'wnids.txt').unlink()
    ft.test_fail(lambda: load_tinyimagenet(tmp_path, download=False), contains="missing ['wnids.txt']")

def test_corrupt_jpeg(tmp_path):
    tf = make_fake_tinyimagenet(tmp_path, n_classes=1, n_train=2, n_val=1)
    f = next((tf/'train').rglob('*.JPEG')); f.write_bytes(f.read_bytes()[:100])
    ft.test_fail(lambda: load_tinyimagenet(tmp_path, download=False), contains='could not be decoded')

def test_unknown_names():
    ft.test_fail(lambda: get_dataset('imagenet'), contains="unknown dataset 'imagenet'")
    ft.test_fail(lambda: ensure_dataset('synthetic'), contains="unknown dataset 'synthetic'")   # nothing to download
    ft.test_fail(lambda: make_fake_cifar('/tmp', 'svhn'), contains='unknown dataset')

# ---------------------------------------------------------------- download (never for real)

def _targz(tmp_path, folder_name='toy'):
    src = tmp_path/'src'/folder_name; src.mkdir(parents=True); (src/'f.txt').write_text('x')
    arc = tmp_path/'toy.tar.gz'
    with tarfile.open(arc, 'w:gz') as t: t.add(src, arcname=folder_name)
    return arc

def test_download_file_url_and_md5(tmp_path):
    arc = _targz(tmp_path)
    got = fetch(tmp_path/'root'/'toy', arc.as_uri(), file_md5(arc))
    ft.test_eq((got/'f.txt').read_text(), 'x')
    assert (tmp_path/'root'/'toy.tar.gz').is_file()                                       # archive kept, md5 was right
    ft.test_fail(lambda: fetch(tmp_path/'r2'/'toy', arc.as_uri(), 'f'*32), contains='md5')
    assert not any((tmp_path/'r2').iterdir())                                               # nothing kept
    ft.test_fail(lambda: fetch(tmp_path/'r3'/'other', arc.as_uri(), None), contains='did not contain the folder other/')

def test_existing_bad_archive(tmp_path):
    (tmp_path/'toy.tar.gz').write_bytes(b'partial')
    ft.test_fail(lambda: fetch(tmp_path/'toy', 'http://127.0.0.1:9/toy.tar.gz', 'a'*32), contains='delete it and run again')

def test_zip_archive(tmp_path):
    make_fake_tinyimagenet(tmp_path/'src', n_classes=1, n_train=1, n_val=1)
    arc = tmp_path/'tiny-imagenet-200.zip'
    with zipfile.ZipFile(arc, 'w') as z:
        for p in (tmp_path/'src').rglob('*'): z.write(p, p.relative_to(tmp_path/'src'))
    got = fetch(tmp_path/'root'/'tiny-imagenet-200', arc.as_uri(), file_md5(arc))
    ft.test_eq(len(load_tinyimagenet(tmp_path/'root', download=False)[0]), 1)
    assert got.is_dir()

def test_network_failure_is_fast_and_clear(tmp_path, offline_sources):
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError) as e: load_cifar10(tmp_path)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert str((tmp_path/'cifar-10-batches-py').resolve()) in msg and '127.0.0.1:9/cifar-10-python.tar.gz' in msg, msg
    for name in ('cifar100', 'tinyimagenet'):
        ft.test_fail(lambda: get_dataset(name, tmp_path), contains=Path(DATA_SOURCES[name]['url']).name)

def test_download_false_names_real_url(tmp_path):
    ft.test_fail(lambda: load_cifar10(tmp_path, download=False), contains='https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz')

def test_unreadable_archive(tmp_path):
    (tmp_path/'a.tar.gz').write_text('no')
    ft.test_fail(lambda: extract_archive(tmp_path/'a.tar.gz', tmp_path), contains='neither a tar nor a zip')

# ---------------------------------------------------------------- splits

def test_split_sizes_stratified_seeded(tmp_path):
    make_fake_cifar(tmp_path, n=200)
    ds = get_dataset('cifar10', tmp_path, val_size=100, download=False)
    ft.test_eq((len(ds.train), len(ds.valid), len(ds.test)), (900, 100, 200))
    ft.test_eq(torch.bincount(ds.valid.y, minlength=10).tolist(), [10]*10)
    tr_i, va_i = split_train_valid(torch.cat([load_cifar10(tmp_path, download=False)[0].y]), 100, 0)
    ft.test_eq(len(np.intersect1d(tr_i.numpy(), va_i.numpy())), 0)
    ft.test_eq(get_dataset('cifar10', tmp_path, val_size=100, download=False).valid.x, ds.valid.x)  # same seed, same split
    assert not torch.equal(get_dataset('cifar10', tmp_path, val_size=100, seed=1, download=False).valid.x, ds.valid.x)
    ft.test_close(torch.tensor(ds.mean, dtype=torch.float64), (ds.train.x.double()/255).mean((0, 2, 3)), eps=1e-9)

def test_split_uneven_classes():
    y = torch.cat([torch.zeros(3, dtype=torch.int64), torch.ones(100, dtype=torch.int64)])
    tr, va = split_train_valid(y, 20, seed=0)     # class 0 cannot give its 10: the rest is filled at random
    ft.test_eq((len(tr), len(va)), (83, 20))
    ft.test_eq(len(torch.cat([tr, va]).unique()), 103)

def test_synthetic_learnable():
    ds = get_dataset('synthetic')
    ft.test_eq((len(ds.train), len(ds.valid), len(ds.test)), (4500, 500, 1000))
    means = torch.stack([ds.train.x[ds.train.y == c].float().mean(0) for c in range(10)]).flatten(1)
    acc = (torch.cdist(ds.test.x.float().flatten(1), means).argmin(1) == ds.test.y).float().mean()
    assert acc > 0.8, acc

@pytest.mark.skipif(REAL is None, reason='no CIFAR-10 folder in $DYNMOE_DATA or data/')
def test_real_cifar10_sizes():
    ds = get_dataset('cifar10', REAL, download=False)
    ft.test_eq((len(ds.train), len(ds.valid), len(ds.test)), (45000, 5000, 10000))
    ft.test_eq(torch.bincount(ds.valid.y).tolist(), [500]*10)
    ft.test_close(torch.tensor(ds.mean), torch.tensor([0.4913, 0.4821, 0.4465]), eps=5e-4)   # README's figures (all 50k)

# ---------------------------------------------------------------- augmentation

@pytest.mark.parametrize('mode', ['reflect', 'zeros'])
def test_crop_is_window_of_padded_image(mode):
    x = make_synthetic(6, size=12).x
    pad = 3
    padded = F.pad(x.float(), (pad,)*4, mode='reflect' if mode == 'reflect' else 'constant')
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            shift = torch.tensor([[dy, dx]]*6)
            got = augment_batch(x, torch.arange(6), shift, pad_mode=mode)
            ft.test_eq(got, padded[:, :, pad+dy:pad+dy+12, pad+dx:pad+dx+12])

def test_flip_is_mirror_and_composes_with_crop():
    x = make_synthetic(4, size=8).x
    flip = torch.tensor([True, False, True, False])
    got = augment_batch(x, torch.arange(4), flip=flip)
    ft.test_eq(got[flip], x[flip].flip(-1).float()); ft.test_eq(got[~flip], x[~flip].float())
    shift = torch.tensor([[1, -2]]*4)
    both = augment_batch(x, torch.arange(4), shift, flip)
    ft.test_eq(both[flip], augment_batch(x, torch.arange(4), shift)[flip].flip(-1))   # flip(crop(x))

def test_normalisation_and_layout():
    x = make_synthetic(20).x
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    dl = FastLoader(x, torch.zeros(20, dtype=torch.int64), 20, train=False, mean=mean, std=std)
    xb, yb = next(iter(dl))
    ref = (x.float()/255 - torch.tensor(mean)[:, None, None])/torch.tensor(std)[:, None, None]
    ft.test_close(xb, ref, eps=1e-5)
    assert xb.is_contiguous(memory_format=torch.channels_last)
    xb16 = next(iter(FastLoader(x, torch.zeros(20, dtype=torch.int64), 20, train=False, mean=mean, std=std, dtype=torch.bfloat16)))[0]
    ft.test_eq(xb16.dtype, torch.bfloat16); ft.test_close(xb16.float(), ref, eps=0.05)

def test_normalise_is_the_formula():
    x = make_synthetic(6).x
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    got = normalise(x, mean, std)
    ref = ((x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.equal(got, ref) and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(normalise(x, torch.tensor(mean, dtype=torch.float64), torch.tensor(std)), got)
    ft.test_eq(next(iter(FastLoader(x, torch.zeros(6, dtype=torch.int64), 6, train=False, mean=mean, std=std)))[0].shape,
               got.shape)
    with pytest.raises(TypeError, match='uint8 images'): normalise(x.float(), mean, std)
    with pytest.raises(TypeError, match='uint8 images'): normalise(x.numpy(), mean, std)
    with pytest.raises(TypeError, match=r'\(N, C, H, W\)'): normalise(x[0], mean, std)
    with pytest.raises(ValueError, match='need 3 values'): normalise(x, mean[:2], std)
    with pytest.raises(ValueError, match='need 3 values'): normalise(x, mean, torch.ones(1, 3))

def test_train_batches_are_crops_of_their_images():
    x = make_synthetic(8, size=10).x; y = torch.arange(8)
    dl = FastLoader(x, y, 8, mean=(0., 0., 0.), std=(1/255,)*3, pad=2, seed=5)   # scale 1, bias 0: raw pixel values
    padded = F.pad(x.float(), (2,)*4, mode='reflect')
    for _ in range(3):
        xb, yb = next(iter(dl))
        for img, lab in zip(xb, yb):
            cands = [w for dy in range(5) for dx in range(5) for w in (padded[lab, :, dy:dy+10, dx:dx+10],)]
            cands += [c.flip(-1) for c in cands]
            assert any(torch.equal(img, c) for c in cands)

def test_epochs_differ_and_reproduce():
    ds = get_dataset('synthetic')
    dl = FastLoader(*ds.train, 500, seed=1)
    e0 = [b.clone() for b, _ in dl]; e1 = [b.clone() for b, _ in dl]
    assert not torch.equal(e0[0], e1[0])
    dl.set_epoch(0); ft.test_eq([b for b, _ in dl][0], e0[0])            # same epoch, same order and same augmentation
    assert not torch.equal(FastLoader(*ds.train, 500, seed=2).order(0), dl.order(0))

def test_len_and_drop_last():
    x, y = make_synthetic(1000)
    ft.test_eq(len(FastLoader(x, y, 300)), 3)                            # train drops the partial batch
    ft.test_eq(len(FastLoader(x, y, 300, drop_last=False)), 4)
    ft.test_eq([len(b) for _, b in FastLoader(x, y, 300, train=False)], [300, 300, 300, 100])
    ft.test_eq(sum(len(b) for _, b in FastLoader(x, y, 300, drop_last=False)), 1000)

@pytest.mark.parametrize('ws', [2, 3, 8])
def test_ddp_shards(ws):
    x, y = make_synthetic(1001)
    for epoch in (0, 1):
        parts = [FastLoader(x, y, 64, seed=4, rank=r, world_size=ws).order(epoch) for r in range(ws)]
        ft.test_eq({len(p) for p in parts}, {1001//ws})                  # equal size
        allp = torch.cat(parts)
        ft.test_eq(len(allp.unique()), len(allp))                         # disjoint
        ft.test_eq(allp, FastLoader(x, y, 64, seed=4).order(epoch)[:len(allp)])   # slices of one shared permutation
        ft.test_eq(len({len(FastLoader(x, y, 64, seed=4, rank=r, world_size=ws)) for r in range(ws)}), 1)  # same step count
    ev = torch.cat([FastLoader(x, y, 64, train=False, rank=r, world_size=ws).order(0) for r in range(ws)])
    ft.test_eq(ev, torch.arange(1001))                                    # eval: every image once, in order
    ys = torch.cat([yb for r in range(ws) for _, yb in FastLoader(x, y, 64, train=False, rank=r, world_size=ws)])
    ft.test_eq(ys, y)

def test_loader_bad_input():
    x, y = make_synthetic(10)
    ft.test_fail(lambda: FastLoader(x.float(), y), contains='uint8')
    ft.test_fail(lambda: FastLoader(x, y[:5]), contains='y must have shape')
    ft.test_fail(lambda: FastLoader(x, y, 0), contains='batch_size')
    ft.test_fail(lambda: FastLoader(x, y, rank=1, world_size=1), contains='rank < world_size')
    ft.test_fail(lambda: FastLoader(x, y, pad=32), contains='pad must be in')
    ft.test_fail(lambda: FastLoader(x, y, mean=(0.5,)), contains='one per channel')
    ft.test_fail(lambda: FastLoader(x, y, pad_mode='edge'), contains="'reflect' or 'zeros'")
    ft.test_fail(lambda: Split(x, y.int()), contains='int64')

# ---------------------------------------------------------------- corruptions

def test_corruption_determinism_and_levels():
    x = make_synthetic(16).x
    for kind in dd.CORRUPTIONS:
        ft.test_eq(corrupt(x, kind, 0), x)
        outs = [corrupt(x, kind, s, seed=3) for s in range(1, 6)]
        for s, o in enumerate(outs, 1):
            ft.test_eq((o.dtype, o.shape), (torch.uint8, x.shape))
            ft.test_eq(o, corrupt(x, kind, s, seed=3))                   # same seed, same images
        d = [(o.float() - x.float()).abs().mean().item() for o in outs]
        assert all(a < b for a, b in zip(d, d[1:])), d                   # harder with severity
    assert not torch.equal(corrupt(x, 'gaussian_noise', 2, seed=0), corrupt(x, 'gaussian_noise', 2, seed=1))
    ft.test_eq(corrupt(x, 'gaussian_noise', 2, seed=0, chunk=5), corrupt(x, 'gaussian_noise', 2, seed=0, chunk=5))

def test_corruption_constants_match_cifar10c():
    ft.test_eq(dd.CORRUPTIONS['gaussian_noise'], (0.04, 0.06, 0.08, 0.09, 0.10))
    ft.test_eq(dd.CORRUPTIONS['gaussian_blur'], (0.4, 0.6, 0.7, 0.8, 1.0))

def test_blur_matches_scipy():
    ndimage = pytest.importorskip('scipy.ndimage')
    x = make_synthetic(4).x
    for s in dd.CORRUPTIONS['gaussian_blur']:
        ref = ndimage.gaussian_filter(x.double().numpy()/255, sigma=(0, 0, s, s), mode='nearest', truncate=4.0)
        got = corrupt(x, 'gaussian_blur', dd.CORRUPTIONS['gaussian_blur'].index(s) + 1).int()
        want = torch.from_numpy(np.clip(ref, 0, 1)*255).round().int()
        assert (got - want).abs().max() <= 1 and (got == want).float().mean() > 0.999   # float32 vs float64 rounding

def test_noise_std():
    grey = torch.full((100, 3, 32, 32), 128, dtype=torch.uint8)
    for s, c in enumerate(dd.CORRUPTIONS['gaussian_noise'], 1):
        ft.test_close((corrupt(grey, 'gaussian_noise', s).float()/255).std().item(), c, eps=0.002)

def test_corruption_bad_input():
    x = make_synthetic(2).x
    ft.test_fail(lambda: corrupt(x, 'snow', 1), contains='unknown corruption')
    ft.test_fail(lambda: corrupt(x, 'gaussian_noise', -1), contains='severity')
    ft.test_fail(lambda: corrupt(x, 'gaussian_noise', 1.5), contains='severity')
    ft.test_fail(lambda: corrupt(x[0], 'gaussian_noise', 1), contains='(N, C, H, W) uint8')

# ---------------------------------------------------------------- sample_images and the tour

def test_sample_images_fallback_and_real(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path); monkeypatch.delenv('DYNMOE_DATA', raising=False)
    x, y, src = sample_images(5, 'train')
    ft.test_eq((tuple(x.shape), x.dtype, src), ((5, 3, 32, 32), torch.uint8, 'synthetic'))
    make_fake_cifar(tmp_path/'elsewhere', n=30)
    monkeypatch.setenv('DYNMOE_DATA', str(tmp_path/'elsewhere'))
    x, y, src = sample_images(5, 'test', seed=2)
    assert src.startswith('cifar10:') and 'elsewhere' in src
    ft.test_eq(find_cifar10(), tmp_path/'elsewhere')
    ft.test_eq(sample_images(5, 'test', seed=2)[0], x)
    ft.test_fail(lambda: sample_images(0), contains='n must be in')

def test_data_tour(tmp_path, offline_sources):
    make_fake_cifar(tmp_path, n=1100)
    buf = io.StringIO()
    with redirect_stdout(buf): data_tour(data_dir=str(tmp_path), out=str(tmp_path/'r'/'t.png'), batch_size=128)
    out = buf.getvalue()
    assert 'train 500, valid 5000, test 1100' in out and 'images/s' in out and 'truck' in out, out
    assert (tmp_path/'r'/'t.png').stat().st_size > 10_000
    ft.test_fail(lambda: data_tour(data_dir=str(tmp_path/'none'), out=str(tmp_path/'x.png')), contains='cifar-10-python.tar.gz')

def test_corrupt_split_keeps_labels():
    s = make_synthetic(6)
    c = dd.corrupt_split(s, 'gaussian_blur', 2)
    ft.test_eq(c.y, s.y); ft.test_eq(c.x, corrupt(s.x, 'gaussian_blur', 2))

def test_bench_table(tmp_path):
    from dynmoe.core import save_results
    cell = lambda v: dict(median_img_per_s=v, min_img_per_s=v, max_img_per_s=v, reps=3)
    res = dict(threads=2, pipeline={'fp32 b256': cell(1e5)}, variants={'index_select': {'fp32 b256': cell(2e5)}},
               extra_bytes={'index_select': 0})
    p = save_results(tmp_path/'b.json', res, command='bench_data.py --data-dir x', seed=0, loadavg_before=[0.1, 0, 0], loadavg_after=[0.2, 0, 0])
    t = dd.bench_table(p)
    assert '| FastLoader (the whole training pipeline) | 100,000 |' in t and '| index_select | 200,000 | 0 MiB |' in t, t
    assert 'bench_data.py --data-dir x' in t and '0.10, 0.20' in t, t
