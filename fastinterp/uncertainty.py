"Per-item uncertainty: scores from predicted probabilities (higher = more uncertain, in [0, 1]), and MC dropout"

__all__ = ['entropy', 'margin', 'least_confidence', 'uniform_distance', 'MEASURES', 'uncertainty', 'scores',
           'label_uncertainty', 'multilabel_uncertainty', 'MCDropoutPreds', 'mc_dropout']

import contextlib, functools, math
from typing import NamedTuple

import torch
import torch.nn as nn
from fastcore.basics import noop, store_attr
from fastai.callback.core import Callback, TrainEvalCallback

from .core import as_probs, by_rows, TINY
from .loaders import every_item_dl
from .preds import _probs_in, activate, _frozen_get_preds
from .activations import activation_for
from .passes import PassProgress, own_bars

# --- the measures: each checks its input once (`as_probs`), then scores it
# rounding can step a hair outside [0, 1] (callers sort and threshold on these); + 0 turns -0.0 into 0.0
def _unit(x): return x.clamp(0, 1).add_(0.)

def _nats(p, multilabel=False):
    "Entropy in nats of each row of class probabilities, or (multilabel) of each label's Bernoulli"
    if multilabel: return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    # 0 * log(TINY) = 0 for p = 0, as xlogy has it, at a third of xlogy's time
    return -p.clamp_min(TINY).log_().mul_(p).sum(1)

def _on_probs(score):
    "The measure `score` of probabilities checked by `as_probs` first; `.__wrapped__` scores checked ones directly"
    @functools.wraps(score)
    def measure(probs): return by_rows(score, as_probs(probs))
    return measure

@_on_probs
def entropy(probs): # (N, C) probabilities, rows summing to 1
    """Shannon entropy of each row divided by log(C): 0 for one-hot, 1 for uniform

    >>> entropy(torch.tensor([[1., 0., 0.], [1/3, 1/3, 1/3]]))
    tensor([0., 1.])
    """
    C = probs.shape[1]
    return probs.new_zeros(len(probs)) if C == 1 else _unit(_nats(probs) / math.log(C))

@_on_probs
def margin(probs): # (N, C) probabilities, rows summing to 1
    """1 minus the gap between the two most likely classes: 1 for a tie, 0 for one-hot

    >>> margin(torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]]))
    tensor([0.8000, 1.0000])
    """
    if probs.shape[1] == 1: return probs.new_zeros(len(probs))
    return _margin_of(probs, *probs.max(1))

def _margin_of(probs, first, at, mine:bool=False, put_back:bool=False):
    """The margin of rows of `probs` (C > 1) whose first maximum `first` is at `at`; `mine`: `probs` is a copy the
    caller gives up, written over; `put_back`: `probs` is written over, then its maxima are put back (no copy)"""
    at = at[:, None]
    # the first maximum taken out, the largest left: the second of a tie is the first's equal (topk(2), 5x slower)
    second = (probs.scatter_ if mine or put_back else probs.scatter)(1, at, -1.).amax(1)
    if put_back: probs.scatter_(1, at, first[:, None])  # the values taken out: every row as it was, bit for bit
    return _unit(1 - (first - second))

@_on_probs
def least_confidence(probs): # (N, C) probabilities, rows summing to 1
    """1 minus the probability of the most likely class

    >>> least_confidence(torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]))
    tensor([0.5000, 0.1000])
    """
    return _least_confidence_of(probs.amax(1))  # amax: the values of max, 5x faster without their indices

def _least_confidence_of(first): return _unit(1 - first)  # from each row's top probability alone

@_on_probs
def uniform_distance(probs): # (N, C) probabilities, rows summing to 1
    """1 - TV(p, uniform) / (1 - 1/C), with TV = 0.5*sum|p - 1/C|: 1 for uniform, 0 for one-hot

    >>> uniform_distance(torch.tensor([[1., 0.], [0.5, 0.5], [0.75, 0.25]]))
    tensor([0.0000, 1.0000, 0.5000])
    """
    C = probs.shape[1]
    if C == 1: return probs.new_zeros(len(probs))
    # tv / (1 - 1/C) rearranged so one-hot and uniform rows come out exact, with no 1/C rounding
    return _unit(1 - (probs * C).sub_(1).abs_().sum(1) / (2 * (C - 1)))  # one temporary, changed in place

MEASURES = {'entropy': entropy, 'margin': margin, 'least_confidence': least_confidence,
            'uniform_distance': uniform_distance}
