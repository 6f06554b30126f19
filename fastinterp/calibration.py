"Are the probabilities honest? Calibration error, reliability diagram, temperature scaling and MC-dropout uncertainty"

__all__ = ['CalibrationBins', 'calibration_bins', 'label_calibration_bins', 'ece_from_bins', 'mce_from_bins',
           'ece', 'mce', 'label_ece', 'brier', 'nll', 'calibration_metrics', 'reliability_diagram',
           'reliability_diagram_from_bins', 'fit_temperature', 'calibrate', 'MCDropoutPreds', 'mc_dropout']

import contextlib, math, warnings
from typing import NamedTuple

import numpy as np, pandas as pd, torch
import torch.nn as nn
import torch.nn.functional as F
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from fastcore.basics import noop, store_attr
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.learner import Learner

from .activations import activation_for
from .loaders import inference_dl
from .preds import activate, add_patch, stock_get_preds, tempered, thresh_at
from .uncertainty import check_finite, _as_probs
from .tta import item_nll, class_targets, _PassProgress, _own_bars

class CalibrationBins(NamedTuple):
    "Per-bin sums every calibration figure is computed from: sums of batches (or processes) add up to those of the whole"
    count: torch.Tensor      # (..., n_bins+1) int64: items in each bin
    confidence: torch.Tensor # (..., n_bins+1) float64: their summed confidence
    correct: torch.Tensor    # (..., n_bins+1) float64: how many were right (multilabel: how many had the label)

def _checked(probs, targs, multilabel):
    "`probs` as float (N, C) in [0, 1], `targs` as (N,) class indices or (N, L) float labels"
    p = _as_probs(probs, multiclass=False)
    if multilabel and p.ndim == 1: p = p[:, None]  # a one-output binary model
    if p.ndim != 2: raise ValueError(f"Calibration needs one row of probabilities per item, shape (N, C), got shape {tuple(p.shape)}")
    if not len(p): raise ValueError("Calibration needs at least one item")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"Calibration needs probabilities, and these range from {float(p.min()):.4g} to {float(p.max()):.4g}: "
                         f"pass what get_preds returns, not the model's raw outputs")
    t = torch.as_tensor(targs)
    if multilabel:
        if t.numel() != p.numel(): raise ValueError(f"Multi-label targets of shape {tuple(t.shape)} do not match probabilities of shape {tuple(p.shape)}")
        return p, t.reshape(p.shape).to(p.dtype)
    t = class_targets(t, p).long()
    if len(t) != len(p): raise ValueError(f"{len(t)} targets for {len(p)} rows of probabilities")
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise ValueError(f"Targets must be class indices in 0..{p.shape[1]-1}, got values from {int(t.min())} to {int(t.max())} "
                         f"(an ignore_index?)")
    return p, t

def _bin_sums(conf, hit, n_bins):
    "`CalibrationBins` of each column of (N, K) confidences `conf` and outcomes `hit`, shape (K, n_bins+1)"
    if not isinstance(n_bins, int) or n_bins < 1: raise ValueError(f"n_bins must be a whole number of bins (1 or more), got {n_bins!r}")
    # torchmetrics' bins exactly: float32 confidences bucketized on float32 edges, [i/n, (i+1)/n), and one more bin that
    # holds a confidence of exactly 1
    conf = conf.float()
    edges = torch.linspace(0, 1, n_bins + 1, device=conf.device)
    K, nb = conf.shape[1], n_bins + 1
    idx = ((torch.bucketize(conf, edges, right=True) - 1) + torch.arange(K, device=conf.device) * nb).flatten()
    sums = [torch.bincount(idx, weights=w, minlength=K * nb) for w in (None, conf.double().flatten(), hit.double().flatten())]
    return CalibrationBins(*(s.view(K, nb) for s in sums))

