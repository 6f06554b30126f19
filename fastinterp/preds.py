"Patch `Learner.get_preds` and `Learner.predict` so they return probabilities and classes whatever the loss"

__all__ = ['stock_get_preds', 'activate', 'tempered', 'tempered_outputs', 'check_temperature', 'learner_temperature',
           'thresh_at', 'decision_thresh', 'per_item_loss']

import math, numbers, warnings, weakref

import numpy as np
import torch
from fastcore.basics import detuplify, noop, tuplify
from fastcore.xtras import is_listy
from fastai.learner import Learner
from fastai.data.core import TfmdDL
from fastai.torch_core import to_detach

from .activations import activation_for, _activation_for
from .core import all_finite, sums_to_one
from .passes import gc_frozen
from .patching import add_patch, stock

_warned_models = {}  # what each model was already warned about: {why: WeakSet of models}

def _warn_once(model, why, msg, stacklevel=4):
    "Warn with `msg` once per model and reason"
    seen = _warned_models.setdefault(why, weakref.WeakSet())
    try:
        if model in seen: return
        seen.add(model)
    except TypeError: pass  # a model that cannot be weakly referenced is warned every time
    warnings.warn(msg, stacklevel=stacklevel)

def _looks_like_probs(out, axis): return bool((out >= 0).all()) and sums_to_one(out, axis)
def _looks_like_log_probs(out, axis): return bool((out <= 0).all()) and sums_to_one(out.exp(), axis)

def _outputs_are_probs(model, activation, out):
    "Whether the model's outputs are already probabilities or log-probabilities where `activation` expects others"
    if activation.kind != 'multiclass' or out.ndim < 2 or out.shape[activation.axis] < 2: return False
    out = out[:1024].float()  # a model that ends in a softmax does so on every row: a sample is enough
    out = out[torch.isfinite(out).flatten(1).all(1)] if out.ndim > 1 else out
    if not len(out): return False
    if activation.expects == 'logits':
        if _looks_like_probs(out, activation.axis): last = 'a softmax'
        elif _looks_like_log_probs(out, activation.axis): last = 'a log-softmax'
        else: return False
        fix = ('train with nn.NLLLoss, or remove the final log-softmax' if last == 'a log-softmax'
               else 'remove the final softmax: the loss applies it')
        _warn_once(model, 'double', f"The model's outputs already look like {last} was applied: every row of them sums "
                   f"to 1. {activation.loss} applies its own activation on top ({activation.name}), so the model was "
                   f"trained on the wrong numbers and its probabilities are squashed. To fix: {fix}.", 5)
        return False
    if activation.expects != 'log-probabilities' or not _looks_like_probs(out, activation.axis) or \
            _looks_like_log_probs(out, activation.axis): return False
    _warn_once(model, 'exp', f"The model's outputs already look like a softmax was applied (every row sums to 1): "
               f"{activation.loss} expects log-probabilities, so exp() of them would not be probabilities (values "
               f"above 1). fastinterp returns the outputs themselves as the probabilities. To fix the training: end "
               f"the model in a log-softmax (F.log_softmax), as the loss expects.", 5)
    return True

def _probs_in(known, # What an earlier batch decided, or None
        learn, # The Learner whose model gave `out`
        activation, # The loss's `LossActivation`; None when an `act` is given (its outputs are taken as they come)
        out, # This batch's raw outputs
    ):
    "Whether a pass's outputs are probabilities already: `known` once a batch has decided it, else looked at in `out`"
    if known is not None or activation is None or not isinstance(out, torch.Tensor): return known
    return _outputs_are_probs(learn.model, activation, out)  # a model ends in a softmax on every batch or on none

