"Showing interpretation results, with numbers printed so that they never mislead"

__all__ = ['format_prob', 'format_probs', 'format_prob_groups', 'format_loss', 'idx_list', 'show_items',
           'plot_confusion']

import math, operator, textwrap
import numpy as np, pandas as pd
import matplotlib.pyplot as plt
from plum import dispatch
from fastai.torch_core import TensorImage

# Most decimals a probability grows to alone; beyond them it prints as a bound, '>0.9999' or '<0.0001'
_MAX_DIGITS = 4
# Most decimals a group of probabilities grows to, to tell its values apart: 9 tell apart any two float32 values
# above 1/16; below, values that 9 decimals cannot tell apart print in scientific notation
_MAX_DECIMALS = 9

def format_prob(p, # Probability: float, numpy scalar or 0-d tensor
        digits:int=2, # Decimals shown, unless they would round `p` to 0 or 1
    ):
    "`p` with `digits` decimals; '1.00' and '0.00' only for exactly 1 and 0, else 4 decimals or '>0.9999'/'<0.0001'"
    return format_probs([p], digits)[0]

def _fixed(p, d):
    "`p` with `d` decimals; from `_MAX_DIGITS` on a bound where they would round it to 0 or 1, None before"
    if math.isnan(p): return 'nan'
    s = f'{p:.{d}f}'
    if not 0 < p < 1 or 0 < float(s) < 1: return s
    if d < _MAX_DIGITS: return None
    return f'>{1 - 10**-d:.{d}f}' if p > 0.5 else f'<{10**-d:.{d}f}'

def _key(p):
    "What tells `p` apart from other probabilities: its float32 value (NaN is one value)"
    return 'nan' if math.isnan(p) else float(np.float32(p))

def _clashes(t, ps):
    "Positions of the strings of `t` that stand for values float32 tells apart"
    keys = {}
    for s, p in zip(t, ps): keys.setdefault(s, set()).add(_key(p))
    return [j for j, s in enumerate(t) if len(keys[s]) > 1]

def _scientific(t, ps, js):
    "`t` with the values at `js` in scientific notation, with the fewest significant digits that tell them apart"
    for k in range(9):
        u = list(t)
        for j in js: u[j] = f'{ps[j]:.{k}e}'
        if not set(_clashes(u, ps)) & set(js): return u
    return u

def _at(ps, d):
    "`ps` with `d` decimals, or None if they print a probability as 0 or 1, or two values alike"
    t = [_fixed(p, d) for p in ps]
    if None in t: return None
    # values under the lower bound ('<0.0001') tell themselves apart in scientific notation, not by more decimals
    low = [j for j in _clashes(t, ps) if t[j].startswith('<')]
    if low: t = _scientific(t, ps, low)
    return None if _clashes(t, ps) else t

def _mark_ties(t, ps):
    "'≈' before a string two different values share: equal at float32 precision, not exactly"
    vals = {}
    for s, p in zip(t, ps): vals.setdefault(s, set()).add('nan' if math.isnan(p) else p)
    return [('≈' + s) if len(vals[s]) > 1 else s for s in t]

def format_prob_groups(groups, # Groups of probabilities, e.g. one per title of a gallery
        digits:int=2, # Fewest decimals shown
    ):
    "Every group as `format_probs` prints it, all with one number of decimals: the fewest that suit every group"
    groups = [[float(p) for p in (g.tolist() if hasattr(g, 'tolist') else g)] for g in groups]
    d = digits
    while d <= _MAX_DECIMALS:
        ts = [_at(g, d) for g in groups]
        if all(t is not None for t in ts): return [_mark_ties(t, g) for t, g in zip(ts, groups)]
        # a value 2 decimals round to 0 or 1 gets 4, as format_prob gives it
        d = _MAX_DIGITS if d < _MAX_DIGITS and any(None in [_fixed(p, d) for p in g] for g in groups) else d + 1
    res = []
    for g in groups:  # values closer than 1e-9, under 1/16: in scientific notation
        t = [_fixed(p, _MAX_DECIMALS) for p in g]
        res.append(_mark_ties(_scientific(t, g, _clashes(t, g)), g))
    return res

def format_probs(ps, # Probabilities shown together, e.g. in one title: list, array or 1-d tensor
        digits:int=2, # Fewest decimals shown
    ):
    "`ps` with the fewest decimals that print no probability as 0 or 1, and different values (float32) differently"
    return format_prob_groups([ps], digits)[0]

def format_loss(x): # Loss: float, numpy scalar or 0-d tensor
    "`x` with 2 decimals, or with one significant digit ('3e-04') below 0.01; exactly 0 is '0'"
    x = float(x)
    if x == 0: return '0'
    return f'{x:.2f}' if abs(x) >= 0.01 or not math.isfinite(x) else f'{x:.0e}'

