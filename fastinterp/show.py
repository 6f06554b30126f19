"Showing interpretation results, with numbers printed so that they never mislead"

__all__ = ['format_prob', 'format_probs', 'format_prob_groups', 'format_loss', 'format_pct', 'idx_list', 'show_items',
           'item_rows', 'untokenize', 'plot_confusion', 'reliability_diagram', 'reliability_diagram_from_bins',
           'plot_risk_coverage']

import math, operator, re, sys, textwrap
import numpy as np, pandas as pd, torch
import matplotlib.pyplot as plt
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from plum import dispatch
from fastai.torch_core import TensorImage

from .core import CalibrationBins, ece_from_bins
from .calibration import calibration_bins

# Most decimals a probability grows to alone; beyond them it prints as a bound, '>0.9999' or '<0.0001'
_MAX_DIGITS = 4
# Most decimals a group of probabilities grows to, to tell its values apart: 9 tell apart any two float32 values
# above 1/16; below, values that 9 decimals cannot tell apart print in scientific notation
_MAX_DECIMALS = 9

def format_prob(p, # Probability: float, numpy scalar or 0-d tensor
        digits:int=2, # Decimals shown, unless they would round `p` to 0 or 1
    ):
    """`p` with `digits` decimals; '1.00' and '0.00' only for exactly 1 and 0, else 4 decimals or '>0.9999'/'<0.0001'

    >>> format_prob(0.5), format_prob(0.99987), format_prob(1.0), format_prob(0.00001)
    ('0.50', '0.9999', '1.00', '<0.0001')
    """
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
    """Every group as `format_probs` prints it, all with one number of decimals: the fewest that suit every group

    >>> format_prob_groups([[0.5, 0.501], [0.9]])  # one number of decimals for the whole gallery
    [['0.500', '0.501'], ['0.900']]
    """
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
    """`ps` with the fewest decimals that print no probability as 0 or 1, and different values (float32) differently

    >>> format_probs([0.501, 0.499]), format_probs([0.5, 0.5])  # different values never print alike
    (['0.501', '0.499'], ['0.50', '0.50'])
    """
    return format_prob_groups([ps], digits)[0]

def format_loss(x): # Loss: float, numpy scalar or 0-d tensor
    """`x` with 2 decimals, or with one significant digit ('3e-04') below 0.01; exactly 0 is '0'

    >>> format_loss(2.3456), format_loss(0.0003), format_loss(0)
    ('2.35', '3e-04', '0')
    """
    x = float(x)
    if x == 0: return '0'
    return f'{x:.2f}' if abs(x) >= 0.01 or not math.isfinite(x) else f'{x:.0e}'

def format_pct(x): # A share: float in [0, 1]
    """`x` as a percentage with 2 decimals; 100.00% and 0.00% only for exactly 1 and 0 (else 4 decimals, or a bound)

    >>> format_pct(0.5), format_pct(0.99996), format_pct(1.0)
    ('50.00%', '99.9960%', '100.00%')
    """
    for d in (2, 4):
        s = f"{100 * x:.{d}f}"
        if not 0 < x < 1 or 0 < float(s) < 100: return s + '%'
    return '>99.9999%' if x > 0.5 else '<0.0001%'

def idx_list(idxs, # One index, a slice, or indices: list, range, tensor or array of ints, or a boolean mask
        n:int|None=None, # Number of items: negative indices count from the end; slices and masks need it
    )->list:
    """Item indices as a list of ints

    >>> idx_list(3), idx_list(slice(1, 3), 5), idx_list(torch.tensor([0, 2])), idx_list([True, False, True])
    ([3], [1, 2], [0, 2], [0, 2])
    >>> idx_list(-1, 4)  # from the end
    [3]
    """
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
def show_samples(x:object, samples, titles, colors, figsize=None, suptitle='', **kwargs):  # noqa: F811 (plum)
    "Anything else: a table of the items' text with their titles"
    df = pd.DataFrame({'item': [textwrap.shorten(str(s[0]), 60) for s in samples]})
    return _table(df, titles, colors, figsize, suptitle)

