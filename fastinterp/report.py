"The fastinterp report: one self-contained HTML page of what a classifier gets wrong and how unsure it is"

__all__ = ['write_report', 'check_out', 'measure_calibration']

import base64, errno, html, os, re, shutil, uuid
from pathlib import Path
import numpy as np, pandas as pd
import matplotlib.pyplot as plt
import sklearn.metrics as skm

from .activations import activation_for
from .calibration import calibration_bins
from .intervals import Estimate, wilson_interval
from .preds import learner_temperature
from .segmentation import SegmentationInterpretation
from .show import _cell, _text_cell, format_pct, format_prob  # 100.00% and 0.00% only for exactly 1 and 0

_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; --accent:#0969da;
        --bad:#b3261e; --good:#1a7f37; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:#fff; }
main { max-width:1180px; margin:0 auto; padding:28px 32px 64px; }
header h1 { font-size:30px; margin:0 0 4px; }
header .meta { color:var(--muted); margin:0; }
header .meta code { font-size:14px; }
nav { margin:18px 0 8px; display:flex; flex-wrap:wrap; gap:6px 8px; }
nav a { font-size:14px; color:var(--accent); text-decoration:none; border:1px solid var(--line);
        border-radius:999px; padding:2px 12px; }
nav a:hover { background:var(--soft); }
section { margin-top:36px; padding-top:8px; border-top:1px solid var(--line); }
h2 { font-size:22px; margin:12px 0 4px; }
h3 { font-size:17px; margin:18px 0 6px; }
p.lead { color:var(--muted); margin:0 0 14px; max-width:900px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(165px, 1fr)); gap:12px; margin-top:14px; }
.card { border:1px solid var(--line); border-radius:10px; padding:14px 16px; background:var(--soft); }
.card .label { font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.card .value { font-size:30px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.card .note { font-size:14px; color:var(--muted); }
table { border-collapse:collapse; font-size:15px; font-variant-numeric:tabular-nums; margin:6px 0 8px; }
th, td { padding:6px 14px; border-bottom:1px solid var(--line); text-align:right; }
th { background:var(--soft); font-weight:600; }
th:first-child, td:first-child { text-align:left; }
td.text, th.text { text-align:left; }
tr:hover td { background:#fbfcfd; }
figure { margin:10px 0; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:8px;
             background:#fff; }
figcaption { font-size:14px; color:var(--muted); margin-top:4px; }
.strips { display:flex; flex-wrap:wrap; gap:12px; align-items:flex-start; }
.strips figure { margin:0; }
ul.files { columns:2; font-size:14px; }
.warn { border-left:4px solid var(--bad); background:#fff5f5; padding:8px 14px; margin:12px 0; }
.card .ci { font-size:14px; color:var(--muted); font-variant-numeric:tabular-nums; margin-bottom:2px; }
code { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:.92em; }
"""

_e = html.escape

def _slug(s, n=40): return re.sub(r'[^A-Za-z0-9_.-]+', '_', str(s)).strip('_.')[:n] or 'class'


class _Page:
    "The report's sections, and the files written beside it"
    def __init__(self, out):
        self.out, self.sections, self.files = Path(out), [], []

    def figure(self, fig, name, caption=''):
        "Save `fig` as `name`.png beside the report, close it, and return the HTML embedding it"
        path = self.out/f'{name}.png'
        if path.name in self.files: raise ValueError(f"Two figures of the report are named {path.name}")
        fig.savefig(path, dpi=100, bbox_inches='tight', facecolor='white')
        plt.close(fig)
        self.files.append(path.name)
        rows = getattr(fig, 'fastinterp_rows', None)
        # table rows or texts: a table of the page's own, searchable, every value whole
        if rows is not None: return _rows_table(rows, fig.fastinterp_colours, caption)
        data = base64.b64encode(path.read_bytes()).decode('ascii')
        cap = f'<figcaption>{_e(caption)}</figcaption>' if caption else ''
        return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption or name)}">{cap}</figure>'

    def add(self, id, title, body, lead=''):
        self.sections.append((id, title, (f'<p class="lead">{lead}</p>' if lead else '') + body))

    def html(self, title, meta):
        nav = ''.join(f'<a href="#{i}">{_e(t)}</a>' for i, t, _ in self.sections)
        secs = '\n'.join(f'<section id="{i}"><h2>{_e(t)}</h2>\n{b}</section>' for i, t, b in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>'
                f'<header><h1>{_e(title)}</h1><p class="meta">{meta}</p></header><nav>{nav}</nav>\n'
                f'{secs}\n</main></body></html>\n')

def _table(df, text_cols=()):
    "`df` as an HTML table, text columns left-aligned"
    cls = [' class="text"' if c in text_cols else '' for c in df.columns]
    head = ''.join(f'<th{k}>{_e(str(c))}</th>' for k, c in zip(cls, df.columns))
    row = lambda r: '<tr>' + ''.join(f'<td{k}>{_e(str(v))}</td>' for k, v in zip(cls, r)) + '</tr>'
    rows = ''.join(row(r) for r in df.itertuples(index=False))
    return f'<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'

_TEXT_CHARS = 300  # longest text a cell of the page shows whole

def _rows_table(rows, colours, caption=''):
    "The items of a table figure (its `fastinterp_rows`, titles first) as an HTML table, titles in their colours"
    def cell(c, v): return _e(_text_cell(v, _TEXT_CHARS) if c == 'text' else _cell(v))  # the figure's formats, uncut
    head = ''.join(f'<th class="text">{_e(str(c))}</th>' for c in rows.columns)
    # the title cell wide enough for its line: squeezed by a dozen feature columns it wrapped word by word
    body = ''.join(f'<tr><td class="text" style="color:{k};min-width:20em">{cell(None, r[0])}</td>'
                   + ''.join(f'<td class="text">{cell(c, v)}</td>' for c, v in zip(rows.columns[1:], r[1:])) + '</tr>'
                   for r, k in zip(rows.itertuples(index=False), colours))
    cap = f'<figcaption>{_e(caption)}</figcaption>' if caption else ''
    return (f'<figure><div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table></div>{cap}</figure>')

_CI = 0.95  # confidence level of every interval on the page

def _cards(cards):
    "Cards of (label, value, note) or (label, value, interval, note)"
    def card(label, v, *rest):
        ci = f'<div class="ci">{_e(rest[0])}</div>' if len(rest) > 1 and rest[0] else ''
        return (f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(v)}</div>{ci}'
                f'<div class="note">{_e(rest[-1])}</div></div>')
    return '<div class="cards">' + ''.join(card(*c) for c in cards) + '</div>'

def _ci(x, fmt=format_pct):
    "The interval of an `Estimate` in words, or '' for a plain number"
    lo = getattr(x, 'lo', None)
    return '' if lo is None else f"{100 * x.ci:g}% CI {fmt(x.lo)} to {fmt(x.hi)}"

def _with_ci(x, fmt=format_pct):
    "A number and its interval, on one line"
    return fmt(x) + (f" ({_ci(x, fmt)})" if getattr(x, 'lo', None) is not None else '')

def _probs_note(interp, short=False):
    "How the page's probabilities were made from the model's outputs: the activation, the learner's temperature if any"
    T = learner_temperature(interp.learn)
    if T is not None: T = ', '.join(f'{t:.3g}' for t in np.atleast_1d(np.asarray(T, dtype=float)))
    if short: return 'no temperature' if T is None else f"the learner's T = {T}"
    if interp.act is not None: return 'the activation given to the interpretation'
    act = activation_for(interp.learn.loss_func).name
    return f'{act} of the outputs, no temperature' if T is None else f"{act} of the outputs / T, the learner's T = {T}"

def _headline(interp, tta, calib, temp):
    "The figures at the top: accuracy, TTA accuracy, ECE (before and after temperature), how unsure the model is"
    n, cards = len(interp.probs), []
    if interp.labelled:
        acc = interp.accuracy(ci=_CI)
        cards.append(('Accuracy', format_pct(acc), _ci(acc),
                      f"{int(interp.correct().sum()):,} of {n:,} items "
                      f"{'with every label right' if interp.multilabel else 'right'}"))
    if tta is not None:
        plain, blend = tta.loc['un-augmented', 'accuracy'], _tta_row(tta)['accuracy']
        right, gain = round(blend * n), round((blend - plain) * n)  # in items: the accuracies' precisions differ
        est = Estimate(right / n, *wilson_interval(right, n, _CI), _CI)
        if not gain: said = 'same items right as the plain pass'
        else:
            said = (f"{abs(gain):,} item{'s' * (abs(gain) != 1)} {'more' if gain > 0 else 'fewer'} right than the "
                    f"plain pass")
            plain_est = Estimate(plain, *wilson_interval(round(plain * n), n, _CI), _CI)
            if est.overlaps(plain_est): said += '; the intervals overlap: no clear difference'
        cards.append(('TTA accuracy', format_pct(blend), _ci(est), f'{len(tta) - 2} augmented passes; {said}'))
    # one pair of ECEs that compare: both on the items T was not fitted on (all items: in the calibration section)
    if temp is not None:
        own = learner_temperature(interp.learn) is not None
        before, after = temp['before']['ece'], temp['after']['ece']
        cards.append(("ECE at the learner's T" if own else 'ECE before temperature', format_pct(before), _ci(before),
                      f"calibration error on {temp['n_eval']:,} held-out items, {_probs_note(interp, short=True)}"))
        same = hasattr(before, 'overlaps') and before.overlaps(after)
        cards.append(('ECE at a refitted T' if own else 'ECE after temperature', format_pct(after), _ci(after),
                      f"the same {temp['n_eval']:,} items at T = {temp['T']:.3g}, fitted on the other "
                      f"{temp['n_fit']:,}" + ('; the intervals overlap: no clear change in calibration' if same
                                              else '')))
    elif calib is not None:
        cards.append(('ECE', format_pct(calib['ece']), _ci(calib['ece']),
                      f'calibration error on all {n:,} items, {_probs_note(interp, short=True)}'))
    if not interp.multilabel:
        unsure = int((interp.probs.max(1).values < 0.5).sum())
        cards.append(('Unsure predictions', f'{unsure:,}',
                      f'items whose predicted class has p < 0.5 ({format_pct(unsure / n)})'))
    cards.append(('Items', f'{n:,}', f'{len(interp.vocab)} classes' + ('' if interp.labelled else ', no labels')))
    return _cards(cards)

def _stock_section(page, stock):
    df = pd.DataFrame(stock, columns=['', 'stock fastai', 'with fastinterp'])
    page.add('stock', 'What stock fastai shows', _table(df, text_cols=set(df.columns)),
             "The same model and data through fastai's own <code>get_preds</code> and through fastinterp's. "
             "With a plain PyTorch loss stock fastai hands back raw logits as if they were probabilities.")

def _tta_row(tta): return tta.loc[[i for i in tta.index if str(i).startswith('TTA')][0]]

def _tta_section(page, interp, tta):
    df = pd.DataFrame({'pass': tta.index, 'accuracy': [format_pct(v) for v in tta['accuracy']],
                       'NLL': [f'{v:.4f}' for v in tta['nll']]})
    same = np.allclose(tta.drop(index=_tta_row(tta).name).values, tta.loc['un-augmented'].values, rtol=0, atol=1e-7)
    note = ('<p class="warn">Every augmented pass equals the plain one: the data has no training-time augmentation '
            'for TTA to apply.</p>' if same else '')
    page.add('tta', 'Test-time augmentation', _table(df, text_cols={'pass'}) + note,
             f'Accuracy and NLL (the mean negative log-likelihood of the targets, in nats) on all '
             f'{len(interp.probs):,} items, {_e(_probs_note(interp))}: of each augmented pass, of the plain '
             f'(un-augmented) pass, and of TTA, the mean of the augmented probabilities blended with the plain ones. '
             f'The rest of the page shows the plain pass.')

def measure_calibration(interp, n_bins:int=15, ci:float|None=None):
    """`interp.calibration(n_bins, ci)` and `mce_items`: how many items the worst bin, which gives the MCE, holds

    >>> m = measure_calibration(fastinterp.ClassificationInterpretation.from_learner(learn, progress=False))
    >>> sorted(m), m['mce_items'] >= 1
    (['accuracy', 'brier', 'ece', 'mce', 'mce_items', 'nll'], True)
    """
    res = interp.calibration(n_bins, ci=ci)
    bins = calibration_bins(interp.probs, interp.targs, n_bins, interp.multilabel)
    gap = (bins.correct - bins.confidence).abs() / bins.count.clamp_min(1)
    return {**res, 'mce_items': int(bins.count[int(gap.argmax())])}

_MEASURES = [('ece', 'ECE', format_pct), ('mce', 'MCE (the worst bin alone)', None),
             ('brier', 'Brier score', '{:.4f}'.format), ('nll', 'NLL (nats)', '{:.4f}'.format),
             ('accuracy', 'accuracy', format_pct)]

def _measure(d, k, f):
    if k != 'mce': return _with_ci(d[k], f)
    return _with_ci(d[k]) + (f" ({d['mce_items']:,} item{'s' * (d['mce_items'] != 1)})" if 'mce_items' in d else '')

def _measures(cols):
    "A table of calibration measures: column name -> a dict of `calibration()`"
    df = pd.DataFrame({'measure': [m for _, m, _ in _MEASURES],
                       **{c: [_measure(d, k, f) for k, _, f in _MEASURES] for c, d in cols.items()}})
    return _table(df, text_cols={'measure'})

def _calibration_section(page, interp, calib, temp):
    n, probs = len(interp.probs), _probs_note(interp)
    cols = {f'all {n:,} items': calib}
    text = f'<p>Measured on all {n:,} items, with the probabilities this page shows: {_e(probs)}.</p>'
    if temp is not None:
        m, T = temp['n_eval'], f"{temp['T']:.3g}"
        cols[f'{m:,} held-out, {_probs_note(interp, short=True)}'] = temp['before']
        cols[f'{m:,} held-out, T = {T}'] = temp['after']
        own = learner_temperature(interp.learn) is not None
        text = (f"<p>The first column is measured on all {n:,} items, with the probabilities this page shows "
                f"({_e(probs)}). Temperature scaling: T = {T} fitted (least NLL) on {temp['n_fit']:,} of the items; "
                f"the other two columns are measured on the other {m:,}, which the fit did not see, before (the "
                f"probabilities of this page) and after dividing the outputs by T = {T}"
                + (" instead of the learner's own T" if own else '') + '. '
                "Dividing the outputs by T changes no prediction, only how sure each one is.</p>")
    body = text + _measures(cols) + _overlap_note(cols)
    interp.plot_reliability()
    body += page.figure(plt.gcf(), 'reliability', f'All {n:,} items, {probs}: the first column of the table.')
    page.add('calibration', 'Calibration', body,
             'Is a prediction made with p = 0.8 right 80% of the time? Each bar is a bin of confidence (the top-label '
             'probability); on the diagonal the probabilities mean what they say. ECE is the gap, weighted by the '
             'items in each bin; MCE is the gap of the worst bin alone, however few items it holds; lower Brier '
             'score and NLL (the mean negative log-likelihood of the targets) are better too.')

def _overlap_note(cols):
    "Which held-out figures before and after temperature do not differ beyond their intervals"
    if len(cols) < 3: return ''
    before, after = list(cols.values())[1:3]
    same = [name for k, name, _ in _MEASURES if k != 'accuracy' and hasattr(before[k], 'overlaps')
            and before[k].overlaps(after[k])]
    if not same: return ''
    return (f"<p>Before and after temperature, the {100 * _CI:g}% intervals of {', '.join(same)} overlap: on these "
            f"held-out items those figures do not show a difference.</p>")

def _per_class_uncertainty(page, interp, df, k, max_classes):
    "Per predicted class (from `df`, `interp.to_df()`): how many items, how unsure; galleries of the least sure classes"
    g = df.groupby('prediction', sort=False)
    t = pd.DataFrame({'predicted class': list(g.groups),
                      'items': g.size().values,
                      'mean entropy': g['entropy'].mean().values,
                      'max entropy': g['entropy'].max().values,
                      'p(pred) < 0.5': g['p_pred'].apply(lambda s: int((s < 0.5).sum())).values})
    t = t.sort_values(['mean entropy', 'predicted class'], ascending=[False, True]).reset_index(drop=True)
    shown = t.head(max_classes)
    for c in ('mean entropy', 'max entropy'): t[c] = [f'{v:.3f}' for v in t[c]]
    body = _table(t, text_cols={'predicted class'})
    idx_of = {str(v): i for i, v in enumerate(interp.vocab)}
    figs = []
    for c, n in zip(shown['predicted class'], shown['items']):  # one strip per class: it reads at full size
        i = idx_of[c]
        interp.plot_most_uncertain(k, cls=interp.vocab[i], ncols=min(k, n))
        figs.append(page.figure(plt.gcf(), f'most_uncertain_{i}_{_slug(c)}'))  # the index: 'café', 'cafè' are 'caf'
    more = (f' (the {len(shown)} classes with the highest mean entropy, of {len(t)})' if len(t) > len(shown) else '')
    body += f'<h3>Most uncertain items, by predicted class{more}</h3><div class="strips">{"".join(figs)}</div>'
    page.add('uncertain-per-class', 'Most uncertain, per class', body,
             'Entropy is divided by log(number of classes): 0 is a sure prediction, 1 a uniform guess.')

def _most_confused_section(page, interp, n=15):
    pairs = interp.most_confused()[:n]
    if not pairs:
        page.add('most-confused', 'Most confused pairs', '<p>No item is misclassified.</p>')
        return
    support = np.bincount(interp.targs.numpy(), minlength=len(interp.vocab))
    idx = {str(v): i for i, v in enumerate(interp.vocab)}
    df = pd.DataFrame({'given': [str(a) for a, _, _ in pairs], 'predicted as': [str(p) for _, p, _ in pairs],
                       'items': [c for _, _, c in pairs],
                       'share of the given class': [format_pct(c / support[idx[str(a)]]) for a, _, c in pairs]})
    page.add('most-confused', 'Most confused pairs', _table(df, text_cols={'given', 'predicted as'}),
             f'The {len(pairs)} most frequent (given label, predicted) mistakes.')

def _class_report(page, interp):
    "scikit-learn's precision and recall per class, of the classes the data holds or the model predicts"
    if interp.multilabel: rep, lead = interp.classification_report(output_dict=True), ''
    else:  # a class absent from both would add a row of zeros, and pull the macro average down, for nothing it did
        seen = np.union1d(interp.targs.numpy(), interp.decoded.numpy())
        rep = skm.classification_report(interp.targs.numpy(), interp.decoded.numpy(), labels=seen, zero_division=0,
                                        target_names=[str(interp.vocab[i]) for i in seen], output_dict=True)
        left = len(interp.vocab) - len(seen)
        lead = f' The {left} class(es) neither in the data nor predicted are left out.' if left else ''
    rep = pd.DataFrame(rep).T
    rep.insert(0, 'class', rep.index)
    rep['support'] = rep['support'].astype(int)
    for c in ('precision', 'recall', 'f1-score'): rep[c] = [f'{v:.3f}' for v in rep[c]]
    rep = rep[rep['class'] != 'accuracy']
    if not interp.multilabel:  # each class's precision and recall with its interval: of 36 items, known to ~10 points
        pc = interp.per_class(ci=_CI).iloc[seen]
        iv = lambda v, lo, hi, n: 'n/a (none)' if not n else f"{v:.3f} ({lo:.3f} to {hi:.3f})"
        rep.iloc[:len(seen), rep.columns.get_loc('precision')] = [iv(*r) for r in zip(
            pc['precision'], pc['precision_lo'], pc['precision_hi'], pc['predicted'])]
        rep.iloc[:len(seen), rep.columns.get_loc('recall')] = [iv(*r) for r in zip(
            pc['recall'], pc['recall_lo'], pc['recall_hi'], pc['support'])]
        rep = rep.rename(columns={c: f'{c} ({100 * _CI:g}% CI)' for c in ('precision', 'recall')})
        lead += (f' Intervals: Wilson score intervals at {100 * _CI:g}%; where two of them overlap, the data does '
                 f'not show that one class is served better than the other.')
    page.add('per-class', 'Precision and recall per class', _table(rep, text_cols={'class'}),
             "scikit-learn's classification report on the same predictions." + lead)

def _label_issues_section(page, interp, src, k, flipped):
    "Likely label errors by confident learning on `src` (out of fold, or `interp` itself), their list beside the page"
    n = len(src.probs)
    if src is interp:
        cover = (f"Found on the {n:,} items of this page, with this model's probabilities. For items the model "
                 f"trained on, it has learned their labels, wrong ones too, and hides them: <code>--folds K</code> "
                 f"finds them out of fold over every labelled item.")
    else:
        cover = (f"Found out of fold on {n:,} labelled items: each predicted by one of {src.n_folds} models trained "
                 f"on the other folds, so that no item's own (possibly wrong) label was learned.")
    try: est = src.estimate_label_errors()
    except ValueError as e:  # e.g. a class with no items: no threshold for it
        page.add('label-issues', 'Likely label errors', f'<p class="warn">{_e(str(e))}</p>', cover)
        return
    df = src.label_issues_df()
    df.to_csv(page.out/'label_issues.csv', index=False)
    page.files.append('label_issues.csv')
    body = _cards([('Estimated label errors', f'{est.count:,}', f'{format_pct(est.count / n)} of {n:,} items, '
                    f'by confident learning'), ('Listed', f'{len(df):,}', 'in label_issues.csv, most likely first')])
    if flipped is not None:
        known = {_key(f) for f in flipped}
        covered = sum(_key(f) in known for f in src._item_names())
        found = sum(_key(f) in known for f in df['item'])
        body += (f"<p><strong>Of the {len(known):,} items whose labels were flipped</strong>, {covered:,} are among "
                 f"the items covered here and {found:,} of those are listed (recall "
                 f"{format_pct(found / covered) if covered else 'n/a'}); of the {len(df):,} listed, {found:,} were "
                 f"flipped (precision {format_pct(found / len(df)) if len(df) else 'n/a'}).</p>")
    pairs = est.pairs.head(10)
    if len(pairs):
        t = pd.DataFrame({'given label': [str(v) for v in pairs['given']], 'suggested label': [str(v) for v in
                          pairs['suggested']], 'estimated items': [f'{v:,}' for v in pairs['count']]})
        body += '<h3>Between which labels</h3>' + _table(t, text_cols={'given label', 'suggested label'})
    if len(df):
        src.plot_label_issues(min(k, len(df)))
        body += page.figure(plt.gcf(), 'label_issues', 'Most likely mislabelled first: the label in the data '
                            '("given"), the label the model suggests, their probabilities, the file.')
    page.add('label-issues', 'Likely label errors', body,
             "Items whose given label the model finds unlikely, counted by confident learning (Northcutt et al., "
             "2021): per class, a threshold at the mean probability the model gives that class on the items labelled "
             "with it; an item counts as likely mislabelled where another class clears its threshold. " + cover)

def _key(f): return os.path.abspath(str(f))

def _abstain_section(page, interp):
    "When to abstain: the risk-coverage curve, and the threshold and coverage at 99% and 95% accuracy"
    rows = []
    for a in (0.99, 0.95):
        sel = interp.coverage_at(a)
        if sel.threshold is None: rows.append((format_pct(a), 'no threshold reaches it', '', '', ''))
        else: rows.append((format_pct(a), f'p(top) ≥ {format_prob(max(0., 1 - sel.threshold))}',
                           format_pct(sel.coverage), f'{sel.n:,}', format_pct(sel.accuracy)))
    t = pd.DataFrame(rows, columns=['target accuracy', 'predict where', 'coverage', 'items predicted',
                                    'their accuracy'])
    interp.plot_risk_coverage()
    body = _table(t, text_cols={'predict where'}) + page.figure(plt.gcf(), 'risk_coverage')
    page.add('abstain', 'When to abstain', body,
             f"Predict only where the model is sure enough, and pass the rest to a person: the table gives the "
             f"lowest top-class probability that keeps each target accuracy on these {len(interp.probs):,} items, "
             f"and the share of them predicted (coverage). AURC, the area under risk = 1 - accuracy against "
             f"coverage, sums it up: lower is better. A threshold picked on these items is best checked on others.")

def write_report(interp, # A `ClassificationInterpretation` or `SegmentationInterpretation` (labelled or not)
        out, # Folder to write report.html, predictions.csv and the PNGs into; a report already there is replaced whole
        k:int=9, # Items in each gallery
        title:str='fastinterp report',
        data:str|None=None, # Where the items came from, shown under the title
        skipped=(), # Items that could not be read, listed in the report
        stock=None, # Rows (what, stock fastai, fastinterp) comparing stock fastai's get_preds with fastinterp's
        tta=None, # `Learner.tta(...).report`: accuracy and NLL of each pass, the un-augmented one and TTA
        temperature=None, # dict(T, before, after, n_fit, n_eval): `calibration()` of held-out items before and after T
        max_classes:int=12, # Per-class galleries for at most this many classes
        label_issues=None, # Interpretation to find label errors in (e.g. `out_of_fold`'s); None: `interp`
        flipped=None, # Items whose labels are known to be wrong (flipped on purpose): how many the section found
    )->Path:
    """Write the report of `interp` into `out` and return the path of its HTML file

    >>> import tempfile
    >>> from pathlib import Path
    >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
    >>> page = write_report(interp, Path(tempfile.mkdtemp())/'report', k=4)
    >>> page.name, (page.parent/'predictions.csv').exists(), '<h1>fastinterp report</h1>' in page.read_text()
    ('report.html', True, True)
    """
    out = Path(out).resolve()  # a link to a folder: the folder it names is replaced, the link kept
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written in a folder of its own beside `out`, then renamed into place: a reader, or another report written into
    # `out` at the same time, never sees half of one report mixed with another
    tmp = out.parent/f'.{out.name}.writing-{uuid.uuid4().hex[:12]}'
    tmp.mkdir()  # as `out` would be made, with the user's umask (mkdtemp's folders are private to their owner)
    try:
        if isinstance(interp, SegmentationInterpretation): _write_segmentation(interp, tmp, k, title, data, skipped)
        else: _write(interp, tmp, k, title, data, skipped, stock, tta, temperature, max_classes, label_issues,
                     flipped)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out/'report.html'

def _write(interp, out, k, title, data, skipped, stock, tta, temperature, max_classes, label_issues, flipped):
    "Write every file of the report into the folder `out`"
    page = _Page(out)
    df = _predictions(interp)
    df.to_csv(out/'predictions.csv', index=False)
    calib = measure_calibration(interp, ci=_CI) if interp.labelled and not interp.multilabel else None
    page.add('summary', 'Summary', _headline(interp, tta, calib, temperature))
    if stock is not None: _stock_section(page, stock)
    if interp.labelled and interp.losses is None:
        page.add('top-losses', 'Top losses',
                 '<p>No per-item losses: the loss takes no <code>reduction</code> argument.</p>')
    elif interp.labelled:
        interp.plot_top_losses(k)
        page.add('top-losses', 'Top losses', page.figure(plt.gcf(), 'top_losses'),
                 'The items the model was most wrong about: largest loss first. Each title gives the predicted class '
                 'and its probability, the given label (which may itself be wrong) and its probability, and the loss.')
    by = ("how close their least sure label's probability is to the threshold" if interp.multilabel else
          'entropy of the predicted probabilities')
    interp.plot_most_uncertain(k)
    page.add('most-uncertain', 'Most uncertain', page.figure(plt.gcf(), 'most_uncertain'),
             f'The items the model is least sure of, by {by}, whatever the label: the first ones to check or to label.')
    if not interp.multilabel: _per_class_uncertainty(page, interp, df, min(k, 5), max_classes)
    if interp.labelled and not interp.multilabel:
        _most_confused_section(page, interp)
        interp.plot_confusion_matrix()
        page.add('confusion-matrix', 'Confusion matrix', page.figure(plt.gcf(), 'confusion_matrix'),
                 'Rows: the given label (actual class); columns: predicted class; the diagonal holds the right '
                 'answers.')
    if interp.labelled: _class_report(page, interp)
    if interp.labelled and not interp.multilabel:
        _label_issues_section(page, interp, interp if label_issues is None else label_issues, k, flipped)
        _abstain_section(page, interp)
    if tta is not None: _tta_section(page, interp, tta)
    if calib is not None: _calibration_section(page, interp, calib, temperature)
    page.add('files', 'Files', _files(page, df, skipped, interp.multilabel))
    (out/'report.html').write_text(page.html(title, _meta(interp, data, skipped)), encoding='utf-8')

def _write_segmentation(interp, out, k, title, data, skipped):
    "The page of a segmentation model: IoU per class, pixel confusion, the worst and least sure images, calibration"
    page, n, C = _Page(out), interp.n, len(interp.vocab)
    per_image = pd.DataFrame({'image': interp.items(range(n))})
    per_image['mean_entropy'] = interp.res['entropy'].numpy()
    if interp.labelled:
        per_image['loss'] = interp.losses.numpy()
        per_image['pixel_accuracy'] = (interp.res['correct'] / interp.res['pixels'].clamp_min(1)).numpy()
        per_image['iou'] = interp.image_iou().numpy()
    per_image.to_csv(out/'per_image.csv', index=False)
    page.files.append('per_image.csv')
    k = min(k, 6)  # four panels per image: a few images make a tall figure already
    if interp.labelled:
        m = interp.calibration()
        cards = [('Mean IoU', f'{interp.mean_iou():.4f}', f'over the {int((~np.isnan(interp.iou())).sum())} classes '
                  f'in the targets or the predictions'),
                 ('Pixel accuracy', format_pct(interp.pixel_accuracy()), f'{int(interp.res["confusion"].sum()):,} '
                  f'pixels' + (f', {interp.res["ignored"]:,} of ignore_index {interp.ignore_index} left out'
                               if interp.res['ignored'] else '')),
                 ('ECE (pixels)', format_pct(m['ece']), 'calibration error of the top-class probability per pixel')]
    else: cards = []
    cards.append(('Images', f'{n:,}', f'{C} classes' + ('' if interp.labelled else ', no masks: uncertainty only')))
    page.add('summary', 'Summary', _cards(cards) + ('<p class="lead">No intervals: the pixels of one image are not '
                                                    'independent draws, so a binomial interval over pixels would be '
                                                    'far too narrow.</p>' if interp.labelled else ''))
    if interp.labelled:
        pc = interp.per_class()
        pc.to_csv(out/'per_class.csv', index=False)
        page.files.append('per_class.csv')
        fmt = lambda v: 'absent' if v != v else f'{v:.4f}'
        t = pd.DataFrame({'class': pc['class'].astype(str), 'target pixels': [f'{v:,}' for v in pc['pixels']],
                          'predicted pixels': [f'{v:,}' for v in pc['predicted']], 'IoU': pc['iou'].map(fmt),
                          'Dice': pc['dice'].map(fmt)})
        page.add('per-class', 'IoU and Dice per class', _table(t, text_cols={'class'}),
                 'Over every pixel of every image. "absent": the class is in no target and no prediction, and has no '
                 'IoU (it is left out of the mean).')
        interp.plot_confusion_matrix()
        page.add('confusion-matrix', 'Pixel confusion matrix', page.figure(plt.gcf(), 'confusion_matrix'),
                 'Rows: the class of the target pixel, each row normalized to 1; columns: the predicted class.')
        interp.plot_top_losses(k)
        page.add('top-losses', 'Top losses', page.figure(plt.gcf(), 'top_losses'),
                 'The images of largest mean pixel loss: the image, its target mask, the predicted mask, and how '
                 'unsure the model is at each pixel (entropy; bright: unsure), with the image\'s IoU.')
    interp.plot_most_uncertain(k)
    page.add('most-uncertain', 'Most uncertain', page.figure(plt.gcf(), 'most_uncertain'),
             'The images of highest mean pixel entropy, whatever the target: the first ones to check or to label.')
    if interp.tta_report is not None:
        r = interp.tta_report
        df = pd.DataFrame({'pass': r.index, 'pixel accuracy': [format_pct(v) for v in r['accuracy']],
                           'NLL': [f'{v:.4f}' for v in r['nll']], 'mean IoU': [f'{v:.4f}' for v in r['mean_iou']]})
        page.add('tta', 'Test-time augmentation', _table(df, text_cols={'pass'}),
                 'Each augmented pass flips or rotates the images and undoes it on the predicted probabilities, so '
                 'the masks line up before they are averaged. The rest of the page shows TTA\'s probabilities.')
    if interp.labelled:
        interp.plot_reliability()
        t = pd.DataFrame({'measure': ['ECE', 'MCE (the worst bin alone)', 'Brier score', 'NLL (nats)', 'accuracy'],
                          'all pixels': [format_pct(m['ece']), format_pct(m['mce']), f"{m['brier']:.4f}",
                                         f"{m['nll']:.4f}", format_pct(m['accuracy'])]})
        page.add('calibration', 'Calibration', _table(t, text_cols={'measure'}) +
                 page.figure(plt.gcf(), 'reliability', 'Every pixel: its top-class probability against how often '
                             'that class is right.'),
                 'Is a pixel predicted with p = 0.8 right 80% of the time? The same diagram as for a classifier, '
                 'counted over pixels.')
    body = _file_list(page.files)
    body += ('<p><code>per_image.csv</code>: one row per image, in the order of the data: <code>image</code>, '
             '<code>mean_entropy</code> (0 sure, 1 uniform)' + (', <code>loss</code> (mean pixel NLL), '
             '<code>pixel_accuracy</code> and <code>iou</code> (mean over the classes in its target or prediction)'
             if interp.labelled else '') + '.</p>')
    if skipped: body += (f'<div class="warn"><strong>{len(skipped):,} image(s) could not be read and were skipped.'
                         f'</strong></div>')
    page.add('files', 'Files', body)
    learn = interp.learn
    act = activation_for(learn.loss_func)
    meta = ' &middot; '.join([f'model <code>{_e(type(learn.model).__name__)}</code>',
                              f'loss <code>{_e(str(act.loss))}</code> &rarr; {_e(act.name)} per pixel',
                              f'{n:,} images' + (f' from <code>{_e(str(data))}</code>' if data else '')])
    (out/'report.html').write_text(page.html(title, meta), encoding='utf-8')

def _predictions(interp):
    "`interp.to_df()` with a column p(class) of each class's probability, after p_pred and p_target"
    df = interp.to_df()
    names = [f'p({v})' for v in interp.vocab]
    if interp.multilabel or set(names) <= set(df.columns) or len(names) != interp.probs.shape[1]: return df
    at = list(df.columns).index('p_target' if 'p_target' in df.columns else 'p_pred') + 1
    probs = pd.DataFrame(interp.probs.numpy(), columns=names, index=df.index)
    return pd.concat([df.iloc[:, :at], probs, df.iloc[:, at:]], axis=1)

_REPORT_FILES = re.compile(r'report\.html|predictions\.csv|label_issues\.csv|per_image\.csv|per_class\.csv|.+\.png')

def check_out(out, # The folder a report is to be written into
    ):
    """Refuse an `out` that is a file, or a folder holding anything but a report: writing the report replaces it whole

    >>> import tempfile
    >>> from pathlib import Path
    >>> busy = Path(tempfile.mkdtemp()); _ = (busy/'notes.txt').write_text('mine')
    >>> check_out(busy)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...
    """
    out = Path(out).resolve()
    here = Path.cwd().resolve()
    if out == here or out in here.parents:  # renamed away, it would leave the shell in a deleted folder
        raise ValueError(f"{out} is the current folder or holds it, and a report replaces its folder whole: "
                         f"choose a folder of its own")
    if not out.exists(): return
    if not out.is_dir(): raise ValueError(f"{out} is a file, not a folder")
    there = sorted(p.name for p in out.iterdir())
    if not (out/'report.html').is_file(): other = there  # not a report at all
    else: other = [n for n in there if not ((out/n).is_file() and _REPORT_FILES.fullmatch(n))]
    if other:
        names = ', '.join(other[:3]) + (f' and {len(other) - 3} more' if len(other) > 3 else '')
        raise ValueError(f"{out} holds files that are not a report's ({names}), and a report replaces its folder "
                         f"whole: choose a new or empty folder")

def _swap_in(tmp, out):
    "Rename the folder `tmp` to `out`; a report already there (another writer's too) is moved aside, then deleted"
    aside = []
    try:
        for _ in range(100):
            try: return os.rename(tmp, out)  # atomic, and replaces an empty folder
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST): raise
            check_out(out)
            old = out.parent/f'{tmp.name}.old{len(aside)}'
            try: os.rename(out, old)
            except FileNotFoundError: continue  # another writer moved it first
            aside.append(old)
        raise OSError(f"{out} kept being replaced by other reports written into it at the same time")
    finally:
        for o in aside: shutil.rmtree(o, ignore_errors=True)

def _meta(interp, data, skipped):
    learn = interp.learn
    activation = activation_for(learn.loss_func) if interp.act is None else None
    if activation: loss, act = activation.loss, activation.name
    else: loss, act = getattr(learn.loss_func, '__name__', type(learn.loss_func).__name__), 'given activation'
    bits = [f'model <code>{_e(type(learn.model).__name__)}</code>',
            f'loss <code>{_e(str(loss))}</code> &rarr; {_e(act)}',
            f'{len(interp.probs):,} items' + (f' from <code>{_e(str(data))}</code>' if data else '')]
    if learner_temperature(learn) is not None:  # every probability in the report went through it
        bits.append(f'<strong>probabilities tempered</strong>: {_e(_probs_note(interp))} '
                    f'(set by <code>learn.calibrate</code> or by hand before export)')
    if skipped: bits.append(f'<strong>{len(skipped):,} unreadable item(s) skipped</strong>')
    return ' &middot; '.join(bits)

_COLUMNS = {'item': 'the item', 'target': 'its label', 'prediction': 'the prediction', 'loss': "the item's loss",
            'p_pred': "the predicted class's probability", 'p_target': "the label's probability"}

def _file_list(names):
    "The files written beside the page, each a link"
    return ('<p>Beside this page:</p><ul class="files">'
            + ''.join(f'<li><a href="{_e(f)}">{_e(f)}</a></li>' for f in names) + '</ul>')

def _files(page, df, skipped, multilabel=False, n=50):
    body = _file_list(['predictions.csv', *page.files])
    probs = [c for c in df.columns if c.startswith('p(')]
    cols, measures = [], []
    for c in df.columns:
        if c in _COLUMNS: cols.append(f'<code>{c}</code> ({_COLUMNS[c]})')
        elif probs and c == probs[0]:
            cols.append(f"<code>{_e(c)}</code> &hellip; <code>{_e(probs[-1])}</code> "
                        f"(each {'label' if multilabel else 'class'}'s probability)")
        elif c not in probs: measures.append(f'<code>{_e(c)}</code>')
    body += (f"<p><code>predictions.csv</code>: one row per item, in the order of the data, with {', '.join(cols)} "
             f"and the uncertainty measures {', '.join(measures)}.</p>")
    if skipped:
        names = ''.join(f'<li><code>{_e(str(s))}</code></li>' for s in list(skipped)[:n])
        rest = f'<li>... and {len(skipped) - n:,} more</li>' if len(skipped) > n else ''
        body += (f'<div class="warn"><strong>{len(skipped):,} item(s) could not be read and were skipped:</strong>'
                 f'<ul>{names}{rest}</ul></div>')
    return body