def calibration_bins(probs, # (N, C) probabilities; multilabel: (N, L) per label
        targs, # (N,) class indices (or one-hot rows); multilabel: (N, L) 0/1 labels
        n_bins:int=15, # Equal-width bins over [0, 1]
        multilabel:bool=False, # Each column is an independent label: bin p(label) against the label, pooled over labels
    )->CalibrationBins:
    "Per-bin counts, summed top-label confidence and summed correctness, binned as torchmetrics' calibration error bins them"
    p, t = _checked(probs, targs, multilabel)
    if multilabel: return CalibrationBins(*(s.sum(0) for s in _bin_sums(p, t, n_bins)))
    conf, pred = p.max(1)
    return CalibrationBins(*(s[0] for s in _bin_sums(conf[:, None], (pred == t)[:, None], n_bins)))

def label_calibration_bins(probs, # (N, L) probabilities of independent labels
        targs, # (N, L) 0/1 labels
        n_bins:int=15, # Equal-width bins over [0, 1]
    )->CalibrationBins:
    "Multilabel: the `CalibrationBins` of each label, shape (L, n_bins+1): p(label) binned against the label"
    return _bin_sums(*_checked(probs, targs, True), n_bins)

def ece_from_bins(bins:CalibrationBins)->torch.Tensor:
    "Expected calibration error: per bin |accuracy - mean confidence| weighted by its share of the items, summed"
    # sum_b n_b/N * |correct_b/n_b - conf_b/n_b| = sum_b |correct_b - conf_b| / N: no division by empty bins
    return (bins.correct - bins.confidence).abs().sum(-1) / bins.count.sum(-1).clamp_min(1)

def mce_from_bins(bins:CalibrationBins)->torch.Tensor:
    "Maximum calibration error: the largest |accuracy - mean confidence| of a bin (an empty bin counts as 0)"
    return ((bins.correct - bins.confidence).abs() / bins.count.clamp_min(1)).max(-1).values

def ece(probs, targs, n_bins:int=15, multilabel:bool=False)->float:
    "Expected calibration error, top-label (multilabel: pooled over labels), equal-width bins as torchmetrics"
    return float(ece_from_bins(calibration_bins(probs, targs, n_bins, multilabel)))

def mce(probs, targs, n_bins:int=15, multilabel:bool=False)->float:
    "Maximum calibration error, top-label (multilabel: pooled over labels), equal-width bins as torchmetrics"
    return float(mce_from_bins(calibration_bins(probs, targs, n_bins, multilabel)))

def label_ece(probs, targs, n_bins:int=15)->torch.Tensor:
    "Multilabel: (L,) expected calibration error of each label, p(label) against the label"
    return ece_from_bins(label_calibration_bins(probs, targs, n_bins))

def brier(probs, targs, multilabel:bool=False)->float:
    "Brier score: mean squared distance from the one-hot target, summed over classes (0 to 2); multilabel: mean over labels (0 to 1)"
    p, t = _checked(probs, targs, multilabel)
    if not multilabel: t = F.one_hot(t, p.shape[1])
    d = (p.double() - t.double()) ** 2
    return float(d.mean() if multilabel else d.sum(1).mean())

def nll(probs, targs, multilabel:bool=False)->float:
    "Mean negative log-likelihood of the targets in nats (multilabel: binary cross-entropy averaged over labels), finite as `item_nll` keeps it"
    p, t = _checked(probs, targs, multilabel)
    return float(item_nll(p, t, multilabel).double().mean())

def calibration_metrics(probs, targs,
        n_bins:int=15, # Equal-width bins of ECE and MCE
        multilabel:bool=False, # Each column is an independent label
        thresh:float=0.5, # Multilabel: decision threshold of the accuracy
        labels=None, # Multilabel: names of the labels, for `label_ece`
    )->dict:
    "ECE, MCE, Brier score, NLL and accuracy (multilabel: of every label decision, plus each label's ECE)"
    p, t = _checked(probs, targs, multilabel)
    bins = calibration_bins(p, t, n_bins, multilabel)
    thresh = torch.as_tensor(thresh)  # one for all, one per label (L,), or one per decision (N, L)
    if multilabel and thresh.numel() == p.numel() > 1: thresh = thresh.reshape(p.shape)
    acc = ((p > thresh) == t.bool()).double().mean() if multilabel else (p.argmax(1) == t).double().mean()
    res = {'ece': float(ece_from_bins(bins)), 'mce': float(mce_from_bins(bins)), 'brier': brier(p, t, multilabel),
           'nll': nll(p, t, multilabel), 'accuracy': float(acc)}
    if multilabel: res['label_ece'] = pd.Series(label_ece(p, t, n_bins).numpy(), index=labels, name='ece')
    return res

