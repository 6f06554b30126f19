"Are the probabilities honest? Calibration error from bin sums, Brier score, NLL, and the temperature that fits best"

__all__ = ['CalibrationBins', 'calibration_bins', 'label_calibration_bins', 'ece_from_bins', 'mce_from_bins',
           'ece', 'mce', 'label_ece', 'brier', 'nll', 'calibration_metrics', 'metrics_from_sums', 'fit_temperature']

import warnings

import pandas as pd, torch

from .core import (CalibrationBins, bin_sums, brier_terms, check_finite, class_targets, ece_from_bins,
                   item_nll, mce_from_bins)

def _checked(probs, targs, multilabel):
    "`probs` as float (N, C) in [0, 1], `targs` as (N,) classes or (N, L) float labels: each input's one check"
    p = torch.as_tensor(probs)
    p = p.double() if p.dtype == torch.float64 else p.float()  # as `as_probs` has them, its finite check below
    if multilabel and p.ndim == 1: p = p[:, None]  # a one-output binary model
    if p.ndim != 2:
        raise ValueError(f"Calibration needs one row of probabilities per item, shape (N, C), "
                         f"got shape {tuple(p.shape)}")
    if not len(p): raise ValueError("Calibration needs at least one item")
    lo, hi = torch.aminmax(p)  # one pass for both checks: NaN and inf show in the min or max
    if not (torch.isfinite(lo) and torch.isfinite(hi)): check_finite(p, 'probabilities')  # says how many rows
    if lo < 0 or hi > 1:
        raise ValueError(f"Calibration needs probabilities, and these range from {float(lo):.4g} to {float(hi):.4g}: "
                         f"pass what get_preds returns, not the model's raw outputs")
    t = torch.as_tensor(targs)
    if multilabel:
        if t.numel() != p.numel():
            raise ValueError(f"Multi-label targets of shape {tuple(t.shape)} do not match probabilities of shape "
                             f"{tuple(p.shape)}")
        return p, t.reshape(p.shape).to(p.dtype)
    t = class_targets(t, p).long()
    if len(t) != len(p): raise ValueError(f"{len(t)} targets for {len(p)} rows of probabilities")
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise ValueError(f"Targets must be class indices in 0..{p.shape[1]-1}, got values from {int(t.min())} to "
                         f"{int(t.max())} (an ignore_index?)")
    return p, t

# --- on checked inputs
def _bins(p, t, n_bins, multilabel):
    if multilabel: return CalibrationBins(*(s.sum(0) for s in bin_sums(p, t, n_bins)))
    conf, pred = p.max(1)
    return CalibrationBins(*(s[0] for s in bin_sums(conf[:, None], (pred == t)[:, None], n_bins)))

def _brier(p, t, multilabel):
    if multilabel: return float(((p.double() - t.double()) ** 2).mean())
    return float(brier_terms(p, t).mean())

def _nll(p, t, multilabel): return float(item_nll(p, t, multilabel).double().mean())

# --- the public measures: each checks its inputs once
def calibration_bins(probs, # (N, C) probabilities; multilabel: (N, L) per label
        targs, # (N,) class indices (or one-hot rows); multilabel: (N, L) 0/1 labels
        n_bins:int=15, # Equal-width bins over [0, 1]
        multilabel:bool=False, # Each column is an independent label: bin p(label) against the label, pooled over labels
    )->CalibrationBins:
    """Per-bin counts, summed top-label confidence and summed correctness, binned as torchmetrics' calibration error

    >>> p, y = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 0])
    >>> b = calibration_bins(p, y, n_bins=5)  # top-label confidence 0.9, 0.8, 0.7, 0.6 against right or wrong
    >>> b.count.tolist(), b.correct.tolist()
    ([0, 0, 0, 2, 2, 0], [0.0, 0.0, 0.0, 2.0, 1.0, 0.0])
    """
    return _bins(*_checked(probs, targs, multilabel), n_bins, multilabel)

