"Registry mapping a loss function to the final activation its model's outputs need"

__all__ = ['KINDS', 'ACTIVATIONS', 'LossActivation', 'register_activation', 'activation_for', 'registered_losses']

import functools, warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from fastai.imports import noops  # fastai's losses use this do-nothing default, not fastcore's
from fastai.losses import (BaseLoss, FocalLoss, LabelSmoothingCrossEntropy, DiceLoss, BCEWithLogitsLossFlat,
                           CrossEntropyLossFlat, FocalLossFlat, LabelSmoothingCrossEntropyFlat)

KINDS = ('multiclass', 'multilabel', 'regression', 'unknown')

# name -> (activation(x, axis), what the model must output for that activation to be right)
ACTIVATIONS = {
    'softmax':  (lambda x, axis: F.softmax(x, dim=axis), 'logits'),
    'sigmoid':  (lambda x, axis: torch.sigmoid(x),       'logits'),
    'exp':      (lambda x, axis: torch.exp(x),           'log-probabilities'),
    'identity': (lambda x, axis: x,                      'probabilities'),
}

# the same first index of the largest value as argmax; along a strided axis (dim 1 of (N, C, H, W) masks) torch's
# max is 5x faster than its argmax
def _argmax(x, axis): return x.max(dim=axis).indices
def _unchanged(x, axis=None): return x

# fastai's flattened losses bring their own `activation` and `decodes` methods: a softmax over the class axis and its
# argmax, or a sigmoid. Those methods as fastai defines them (a subclass that overrides one is not among them) are as
# safe as the registry's own: their probabilities need no pass to check their range or, for a softmax, their row sums
_SOFTMAXES = {ACTIVATIONS['softmax'][0], CrossEntropyLossFlat.activation, FocalLossFlat.activation,
              LabelSmoothingCrossEntropyFlat.activation}
_SIGMOIDS = {ACTIVATIONS['sigmoid'][0], BCEWithLogitsLossFlat.activation}
_ARGMAXES = {_argmax, CrossEntropyLossFlat.decodes, FocalLossFlat.decodes, LabelSmoothingCrossEntropyFlat.decodes}

def _function(f):
    "The plain function behind a registry entry's `partial` or a loss object's bound method"
    return getattr(f, 'func', None) or getattr(f, '__func__', None)

@dataclass(frozen=True)
class _Entry:
    "What the registry stores for one loss class or function"
    name: str; act: Callable; decodes: Callable; kind: str; axis: int; expects: str; thresh: float = 0.5

@dataclass(frozen=True)
class LossActivation:
    """What `activation_for` resolves a loss to: how to turn its model's raw outputs into probabilities and classes

    >>> a = activation_for(nn.BCEWithLogitsLoss())
    >>> a.kind, a.thresh, a.decodes(a.act(torch.tensor([[2., -1.]])))
    ('multilabel', 0.5, tensor([[ True, False]]))
    """
    loss: str         # Name of the loss, for messages
    name: str         # Name of the activation: 'softmax', 'sigmoid', 'exp', 'identity', or the loss's own
    act: Callable     # Raw model outputs -> probabilities
    decodes: Callable # Probabilities -> class indices (multiclass) or 0/1 per label (multilabel)
    kind: str         # One of `KINDS`
    axis: int = 1     # Class axis of the model outputs
    expects: str = 'logits' # What the model must output for `act` to be right
    thresh: float = 0.5 # Threshold of a multilabel prediction

    def __repr__(self):
        "What the loss resolves to, without the functions' addresses"
        extra = f", thresh={self.thresh}" if self.kind == 'multilabel' else ''
        return (f"LossActivation(loss={self.loss!r}, name={self.name!r}, kind={self.kind!r}, expects={self.expects!r}, "
                f"axis={self.axis}{extra})")

    @property
    def bounded(self)->bool:
        """Whether `act` is the built-in softmax or sigmoid, or fastai's flattened losses' own: in [0, 1] for finite
        outputs, no pass needed to check it"""
        return _function(self.act) in _SOFTMAXES | _SIGMOIDS

    @property
    def plain_softmax(self)->bool:
        """Whether `act` is a softmax and `decodes` its argmax, the registry's or fastai's flattened losses' own: rows
        sum to 1, classes in range"""
        return _function(self.act) in _SOFTMAXES and _function(self.decodes) in _ARGMAXES

    def check_classifier(self,
        what:str, # What needs class probabilities, for the message: 'ClassificationInterpretation', ...
        known:bool=False, # Refuse a loss whose activation is unknown too: `what` must know its outputs are logits
    ):
        "`self`, or a ValueError when its loss gives no class probabilities: a regression loss (or an unknown one)"
        if self.kind == 'regression':
            raise ValueError(f"{what} needs class probabilities, and {self.loss} is a regression loss: the model "
                             f"outputs values, not class scores, so there are no classes to interpret.")
        if known and self.kind not in ('multiclass', 'multilabel'):
            raise ValueError(f"fastinterp does not know the final activation of {self.loss}, so {what} cannot tell "
                             f"whether the model outputs logits. Register the loss first, e.g. "
                             f"fastinterp.register_activation(YourLoss, 'softmax', kind='multiclass').")
        return self

    def check(self, out):
        "Raise on outputs whose shape does not fit `kind`; warn when a softmax runs over a single output"
        if not isinstance(out, torch.Tensor) or self.kind != 'multiclass': return
        if out.ndim < 2:
            raise ValueError(f"{self.loss} is a multi-class loss: it needs class scores of shape (N, C, ...), but the "
                             f"model returned shape {tuple(out.shape)}. Train a one-output binary model with "
                             f"nn.BCEWithLogitsLoss instead.")
        if out.shape[self.axis] == 1:
            warnings.warn(f"{self.loss} turns the class scores into probabilities that sum to 1, but the model has ONE "
                          f"output: a softmax over one number is always 1.0, so every prediction reads 'certain'. "
                          f"Give the model one output per class (2 for binary), or train a one-output model with "
                          f"nn.BCEWithLogitsLoss (sigmoid).", stacklevel=3)

