"benchmarks/pack_cifar.py: the mosaic layout is an exact inverse, and a packed folder unpacks to what the loader reads."
import json
import numpy as np
import fastcore.test as ft
from dynmoe.data import make_fake_cifar, load_cifar10

def test_mosaic_round_trip(load_benchmark):
    pk = load_benchmark('pack_cifar')
    x = np.random.default_rng(0).integers(0, 256, (130, 3072), dtype=np.uint8)   # not a whole mosaic row
    m = pk.to_mosaic(x)
    ft.test_eq(m.shape, (2 * 32, pk.COLS * 32, 3))
    ft.test_eq(m[:32, 32:64], x[1].reshape(3, 32, 32).transpose(1, 2, 0))            # image 1: row 0, column 1
    ft.test_eq(pk.from_mosaic(m, len(x)), x)

def test_pack_unpack(tmp_path, load_benchmark):
    pk = load_benchmark('pack_cifar')
    src = make_fake_cifar(tmp_path/'src', n=40)
    pk.pack(src, tmp_path/'packed')
    info = json.loads((tmp_path/'packed'/'pack.json').read_text())
    assert info['psnr_db'] > 30, info                                  # lossy, but close
    pk.unpack(tmp_path/'packed', tmp_path/'dst'/'cifar-10-batches-py')
    (a, b, _), (c, d, _) = load_cifar10(tmp_path/'src', download=False), load_cifar10(tmp_path/'dst', download=False)
    ft.test_eq(a.y, c.y); ft.test_eq(b.y, d.y)                          # labels exact
    ft.test_eq(a.x.shape, c.x.shape)
    assert (a.x.float() - c.x.float()).abs().mean() < 8                # pixels within a few levels of 255