_SCORES = {name: m.__wrapped__ for name, m in MEASURES.items()}  # of probabilities checked already

def _check_measure(measure):
    if not callable(measure) and measure not in MEASURES:
        raise ValueError(f"Unknown uncertainty measure {measure!r}: known measures are {', '.join(MEASURES)}, "
                         f"or pass a callable")
    return measure

def scores(probs, # (N, C) probabilities checked by `as_probs` already
        measure='entropy', # Name in `MEASURES`, or a callable: probs -> (N,) scores
    ):
    """`uncertainty` of probabilities checked once already: several measures of one set check it once

    >>> from fastinterp.core import as_probs
    >>> p = as_probs([[0.5, 0.5], [1., 0.]])  # checked once, scored by several measures
    >>> scores(p, 'entropy'), scores(p, 'margin')
    (tensor([1., 0.]), tensor([1., 0.]))
    """
    return measure(probs) if callable(_check_measure(measure)) else by_rows(_SCORES[measure], probs)

def uncertainty(probs, # (N, C) probabilities, rows summing to 1
        measure='entropy', # Name in `MEASURES`, or a callable: probs -> (N,) scores
    ):
    """Per-item uncertainty of multi-class `probs` under `measure`

    >>> uncertainty(torch.tensor([[0.5, 0.5]]), 'margin'), uncertainty(torch.tensor([[0.5, 0.5]]), lambda p: p[:, 0])
    (tensor([1.]), tensor([0.5000]))
    """
    if callable(_check_measure(measure)): return measure(probs)
    return by_rows(_SCORES[measure], as_probs(probs))

def label_uncertainty(probs, # (N, L) sigmoid probabilities, or (N,) / (N, 1) for a one-output binary model
        thresh:float=0.5, # Decision threshold: one for every label, or (L,) one per label
    ):
    """(N, L) closeness of each label's probability to `thresh`: 1 at the threshold, 0 at the farther of 0 and 1

    >>> label_uncertainty(torch.tensor([[0.5, 1.0, 0.75]]))
    tensor([[1.0000, 0.0000, 0.5000]])
    """
    p = as_probs(probs, multiclass=False)
    t = torch.as_tensor(thresh, dtype=p.dtype, device=p.device)  # a float, or one per label (a temperature moves them)
    if not bool(((t > 0) & (t < 1)).all()): raise ValueError(f"thresh must lie strictly between 0 and 1, got {thresh}")
    if p.ndim == 1: p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"Multi-label uncertainty needs probabilities of shape (N, L) or (N,), "
                         f"got shape {tuple(p.shape)}")
    return _unit(1 - (p - t).abs() / torch.maximum(t, 1 - t))

def multilabel_uncertainty(probs, # (N, L) sigmoid probabilities, or (N,) / (N, 1) for a one-output binary model
        thresh:float=0.5, # Decision threshold of each label
    ):
    """Per-item uncertainty of a multi-label model: that of its most uncertain label

    >>> multilabel_uncertainty(torch.tensor([[0.9, 0.6], [0.99, 0.01]]))
    tensor([0.8000, 0.0200])
    """
    u = label_uncertainty(probs, thresh)
    # max over zero labels is undefined: an item with no labels has nothing to be unsure about
    return u.max(1).values if u.shape[1] else u.new_zeros(len(u))

# --- MC dropout: the spread of the predictions over dropout passes
def _dropouts(model):
    "The model's dropout layers: torch's, and modules whose class name ends in 'Dropout' (fastai's RNNDropout, ...)"
    return [m for m in model.modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__.endswith('Dropout')]

def _mc_measures(mean, sq, ent, multilabel):
    "(mutual information, variance) per item from the pass means of p, p^2 and the entropy"
    var = (sq - mean * mean).clamp_min(0)
    mi = (_nats(mean, multilabel) - ent).clamp_min(0)  # >= 0 in exact arithmetic (Jensen)
    if multilabel: return (mi / math.log(2)).amax(1), var.amax(1)
    C = mean.shape[1]
    return (mi / math.log(C) if C > 1 else mi), var.gather(1, mean.argmax(1, keepdim=True))[:, 0]