def label_calibration_bins(probs, # (N, L) probabilities of independent labels
        targs, # (N, L) 0/1 labels
        n_bins:int=15, # Equal-width bins over [0, 1]
    )->CalibrationBins:
    """Multilabel: the `CalibrationBins` of each label, shape (L, n_bins+1): p(label) binned against the label

    >>> b = label_calibration_bins(torch.tensor([[0.9, 0.2], [0.1, 0.7]]), torch.tensor([[1, 0], [0, 1]]), n_bins=2)
    >>> b.count.tolist()  # one row of bins per label
    [[1, 1, 0], [1, 1, 0]]
    """
    return bin_sums(*_checked(probs, targs, True), n_bins)

def ece(probs, targs, n_bins:int=15, multilabel:bool=False)->float:
    """Expected calibration error, top-label (multilabel: pooled over labels), equal-width bins as torchmetrics

    >>> p, y = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 0])
    >>> round(ece(p, y, n_bins=5), 4)  # bins (0.6, 0.7): 2 right of 1.3; (0.8, 0.9): 1 right of 1.7
    0.35
    """
    return float(ece_from_bins(calibration_bins(probs, targs, n_bins, multilabel)))

def mce(probs, targs, n_bins:int=15, multilabel:bool=False)->float:
    """Maximum calibration error, top-label (multilabel: pooled over labels), equal-width bins as torchmetrics

    >>> p, y = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 0])
    >>> round(mce(p, y, n_bins=5), 4)  # the (0.8, 0.9) bin: 50% right at a mean confidence of 85%
    0.35
    """
    return float(mce_from_bins(calibration_bins(probs, targs, n_bins, multilabel)))

def label_ece(probs, targs, n_bins:int=15)->torch.Tensor:
    """Multilabel: (L,) expected calibration error of each label, p(label) against the label

    >>> label_ece(torch.tensor([[0.9, 0.2], [0.1, 0.7]]), torch.tensor([[1, 0], [0, 1]]), n_bins=2)
    tensor([0.1000, 0.2500], dtype=torch.float64)
    """
    return ece_from_bins(label_calibration_bins(probs, targs, n_bins))

def brier(probs, targs, multilabel:bool=False)->float:
    """Brier score: mean squared distance to the one-hot target, summed over classes (0 to 2); multilabel: mean (0 to 1)

    >>> round(brier(torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([0])), 4)  # 0.3^2 + 0.2^2 + 0.1^2
    0.14
    """
    return _brier(*_checked(probs, targs, multilabel), multilabel)

def nll(probs, targs, multilabel:bool=False)->float:
    """Mean negative log-likelihood of the targets in nats (multilabel: binary cross-entropy averaged over labels)

    >>> round(nll(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])), 4)  # -(log 0.5 + log 0.75) / 2
    0.4904
    """
    return _nll(*_checked(probs, targs, multilabel), multilabel)

def metrics_from_sums(bins:CalibrationBins, # Bin sums of the top-label confidence
        brier_sum:float, # Sum over the items of their Brier terms
        nll_sum:float, # Sum over the items of their NLL
    )->dict:
    """ECE, MCE, Brier score, NLL and accuracy from sums over the items: what batches and processes add up

    >>> p, y = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 0])
    >>> from fastinterp.core import brier_terms, item_nll
    >>> m = metrics_from_sums(calibration_bins(p, y, 5), float(brier_terms(p, y).sum()), float(item_nll(p, y).sum()))
    >>> {k: round(v, 4) for k, v in m.items()}  # as calibration_metrics has them from the items
    {'ece': 0.35, 'mce': 0.35, 'brier': 0.45, 'nll': 0.6456, 'accuracy': 0.75}
    """
    n = int(bins.count.sum())
    return {'ece': float(ece_from_bins(bins)), 'mce': float(mce_from_bins(bins)), 'brier': brier_sum / n,
            'nll': nll_sum / n, 'accuracy': float(bins.correct.sum()) / n}