_MAX_COLS = 8  # columns of an item's values in a table figure; the rest are said, and to_df() has them
_MAX_CHARS, _MAX_TEXT = 24, 90  # longest value, and text, a table cell shows whole

def _cell(v, width=None):
    "A value as a table cell: numbers with 6 significant digits, NaN as 'missing', long values cut at `width`"
    if isinstance(v, (float, np.floating)): s = 'missing' if math.isnan(v) else f'{v:.6g}'
    else: s = str(v)
    s = ' '.join(s.split())  # a newline in a value would break the row
    return s if width is None or len(s) <= width else s[:width - 1] + '…'

def _text_cell(s, width=_MAX_TEXT):
    "A text cut at `width` characters, its full length said"
    s = ' '.join(str(s).split())
    return s if len(s) <= width else f'{s[:width - 1]}… ({len(s):,} characters)'

def _header(name, width=16):
    "A column name on at most two lines, broken after '_', '/', '-' or a space"
    lines, line = [], ''
    for piece in re.split(r'(?<=[_/ -])', str(name)):
        if line and len(line) + len(piece) > width: lines.append(line); line = ''
        line += piece
    lines.append(line)
    return lines[0] if len(lines) == 1 else lines[0] + '\n' + _cell(''.join(lines[1:]), width)

def _table(df, titles, colors, figsize=None, suptitle='', keep_rows=False):
    "`df`'s rows as a matplotlib table, each with its title in the first column; at most `_MAX_COLS`, the rest said"
    rows = df.reset_index(drop=True)
    rows.insert(0, 'prediction', [t.replace('\n', ' | ') for t in titles])
    shown, left = list(rows.columns[:_MAX_COLS + 1]), len(rows.columns) - 1 - _MAX_COLS
    cells = [[r[0], *(_text_cell(v) if c == 'text' else _cell(v, _MAX_CHARS) for c, v in zip(shown[1:], r[1:]))]
             for r in rows[shown].itertuples(index=False)]
    heads = [_header(c) for c in shown]
    chars = [max(len(l) for s in [h, *(r[j] for r in cells)] for l in s.split('\n')) + 2 for j, h in enumerate(heads)]
    head_lines = max(h.count('\n') + 1 for h in heads)
    note = (f"{left} more column{'s' * (left != 1)} not shown ({', '.join(map(str, rows.columns[_MAX_COLS + 1:]))})"
            f": interp.to_df() has them" if left > 0 else '')
    if figsize is None:
        sw, sh = _text_box([suptitle], _SUPTITLE)
        figsize = (max(sum(chars) * 9 * 0.6 / 72 + 0.3, sw + 0.4, 4),
                   0.26 * len(cells) + 0.2 * head_lines + 0.12 + sh + (0.3 if note else 0))
    fig, ax = plt.subplots(figsize=figsize, layout='constrained')
    ax.axis('off')
    if note: ax.set_title(textwrap.shorten(note, 160, placeholder=' …)'), loc='left', fontsize=9, color='#59636e')
    # rows fill the axes, right under the figure title: a table centred in its own size left a gap above, rows cramped
    tab = ax.table(cellText=cells, colLabels=heads, bbox=(0, 0, 1, 1), cellLoc='left')
    tab.auto_set_font_size(False); tab.set_fontsize(9)
    unit = 1 / (len(cells) + head_lines)  # the bbox scales the cells to it, keeping these proportions
    for (r, c), cell in tab.get_celld().items():
        cell.set_width(chars[c] / sum(chars)); cell.set_height(unit * (head_lines if r == 0 else 1))
        cell.PAD = 0.5 / chars[c]  # of the cell's width: about half a character each side
        if r == 0: cell.set_text_props(weight='bold')
        elif c == 0: cell.set_text_props(color=colors[r - 1])
    if keep_rows:  # the rows, uncut, titles first, and their colours: for a page to write as a table of its own
        fig.fastinterp_rows, fig.fastinterp_colours = rows, list(colors)
    return fig