def _pct(x):
    "`x` as a percentage with 2 decimals; 100.00% and 0.00% only for exactly 1 and 0 (else 4 decimals, or a bound)"
    for d in (2, 4):
        s = f"{100 * x:.{d}f}"
        if not 0 < x < 1 or 0 < float(s) < 100: return s + '%'
    return '>99.9999%' if x > 0.5 else '<0.0001%'
def _count(k): return f'{k}' if k < 1000 else f'{k / 1000:.1f}k' if k < 9950 else f'{k / 1000:.0f}k'
def _items(k): return f"{k:,} item{'' if k == 1 else 's'}"

# Beside each panel: bars above the diagonal (under-confident bins) and below it (over-confident ones) can fill every corner
_BESIDE = dict(loc='upper left', bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8, frameon=False)
# Opaque colours, so that a gap reads the same over a bar (under-confident) as over the white above it (over-confident)
_BAR, _FEW, _EDGE = '#3b75af', '#b4cde6', '#1d3f63'
_GAP, _GAP_FEW, _RED = '#f5c9c9', '#fbe9e9', '#d62728'

def reliability_diagram(probs, targs,
        n_bins:int=15, # Equal-width confidence bins
        multilabel:bool=False, # Each column is an independent label: p(label) against how often the label is on, pooled
        title:str|None=None, # First line of the title; the figures follow it
        figsize=(7.2, 6.4), # Size of the figure, legends beside the panels included
        min_count:int|None=None, # Bins of fewer items are drawn lighter (they say little); max(5, 1% of items)
    ):
    "Reliability diagram (Guo et al. 2017): accuracy per confidence bin against the diagonal, a histogram beneath"
    bins = calibration_bins(probs, targs, n_bins, multilabel)
    return reliability_diagram_from_bins(bins, multilabel, title, figsize, min_count)

def _mce_line(gap, count, few, min_count):
    "What the MCE is over: the non-empty bins, the worst one's size, and the MCE of the bins that are not few"
    worst = int(np.argmax(gap))
    line = (f"MCE {_pct(float(gap[worst]))}: largest gap of the {len(gap)} non-empty bins, "
            f"in one of {_items(int(count[worst]))}")
    if few.any() and (~few).any():
        line += f"\nover the {int((~few).sum())} bins of {min_count}+ items only: MCE {_pct(float(gap[~few].max()))}"
    return line