def calibration_metrics(probs, targs,
        n_bins:int=15, # Equal-width bins of ECE and MCE
        multilabel:bool=False, # Each column is an independent label
        thresh:float=0.5, # Multilabel: decision threshold of the accuracy
        labels=None, # Multilabel: names of the labels, for `label_ece`
    )->dict:
    """ECE, MCE, Brier score, NLL and accuracy (multilabel: of every label decision, plus each label's ECE)

    >>> p, y = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), torch.tensor([0, 1, 1, 0])
    >>> {k: round(v, 4) for k, v in calibration_metrics(p, y, n_bins=5).items()}
    {'ece': 0.35, 'mce': 0.35, 'brier': 0.45, 'nll': 0.6456, 'accuracy': 0.75}
    """
    p, t = _checked(probs, targs, multilabel)
    bins = _bins(p, t, n_bins, multilabel)
    if not multilabel:
        return metrics_from_sums(bins, float(brier_terms(p, t).sum()), float(item_nll(p, t).double().sum()))
    thresh = torch.as_tensor(thresh)  # one for all, one per label (L,), or one per decision (N, L)
    if thresh.numel() == p.numel() > 1: thresh = thresh.reshape(p.shape)
    return {'ece': float(ece_from_bins(bins)), 'mce': float(mce_from_bins(bins)), 'brier': _brier(p, t, True),
            'nll': _nll(p, t, True), 'accuracy': float(((p > thresh) == t.bool()).double().mean()),
            'label_ece': pd.Series(ece_from_bins(bin_sums(p, t, n_bins)).numpy(), index=labels, name='ece')}

# --- temperature scaling
_BLOCK = 2 ** 21  # values per block of rows in a pass over the logits: temporaries of 16 MB in float64, whatever N x C
_F32_TOL = 1e-4  # float32 passes stop at a relative Newton step this small: the next, in float64, lands within ~1e-8

