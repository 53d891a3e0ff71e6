"The epoch-by-epoch image sizes of benchmarks/scale_proto.py: what each epoch's batches look like."
import pytest, torch, torch.nn.functional as F
import fastcore.test as ft
from dynmoe.data import FastLoader

def _loader(n=24, bs=8, side=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)
    return FastLoader(x, torch.arange(n) % 10, bs, train=True, pad=1, flip='alternate', seed=0)

def test_parse_sizes(load_benchmark):
    sp = load_benchmark('scale_proto')
    ft.test_eq(sp.parse_sizes('16:2,24:1,32:3'), [16, 16, 24, 32, 32, 32])
    for bad in ['16', '16:0', '0:3', '16:2,x:1', '16:-1', '']:
        with pytest.raises(ValueError, match='SIDE:EPOCHS'): sp.parse_sizes(bad)

def test_each_epoch_is_the_plain_epoch_resized(load_benchmark):
    sp = load_benchmark('scale_proto')
    dl, ref = _loader(), _loader()   # the same seed: the same order, shifts and flips
    wrapped = sp.ScaledLoader(dl, [4, 6, 8])
    ft.test_eq(len(wrapped), len(dl))
    for epoch, side in enumerate([4, 6, 8, 8]):   # after the list, the last size
        wrapped.set_epoch(epoch); ref.set_epoch(epoch)
        n = 0
        for (x, y), (xr, yr) in zip(wrapped, ref, strict=True):
            ft.test_eq(x.shape[-2:], (side, side)); ft.test_eq(y, yr)
            want = xr if side == 8 else F.interpolate(xr, size=(side, side), mode='bilinear', antialias=True)
            ft.test_close(x, want, eps=1e-6)
            n += len(y)
        ft.test_eq(n, 24)
    # a shrunk batch keeps what the image shows: its mean colour per channel moves by less than 0.05 (normalised units)
    wrapped.set_epoch(0); ref.set_epoch(0)
    x, xr = next(iter(wrapped))[0], next(iter(ref))[0]
    ft.test_close(x.mean((2, 3)), xr.mean((2, 3)), eps=0.05)

def test_the_package_option_trains_on_the_same_batches(load_benchmark):
    # `FastLoader.set_downscale`, which `fit` calls for `downscale_size`/`downscale_epochs` (recipe_ablation's
    # air_small16), yields the prototype's batches bit for bit, so the prototype's runs measured what the option trains
    sp = load_benchmark('scale_proto')
    proto, pkg = sp.ScaledLoader(_loader(), [4, 4, 8]), _loader()
    for epoch in range(3):
        proto.set_epoch(epoch); pkg.set_epoch(epoch); pkg.set_downscale(4 if epoch < 2 else None)
        for (x, y), (xp, yp) in zip(proto, pkg, strict=True):
            ft.test_eq(x, xp); ft.test_eq(y, yp)