def show_items(interp, # An interpretation: its `dl`, `batch` and `items` fetch what is shown
        idxs, # Indices of the items to show
        titles, # One title per item
        right=None, # Per item, whether its prediction is right (green) or wrong (red); None: unlabelled
        suptitle:str='', # Title of the figure
        legend:bool=True, # Say what the colours of the titles mean: for views where right and wrong both show
        nrows:int|None=None, # Rows of an image grid, as fastai's `get_grid` takes them
        ncols:int|None=None, # Columns of an image grid
        figsize:tuple|None=None, # Size of the figure in inches
        **kwargs # Passed to each image's `show` (cmap, ...)
    ):
    """Draw the items at `idxs` (image grid, or table of rows) with their titles, wrong ones in red: the figure

    >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
    >>> fig = show_items(interp, [0, 1], ['first', 'second'], right=[True, False], suptitle='Two items')
    >>> fig._suptitle.get_text().splitlines()
    ['Two items', 'green: right, red: wrong']
    >>> plt.close(fig)
    """
    idxs = idx_list(idxs)
    if not idxs: raise ValueError("Nothing to show: no item matches")
    colors = ['#222222'] * len(idxs) if right is None else ['#1a7f37' if o else '#b3261e' for o in right]
    if suptitle and legend and right is not None: suptitle += '\ngreen: right, red: wrong'
    fig = _show(interp, idxs, titles, colors, nrows=nrows, ncols=ncols, figsize=figsize, suptitle=suptitle, **kwargs)
    if suptitle: fig.suptitle(suptitle, size=_SUPTITLE)
    return fig

def _show(interp, idxs, titles, colors, nrows=None, ncols=None, figsize=None, suptitle='', **kwargs):
    rows = item_rows(interp.dl, idxs)
    if rows is not None:
        if isinstance(getattr(interp.dl, 'items', None), pd.DataFrame): rows.insert(0, 'row', rows.index)  # df.loc[row]
        return _table(rows, titles, colors, figsize, suptitle, keep_rows=True)
    b = interp.batch(idxs)
    if hasattr(interp.dl, '_pre_show_batch'):
        x, _, samples = interp.dl._pre_show_batch(b, max_n=len(idxs))
        if samples is not None:
            return show_samples(x, samples, titles, colors, nrows=nrows, ncols=ncols, figsize=figsize,
                                suptitle=suptitle, **kwargs)
    return _table(pd.DataFrame({'item': interp.items(idxs)}), titles, colors, figsize, suptitle)

def item_rows(dl, # A DataLoader of fastai's tabular or text data
        idxs, # Indices of the items
    ):
    """The items at `idxs` as the user's data had them, one row each, indexed as in its DataFrame: a table's features
    decoded (categories, unnormalized numbers, missing values), or a text rebuilt from its tokens; None for images

    >>> print(item_rows(learn.dls.valid, [0]))  # a DataLoader of tensors: its items are no rows
    None
    """
    ds = getattr(dl, 'dataset', None)
    idxs = idx_list(idxs)
    if hasattr(ds, 'iloc') and hasattr(ds, 'decode') and hasattr(ds, 'cont_names'): return _tabular_rows(ds, idxs)
    texts = _texts(ds, idxs)
    if texts is None: return None
    items = getattr(getattr(ds, 'tls', [None])[0], 'items', None)
    return pd.DataFrame({'text': texts}, index=items.index[idxs] if isinstance(items, pd.DataFrame) else None)

def _tabular_rows(to, idxs):
    "The features of the rows at `idxs` of `to` (a `TabularPandas`), as its DataFrame had them before the procs"
    from fastai.tabular.core import FillMissing
    rows = to.iloc[idxs].decode().items  # Categorify and Normalize undone; FillMissing left its fill value
    added = set()
    for p in to.procs:
        if not isinstance(p, FillMissing) or not p.add_col: continue
        for n in p.na_dict:
            if f'{n}_na' not in rows: continue
            added.add(f'{n}_na')
            rows.loc[rows[f'{n}_na'].astype(str) == 'True', n] = np.nan  # missing, as it was: not the fill value
    feats = set(to.cat_names) | set(to.cont_names)
    rows = rows[[c for c in rows.columns if c in feats and c not in added]].copy()
    for c in to.cont_names:
        # (x - mean) / std * std + mean leaves noise in the last bits the normalized values keep (float32: 16.3 read
        # back as 16.299999): rounded to the digits they keep
        if c not in rows: continue
        d = 7 if to.items[c].dtype == np.float32 else 12
        rows[c] = [v if not math.isfinite(v) else float(f'{v:.{d}g}') for v in rows[c].astype(float)]
    return rows

