"""Execute a chapter the way its saved outputs were made, and compare (or save) its printed outputs.

    DYNMOE_DATA=/path/to/data python tools/nbrun.py nbs/06_models.ipynb          # diff of text outputs
    DYNMOE_DATA=/path/to/data python tools/nbrun.py nbs/06_models.ipynb --save   # write the new outputs back

Cells marked `#| slow` are not run: they keep the outputs saved from their real run. Cells run in the notebook's
folder, with one torch thread (OMP_NUM_THREADS=1), as the tests run them.
"""
import argparse, difflib, os, re, sys, time
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

def text_of(cell)->str:
    "The printed part of a cell's outputs: stream text, text/plain results and error names (not images)."
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o.get('text', '')))
        elif o.get('output_type') == 'error': out.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
        else:
            d = o.get('data', {})
            t = d.get('text/markdown') or d.get('text/plain')
            if t and not ''.join(t).startswith('<Figure'): out.append(''.join(t))
    return '\n'.join(out)

def is_slow(cell)->bool: return cell.cell_type == 'code' and re.search(r'^#\|\s*slow', cell.source, re.M) is not None

def run(path:Path, save:bool=False)->int:
    nb = read_nb(path)
    before = {i: text_of(c) for i, c in enumerate(nb.cells) if c.cell_type == 'code'}
    keep = {i for i, c in enumerate(nb.cells) if is_slow(c)}
    cwd, t0 = os.getcwd(), time.time()
    os.chdir(path.parent)
    try:
        sh = CaptureShell(path)
        sh.run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type != 'code' or is_slow(c) or 'nbdev_export' in c.source)
    finally: os.chdir(cwd)
    n_diff = 0
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code' or i in keep: continue
        a, b = before[i], text_of(c)
        if a != b:
            n_diff += 1
            print(f'--- cell {i}: {c.source.splitlines()[0][:80] if c.source else ""}')
            sys.stdout.writelines(difflib.unified_diff(a.splitlines(True), b.splitlines(True), 'saved', 'now', n=0))
            print()
    print(f'{path.name}: ran in {time.time() - t0:.0f} s; {n_diff} code cells print something different')
    if save: write_nb(nb, path); print(f'saved outputs to {path} (run nbdev-clean next)')
    return n_diff

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--save', action='store_true', help='write the new outputs back into the notebook')
    a = ap.parse_args()
    for p in a.notebooks: run(p, a.save)