def _bind(e:_Entry, loss:str, axis:int):
    return LossActivation(loss, e.name, functools.partial(e.act, axis=axis), functools.partial(e.decodes, axis=axis),
                          e.kind, axis, e.expects, e.thresh)

_registry = {}
_warned = set()

def _key(loss):
    "Registry key: the function itself, or the class of a loss object"
    return loss if isinstance(loss, type) or not isinstance(loss, (nn.Module, BaseLoss)) else type(loss)

def _name(loss):
    if isinstance(loss, functools.partial): return f"partial({_name(loss.func)})"
    if isinstance(loss, BaseLoss): return f"{type(loss).__name__}({_name(loss.func)})"
    k = _key(loss)
    return getattr(k, '__qualname__', None) or type(k).__qualname__

def _path(loss):
    "How a user writes `loss` in code, for the registration hint"
    k = _key(loss)
    mod = getattr(k, '__module__', None) or ''
    return _name(k) if mod in ('', '__main__', 'builtins') else f"{mod}.{_name(k)}"

def register_activation(loss=None, # Loss class or function; omit to use as a decorator
        act='softmax', # Name in `ACTIVATIONS` or a callable: raw outputs -> probabilities
        decodes=None, # Callable: probabilities -> classes; defaults to argmax (multiclass) or `> thresh` (multilabel)
        kind='multiclass', # One of `KINDS`
        thresh:float=0.5, # Threshold of the default multilabel decodes
        axis:int=1, # Class axis of the model outputs
        expects:str=None, # What the model outputs ('logits', 'log-probabilities', 'probabilities'); from `act` if None
    ):
    """Register the final activation of a loss class or function; also usable as a decorator

    >>> class MyLoss(nn.Module):
    ...     def forward(self, out, targ): return F.cross_entropy(out, targ)
    >>> register_activation(MyLoss, 'softmax', kind='multiclass')
    >>> activation_for(MyLoss()).name, activation_for(MyLoss()).kind
    ('softmax', 'multiclass')
    """
    if loss is None:
        return lambda l: register_activation(l, act=act, decodes=decodes, kind=kind, thresh=thresh, axis=axis,
                                             expects=expects) or l
    if not callable(loss): raise TypeError(f"register_activation needs a loss class or function, got {loss!r}")
    if kind not in KINDS: raise ValueError(f"Unknown kind {kind!r}: known kinds are {', '.join(KINDS)}")
    if callable(act): name, fn, exp = getattr(act, '__name__', 'custom'), (lambda x, axis: act(x)), 'logits'
    elif act in ACTIVATIONS: name, (fn, exp) = act, ACTIVATIONS[act]
    else:
        raise ValueError(f"Unknown activation {act!r}: known activations are {', '.join(ACTIVATIONS)}, "
                         f"or pass a callable")
    if decodes is not None: dec = lambda x, axis: decodes(x)
    elif kind == 'multiclass': dec = _argmax
    elif kind == 'multilabel': dec = lambda x, axis: x > thresh
    else: dec = _unchanged
    k = _key(loss)
    if k in _registry: warnings.warn(f"Overwriting the registered activation of {_name(k)}", stacklevel=2)
    _registry[k] = _Entry(name, fn, dec, kind, axis, expects or exp, thresh)
    _warned.discard(k)