def idx_list(idxs, # One index, a slice, or indices: list, range, tensor or array of ints, or a boolean mask
        n:int|None=None, # Number of items: negative indices count from the end; slices and masks need it
    )->list:
    "Item indices as a list of ints"
    if isinstance(idxs, slice):
        if n is None: raise TypeError("A slice of items needs the number of items")
        return list(range(n))[idxs]
    if hasattr(idxs, 'tolist'): idxs = idxs.tolist()  # tensor, array, numpy scalar
    idxs = list(idxs) if isinstance(idxs, (list, tuple, range)) else [idxs]
    if idxs and all(isinstance(i, (bool, np.bool_)) for i in idxs):
        if n is not None and len(idxs) != n: raise IndexError(f"A boolean mask of {len(idxs)} values for {n} items")
        return [j for j, m in enumerate(idxs) if m]
    res = []
    for i in idxs:
        if isinstance(i, (bool, np.bool_)): raise TypeError(f"Item indices are integers or a mask, got {idxs!r}")
        try: i = operator.index(i)
        except TypeError: raise TypeError(f"Item indices are integers, got {type(i).__name__} {i!r}") from None
        if n is not None:
            if not -n <= i < n: raise IndexError(f"Index {i} is out of range: there are {n} items")
            i %= n
        res.append(i)
    return res

def _layout(n, nrows=None, ncols=None):
    "Rows and columns of a grid of `n` axes, as fastai's `get_grid` chooses them"
    if nrows: ncols = ncols or math.ceil(n / nrows)
    elif ncols: nrows = math.ceil(n / ncols)
    else:
        nrows = int(math.sqrt(n))
        ncols = math.ceil(n / nrows)
    if nrows * ncols < n:
        raise ValueError(f"A grid of nrows={nrows} x ncols={ncols} holds {nrows * ncols} of the {n} items")
    return nrows, ncols

def _points(size):
    "A font size ('large', 12) in points"
    from matplotlib.font_manager import FontProperties
    return FontProperties(size=size).get_size_in_points()

def _text_box(texts, size):
    "Width and height in inches, about, of the widest and tallest of `texts` at font `size`"
    fs = _points(size)
    lines = max([t.count('\n') + 1 for t in texts if t], default=0)
    chars = max([len(l) for t in texts for l in t.split('\n')], default=0)
    return chars * fs * 0.6 / 72, lines * fs * 1.25 / 72

_SUPTITLE = 'x-large'

def _grid(n, nrows=None, ncols=None, figsize=None, titles=(), suptitle='', imsize=3):
    "A figure of `n` axes laid out as fastai lays them out; cells `imsize` inches, grown for the titles"
    nrows, ncols = _layout(n, nrows, ncols)
    if figsize is None:
        (tw, th), (sw, sh) = _text_box(titles, plt.rcParams['axes.titlesize']), _text_box([suptitle], _SUPTITLE)
        w = max(imsize, tw + 0.2)
        figsize = (max(ncols * w, sw + 0.4), nrows * (imsize + th) + sh)
    # constrained: each row's titles clear of the row above, and of the figure title
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout='constrained')
    for ax in axs.flat[n:]: ax.axis('off')
    return fig, axs.flat[:n]

@dispatch
def show_samples(x:TensorImage, samples, titles, colors, nrows=None, ncols=None, figsize=None, suptitle='', **kwargs):
    "Images as a grid, one title each; `kwargs` go to each image's `show` (cmap, alpha, ...)"
    fig, axs = _grid(len(samples), nrows, ncols, figsize, titles, suptitle)
    for ax, s, t, c in zip(axs, samples, titles, colors):
        s[0].show(ctx=ax, **{**({'cmap': 'gray_r'} if s[0].shape[0] == 1 else {}), **kwargs})
        ax.set_title(t, color=c)
    return fig

@dispatch
def show_samples(x:object, samples, titles, colors, figsize=None, suptitle='', **kwargs):
    "Anything else: a table of the items' text with their titles"
    df = pd.DataFrame({'item': [textwrap.shorten(str(s[0]), 60) for s in samples]})
    return _table(df, titles, colors, figsize, suptitle)

def _table(df, titles, colors, figsize=None, suptitle=''):
    "`df`'s rows as a matplotlib table, each with its title in the first column"
    df = df.copy()
    df.insert(0, 'prediction', [t.replace('\n', ' | ') for t in titles])
    cells = [[f'{v:.4g}' if isinstance(v, float) else str(v) for v in r] for r in df.itertuples(index=False)]
    if figsize is None:
        w = 2 + 1.1 * len(df.columns) + 0.05 * max(len(c[0]) for c in cells)
        sw, sh = _text_box([suptitle], _SUPTITLE)
        figsize = (max(min(w, 40), sw + 0.4), 0.28 * (len(df) + 1) + sh + 0.1)
    fig, ax = plt.subplots(figsize=figsize, layout='constrained')
    ax.axis('off')
    # rows fill the axes, right under the figure title: a table centred in its own size left a gap above it and cramped rows
    tab = ax.table(cellText=cells, colLabels=list(df.columns), bbox=(0, 0, 1, 1), cellLoc='left')
    tab.auto_set_font_size(False); tab.set_fontsize(9); tab.auto_set_column_width(list(range(len(df.columns))))
    for (r, c), cell in tab.get_celld().items():
        if c == 0: cell.PAD = 0.02  # of the cell's width: the default 0.1 indents the long titles
        if r == 0: cell.set_text_props(weight='bold')
        elif c == 0: cell.set_text_props(color=colors[r - 1])
    return fig

