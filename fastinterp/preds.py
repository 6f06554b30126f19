"Patch `Learner.get_preds` and `Learner.predict` so they return probabilities and classes whatever the loss"

__all__ = ['patch', 'unpatch', 'is_patched', 'add_patch', 'stock_get_preds', 'activate', 'tempered']

import warnings, weakref

import torch
from fastcore.basics import getcallable, noop
from fastai.learner import Learner
from fastai.data.core import TfmdDL
from fastai.torch_core import to_detach

from .activations import activation_for, _activation_for

_patches = []  # (owner, name, replacement): what `patch` installs
_stock = {}    # (owner, name) -> fastai's own attribute, while patched
_double_warned = weakref.WeakSet()  # models already warned about a double activation

def _looks_like_probs(out, axis):
    return bool((out >= 0).all()) and bool(((out.sum(axis) - 1).abs() < 1e-3).all())

def _looks_like_log_probs(out, axis):
    return bool((out <= 0).all()) and bool(((out.exp().sum(axis) - 1).abs() < 1e-3).all())

def _check_double_activation(model, rec, out):
    "Warn once per model when its outputs are already (log-)probabilities but the loss expects something else"
    if model in _double_warned or rec.kind != 'multiclass' or out.ndim < 2 or out.shape[rec.axis] < 2: return
    out = out[:1024].float()  # a model that ends in a softmax does so on every row: a sample is enough
    if rec.expects == 'logits':
        if _looks_like_probs(out, rec.axis): last = 'a softmax'
        elif _looks_like_log_probs(out, rec.axis): last = 'a log-softmax'
        else: return
        fix = ('train with nn.NLLLoss, or remove the final log-softmax' if last == 'a log-softmax'
               else 'remove the final softmax: the loss applies it')
    elif rec.expects == 'log-probabilities' and _looks_like_probs(out, rec.axis) and not _looks_like_log_probs(out, rec.axis):
        last, fix = 'a softmax', 'end the model in a log-softmax (F.log_softmax), as the loss expects'
    else: return
    _double_warned.add(model)
    warnings.warn(f"The model's outputs already look like {last} was applied: every row of them sums to 1. {rec.loss} "
                  f"applies its own activation on top ({rec.name}), so the model was trained on the wrong numbers and its "
                  f"probabilities are squashed. To fix: {fix}.", stacklevel=4)

def tempered(out, T, rec):
    "Probabilities of raw outputs `out` at temperature `T`: softmax(out / T) over the class axis; multilabel: sigmoid(out / T), one T per label"
    T = torch.as_tensor(T, dtype=out.dtype, device=out.device)
    if rec.kind == 'multilabel':
        if T.ndim and out.ndim > 1: T = T.view(-1, *[1] * (out.ndim - 1 - rec.axis % out.ndim))  # along the label axis
        return torch.sigmoid(out / T)
    return torch.softmax(out / T, dim=rec.axis)  # also right for log-probabilities: softmax(log p) = p

def activate(learn, out, act=None, rec=None):
    "Probabilities and decoded classes for the raw outputs `out` of `learn.model`, through the registry (or `rec`, already resolved)"
    if act is not None:
        rec = _activation_for(learn.loss_func, warn=False) if learn.loss_func is not None else None
        probs = act(out)
        return probs, (rec.decodes(probs) if rec else probs)
    rec = rec or activation_for(learn.loss_func)
    rec.check(out)
    if isinstance(out, torch.Tensor): _check_double_activation(learn.model, rec, out)
    T = vars(learn).get('temperature')  # set by `Learner.calibrate`; the Learner's own, as it hands unknown names to its model
    probs = rec.act(out) if T is None else tempered(out, T, rec)
    return probs, rec.decodes(probs)

def get_preds(self:Learner,
        ds_idx:int=1, # `DataLoader` to use for predictions if `dl` is None. 0: train. 1: valid
        dl=None, # `DataLoader` to use for predictions, defaults to `ds_idx=1` if None
        with_input:bool=False, # Return inputs with predictions
        with_decoded:bool=False, # Return decoded predictions: class indices, or 0/1 per label
        with_loss:bool=False, # Return per item loss with predictions
        act=None, # Apply activation to predictions, defaults to the loss's activation from the registry
        inner:bool=False, # If False, create progress bar, show logger, use temporary `cbs`
        reorder:bool=True, # Reorder predictions on dataset indicies, if applicable
        cbs=None, # Temporary `Callback`s to apply during prediction
        **kwargs
    )->tuple:
    "Get the predictions and targets on the `ds_idx`-th dbunchset or `dl`, as probabilities whatever the loss"
    res = list(stock_get_preds(self, ds_idx=ds_idx, dl=dl, with_input=with_input, with_decoded=False,
                                   with_loss=with_loss, act=noop, inner=inner, reorder=reorder, cbs=cbs, **kwargs))
    i = 1 if with_input else 0
    if res[i] is None: return tuple(res)
    res[i], dec = activate(self, res[i], act)
    if with_decoded: res.insert(i+2, dec)
    return tuple(res)

def predict(self:Learner,
        item, # One item, as the `DataLoaders` take it (a path, a row, a tensor)
        rm_type_tfms=None, # Number of type transforms to remove
        with_input=False, # Also return the decoded input
    ):
    "Prediction on `item`: (decoded label, decoded class, probabilities)"
    if isinstance(getattr(self.dls, 'valid', None), TfmdDL):
        return _stock[(Learner, 'predict')](self, item, rm_type_tfms=rm_type_tfms, with_input=with_input)
    # plain PyTorch data: `item` is the model's input itself
    x = torch.as_tensor(item)[None].to(getattr(self.dls, 'device', None) or next(self.model.parameters()).device)
    self.model.eval()
    with torch.no_grad(): out = to_detach(self.model(x))
    probs, dec = activate(self, out)
    vocab = getattr(self.dls, 'vocab', None)
    d = dec[0]
    label = vocab[int(d)] if vocab is not None and d.ndim == 0 else d
    res = (label, d, probs[0])
    return (item,) + res if with_input else res

def add_patch(owner, name, new):
    "Have `patch` set `owner.name` to `new` (and `unpatch` restore it)"
    _patches.append((owner, name, new))
    if is_patched(): _install(owner, name, new)

def _install(owner, name, new):
    _stock[(owner, name)] = owner.__dict__.get(name)  # None: inherited, so unpatching deletes ours
    setattr(owner, name, new)

def is_patched():
    "Whether fastai currently uses fastinterp's `get_preds`, `predict` and interpretation"
    return bool(_stock)

def patch():
    "Make fastai's `Learner` and interpretation use the registry; doing it twice changes nothing"
    if is_patched(): return
    for owner, name, new in _patches: _install(owner, name, new)

def unpatch():
    "Give fastai back its own `get_preds`, `predict` and interpretation"
    for (owner, name), f in _stock.items():
        if f is None: delattr(owner, name)
        else: setattr(owner, name, f)
    _stock.clear()

def stock_get_preds(learn, *args, **kwargs):
    "fastai's own `get_preds`, patched or not (for comparisons)"
    return _stock.get((Learner, 'get_preds'), Learner.get_preds)(learn, *args, **kwargs)

add_patch(Learner, 'get_preds', get_preds)
add_patch(Learner, 'predict', predict)