def check_temperature(T):
    """`T` as a positive float, a 1-d float tensor of positive values (one per label), or None; else a clear error

    >>> check_temperature(2), check_temperature([1.5, 2.]), check_temperature(None)
    (2.0, tensor([1.5000, 2.0000]), None)
    >>> check_temperature(0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: learn.temperature must be positive and finite (it divides the logits; 1 changes nothing, ...), got 0
    """
    if T is None: return None
    if isinstance(T, (bool, np.bool_)) or isinstance(T, str):
        raise TypeError(f"learn.temperature must be a positive number, or one per label, got {T!r}")
    if isinstance(T, numbers.Real) and not isinstance(T, (torch.Tensor, np.ndarray)): t = torch.tensor([float(T)])
    else:
        try: t = torch.as_tensor(np.asarray(T, dtype=float) if is_listy(T) else T).double()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"learn.temperature must be a positive number, or one per label, got {T!r}") from None
        if t.dtype == torch.bool or t.ndim > 1:
            raise TypeError(f"learn.temperature must be a positive number, or one per label, got {T!r}")
    if not len(t.view(-1)): raise ValueError("learn.temperature must be a positive number, or one per label, got none")
    bad = ~(torch.isfinite(t) & (t > 0))
    if bad.any():
        raise ValueError(f"learn.temperature must be positive and finite (it divides the logits; 1 changes nothing, "
                         f"None removes it), got {T!r}")
    if isinstance(T, numbers.Real) or (t.ndim == 0): return float(t.view(-1)[0])
    return t.float()

def _get_temperature(self): return vars(self).get('temperature')
def _set_temperature(self, T): vars(self)['temperature'] = check_temperature(T)
def _del_temperature(self): vars(self).pop('temperature', None)

_temperature_doc = ("Temperature T that divides the model's logits before the activation (set by `Learner.calibrate`): "
                    "a positive number, one per label for a multi-label model, or None")

def learner_temperature(learn):
    """The temperature `learn` divides its logits by, checked; None when it has none

    >>> learn.temperature = 2  # as `Learner.calibrate` sets it
    >>> learner_temperature(learn)
    2.0
    >>> learn.temperature = None  # the model's own probabilities again
    >>> learner_temperature(learn) is None
    True
    """
    T = vars(learn).get('temperature')  # the Learner's own, as it hands unknown names to its model
    return None if T is None else check_temperature(T)  # set in __dict__ directly (an old pickle) is checked too

def _T_along(T, out, activation):
    "`T` as a tensor that broadcasts along the class (label) axis of `out`"
    T = torch.as_tensor(T, dtype=out.dtype, device=out.device)
    if T.ndim and T.numel() > 1:
        if activation.kind != 'multilabel':
            raise ValueError(f"learn.temperature holds {T.numel()} values, one per label, but {activation.loss} is a "
                             f"{activation.kind} loss: it takes one temperature")
        if out.ndim < 2 or out.shape[activation.axis] != T.numel():
            raise ValueError(f"learn.temperature holds {T.numel()} values, one per label, but the model has "
                             f"{out.shape[activation.axis] if out.ndim > 1 else 1} output(s)")
        return T.view(-1, *[1] * (out.ndim - 1 - activation.axis % out.ndim))
    return T.reshape(())

def tempered(out, T, activation):
    """Probabilities of raw outputs `out` at temperature `T`: softmax(out / T); multilabel: sigmoid(out / T), per label

    >>> from fastinterp import activation_for
    >>> tempered(torch.tensor([[2., 0.]]), 2., activation_for(nn.CrossEntropyLoss()))  # softmax([1, 0])
    tensor([[0.7311, 0.2689]])
    """
    T = _T_along(T, out, activation)
    if activation.kind == 'multilabel': return torch.sigmoid(out / T)
    return torch.softmax(out / T, dim=activation.axis)  # also right for log-probabilities: softmax(log p) = p

def tempered_outputs(out, T, activation):
    """Outputs at temperature `T` in the domain the loss takes (logits / T, or the log-softmax of log p / T)

    >>> from fastinterp import activation_for
    >>> tempered_outputs(torch.tensor([[2., 0.]]), 2., activation_for(nn.CrossEntropyLoss()))  # logits / T
    tensor([[1., 0.]])
    """
    if T is None: return out
    T = _T_along(T, out, activation)
    if activation.expects == 'log-probabilities': return torch.log_softmax(out / T, dim=activation.axis)
    return out / T