def reliability_diagram_from_bins(bins:CalibrationBins, # Sums of one set of predictions, shape (n_bins+1,), as streamed
        multilabel:bool=False, # The sums pool independent labels: p(label) against how often the label is on
        title:str|None=None, # First line of the title; the figures follow it
        figsize=(7.2, 6.4), # Size of the figure, legends beside the panels included
        min_count:int|None=None, # Bins of fewer items are drawn lighter (they say little); max(5, 1% of items)
    ):
    "`reliability_diagram` drawn from per-bin sums, which batches and processes add up: no item needs to be kept"
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
                             label=f'Bin of fewer than {min_count} items:\nsays little'))
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel=obs.capitalize())
    ax.legend(handles=handles, **_BESIDE)
    ax.grid(alpha=0.25, zorder=0)
    head = title or ('Reliability diagram' + (', all labels pooled' if multilabel else ''))
    ax.set_title(f"{head}\nECE {_pct(float(ece_from_bins(bins)))} · {n_bins} bins\n"
                 f"{_mce_line(np.abs(acc - mconf), k, few, min_count)}", fontsize=10)

    hbars = hx.bar(left, k / n, w, align='edge', color=np.where(few, '0.82', '0.6'), edgecolor='white', linewidth=0.8,
                   zorder=2)
    for f, b in zip(few, hbars):
        if f: b.set(hatch='..', edgecolor='0.6')
    for x, c in zip(left + w / 2, k):  # a bar of 3 items says little: every bin shows how many it holds
        hx.text(x, c / n * 1.4, _count(c), ha='center', va='bottom', fontsize=7, color='0.25', zorder=4,
                bbox=dict(boxstyle='square,pad=0.1', fc='white', ec='none', alpha=0.8))  # readable where a line crosses it
    hx.axvline(overall, color=_BAR, linewidth=1.5, label=f'{obs} {_pct(overall)}', zorder=3)
    hx.axvline(mean_conf, color=_RED, linestyle='--', linewidth=1.5, label=f'{conf_name} {_pct(mean_conf)}', zorder=3)
    hx.legend(**_BESIDE)
    hx.set(yscale='log', ylim=(min(0.5 / n, 0.1), 6), ylabel=f"share of {n:,}\n{'predictions' if multilabel else 'items'} (log)",
           xlabel='Predicted probability, every label' if multilabel else 'Confidence (top-label probability)')
    hx.set_yticks([y for y in (1e-4, 1e-3, 1e-2, 1e-1, 1) if y >= 0.5 / n])
    hx.grid(alpha=0.25, zorder=0, axis='y')
    return fig

# --- temperature scaling
def _nll_slope(z, targs, beta, multilabel):
    "First and second derivative in beta = 1/T of the mean NLL of softmax(beta z) (sigmoid per label): (K,) each"
    if multilabel:
        s = torch.sigmoid(z * beta)
        return ((s - targs) * z).mean(0), (s * (1 - s) * z * z).mean(0)
    p = torch.softmax(z * beta, 1)
    ez = (p * z).sum(1)
    g = (ez - z.gather(1, targs[:, None])[:, 0]).mean()
    return g[None], ((p * z * z).sum(1) - ez * ez).mean()[None]

def fit_temperature(out, # (N, C) raw outputs, logits or log-probabilities; multilabel: (N, L) logits
        targs, # (N,) class indices; multilabel: (N, L) 0/1 labels
        multilabel:bool=False, # One temperature per label (sigmoid), instead of one for the softmax
        bounds=(1e-2, 1e2), # Range of T searched
        tol:float=1e-9, # Relative precision of 1/T
    ):
    "Temperature T minimizing the NLL of softmax(out / T): a float; multilabel: (L,) tensor, one per label, for sigmoid(out / T)"
    z = check_finite(torch.as_tensor(out), 'model outputs').double()
    if multilabel and z.ndim == 1: z = z[:, None]
    if z.ndim != 2: raise ValueError(f"Temperature scaling needs one row of outputs per item, shape (N, C), got shape {tuple(z.shape)}")
    t = torch.as_tensor(targs)
    t = t.reshape(z.shape).double() if multilabel else class_targets(t, z).long()
    # the NLL is convex in beta = 1/T: its slope rises through 0 once, so Newton's method on the slope, kept inside
    # a bracket that shrinks every step (bisection in log beta when Newton would leave it), finds the minimum
    K = z.shape[1] if multilabel else 1
    lo, hi = (torch.full((K,), 1 / b, dtype=z.dtype) for b in (bounds[1], bounds[0]))
    at_lo, at_hi = _nll_slope(z, t, lo, multilabel)[0] >= 0, _nll_slope(z, t, hi, multilabel)[0] <= 0
    beta = torch.ones_like(lo).clamp(lo, hi)
    for _ in range(200):
        g, h = _nll_slope(z, t, beta, multilabel)
        lo, hi = torch.where(g < 0, beta, lo), torch.where(g > 0, beta, hi)
        step = beta - g / h
        nxt = torch.where((h > 0) & (step > lo) & (step < hi), step, (lo * hi).sqrt())
        done = ((nxt - beta).abs() <= tol * beta) | (g == 0)
        beta = torch.where(g == 0, beta, nxt)
        if done.all(): break
    beta = torch.where(at_lo, 1 / bounds[1], torch.where(at_hi, 1 / bounds[0], beta))
    if at_hi.any():
        warnings.warn(f"Every held-out item{' of some labels' if multilabel else ''} is predicted right, so the NLL keeps falling as T "
                      f"shrinks: T stopped at the bound {bounds[0]}. Fit on a larger held-out set, one with mistakes.", stacklevel=2)
    if at_lo.any():
        warnings.warn(f"The outputs{' of some labels' if multilabel else ''} do no better than chance on this data: T went to "
                      f"the bound {bounds[1]}, which makes every prediction nearly uniform.", stacklevel=2)
    T = (1 / beta).float()
    return T if multilabel else float(T[0])

