"Are the probabilities honest? Calibration error, reliability diagram, temperature scaling and MC-dropout uncertainty"

__all__ = ['CalibrationBins', 'calibration_bins', 'label_calibration_bins', 'ece_from_bins', 'mce_from_bins',
           'ece', 'mce', 'label_ece', 'brier', 'nll', 'calibration_metrics']

from typing import NamedTuple

import pandas as pd, torch
import torch.nn.functional as F

from .uncertainty import check_finite
from .tta import item_nll, class_targets

class CalibrationBins(NamedTuple):
    "Per-bin sums every calibration figure is computed from: sums of batches (or processes) add up to those of the whole"
    count: torch.Tensor      # (..., n_bins+1) int64: items in each bin
    confidence: torch.Tensor # (..., n_bins+1) float64: their summed confidence
    correct: torch.Tensor    # (..., n_bins+1) float64: how many were right (multilabel: how many had the label)

def _checked(probs, targs, multilabel):
    "`probs` as float (N, C) in [0, 1], `targs` as (N,) class indices or (N, L) float labels"
    p = check_finite(torch.as_tensor(probs), 'probabilities')
    p = p.double() if p.dtype == torch.float64 else p.float()
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
    acc = ((p > thresh) == t.bool()).double().mean() if multilabel else (p.argmax(1) == t).double().mean()
    res = {'ece': float(ece_from_bins(bins)), 'mce': float(mce_from_bins(bins)), 'brier': brier(p, t, multilabel),
           'nll': nll(p, t, multilabel), 'accuracy': float(acc)}
    if multilabel: res['label_ece'] = pd.Series(label_ece(p, t, n_bins).numpy(), index=labels, name='ece')
    return res