def _nll_slope(z, targs, beta, multilabel, dtype=torch.float64, fixed=None):
    """First and second derivative in beta = 1/T of the mean NLL of softmax(beta z) (sigmoid per label): (K,) each.
    One pass over `z`, block of rows by block, computed in `dtype`, summed in float64. `fixed`: `_fixed(z, targs)`"""
    rows, n = max(1, _BLOCK // max(1, z.shape[1])), len(z)
    g = h = 0
    if multilabel:
        for zb, tb in zip(z.split(rows), targs.split(rows)):
            zb = zb.to(dtype)
            s = torch.sigmoid(zb * beta.to(dtype))
            g = g + ((s - tb) * zb).sum(0, dtype=torch.float64)
            h = h + s.mul_(1 - s).mul_(zb).mul_(zb).sum(0, dtype=torch.float64)
        return g / n, h / n
    top, z_t = _fixed(z, targs) if fixed is None else fixed
    b = float(beta)
    for zb, mb in zip(z.split(rows), top.split(rows)):
        zb = zb.to(dtype)
        # w = exp(beta (z - max z)), unnormalized softmax: row sums of w, w z and w z^2 give E[z] and E[z^2]
        w = (zb - mb.to(dtype)[:, None]).mul_(b).exp_()
        s0 = w.sum(1).double()
        ez = torch.linalg.vecdot(w, zb).double() / s0
        ez2 = torch.linalg.vecdot(w.mul_(zb), zb).double() / s0
        g = g + ez.sum()
        h = h + (ez2 - ez * ez).sum()
    return ((g - z_t) / n).reshape(1), (h / n).reshape(1)

def _fixed(z, targs):
    "What every pass of `_nll_slope` over softmax logits `z` uses and beta does not change: row maxima, sum of z_target"
    return z.amax(1), z.gather(1, targs[:, None]).sum(dtype=torch.float64)

def _newton(z, t, beta, lo, hi, multilabel, tol, dtype, fixed, max_iter=100):
    "Newton's method on the slope of the NLL in beta, kept inside the bracket [lo, hi] that every step shrinks"
    for _ in range(max_iter):
        g, h = _nll_slope(z, t, beta, multilabel, dtype, fixed)
        lo, hi = torch.where(g < 0, beta, lo), torch.where(g > 0, beta, hi)
        step = beta - g / h
        nxt = torch.where((h > 0) & (step >= lo) & (step <= hi), step, (lo * hi).sqrt())  # at an end: converged
        done = ((nxt - beta).abs() <= tol * beta) | (g == 0)
        beta = torch.where(g == 0, beta, nxt)
        if done.all(): break
    return beta, lo, hi

def fit_temperature(out, # (N, C) raw outputs, logits or log-probabilities; multilabel: (N, L) logits
        targs, # (N,) class indices; multilabel: (N, L) 0/1 labels
        multilabel:bool=False, # One temperature per label (sigmoid), instead of one for the softmax
        bounds=(1e-2, 1e2), # Range of T searched
        tol:float=1e-9, # Relative precision of 1/T
    ):
    """Temperature T minimizing the NLL of softmax(out / T): a float; multilabel: (L,), one per label, of sigmoid(out/T)

    >>> logits = torch.tensor([[4., 0.], [3., 0.], [0., 2.], [2., 0.], [0., 3.], [1., 0.]])
    >>> round(fit_temperature(logits, torch.tensor([0, 1, 1, 0, 1, 1])), 2)  # over-confident: T > 1 softens it
    2.77
    >>> round(fit_temperature(logits / 5, torch.tensor([0, 0, 1, 0, 1, 1])), 2)  # under-confident: T < 1 sharpens
    0.19
    """
    z = check_finite(torch.as_tensor(out), 'model outputs')
    z = z if z.dtype in (torch.float32, torch.float64) else z.float()  # float16 logits: passes in float32
    if multilabel and z.ndim == 1: z = z[:, None]
    if z.ndim != 2:
        raise ValueError(f"Temperature scaling needs one row of outputs per item, shape (N, C), "
                         f"got shape {tuple(z.shape)}")
    t = torch.as_tensor(targs)
    t = t.reshape(z.shape).double() if multilabel else class_targets(t, z).long()
    # the NLL is convex in beta = 1/T: its slope rises through 0 once, so Newton's method on the slope, kept inside
    # a bracket that shrinks every step (bisection in log beta when Newton would leave it), finds the minimum;
    # float32 passes get close (a relative step of 1e-4), float64 passes polish to `tol`
    K = z.shape[1] if multilabel else 1
    b_lo, b_hi = (torch.full((K,), 1 / b, dtype=torch.float64) for b in (bounds[1], bounds[0]))
    beta, lo, hi = torch.ones_like(b_lo).clamp(b_lo, b_hi), b_lo, b_hi
    moved_lo = moved_hi = torch.zeros(K, dtype=torch.bool)  # a step saw a slope of the sign that moves that end
    fixed = None if multilabel else _fixed(z, t)
    if z.dtype != torch.float64:  # its bracket is not kept: float32 slopes next to the minimum may have the wrong sign
        beta, lo32, hi32 = _newton(z, t, beta, lo, hi, multilabel, max(tol, _F32_TOL), torch.float32, fixed)
        moved_lo, moved_hi = lo32 > b_lo, hi32 < b_hi
    beta, lo, hi = _newton(z, t, beta, lo, hi, multilabel, tol, torch.float64, fixed)
    # a minimum beyond a bound: the slope keeps its sign over the whole range. Only where no step saw the other sign
    # (the bracket's end still at the bound) can it be so, and only there is the slope at the bound computed
    moved_lo, moved_hi = moved_lo | (lo > b_lo), moved_hi | (hi < b_hi)
    no = torch.zeros(K, dtype=torch.bool)
    at_lo = _nll_slope(z, t, b_lo, multilabel, fixed=fixed)[0] >= 0 if not moved_lo.all() else no
    at_hi = _nll_slope(z, t, b_hi, multilabel, fixed=fixed)[0] <= 0 if not moved_hi.all() else no
    beta = torch.where(at_lo, b_lo, torch.where(at_hi, b_hi, beta))
    some = ' of some labels' if multilabel else ''
    if at_hi.any():
        warnings.warn(f"Every held-out item{some} is predicted right, so the NLL keeps falling as T shrinks: T stopped "
                      f"at the bound {bounds[0]}. Fit on a larger held-out set, one with mistakes.", stacklevel=2)
    if at_lo.any():
        warnings.warn(f"The outputs{some} do no better than chance on this data: T went to the bound {bounds[1]}, "
                      f"which makes every prediction nearly uniform.", stacklevel=2)
    T = (1 / beta).float()
    return T if multilabel else float(T[0])