def _scalable(learn):
    "The loss's registry record, if temperature scaling applies to its model's outputs; else a clear error"
    rec = activation_for(learn.loss_func)
    if rec.kind == 'regression':
        raise TypeError(f"Temperature scaling calibrates class probabilities, and {rec.loss} is a regression loss: the model "
                        f"outputs values, not class scores, so there are no probabilities to calibrate.")
    if rec.kind not in ('multiclass', 'multilabel'):
        raise TypeError(f"fastinterp does not know the final activation of {rec.loss}, so it cannot tell whether the model outputs "
                        f"logits, which temperature scaling divides by T. Register the loss first, e.g. "
                        f"fastinterp.register_activation(YourLoss, 'softmax', kind='multiclass').")
    if rec.expects == 'probabilities':
        raise TypeError(f"The model trained with {rec.loss} outputs probabilities (it ends in a sigmoid or softmax), and temperature "
                        f"scaling divides the logits before that activation. Drop the model's last activation and train with "
                        f"the loss that applies it (nn.BCEWithLogitsLoss, nn.CrossEntropyLoss).")
    return rec

_MIN_HALF = 20  # fewest items in each half of a cross-fitted judgement of T

def _cross_fitted(out, targs, rec, seed):
    "Each half of the items tempered by the T fitted on the other half, and each item's decision threshold at its T"
    ml = rec.kind == 'multilabel'
    order = torch.randperm(len(out), generator=torch.Generator().manual_seed(seed))
    halves = order[:len(out) // 2], order[len(out) // 2:]
    after, thresh = torch.empty_like(out), torch.full(out.shape if ml else (len(out),), float(rec.thresh))
    for fit, judge in (halves, halves[::-1]):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # a half stopping at a bound: the fit on every item says so
            T = fit_temperature(out[fit], targs[fit], ml)
        after[judge] = tempered(out[judge], T, rec)
        if ml: thresh[judge] = torch.as_tensor(thresh_at(rec.thresh, T)).float()
    return after, thresh

def calibrate(self:Learner,
        dl=None, # Held-out labelled `DataLoader` to fit T on; the validation set if None (`ds_idx`), as Guo et al. (2017)
        ds_idx:int=1, # Index of `self.dls` when `dl` is None
        n_bins:int=15, # Bins of the ECE reported
        quiet:bool=False, # Do not print the summary
        held_out:bool=True, # Judge T on items its fit did not see: each half tempered by the T of the other half
        seed:int=0, # Seed of the split into halves
    )->pd.DataFrame:
    "Fit a temperature T (least NLL) used by get_preds, predict, tta and interpretation; figures before and after"
    rec = _scalable(self)
    out, targs = stock_get_preds(self, ds_idx=ds_idx, dl=dl, act=noop)[:2]
    if not isinstance(targs, torch.Tensor) or not targs.numel():
        raise ValueError("calibrate needs targets, and this DataLoader is unlabelled: pass a labelled held-out DataLoader")
    out = check_finite(out, 'model outputs').float()
    ml = rec.kind == 'multilabel'
    if (out.ndim > 2 or rec.axis % out.ndim != out.ndim - 1) and not (ml and out.ndim == 1):
        raise ValueError(f"calibrate needs one row of class scores per item, shape (N, C), got shape {tuple(out.shape)}")
    rec.check(out)
    before = rec.act(out)
    if not torch.allclose(before, tempered(out, 1., rec), atol=1e-5):
        raise TypeError(f"The activation of {rec.loss} ({rec.name}) is not a {'sigmoid' if ml else 'softmax'} of the model's "
                        f"outputs, and temperature scaling is defined for those.")
    T = fit_temperature(out, targs, ml)  # the one stored: fitted on every item
    cross = held_out and len(out) >= 2 * _MIN_HALF
    if cross: after, thresh = _cross_fitted(out, targs, rec, seed)
    else: after, thresh = tempered(out, T, rec), thresh_at(rec.thresh, T) if ml else rec.thresh
    labels = list(getattr(self.dls, 'vocab', None) or []) if ml else None
    rows = [calibration_metrics(before, targs, n_bins, ml, rec.thresh), calibration_metrics(after, targs, n_bins, ml, thresh)]
    res = pd.DataFrame([{k: v for k, v in r.items() if k != 'label_ece'} for r in rows], index=['before', 'after'])
    res.attrs['judged'] = 'held out' if cross else 'in-sample'
    self.temperature = T
    if not quiet: print(_summary(T, res, len(out), dl, ds_idx, labels, cross, held_out))
    return res

def _summary(T, res, n, dl, ds_idx, labels, cross, held_out):
    "What `calibrate` prints: T, what it was fitted on, the figures at T = 1 and at T, and which items they are of"
    on = 'the given DataLoader' if dl is not None else {0: 'the training set', 1: 'the validation set'}.get(ds_idx, f'dls[{ds_idx}]')
    if isinstance(T, float): head = f"Temperature T = {T:.4g}"
    else:
        names = labels if labels and len(labels) == len(T) else range(len(T))
        head = 'Temperature per label: ' + ', '.join(f"{l} {x:.4g}" for l, x in zip(names, T.tolist()))
    lines = [f"{head}, fitted on {n:,} items of {on} (least NLL)"]
    if cross: lines.append(f"Before and after on the same {n:,} items, each half tempered by the T fitted on the other "
                           f"half: the fit never saw the items it is judged on")
    else:
        why = 'held_out=False' if not held_out else f'too few items (fewer than {2 * _MIN_HALF}) to hold half out'
        lines.append(f"IN-SAMPLE ({why}): 'after' is measured on the items T was fitted on, so it looks better than "
                     f"on new data. Judge T on other labelled data: learn.calibrate(dl=...) on one set, "
                     f"ClassificationInterpretation.from_learner(learn, dl=other).calibration()")
    lines += [res.to_string(float_format=lambda x: f'{x:.4f}'),
              "A temperature changes no prediction (argmax; per label, the threshold moves with T), only how sure each "
              "one is. learn.temperature = None removes it."]
    return '\n'.join(lines)

add_patch(Learner, 'calibrate', calibrate)

# --- MC dropout
def _dropouts(model):
    "The model's dropout layers: torch's, and modules whose class name ends in 'Dropout' (fastai's RNNDropout, ...)"
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__.endswith('Dropout')]

