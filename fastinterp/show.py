"Showing interpretation results, with numbers printed so that they never mislead"

__all__ = ['format_prob', 'format_probs', 'format_loss', 'idx_list', 'show_items', 'plot_confusion']

import math, textwrap
import numpy as np, pandas as pd
import matplotlib.pyplot as plt
from plum import dispatch
from fastai.torch_core import TensorImage

# Most decimals a probability grows to; beyond them it prints as a bound, '>0.9999' or '<0.0001'
_MAX_DIGITS = 4

def format_prob(p, # Probability: float, numpy scalar or 0-d tensor
        digits:int=2, # Decimals shown, unless they would round `p` to 0 or 1
    ):
    "`p` with `digits` decimals; '1.00' and '0.00' only for exactly 1 and 0, else 4 decimals or '>0.9999'/'<0.0001'"
    p = float(p)
    if math.isnan(p): return 'nan'
    s = f'{p:.{digits}f}'
    if not 0 < p < 1 or 0 < float(s) < 1: return s
    d = max(digits, _MAX_DIGITS)
    s = f'{p:.{d}f}'
    if 0 < float(s) < 1: return s
    return f'>{1 - 10**-d:.{d}f}' if p > 0.5 else f'<{10**-d:.{d}f}'

def format_probs(ps, # Probabilities shown together, e.g. in one title: list, array or 1-d tensor
        digits:int=2, # Fewest decimals shown
    ):
    "Each of `ps` as `format_prob` prints it, with the fewest decimals (up to 4) that print different values differently"
    ps = [float(p) for p in (ps.tolist() if hasattr(ps, 'tolist') else ps)]
    tries = [[format_prob(p, d) for p in ps] for d in range(digits, max(digits, _MAX_DIGITS) + 1)]
    # Values closer than 1e-4 may share a string even at 4 decimals (0.99996 and 0.99998 both print '>0.9999'):
    # take the first try whose shared strings are only those
    last = tries[-1]
    return next(t for t in tries if len(set(t)) == len(set(zip(t, last))))

def format_loss(x): # Loss: float, numpy scalar or 0-d tensor
    "`x` with 2 decimals, or with one significant digit ('3e-04') below 0.01; exactly 0 is '0'"
    x = float(x)
    if x == 0: return '0'
    return f'{x:.2f}' if abs(x) >= 0.01 or not math.isfinite(x) else f'{x:.0e}'

def idx_list(idxs):
    "Item indices as a list of ints, from a tensor, an iterable or one index"
    if hasattr(idxs, 'tolist'): idxs = idxs.tolist()
    return list(idxs) if isinstance(idxs, (list, tuple, range)) else [idxs]