def _is(o, module, name):
    "Whether `o` is an instance of `module.name`, without importing the module where no one has"
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(o, cls)

def _texts(ds, idxs):
    "The texts at `idxs` of a fastai text `Datasets`, as written (rebuilt from the tokens); None if it has no text"
    tls = getattr(ds, 'tls', None)
    if not tls: return None
    tl, tfms = tls[0], tls[0].tfms.fs
    if not any(_is(t, 'fastai.text.core', 'Tokenizer') or _is(t, 'fastai.text.data', 'Numericalize') for t in tfms):
        return None
    reader = next((t for t in tfms if _is(t, 'fastai.data.transforms', 'ColReader')), None)
    res = []
    for i in idxs:
        o = tl.items.iloc[i] if hasattr(tl.items, 'iloc') else tl.items[i]
        if reader is not None and hasattr(o, 'index'): o = o[reader.cols[0]]
        if isinstance(o, str): res.append(o)  # not tokenized yet: the text itself
        elif isinstance(o, (list, tuple)) or hasattr(o, 'items'): res.append(untokenize(list(o)))
        else: res.append(untokenize(str(tl.decode(tl[i])).split(' ')))  # e.g. a file: its tokens, through the vocab
    return res

_SPECIAL = {'xxbos', 'xxeos', 'xxpad', 'xxfld'}
_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}]|n't\b|'(?:s|re|ve|m|ll|d)\b)")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")

def untokenize(tokens, # Tokens of fastai's default rules (spacy's words, 'xxmaj', 'xxup', 'xxrep', ...)
    )->str:
    """The text `tokens` were made from, as near as they tell: case restored, repeats written out, markers gone

    >>> untokenize(['xxbos', 'xxmaj', 'this', 'wine', 'has', 'high', 'xxup', 'od', ',', 'low', 'ash', '.'])
    'This wine has high OD, low ash.'
    """
    words, case, j = [], None, 0
    while j < len(tokens):
        t = str(tokens[j]); j += 1
        if t in ('xxmaj', 'xxup'): case = t; continue
        if t in ('xxrep', 'xxwrep') and j + 1 < len(tokens) and str(tokens[j]).isdigit():
            n, w = int(tokens[j]), str(tokens[j + 1]); j += 2
            t = w * n if t == 'xxrep' else ' '.join([w] * n)
        elif t == 'xxfld':  # a field marker and its number: fields are joined by a space
            if j < len(tokens) and str(tokens[j]).isdigit(): j += 1
            continue
        elif t in _SPECIAL: continue
        t = t.replace('▁', ' ')  # fastai's stand-in for a space inside a token
        if case == 'xxmaj': t = t[:1].upper() + t[1:]
        elif case == 'xxup': t = t.upper()
        case = None
        words.append(t)
    # the tokenizer split punctuation off the words and dropped the spaces: written back as text is usually spaced
    return _NO_SPACE_AFTER.sub(r'\1', _NO_SPACE_BEFORE.sub(r'\1', ' '.join(words)))

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
        unit:str='items', # What the cells count, for the colour bar: 'items', 'pixels'
        **kwargs # Passed to `plt.figure` (figsize, dpi, ...)
    ):
    """Confusion matrix plot whose size, ticks and cell text scale with the number of classes; the figure, returned

    >>> fig = plot_confusion(np.array([[5, 1], [0, 4]]), ['cat', 'dog'])
    >>> [t.get_text() for t in fig.axes[0].texts], fig.axes[0].get_title()
    (['5', '1', '0', '4'], 'Confusion matrix')
    >>> plt.close(fig)
    """
    C = len(names)
    side = float(np.clip(0.45 * C + 2.5, 5, 16))
    fig = plt.figure(**{'figsize': (side + 1, side), **kwargs})
    ax = fig.add_subplot()
    im = ax.imshow(cm, interpolation='nearest', cmap=cmap, vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, shrink=0.8, label=f"share of {unit}" if normalize else unit)
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