def thresh_at(thresh, T):
    """The threshold on sigmoid(x / T) that decides as `thresh` does on sigmoid(x): a float, or one per label

    >>> t = thresh_at(0.5, 3.), thresh_at(0.9, 2.)  # 0.5 stays; 0.9 moves to sigmoid(logit(0.9) / 2)
    >>> t[0], round(t[1], 4)
    (0.5, 0.75)
    """
    if T is None or thresh is None: return thresh
    # sigmoid(x / T) > sigmoid(logit(t) / T) exactly when sigmoid(x) > t: a temperature moves no decision
    t = min(max(float(thresh), 1e-12), 1 - 1e-12)
    res = torch.sigmoid(math.log(t / (1 - t)) / torch.as_tensor(T, dtype=torch.float64)).float()
    return float(res) if res.ndim == 0 else res

def decision_thresh(learn, activation):
    """Threshold on the learner's (tempered) probabilities that takes the untempered model's decisions (any, for act=)

    >>> from fastinterp import activation_for
    >>> decision_thresh(learn, activation_for(nn.BCEWithLogitsLoss()))
    0.5
    """
    if activation is None or activation.thresh is None: return getattr(learn.loss_func, 'thresh', 0.5)
    if activation.kind != 'multilabel': return activation.thresh
    return thresh_at(activation.thresh, learner_temperature(learn))

def per_item_loss(learn, out, targs, activation=None):
    """Per-item losses of `learn.loss_func` on outputs `out` at the learner's temperature (one value per item)

    >>> out, targs = torch.tensor([[2., 0., 0.]]), torch.tensor([0])
    >>> torch.allclose(per_item_loss(learn, out, targs), F.cross_entropy(out, targs, reduction='none'))
    True
    """
    activation = activation or _activation_for(learn.loss_func, warn=False)
    out = tempered_outputs(out, learner_temperature(learn), activation)
    with learn.loss_not_reduced(): loss = learn.loss_func(out, targs)
    return to_detach(loss).reshape(len(out), -1).mean(1)

def _nonfinite(model, activation, out, probs, dec):
    "Rows with NaN: decoded as -1 (no class); rows with +inf logits: the limit of the softmax; warn once per call"
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or not out.numel(): return probs, dec
    if all_finite(out.detach()): return probs, dec
    rows = lambda m: m.flatten(1).any(1) if m.ndim > 1 else m
    nan, inf = rows(torch.isnan(out)), rows(torch.isinf(out))
    if activation.kind == 'multiclass' and activation.name == 'softmax' and out.ndim > 1:
        pos = (out == torch.inf)
        lim = inf & ~nan & rows(pos)  # softmax with +inf logits: the mass shared by those, 0 elsewhere
        if lim.any():
            probs = probs.clone()
            p = pos[lim].to(probs.dtype)
            probs[lim] = p / p.sum(activation.axis, keepdim=True)
    bad = rows(torch.isnan(probs)) if isinstance(probs, torch.Tensor) else nan
    if bad.any() and isinstance(dec, torch.Tensor) and dec.shape[:1] == bad.shape and not dec.is_floating_point() \
            and dec.dtype != torch.bool and activation.kind == 'multiclass':
        dec = dec.clone()
        dec[bad] = -1
    n_bad, n_inf = int(bad.sum()), int((inf & ~bad).sum())
    decoded = activation.kind == 'multiclass' and dec is not None  # classes asked for
    what = [f"{n_bad} of {len(nan)} rows hold NaN: their probabilities are NaN"
            + (" and their decoded class is -1 (none)" if decoded else '')] if n_bad else []
    if n_inf:
        what.append(f"{n_inf} of {len(nan)} rows hold an infinite output, taken at its limit (probability 1 or 0)")
    warnings.warn(f"The model's outputs are not all finite: {'; '.join(what)}. Check the model and its inputs "
                  f"(a learning rate too high, a log of 0, a division by 0).", stacklevel=4)
    return probs, dec

def _check_range(model, activation, probs):
    "Warn once when a classifier's activation hands back values outside [0, 1]: they are not probabilities"
    if activation.kind not in ('multiclass', 'multilabel') or not isinstance(probs, torch.Tensor): return
    if not probs.numel(): return
    lo, hi = torch.aminmax(probs.detach())
    if lo >= -1e-6 and hi <= 1 + 1e-6: return  # the common case in one pass, no copy (NaN fails both comparisons)
    if torch.isnan(lo) or torch.isnan(hi): lo, hi = torch.aminmax(torch.nan_to_num(probs.detach().float(), nan=0.5))
    if lo >= -1e-6 and hi <= 1 + 1e-6: return
    _warn_once(model, 'range', f"The activation of {activation.loss} ({activation.name}) gave values from "
               f"{float(lo):.4g} to {float(hi):.4g}, outside [0, 1]: they are NOT probabilities. The model's outputs "
               f"are not the {activation.expects} the activation expects; register the right activation with "
               f"fastinterp.register_activation, or pass act=.", 5)

