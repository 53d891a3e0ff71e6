"""Write README.md from nbs/index.ipynb (nbdev's own `nbdev-readme` needs Quarto, which these machines lack).

Usage: python tools/readme.py          # rewrite README.md
       python tools/readme.py --check  # exit 1 if README.md is out of date
"""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT/'nbs'/'index.ipynb'):
    "Markdown of the notebook: markdown cells as they are, code cells without `#|` directives, hidden cells dropped."
    nb = nbformat.read(nb_path, as_version=4)
    out = ['<!-- Generated from nbs/index.ipynb by `python tools/readme.py`; edit the notebook, not this file. -->']
    for c in nb.cells:
        src = c.source.strip()
        if not src or re.search(r'^#\|\s*(hide|export)', src, re.M): continue
        if c.cell_type == 'markdown':
            out.append(re.sub(r'\]\((?!https?:|#|/)', '](nbs/', src))  # relative links/images point into nbs/
        elif c.cell_type == 'code':
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            echo = not re.search(r'^#\|\s*echo:\s*false', src, re.M)   # Quarto's directive: show the output, not the code
            if code and echo: out.append(f'```python\n{code}\n```')
            for o in c.get('outputs', []):
                txt = o.get('text') or o.get('data', {}).get('text/plain')
                if txt: out.append('```\n' + (''.join(txt) if isinstance(txt, list) else txt).rstrip() + '\n```')
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    new = render()
    if '--check' in sys.argv:
        if (ROOT/'README.md').read_text() != new: sys.exit('README.md is out of date: run python tools/readme.py')
    else: (ROOT/'README.md').write_text(new)