def _grid(n, ncols=None, cell=2.4, title_lines=2):
    ncols = ncols or min(n, max(3, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(ncols * cell, nrows * (cell + 0.18 * title_lines) + 0.5), squeeze=False,
                            layout='constrained')  # keeps each row's titles clear of the row above, and the figure title
    for ax in axs.flat[n:]: ax.axis('off')
    return fig, axs.flat[:n]

@dispatch
def show_samples(x:TensorImage, samples, titles, colors, ncols=None, **kwargs):
    "Images as a grid, one title each"
    fig, axs = _grid(len(samples), ncols, title_lines=max(t.count('\n') + 1 for t in titles))
    for ax, s, t, c in zip(axs, samples, titles, colors):
        s[0].show(ctx=ax, cmap='gray_r' if s[0].shape[0] == 1 else None)
        ax.set_title(t, fontsize=9, color=c)
    return fig

@dispatch
def show_samples(x:object, samples, titles, colors, **kwargs):
    "Anything else: a table of the items' text with their titles"
    return _table(pd.DataFrame({'item': [textwrap.shorten(str(s[0]), 60) for s in samples]}), titles, colors)

def _table(df, titles, colors):
    "`df`'s rows as a matplotlib table, each with its title in the first column"
    df = df.copy()
    df.insert(0, 'prediction', [t.replace('\n', ' | ') for t in titles])
    cells = [[f'{v:.4g}' if isinstance(v, float) else str(v) for v in r] for r in df.itertuples(index=False)]
    fig, ax = plt.subplots(figsize=(min(2 + 1.1 * len(df.columns) + 0.05 * max(len(c[0]) for c in cells), 40), 0.28 * (len(df) + 1)),
                           layout='constrained')
    ax.axis('off')
    # rows fill the axes, right under the figure title: a table centred in its own size left a gap above it and cramped rows
    tab = ax.table(cellText=cells, colLabels=list(df.columns), bbox=(0, 0, 1, 1), cellLoc='left')
    tab.auto_set_font_size(False); tab.set_fontsize(8); tab.auto_set_column_width(list(range(len(df.columns))))
    for (r, c), cell in tab.get_celld().items():
        if c == 0: cell.PAD = 0.02  # of the cell's width: the default 0.1 indents the long titles
        if r == 0: cell.set_text_props(weight='bold')
        elif c == 0: cell.set_text_props(color=colors[r - 1])
    return fig

def show_items(interp, # A `ClassificationInterpretation`
        idxs, # Indices of the items to show
        titles, # One title per item
        suptitle:str='', # Title of the figure
        ncols:int|None=None, # Columns of an image grid
        **kwargs
    ):
    "Show the items at `idxs` (image grid, or table of rows) with their titles; wrong predictions in red"
    idxs = idx_list(idxs)
    if not idxs: raise ValueError("Nothing to show: no item matches")
    colors = ['#222222'] * len(idxs)
    if interp.labelled:
        ok = interp.correct()[idxs].tolist()
        colors = ['#1a7f37' if o else '#b3261e' for o in ok]
    fig = _show(interp, idxs, titles, colors, ncols=ncols, **kwargs)
    w, h = fig.get_size_inches()
    fig.set_size_inches(max(w, 6), h + 0.6)  # room for the two-line figure title, even above a narrow grid
    if suptitle: fig.suptitle(suptitle + ('\ngreen: right, red: wrong' if interp.labelled else ''), fontsize=11)
    if fig.get_layout_engine() is None: fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (h + 0.6)))
    return fig

def _show(interp, idxs, titles, colors, **kwargs):
    dl = interp.dl
    to = getattr(dl.dataset, 'iloc', None)
    if to is not None and hasattr(dl.dataset, 'decode'):  # tabular: the rows, decoded to their original values
        rows = to[idxs].decode().items
        rows = rows[[c for c in rows.columns if c not in getattr(dl.dataset, 'y_names', [])]]
        return _table(rows.reset_index(drop=True), titles, colors)
    b = interp.batch(idxs)
    if hasattr(dl, '_pre_show_batch'):
        x, _, samples = dl._pre_show_batch(b, max_n=len(idxs))
        if samples is not None: return show_samples(x, samples, titles, colors, **kwargs)
    return _table(pd.DataFrame({'item': interp.items(idxs)}), titles, colors)

def plot_confusion(cm, # (C, C) confusion matrix, actual x predicted
        names, # Class names
        normalize=None, # How `cm` was normalized, for the cell text
        title:str='Confusion matrix',
        cmap:str='Blues',
        max_text:int=20, # Above this many classes, no cell text (it would not be readable)
        **kwargs
    ):
    "Confusion matrix plot whose size, ticks and cell text scale with the number of classes"
    C = len(names)
    side = float(np.clip(0.45 * C + 2.5, 5, 16))
    fig, ax = plt.subplots(figsize=(side + 1, side), **kwargs)
    im = ax.imshow(cm, interpolation='nearest', cmap=cmap, vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, shrink=0.8, label="share of items" if normalize else "items")
    step = max(1, math.ceil(C / 50))
    ticks = np.arange(0, C, step)
    fs = 10 if C <= 20 else 8 if C <= 50 else 7
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=fs)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=fs)
    ax.set_xlabel('Predicted'); ax.set_ylabel('Actual')
    ax.set_title(title + (f' (normalized over {normalize})' if normalize else ''))
    if C <= max_text:
        thresh = cm.max() / 2
        for i in range(C):
            for j in range(C):
                v = cm[i, j]
                if v == 0 and not normalize: txt = '0'
                else: txt = format_prob(v) if normalize else f'{int(v)}'
                ax.text(j, i, txt, ha='center', va='center', fontsize=8 if C > 10 else 9,
                        color='white' if v > thresh else ('#999999' if v == 0 else 'black'))
    fig.tight_layout()
    return fig