class _MCDropout(Callback):
    "During inference, `n` forward passes of each batch with only dropout on, reduced to per-item results at once"
    order = TrainEvalCallback.order + 1  # after TrainEvalCallback has put the whole model in eval mode
    def __init__(self, n, activation, drops): store_attr(); self.res, self.probs_in = [], None

    def before_validate(self):
        for m in self.drops: m.train()

    def after_pred(self):
        multilabel, sums = self.activation.kind == 'multilabel', None
        for i in range(self.n):
            out = self.pred if i == 0 else self.model(*self.xb)  # fastai's own forward pass is the first
            out = out.float()
            self.probs_in = _probs_in(self.probs_in, self.learn, self.activation, out)  # seen on the first pass
            p = activate(self.learn, out, activation=self.activation, probs_in=self.probs_in)[0].double()
            if multilabel and p.ndim == 1: p = p[:, None]
            terms = (p, p * p, _nats(p, multilabel))
            sums = terms if sums is None else [s + x for s, x in zip(sums, terms)]
        mean, sq, ent = (s / self.n for s in sums)
        res = (mean, *_mc_measures(mean, sq, ent, multilabel))
        self.res.append(self.learn.to_detach(tuple(x.float() for x in res)))

class MCDropoutPreds(NamedTuple):
    """Per item: the mean prediction over the dropout passes and its epistemic uncertainty

    >>> r = mc_dropout(learn, n=5, seed=0, progress=False)
    >>> r._fields, r.probs.shape, bool((r.mutual_info >= 0).all() and (r.mutual_info <= 1).all())
    (('probs', 'targs', 'mutual_info', 'variance'), torch.Size([60, 3]), True)
    """
    probs: torch.Tensor        # (N, C) mean probabilities; multilabel: (N, L)
    targs: torch.Tensor|None   # Targets; None for an unlabelled DataLoader
    # (N,) BALD: entropy of the mean minus mean entropy, / log C, in [0, 1] (multilabel: largest label's, / log 2)
    mutual_info: torch.Tensor
    # (N,) variance over the passes of p(predicted class) (multilabel: largest over labels), in [0, 0.25]
    variance: torch.Tensor

def mc_dropout(learn, # A classifier whose model has dropout layers
        n:int=20, # Stochastic forward passes per item
        dl=None, # `DataLoader` to predict on; `learn.dls[ds_idx]` if None
        ds_idx:int=1, # Index of `learn.dls` when `dl` is None
        seed:int|None=None, # Seed of the dropout masks, for a repeatable result (the global RNG is left as it was)
        progress:bool=True, # Show a progress bar over the batches
    )->MCDropoutPreds:
    """MC dropout (Gal & Ghahramani 2016): `n` passes with only dropout on (BatchNorm stays in eval), in O(N x C) memory

    >>> r = mc_dropout(learn, n=5, seed=0, progress=False)  # 5 passes with the model's dropout on
    >>> r.probs.shape, torch.allclose(r.probs.sum(1), torch.ones(60)), r.variance.shape
    (torch.Size([60, 3]), True, torch.Size([60]))
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"MC dropout needs 2 or more passes to measure disagreement, got n={n!r}")
    activation = activation_for(learn.loss_func).check_classifier('MC dropout', known=True)
    drops = _dropouts(learn.model)
    if not any(getattr(m, 'p', 1) > 0 for m in drops):
        raise ValueError(f"MC dropout needs dropout layers with p > 0, and {type(learn.model).__name__} has "
                         f"{'only p=0 ones' if drops else 'none'} (nn.Dropout, nn.Dropout2d, ...). Dropout called "
                         f"as F.dropout inside forward cannot be switched on from outside: use an nn.Dropout module.")
    dl = every_item_dl(learn, ds_idx, dl, 'run MC dropout')  # the callback keeps items in the order they come
    cb = _MCDropout(n, activation, drops)
    # the passes run batch by batch in one epoch: one bar over the batches, that says so
    bar = [PassProgress(f'MC dropout: {n} passes per batch')] if progress and hasattr(learn, 'progress') else []
    with (torch.random.fork_rng() if seed is not None else contextlib.nullcontext()), own_bars(learn):
        if seed is not None: torch.manual_seed(seed)
        try: res = _frozen_get_preds(learn, dl=dl, act=noop, with_preds=False, reorder=False, cbs=[cb] + bar)
        finally:
            for m in drops: m.eval()
    probs, mi, var = (torch.cat(x) for x in zip(*cb.res))
    targs = res[1] if isinstance(res[1], torch.Tensor) and res[1].numel() else None
    return MCDropoutPreds(probs, targs, mi, var)