def _entropy(p, multilabel):
    "Entropy in nats of each row of class probabilities, or (multilabel) of each label's Bernoulli"
    if multilabel: return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    return -torch.special.xlogy(p, p).sum(1)

def _mc_measures(mean, sq, ent, multilabel):
    "(mutual information, variance) per item from the pass means of p, p^2 and the entropy"
    var = (sq - mean * mean).clamp_min(0)
    mi = (_entropy(mean, multilabel) - ent).clamp_min(0)  # >= 0 in exact arithmetic (Jensen)
    if multilabel: return (mi / math.log(2)).amax(1), var.amax(1)
    C = mean.shape[1]
    return (mi / math.log(C) if C > 1 else mi), var.gather(1, mean.argmax(1, keepdim=True))[:, 0]

class _MCDropout(Callback):
    "During inference, `n` forward passes of each batch with only the dropout layers on, reduced to per-item results at once"
    order = TrainEvalCallback.order + 1  # after TrainEvalCallback has put the whole model in eval mode
    def __init__(self, n, rec, drops): store_attr(); self.res = []

    def before_validate(self):
        for m in self.drops: m.train()

    def after_pred(self):
        ml, sums = self.rec.kind == 'multilabel', None
        for i in range(self.n):
            out = self.pred if i == 0 else self.model(*self.xb)  # fastai's own forward pass is the first
            p = activate(self.learn, out.float(), rec=self.rec)[0].double()
            if ml and p.ndim == 1: p = p[:, None]
            terms = (p, p * p, _entropy(p, ml))
            sums = terms if sums is None else [s + x for s, x in zip(sums, terms)]
        mean, sq, ent = (s / self.n for s in sums)
        self.res.append(self.learn.to_detach(tuple(x.float() for x in (mean, *_mc_measures(mean, sq, ent, ml)))))