# --- reliability diagram
def _count(n): return f'{n}' if n < 1000 else f'{n / 1000:.1f}k' if n < 9950 else f'{n / 1000:.0f}k'
def _items(n, unit='items'): return f"{n:,} {unit[:-1] if n == 1 else unit}"

# Beside each panel: bars above the diagonal (under-confident bins) and below it (over-confident ones) fill any corner
_BESIDE = dict(loc='upper left', bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8, frameon=False)
# Opaque colours, so that a gap reads the same over a bar (under-confident) as over the white above it (over-confident)
_BAR, _FEW, _EDGE = '#3b75af', '#b4cde6', '#1d3f63'
_GAP, _GAP_FEW, _RED = '#f5c9c9', '#fbe9e9', '#d62728'

def _mce_line(gap, count, few, min_count, unit='items'):
    "What the MCE is over: the non-empty bins, the worst one's size, and the MCE of the bins that are not few"
    worst = int(np.argmax(gap))
    line = (f"MCE {format_pct(float(gap[worst]))}: largest gap of the {len(gap)} non-empty bins, "
            f"in one of {_items(int(count[worst]), unit)}")
    if few.any() and (~few).any():
        line += (f"\nover the {int((~few).sum())} bins of {min_count}+ {unit} only: "
                 f"MCE {format_pct(float(gap[~few].max()))}")
    return line