def show_items(interp, # A `ClassificationInterpretation`
        idxs, # Indices of the items to show
        titles, # One title per item
        suptitle:str='', # Title of the figure
        legend:bool=True, # Say what the colours of the titles mean: for views where right and wrong both show
        nrows:int|None=None, # Rows of an image grid, as fastai's `get_grid` takes them
        ncols:int|None=None, # Columns of an image grid
        figsize:tuple|None=None, # Size of the figure in inches
        **kwargs # Passed to each image's `show` (cmap, ...)
    ):
    "Draw the items at `idxs` (image grid, or table of rows) with their titles, wrong ones in red: one figure, returned"
    idxs = idx_list(idxs)
    if not idxs: raise ValueError("Nothing to show: no item matches")
    colors = ['#222222'] * len(idxs)
    if interp.labelled:
        ok = interp.correct()[idxs].tolist()
        colors = ['#1a7f37' if o else '#b3261e' for o in ok]
    legend = legend and interp.labelled
    if suptitle and legend: suptitle += '\ngreen: right, red: wrong'
    fig = _show(interp, idxs, titles, colors, nrows=nrows, ncols=ncols, figsize=figsize, suptitle=suptitle, **kwargs)
    if suptitle: fig.suptitle(suptitle, size=_SUPTITLE)
    return fig

def _show(interp, idxs, titles, colors, nrows=None, ncols=None, figsize=None, suptitle='', **kwargs):
    dl = interp.dl
    to = getattr(dl.dataset, 'iloc', None)
    if to is not None and hasattr(dl.dataset, 'decode'):  # tabular: the rows, decoded to their original values
        rows = to[idxs].decode().items
        rows = rows[[c for c in rows.columns if c not in getattr(dl.dataset, 'y_names', [])]]
        return _table(rows.reset_index(drop=True), titles, colors, figsize, suptitle)
    b = interp.batch(idxs)
    if hasattr(dl, '_pre_show_batch'):
        x, _, samples = dl._pre_show_batch(b, max_n=len(idxs))
        if samples is not None:
            return show_samples(x, samples, titles, colors, nrows=nrows, ncols=ncols, figsize=figsize, suptitle=suptitle,
                                **kwargs)
    return _table(pd.DataFrame({'item': interp.items(idxs)}), titles, colors, figsize, suptitle)

_NORMALIZED = {'true': 'each row (actual class) sums to 1', 'pred': 'each column (predicted class) sums to 1',
               'all': 'all cells sum to 1'}

def plot_confusion(cm, # (C, C) confusion matrix, actual x predicted
        names, # Class names
        normalize=None, # How `cm` was normalized: None, 'true', 'pred' or 'all'
        title:str='Confusion matrix',
        cmap:str='Blues',
        norm_dec:int=2, # Fewest decimals of a normalized cell (more where they would print it as 0 or 1)
        plot_txt:bool=True, # Write each cell's value in it, up to `max_text` classes
        max_text:int=20, # Above this many classes, no cell text (it would not be readable)
        **kwargs # Passed to `plt.figure` (figsize, dpi, ...)
    ):
    "Confusion matrix plot whose size, ticks and cell text scale with the number of classes; the figure, returned"
    C = len(names)
    side = float(np.clip(0.45 * C + 2.5, 5, 16))
    fig = plt.figure(**{'figsize': (side + 1, side), **kwargs})
    ax = fig.add_subplot()
    im = ax.imshow(cm, interpolation='nearest', cmap=cmap, vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, shrink=0.8, label="share of items" if normalize else "items")
    step = max(1, math.ceil(C / 50))
    ticks = np.arange(0, C, step)
    fs = 10 if C <= 20 else 8 if C <= 50 else 7
    labels = [str(names[i]) for i in ticks]
    w, h = fig.get_size_inches()
    spacing = 0.75 * min(w - 1, h) / C * step  # inches between two column labels, about: the image is square
    long = max(len(l) for l in labels) * fs * 0.6 / 72 > 0.9 * spacing
    ax.set_xticks(ticks, labels, rotation=90 if long else 0, fontsize=fs)
    ax.set_yticks(ticks, labels, fontsize=fs)
    ax.set_xlabel('Predicted'); ax.set_ylabel('Actual')
    ax.set_title(title + (f'\n({_NORMALIZED[normalize]})' if normalize else ''))
    if plot_txt and C <= max_text:
        thresh = cm.max() / 2
        for i in range(C):
            for j in range(C):
                v = cm[i, j]
                txt = format_prob(v, norm_dec) if normalize else f'{int(v)}'
                ax.text(j, i, txt, ha='center', va='center', fontsize=8 if C > 10 else 9,
                        color='white' if v > thresh else ('#999999' if v == 0 else 'black'))
    fig.tight_layout()
    return fig
