"`Learner.calibrate`: fit the temperature that divides the logits, and judge it on items its fit did not see"

__all__ = ['calibrate']

import warnings

import pandas as pd, torch
from fastcore.basics import noop
from fastai.learner import Learner

from .activations import activation_for
from .calibration import calibration_metrics, fit_temperature
from .core import check_finite
from .patching import add_patch
from .preds import _frozen_get_preds, tempered, thresh_at

def _scalable(learn):
    "The loss's registry record, if temperature scaling applies to its model's outputs; else a clear error"
    activation = activation_for(learn.loss_func).check_classifier('Temperature scaling', known=True)
    if activation.expects == 'probabilities':
        raise ValueError(f"The model trained with {activation.loss} outputs probabilities (it ends in a sigmoid or "
                         f"softmax), and temperature scaling divides the logits before that activation. Drop the "
                         f"model's last activation and train with the loss that applies it (nn.BCEWithLogitsLoss, "
                         f"nn.CrossEntropyLoss).")
    return activation

_MIN_HALF = 20  # fewest items in each half of a cross-fitted judgement of T

def _cross_fitted(out, targs, activation, seed):
    "Each half of the items tempered by the T fitted on the other half, and each item's decision threshold at its T"
    multilabel = activation.kind == 'multilabel'
    order = torch.randperm(len(out), generator=torch.Generator().manual_seed(seed))
    halves = order[:len(out) // 2], order[len(out) // 2:]
    after = torch.empty_like(out)
    thresh = torch.full(out.shape if multilabel else (len(out),), float(activation.thresh))
    for fit, judge in (halves, halves[::-1]):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # a half stopping at a bound: the fit on every item says so
            T = fit_temperature(out[fit], targs[fit], multilabel)
        after[judge] = tempered(out[judge], T, activation)
        if multilabel: thresh[judge] = torch.as_tensor(thresh_at(activation.thresh, T)).float()
    return after, thresh

def calibrate(self:Learner,
        dl=None, # Held-out labelled `DataLoader` to fit T on; the validation set if None, as Guo et al. (2017)
        ds_idx:int=1, # Index of `self.dls` when `dl` is None
        n_bins:int=15, # Bins of the ECE reported
        quiet:bool=False, # Do not print the summary
        held_out:bool=True, # Judge T on items its fit did not see: each half tempered by the T of the other half
        seed:int=0, # Seed of the split into halves
    )->pd.DataFrame:
    """Fit a temperature T (least NLL) used by get_preds, predict, tta and interpretation; figures before and after

    >>> res = learn.calibrate(quiet=True)  # T fitted on the validation set, judged on cross-fitted halves
    >>> list(res.index), res.attrs['judged'], learn.temperature > 0
    (['before', 'after'], 'held out', True)
    >>> learn.temperature = None  # the model's own probabilities again
    """
    activation = _scalable(self)
    out, targs = _frozen_get_preds(self, ds_idx=ds_idx, dl=dl, act=noop)[:2]
    if not isinstance(targs, torch.Tensor) or not targs.numel():
        raise ValueError("calibrate needs targets, and this DataLoader is unlabelled: "
                         "pass a labelled held-out DataLoader")
    out = check_finite(out, 'model outputs').float()
    multilabel = activation.kind == 'multilabel'
    if (out.ndim > 2 or activation.axis % out.ndim != out.ndim - 1) and not (multilabel and out.ndim == 1):
        raise ValueError(f"calibrate needs one row of class scores per item, shape (N, C), "
                         f"got shape {tuple(out.shape)}")
    activation.check(out)
    before = activation.act(out)
    if not torch.allclose(before, tempered(out, 1., activation), atol=1e-5):
        raise ValueError(f"The activation of {activation.loss} ({activation.name}) is not a "
                         f"{'sigmoid' if multilabel else 'softmax'} of the model's outputs, and temperature scaling is "
                         f"defined for those.")
    T = fit_temperature(out, targs, multilabel)  # the one stored: fitted on every item
    cross = held_out and len(out) >= 2 * _MIN_HALF
    if cross: after, thresh = _cross_fitted(out, targs, activation, seed)
    else:
        after = tempered(out, T, activation)
        thresh = thresh_at(activation.thresh, T) if multilabel else activation.thresh
    labels = list(getattr(self.dls, 'vocab', None) or []) if multilabel else None
    rows = [calibration_metrics(before, targs, n_bins, multilabel, activation.thresh),
            calibration_metrics(after, targs, n_bins, multilabel, thresh)]
    res = pd.DataFrame([{name: v for name, v in r.items() if name != 'label_ece'} for r in rows],
                       index=['before', 'after'])
    res.attrs['judged'] = 'held out' if cross else 'in-sample'
    self.temperature = T
    if not quiet: print(_summary(T, res, len(out), dl, ds_idx, labels, cross, held_out))
    return res

def _summary(T, res, n, dl, ds_idx, labels, cross, held_out):
    "What `calibrate` prints: T, what it was fitted on, the figures at T = 1 and at T, and which items they are of"
    sets = {0: 'the training set', 1: 'the validation set'}
    on = 'the given DataLoader' if dl is not None else sets.get(ds_idx, f'dls[{ds_idx}]')
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
