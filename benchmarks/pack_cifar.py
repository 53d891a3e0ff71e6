r"""Carry the CIFAR-10 folder to a machine it cannot be downloaded on, under a size limit (a lent GPU takes 64 MiB):
`pack` writes each batch as one JPEG mosaic (quality 95, no chroma subsampling; every 32x32 image fills whole 8x8
JPEG blocks, so no image bleeds into its neighbour) plus its labels; `unpack` rebuilds the same pickled layout.

The copy is lossy, so `pack` reports its PSNR against the source; results trained on an unpacked copy say so.

    python benchmarks/pack_cifar.py pack ../shared/data/cifar-10-batches-py .dev/cifar_pack
    python benchmarks/pack_cifar.py unpack .dev/cifar_pack /tmp/data/cifar-10-batches-py
"""
import argparse, io, json, pickle, shutil
from pathlib import Path
import numpy as np
from PIL import Image

BATCHES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
COLS = 100   # images per mosaic row: a 10,000-image batch is a 3,200 x 3,200 picture

def to_mosaic(x:np.ndarray)->np.ndarray:
    "(N, 3072) CIFAR rows -> one (N/COLS*32, COLS*32, 3) picture."
    n = len(x); rows = -(-n // COLS)
    img = np.zeros((rows * COLS, 32, 32, 3), np.uint8)
    img[:n] = x.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return img.reshape(rows, COLS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, COLS * 32, 3)

def from_mosaic(m:np.ndarray, n:int)->np.ndarray:
    "The inverse of `to_mosaic`: the first `n` images as (n, 3072) rows."
    rows = m.shape[0] // 32
    x = m.reshape(rows, 32, COLS, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * COLS, 32, 32, 3)[:n]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(n, 3072)

def pack(src:Path, out:Path, quality:int=95):
    out.mkdir(parents=True, exist_ok=True)
    mse, total = [], 0
    for b in BATCHES:
        d = pickle.load(open(src/b, 'rb'), encoding='latin1')
        x = np.asarray(d['data'], np.uint8)
        buf = io.BytesIO()
        Image.fromarray(to_mosaic(x)).save(buf, format='JPEG', quality=quality, subsampling=0)
        (out/f'{b}.jpg').write_bytes(buf.getvalue())
        np.save(out/f'{b}_labels.npy', np.asarray(d['labels'], np.int16))
        back = from_mosaic(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB')), len(x))
        mse.append(((back.astype(np.float64) - x) ** 2).mean())
        total += len(buf.getvalue())
    shutil.copy(src/'batches.meta', out/'batches.meta')
    psnr = float(10 * np.log10(255 ** 2 / np.mean(mse)))
    (out/'pack.json').write_text(json.dumps(dict(source=str(src), quality=quality, subsampling='4:4:4',
                                                 psnr_db=psnr, bytes=total)))
    print(f"{out}: {total / 2**20:.1f} MiB of JPEG, PSNR {psnr:.1f} dB against {src}")

def unpack(pk:Path, dest:Path):
    dest.mkdir(parents=True, exist_ok=True)
    for b in BATCHES:
        y = np.load(pk/f'{b}_labels.npy').astype(int).tolist()
        x = from_mosaic(np.asarray(Image.open(pk/f'{b}.jpg').convert('RGB')), len(y))
        with open(dest/b, 'wb') as f: pickle.dump(dict(data=x, labels=y, batch_label=b), f)
    shutil.copy(pk/'batches.meta', dest/'batches.meta')
    print(f"{dest}: {len(BATCHES)} batches rebuilt from {pk}")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('what', choices=['pack', 'unpack'])
    p.add_argument('src'); p.add_argument('dest')
    p.add_argument('--quality', type=int, default=95)
    a = p.parse_args()
    pack(Path(a.src), Path(a.dest), a.quality) if a.what == 'pack' else unpack(Path(a.src), Path(a.dest))