def reliability_diagram_from_bins(bins:CalibrationBins, # Sums of one set of predictions, shape (n_bins+1,), as streamed
        multilabel:bool=False, # The sums pool independent labels: p(label) against how often the label is on
        title:str|None=None, # First line of the title; the figures follow it
        figsize=(7.2, 6.4), # Size of the figure, legends beside the panels included
        min_count:int|None=None, # Bins of fewer items are drawn lighter (they say little); max(5, 1% of items)
        unit:str='items', # What the bins count, in the legends: 'items', 'pixels'
    ):
    """`reliability_diagram` drawn from per-bin sums, which batches and processes add up: no item needs to be kept

    >>> from fastinterp.calibration import calibration_bins
    >>> bins = calibration_bins(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([0, 1, 1]), 5)
    >>> fig = reliability_diagram_from_bins(bins)  # a diagram of per-bin sums: streamed, merged, or one label's
    >>> len(fig.axes), fig.axes[0].get_title().splitlines()[1]
    (2, 'ECE 33.33% · 5 bins')
    >>> plt.close(fig)
    """
    if bins.count.ndim != 1 or len(bins.count) < 2:
        raise ValueError(f"A reliability diagram is drawn from the bins of one set of predictions, shape (n_bins+1,), "
                         f"got shape {tuple(bins.count.shape)}. For one label of label_calibration_bins: "
                         f"CalibrationBins(*(x[label] for x in bins))")
    if not bins.count.sum(): raise ValueError("A reliability diagram needs at least one item in the bins")
    n_bins = len(bins.count) - 1
    # torchmetrics' last bin holds a confidence of exactly 1: drawn inside the bin below it
    count, conf, hit = (torch.cat([x[:-2], x[-2:].sum(0, keepdim=True)]).numpy() for x in bins)
    has, w, n = count > 0, 1 / n_bins, int(count.sum())
    if min_count is None: min_count = max(5, math.ceil(0.01 * n))
    left, k = (np.arange(n_bins) * w)[has], count[has]
    acc, mconf = hit[has] / k, conf[has] / k
    few = k < min_count
    obs, conf_name = ('observed frequency', 'mean probability') if multilabel else ('accuracy', 'mean confidence')
    overall, mean_conf = float(bins.correct.sum()) / n, float(bins.confidence.sum()) / n

    fig, (ax, hx) = plt.subplots(2, 1, figsize=figsize, sharex=True, layout='constrained',
                                 gridspec_kw={'height_ratios': [3, 1.1]})
    ax.plot([0, 1], [0, 1], '--', color='0.25', linewidth=1.2, label='Perfect calibration', zorder=5)
    bars = ax.bar(left, acc, w, align='edge', color=np.where(few, _FEW, _BAR), edgecolor=_EDGE, linewidth=0.8, zorder=2)
    # the gap opaque and over the bar: an under-confident one covers the bar's top, whose outline still marks it
    gaps = ax.bar(left, mconf - acc, w, bottom=acc, align='edge', color=np.where(few, _GAP_FEW, _GAP),
                  edgecolor=np.where(few, '#eba9a9', _RED), hatch='///', linewidth=0.6, zorder=3)
    ax.bar(left, acc, w, align='edge', fill=False, edgecolor=_EDGE, linewidth=0.8, zorder=3.5)
    for f, b, g in zip(few, bars, gaps):
        if f: b.set_hatch('..')
    ax.hlines(mconf, left, left + w, color=_RED, linewidth=1.6, zorder=4)
    handles = [Line2D([], [], color='0.25', linestyle='--', linewidth=1.2, label='Perfect calibration'),
               Line2D([], [], color=_RED, linewidth=1.6, label=f'{conf_name.capitalize()} in the bin'),
               Patch(facecolor=_BAR, edgecolor=_EDGE, label=obs.capitalize()),
               Patch(facecolor=_GAP, edgecolor=_RED, hatch='///', label='Gap (over- or under-confident)')]
    if few.any():
        handles.append(Patch(facecolor=_FEW, edgecolor=_EDGE, hatch='..',
                             label=f'Bin of fewer than {min_count} {unit}:\nsays little'))
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=obs.capitalize())
    ax.legend(handles=handles, **_BESIDE)
    ax.grid(alpha=0.25, zorder=0)
    head = title or ('Reliability diagram' + (', all labels pooled' if multilabel else ''))
    ax.set_title(f"{head}\nECE {format_pct(float(ece_from_bins(bins)))} · {n_bins} bins\n"
                 f"{_mce_line(np.abs(acc - mconf), k, few, min_count, unit)}", fontsize=10)

    hbars = hx.bar(left, k / n, w, align='edge', color=np.where(few, '0.82', '0.6'), edgecolor='white', linewidth=0.8,
                   zorder=2)
    for f, b in zip(few, hbars):
        if f: b.set(hatch='..', edgecolor='0.6')
    # a bar of 3 items says little: every bin shows how many it holds, on white, readable where a line crosses it
    for x, c in zip(left + w / 2, k):
        hx.text(x, c / n * 1.4, _count(c), ha='center', va='bottom', fontsize=7, color='0.25', zorder=4,
                bbox=dict(boxstyle='square,pad=0.1', fc='white', ec='none', alpha=0.8))
    hx.axvline(overall, color=_BAR, linewidth=1.5, label=f'{obs} {format_pct(overall)}', zorder=3)
    hx.axvline(mean_conf, color=_RED, linestyle='--', linewidth=1.5, label=f'{conf_name} {format_pct(mean_conf)}',
               zorder=3)
    hx.legend(**_BESIDE)
    hx.set(yscale='log', ylim=(min(0.5 / n, 0.1), 6),
           ylabel=f"share of {n:,}\n{'predictions' if multilabel else unit} (log)",
           xlabel='Predicted probability, every label' if multilabel else 'Confidence (top-label probability)')
    hx.set_yticks([y for y in (1e-4, 1e-3, 1e-2, 1e-1, 1) if y >= 0.5 / n])
    hx.grid(alpha=0.25, zorder=0, axis='y')
    return fig