def activate(learn, # The Learner whose model gave `out`
        out, # Raw model outputs
        act=None, # An activation to use instead of the registry's
        activation=None, # The loss's `LossActivation`, when resolved already
        finite:bool=False, # `out` is known to be finite (checked by the caller): no second pass for NaN and inf
        probs_in:bool|None=None, # Whether `out` is probabilities already, as decided on an earlier batch; None: look
        decode:bool=True, # Decode the classes too; False: None for them, one pass fewer
    ):
    """Probabilities and decoded classes of raw outputs `out` of `learn.model`, through the registry (or `activation`)

    >>> probs, decoded = activate(learn, torch.tensor([[2., 0., -1.], [0., 3., 0.]]))
    >>> torch.allclose(probs.sum(1), torch.ones(2)), decoded
    (True, tensor([0, 1]))
    """
    if act is not None:
        activation = _activation_for(learn.loss_func, warn=False) if learn.loss_func is not None else None
        probs = act(out)
        return probs, (None if not decode else activation.decodes(probs) if activation else probs)
    activation = activation or activation_for(learn.loss_func)
    activation.check(out)
    is_t = isinstance(out, torch.Tensor)
    T = learner_temperature(learn)
    # already probabilities: a temperature cannot apply to them
    if is_t and (_outputs_are_probs(learn.model, activation, out) if probs_in is None else probs_in):
        probs = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        dec = activation.decodes(probs) if decode else None
    else:
        probs = activation.act(out)
        # decided on the untempered probabilities: a temperature changes no decision
        dec = activation.decodes(probs) if decode else None
        if T is not None: probs = tempered(out, T, activation)
    if is_t:
        if not finite: probs, dec = _nonfinite(learn.model, activation, out, probs, dec)
        # a built-in softmax or sigmoid of outputs is in [0, 1] (NaN rows are _nonfinite's): no pass to check it
        if probs is out or not activation.bounded: _check_range(learn.model, activation, probs)
    return probs, dec

def get_preds(self:Learner,
        ds_idx:int=1, # `DataLoader` to use for predictions if `dl` is None. 0: train. 1: valid
        dl=None, # `DataLoader` to use for predictions, defaults to `ds_idx=1` if None
        with_input:bool=False, # Return inputs with predictions
        with_decoded:bool=False, # Return decoded predictions: class indices, or 0/1 per label
        with_loss:bool=False, # Return per item loss with predictions, at the learner's temperature
        act=None, # Apply activation to predictions, defaults to the loss's activation from the registry
        inner:bool=False, # If False, create progress bar, show logger, use temporary `cbs`
        reorder:bool=True, # Reorder predictions on dataset indicies, if applicable
        cbs=None, # Temporary `Callback`s to apply during prediction
        **kwargs # fastai's: save_preds, save_targs, with_preds, with_targs, concat_dim, pickle_protocol
    )->tuple:
    """Get the predictions and targets on the `ds_idx`-th dbunchset or `dl`, as probabilities whatever the loss

    >>> probs, targs, decoded = learn.get_preds(with_decoded=True)  # nn.CrossEntropyLoss: softmax, argmax
    >>> probs.shape, torch.allclose(probs.sum(1), torch.ones(60)), torch.equal(decoded, probs.argmax(1))
    (torch.Size([60, 3]), True, True)
    """
    res = list(_frozen_get_preds(self, ds_idx=ds_idx, dl=dl, with_input=with_input, with_decoded=False,
                                 with_loss=with_loss, act=noop, inner=inner, reorder=reorder, cbs=cbs, **kwargs))
    i = 1 if with_input else 0
    if not kwargs.get('with_preds', True) or res[i] is None: return tuple(res)
    raw = res[i]
    res[i], dec = activate(self, raw, act, decode=with_decoded)
    has_targs = kwargs.get('with_targs', True) and isinstance(res[i+1], torch.Tensor) and res[i+1].numel()
    if with_loss and act is None and learner_temperature(self) is not None and has_targs:
        res[-1] = per_item_loss(self, raw, res[i+1])  # the loss of the probabilities handed back, not of the raw model
    if with_decoded: res.insert(i+2, dec)
    return tuple(res)