class MCDropoutPreds(NamedTuple):
    "Per item: the mean prediction over the dropout passes and its epistemic uncertainty"
    probs: torch.Tensor        # (N, C) mean probabilities; multilabel: (N, L)
    targs: torch.Tensor|None   # Targets; None for an unlabelled DataLoader
    mutual_info: torch.Tensor  # (N,) BALD: entropy of the mean minus mean entropy, / log C, in [0, 1] (multilabel: largest label's, / log 2)
    variance: torch.Tensor     # (N,) variance over the passes of p(predicted class) (multilabel: largest over labels), in [0, 0.25]

def mc_dropout(learn, # A classifier whose model has dropout layers
        n:int=20, # Stochastic forward passes per item
        dl=None, # `DataLoader` to predict on; `learn.dls[ds_idx]` if None
        ds_idx:int=1, # Index of `learn.dls` when `dl` is None
        seed:int|None=None, # Seed of the dropout masks, for a repeatable result (the global RNG is left as it was)
        progress:bool=True, # Show a progress bar over the batches
    )->MCDropoutPreds:
    "MC dropout (Gal & Ghahramani 2016): `n` passes with only dropout on (BatchNorm stays in eval), in O(N x C) memory"
    if not isinstance(n, int) or n < 2: raise ValueError(f"MC dropout needs 2 or more passes to measure disagreement, got n={n!r}")
    rec = activation_for(learn.loss_func)
    if rec.kind not in ('multiclass', 'multilabel'):
        raise TypeError(f"MC dropout measures the spread of class probabilities, and {rec.loss} is a {rec.kind} loss")
    drops = _dropouts(learn.model)
    if not any(getattr(m, 'p', 1) > 0 for m in drops):
        raise ValueError(f"MC dropout needs dropout layers with p > 0, and {type(learn.model).__name__} has "
                         f"{'only p=0 ones' if drops else 'none'} (nn.Dropout, nn.Dropout2d, ...). Dropout called as F.dropout "
                         f"inside forward cannot be switched on from outside: use an nn.Dropout module.")
    dl = inference_dl(learn.dls[ds_idx] if dl is None else dl)  # a torch DataLoader: in data set order
    if not len(dl): raise ValueError("Cannot run MC dropout over an empty DataLoader: it holds no items")
    # the callback keeps items in the order the batches come: make it the dataset's
    if getattr(dl, 'shuffle', False) or getattr(dl, 'drop_last', False): dl = dl.new(shuffle=False, drop_last=False)
    cb = _MCDropout(n, rec, drops)
    # the passes run batch by batch in one epoch: one bar over the batches, that says so
    bar = [_PassProgress(f'MC dropout: {n} passes per batch')] if progress and hasattr(learn, 'progress') else []
    with (torch.random.fork_rng() if seed is not None else contextlib.nullcontext()), _own_bars(learn):
        if seed is not None: torch.manual_seed(seed)
        try: res = stock_get_preds(learn, dl=dl, act=noop, with_preds=False, reorder=False, cbs=[cb] + bar)
        finally:
            for m in drops: m.eval()
    probs, mi, var = (torch.cat(x) for x in zip(*cb.res))
    targs = res[1] if isinstance(res[1], torch.Tensor) and res[1].numel() else None
    return MCDropoutPreds(probs, targs, mi, var)