def reliability_diagram(probs, targs,
        n_bins:int=15, # Equal-width confidence bins
        multilabel:bool=False, # Each column is an independent label: p(label) against how often the label is on, pooled
        title:str|None=None, # First line of the title; the figures follow it
        figsize=(7.2, 6.4), # Size of the figure, legends beside the panels included
        min_count:int|None=None, # Bins of fewer items are drawn lighter (they say little); max(5, 1% of items)
    ):
    """Reliability diagram (Guo et al. 2017): accuracy per confidence bin against the diagonal, a histogram beneath

    >>> fig = reliability_diagram(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([0, 1, 1]), 5)
    >>> fig.axes[0].get_title().splitlines()[:2]
    ['Reliability diagram', 'ECE 33.33% · 5 bins']
    >>> plt.close(fig)
    """
    bins = calibration_bins(probs, targs, n_bins, multilabel)
    return reliability_diagram_from_bins(bins, multilabel, title, figsize, min_count)


def _threshold_text(t, measure):
    "A threshold in words: least confidence reads as the top probability it keeps"
    if measure == 'least_confidence': return f"p(top) ≥ {format_prob(max(0., 1 - t))}"
    return f"{measure} ≤ {t:.4g}"

def plot_risk_coverage(rc, # `risk_coverage`'s DataFrame: threshold, n, coverage, accuracy, risk
        marks=(), # `Selection`s to mark, one per target accuracy
        targets=(), # The target accuracies of `marks`
        measure:str='least_confidence', # Name of the measure abstained by
        aurc:float|None=None, # Area under the risk-coverage curve, for the title
        title:str|None=None, # First line of the title
        figsize=(7.2, 5.6), # Size of the figure in inches, the legend beneath included
    ):
    """Accuracy of the items predicted against the share predicted (coverage), each target's threshold marked

    >>> import pandas as pd
    >>> rc = pd.DataFrame({'threshold': [0.01, 0.2, 0.6], 'n': [5, 8, 10], 'coverage': [0.5, 0.8, 1.0],
    ...                    'accuracy': [1.0, 0.875, 0.8], 'risk': [0.0, 0.125, 0.2]})
    >>> fig = plot_risk_coverage(rc)
    >>> fig.axes[0].get_xlabel()
    'Coverage: share of the items predicted'
    >>> plt.close(fig)
    """
    fig, ax = plt.subplots(figsize=figsize, layout='constrained')
    cov, acc = rc['coverage'].to_numpy(), rc['accuracy'].to_numpy()
    # one point per threshold: items of one value enter together, so the curve has steps, not a line through them
    ax.step(np.r_[0, cov], np.r_[acc[0], acc], where='post', color=_BAR, linewidth=1.8,
            label='Accuracy of the predicted')
    ax.plot(cov, acc, 'o', color=_BAR, markersize=2.5)
    ax.axhline(acc[-1], color='0.5', linestyle=':', linewidth=1, label=f"Predicting every item: {format_pct(acc[-1])}")
    colours = ['#1a7f37', '#b7791f', '#6b46c1', '#c53030']
    for j, (sel, target) in enumerate(zip(marks, targets)):
        c = colours[j % len(colours)]
        ax.axhline(target, color=c, linestyle='--', linewidth=1)
        if sel.threshold is None:
            label = f"{format_pct(target)} accuracy: no threshold reaches it"
        else:
            label = (f"{format_pct(target)} accuracy: predict {format_pct(sel.coverage)} of the items "
                     f"({_threshold_text(sel.threshold, measure)})")
            ax.plot([sel.coverage], [sel.accuracy], 'D', color=c, markersize=7, zorder=5)
        ax.plot([], [], '--D', color=c, label=label)
    lo = min(float(acc.min()), *(float(t) for t in targets)) if len(targets) else float(acc.min())
    ax.set(xlim=(0, 1.01), ylim=(max(0, lo - 0.05 * (1.02 - lo) - 0.01), 1.005),
           xlabel='Coverage: share of the items predicted', ylabel='Accuracy of the items predicted')
    head = title or ('When to abstain: predict where p(top) is at least a threshold' if measure == 'least_confidence'
                     else f"When to abstain: predict where {measure} is at most a threshold")
    sub = f"{len(rc):,} thresholds · {int(rc['n'].iloc[-1]):,} items"
    if aurc is not None: sub += f" · AURC {aurc:.4f} (area under risk = 1 - accuracy; lower is better)"
    ax.set_title(f"{head}\n{sub}", fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(0, -0.14), frameon=False)  # below: never over the curve
    return fig