def registered_losses():
    """Every registered loss, as {'module.name': (activation, kind)}

    >>> registered_losses()['torch.nn.modules.loss.CrossEntropyLoss']
    ('softmax', 'multiclass')
    """
    return {_path(k): (e.name, e.kind) for k,e in _registry.items()}

def _own(loss, attr):
    "The loss object's own `activation`/`decodes`, unless it is fastai's do-nothing default"
    f = getattr(loss, attr, None)
    if not callable(f) or f is noops or getattr(f, '__func__', None) is noops: return None
    return f

def _unwrap(loss):
    while isinstance(loss, (functools.partial, BaseLoss)): loss = loss.func
    return loss

def _lookup(inner):
    "Registered entry of an unwrapped loss: the exact function or class, then the class MRO"
    try:
        if inner in _registry: return _registry[inner]
    except TypeError: pass  # an unhashable callable can only match by its class
    for c in (inner if isinstance(inner, type) else type(inner)).__mro__:
        if c in _registry: return _registry[c]

def _wraps(loss):
    "A hint naming the registered losses a loss module holds: what its forward does with them is not known here"
    if not isinstance(loss, nn.Module): return ''
    held = {f"{type(m).__name__} ({e.name})" for m in loss.modules() if m is not loss and (e := _lookup(m)) is not None}
    if not held: return ''
    return (f" It holds {', '.join(sorted(held))}: if its outputs go through that loss, register it with the same "
            f"activation.")

def activation_for(loss_func):
    """The `LossActivation` of `loss_func`: the loss's own `activation`/`decodes` win, then the registry

    >>> activation_for(nn.NLLLoss())  # the model outputs log-probabilities: exp gives the probabilities
    LossActivation(loss='NLLLoss', name='exp', kind='multiclass', expects='log-probabilities', axis=1)
    """
    return _activation_for(loss_func, warn=True)

def _activation_for(loss_func, warn):
    if loss_func is None:
        raise TypeError("activation_for(None): the Learner has no loss function. Pass `loss_func=` to the Learner "
                        "(e.g. nn.CrossEntropyLoss()) or `act=` to get_preds.")
    if not callable(loss_func):
        raise TypeError(f"activation_for: a loss must be callable, got {type(loss_func).__name__} {loss_func!r}")
    inner = _unwrap(loss_func)
    e = _lookup(inner)
    name = _name(loss_func)
    axis = getattr(loss_func, 'axis', e.axis if e else 1)
    own_act, own_dec = _own(loss_func, 'activation'), _own(loss_func, 'decodes')
    if own_act or own_dec:
        kind = e.kind if e else ('multiclass' if getattr(loss_func, 'y_int', False) else 'unknown')
        act = own_act or (functools.partial(e.act, axis=axis) if e else _unchanged)
        dec = own_dec or (functools.partial(e.decodes, axis=axis) if e else _unchanged)
        return LossActivation(name, getattr(own_act, '__qualname__', e.name if e else 'identity'), act, dec,
                              kind, axis, e.expects if e else 'logits',
                              getattr(loss_func, 'thresh', e.thresh if e else 0.5))
    if e is None:
        k = _key(inner)
        try: first = k not in _warned; warn and _warned.add(k)
        except TypeError: first = True
        if first and warn:
            warnings.warn(f"fastinterp does not know the final activation of the loss {name}, so its predictions are "
                          f"returned unchanged.{_wraps(inner)} Register it once, e.g.: "
                          f"fastinterp.register_activation({_path(inner)}, 'softmax', kind='multiclass')", stacklevel=3)
        e = _Entry('identity', ACTIVATIONS['identity'][0], _unchanged, 'unknown', axis, 'probabilities')
    return _bind(e, name, axis)

# The model outputs logits
for _l in (nn.CrossEntropyLoss, F.cross_entropy, FocalLoss, LabelSmoothingCrossEntropy, DiceLoss):
    register_activation(_l, 'softmax', kind='multiclass')
for _l in (nn.BCEWithLogitsLoss, F.binary_cross_entropy_with_logits,
           nn.MultiLabelSoftMarginLoss, F.multilabel_soft_margin_loss):
    register_activation(_l, 'sigmoid', kind='multilabel')
# The model already outputs log-probabilities, or probabilities
for _l in (nn.NLLLoss, F.nll_loss, nn.KLDivLoss, F.kl_div):
    register_activation(_l, 'exp', kind='multiclass')
for _l in (nn.BCELoss, F.binary_cross_entropy):
    register_activation(_l, 'identity', kind='multilabel')
for _l in (nn.MSELoss, F.mse_loss, nn.L1Loss, F.l1_loss, nn.SmoothL1Loss, F.smooth_l1_loss, nn.HuberLoss, F.huber_loss):
    register_activation(_l, 'identity', kind='regression')