def _check_predicted(probs):
    "A prediction whose probabilities hold NaN has no class: a clear error, never the class a -1 would decode to"
    if isinstance(probs, torch.Tensor) and probs.is_floating_point() and bool(torch.isnan(probs).any()):
        raise ValueError("The model's output for this item holds NaN, so it predicts no class: check the model and "
                         "the item (a learning rate too high, a log of 0, a division by 0)")

def predict(self:Learner,
        item, # One item, as the `DataLoaders` take it (a path, a row, a tensor)
        rm_type_tfms=None, # Number of type transforms to remove
        with_input=False, # Also return the decoded input
    ):
    """Prediction on `item`: (decoded label, decoded class, probabilities), whatever the loss

    >>> label, idx, probs = learn.predict(torch.zeros(8))  # plain tensors: the item is the model's input
    >>> idx.item() == probs.argmax().item(), round(float(probs.sum()), 4)
    (True, 1.0)
    """
    if isinstance(getattr(self.dls, 'valid', None), TfmdDL):
        # fastai's own predict, with a class only where the probabilities have one
        dl = self.dls.test_dl([item], rm_type_tfms=rm_type_tfms, num_workers=0)
        inp, preds, _, dec_preds = self.get_preds(dl=dl, with_input=True, with_decoded=True)
        _check_predicted(preds)
        i = getattr(self.dls, 'n_inp', -1)
        inp = (inp,) if i == 1 else tuplify(inp)
        dec = self.dls.decode_batch(inp + tuplify(dec_preds))[0]
        dec_inp, dec_targ = map(detuplify, [dec[:i], dec[i:]])
        res = dec_targ, dec_preds[0], preds[0]
        return (dec_inp,) + res if with_input else res
    # plain PyTorch data: `item` is the model's input itself
    x = torch.as_tensor(item)[None].to(getattr(self.dls, 'device', None) or next(self.model.parameters()).device)
    self.model.eval()
    with torch.no_grad(): out = to_detach(self.model(x))
    probs, dec = activate(self, out)
    _check_predicted(probs)
    vocab = getattr(self.dls, 'vocab', None)
    d = dec[0]
    label = vocab[int(d)] if vocab is not None and d.ndim == 0 else d
    res = (label, d, probs[0])
    return (item,) + res if with_input else res

def _tabular_predict(self,
        row, # Features to be predicted, a `pd.Series` as fastai's `TabularLearner.predict` takes
    ):
    "fastai's tabular predict, (row, class, probabilities), through the registry; `row.show()` shows the prediction"
    res = stock(_TabularLearner, 'predict')(self, row)
    _check_predicted(res[2])
    return res

def stock_get_preds(learn, *args, **kwargs):
    """fastai's own `get_preds`, patched or not (for comparisons)

    >>> raw = stock_get_preds(learn)[0]  # fastai's own: the raw logits of a plain PyTorch loss
    >>> torch.allclose(raw.softmax(1), learn.get_preds()[0])
    True
    """
    return stock(Learner, 'get_preds')(learn, *args, **kwargs)

def _frozen_get_preds(learn, *args, **kwargs):
    "`stock_get_preds` as fastinterp's passes run it: what the process held before the pass left out of the sweeps"
    with gc_frozen(): return stock_get_preds(learn, *args, **kwargs)

add_patch(Learner, 'get_preds', get_preds)
add_patch(Learner, 'predict', predict)
add_patch(Learner, 'temperature', property(_get_temperature, _set_temperature, _del_temperature, _temperature_doc))
try:
    from fastai.tabular.learner import TabularLearner as _TabularLearner  # loads no progress bar, changes no default
    add_patch(_TabularLearner, 'predict', _tabular_predict)
except ImportError: pass
