"""Density report of the exported package: long lines, `;`-joined statements, long functions, loops over stages.

    python tools/density.py [--max-fn 40] [--list]
"""
import argparse, ast, io, re, tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def semicolon_lines(src:str)->set:
    "Line numbers holding a `;` token that joins two statements (not one inside a string or comment)."
    return {t.start[0] for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.OP and t.string == ';'}

def long_functions(tree:ast.AST, limit:int)->list:
    "(name, first line, length) of every function or method longer than `limit` lines."
    fns = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [(f.name, f.lineno, f.end_lineno - f.lineno + 1) for f in fns if f.end_lineno - f.lineno + 1 > limit]

def report(max_fn:int=40, show:bool=False)->dict:
    files = sorted(p for p in (ROOT/'dynmoe').glob('*.py') if p.name != '_modidx.py')
    n = n_long = n_semi = 0
    fns, stage_loops = [], []
    for p in files:
        src = p.read_text()
        lines = src.splitlines()
        n += len(lines)
        long_ = [i for i, l in enumerate(lines, 1) if len(l) > 120]
        semi = sorted(semicolon_lines(src))
        n_long += len(long_)
        n_semi += len(semi)
        fns += [(p.name, *f) for f in long_functions(ast.parse(src), max_fn)]
        stage_loops += [f'{p.name}:{i}' for i, l in enumerate(lines, 1) if re.match(r'^\s+for s in range', l)]
        if show:
            for i in long_ + semi: print(f'{p.name}:{i}: {lines[i - 1].strip()[:100]}')
    return dict(lines=n, long=n_long, semicolon=n_semi, long_fns=fns, stage_loops=stage_loops)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--max-fn', type=int, default=40, help='report functions longer than this many lines')
    ap.add_argument('--list', action='store_true', help='print every long or `;`-joined line')
    a = ap.parse_args()
    r = report(a.max_fn, a.list)
    bad = r['long'] + r['semicolon']
    print(f"exported lines: {r['lines']}; over 120 characters: {r['long']}; with `;`-joined statements: {r['semicolon']} "
          f"({100 * bad / r['lines']:.2f} % of lines)")
    print(f"loops over stages (`for s in range`): {len(r['stage_loops'])}: {' '.join(r['stage_loops'])}")
    print(f"functions over {a.max_fn} lines: {len(r['long_fns'])}")
    for f, name, line, length in r['long_fns']: print(f'  {f}:{line} {name} ({length} lines)')
