"""Draw the DynMoE architecture diagram used by the README and nbs/index.ipynb.

    python tools/draw_architecture.py   # writes nbs/images/dynmoe_architecture.png
"""
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch, FancyArrowPatch

def box(ax, x, y, w, h, text, fc, ec='#333', fs=8, lw=1.0, alpha=1.0):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.08', fc=fc, ec=ec, lw=lw, alpha=alpha))
    ax.text(x + w/2, y + h/2, text, ha='center', va='center', fontsize=fs)

def arrow(ax, a, b, color='#333', ls='-', lw=1.2):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle='-|>', mutation_scale=9, color=color, lw=lw, linestyle=ls))

def main(out='nbs/images/dynmoe_architecture.png'):
    fig, ax = plt.subplots(figsize=(12, 4.2)); ax.set_xlim(0, 12.2); ax.set_ylim(0, 4.3); ax.axis('off')
    box(ax, 0.1, 1.6, 0.8, 0.9, 'image\n32×32', '#eeeeee')
    box(ax, 1.1, 1.6, 0.7, 0.9, 'stem', '#dde6f5'); arrow(ax, (0.9, 2.05), (1.1, 2.05)); arrow(ax, (1.8, 2.05), (2.1, 2.05))
    x0, chosen = 2.1, [1, 3, 0]
    for s in range(3):
        x = x0 + s * 3.35
        box(ax, x, 1.6, 0.7, 0.9, f'trunk {s+1}\n(dense)', '#dde6f5')
        for e in range(4):
            on = e == chosen[s]
            box(ax, x + 0.95, 0.55 + e * 0.62, 0.95, 0.5, f'expert {e+1}', '#f7c873' if on else '#f4f4f4',
                ec='#b5651d' if on else '#aaa', fs=7, lw=1.6 if on else 0.8)
        ax.text(x + 1.42, 3.15, f'MoE body: top-1 of 4', ha='center', fontsize=7, color='#b5651d')
        arrow(ax, (x + 0.7, 2.05), (x + 0.95, 0.8 + chosen[s] * 0.62), color='#b5651d')
        if s < 2:
            box(ax, x + 2.15, 2.55, 0.85, 0.55, f'exit head {s+1}', '#d4ecd4', fs=7)
            box(ax, x + 2.15, 1.45, 0.85, 0.75, f'policy π{s+1}\nexit | e1..e4', '#f3d6e4', fs=7)
            arrow(ax, (x + 1.9, 0.8 + chosen[s] * 0.62), (x + 2.15, 1.8))
            arrow(ax, (x + 1.9, 0.8 + chosen[s] * 0.62), (x + 2.15, 2.8), lw=0.8)
            arrow(ax, (x + 2.57, 2.55), (x + 2.57, 2.2), lw=0.8)
            ax.text(x + 2.62, 2.3, 'conf.', fontsize=6, ha='left')
            arrow(ax, (x + 3.0, 2.0), (x + 3.1, 3.75), color='#2e7d32')
            ax.text(x + 3.1, 3.85, 'exit: output, leave the batch', fontsize=7, color='#2e7d32', ha='center')
            arrow(ax, (x + 3.0, 1.8), (x + 3.35, 2.05))
            ax.text(x + 3.0, 1.1, 'route stage %d' % (s + 2), fontsize=6.5, color='#b5651d', ha='left')
        else:
            box(ax, x + 2.15, 1.6, 0.85, 0.9, 'final\nclassifier', '#d4ecd4', fs=7)
            arrow(ax, (x + 1.9, 0.8 + chosen[s] * 0.62), (x + 2.15, 2.05))
    ax.text(1.45, 1.2, 'gate', fontsize=7, ha='center', color='#b5651d')
    ax.text(6.1, 0.1, 'width: a per-image top-k gate runs only the chosen experts  ·  depth: images leave at an exit  ·  '
            'one policy per stage decides both', ha='center', fontsize=8.5)
    fig.savefig(out, dpi=130, bbox_inches='tight'); print('wrote', out)

if __name__ == '__main__': main()
