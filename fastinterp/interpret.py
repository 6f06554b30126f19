"`ClassificationInterpretation` from one inference pass: mistakes and doubts from cached probabilities"

__all__ = ['ClassificationInterpretation']

import functools, inspect, warnings
from collections.abc import MutableSequence
from contextlib import nullcontext
import numpy as np, pandas as pd, torch
import sklearn.metrics as skm
from fastcore.basics import noop, store_attr
from fastai.torch_core import to_device
from fastai.data.load import DataLoader
import fastai.interpret

from .activations import ACTIVATIONS, activation_for, _activation_for
from .loaders import inference_dl
from .preds import activate, stock_get_preds, add_patch, decision_thresh, per_item_loss, no_bar
from .tta import item_nll, class_targets
from .uncertainty import MEASURES, check_finite, uncertainty, multilabel_uncertainty
from . import show
from . import calibration as cal
from .calibration import mc_dropout

def _is_labelled(dl):
    "Whether `dl` yields targets after its inputs (an unlabelled test_dl does not)"
    b = dl.one_batch()
    n_inp = getattr(dl, 'n_inp', 1)
    if not isinstance(b, (tuple, list)) or len(b) <= n_inp: return False
    return all(getattr(t, 'numel', lambda: 1)() > 0 for t in b[n_inp:])

def _per_item_loss(loss):
    "Whether fastai can get per-item losses from `loss` (it sets `reduction`, or passes reduction='none')"
    if hasattr(loss, 'reduction'): return True
    try: params = inspect.signature(loss.forward if isinstance(loss, torch.nn.Module) else loss).parameters
    except (TypeError, ValueError): return True
    if 'reduction' in params or any(p.kind == p.VAR_KEYWORD for p in params.values()): return True
    warnings.warn(f"The loss {loss!r} takes no `reduction` argument, so there are no per-item losses: "
                  f"the loss views (top_losses) are unavailable; every other view works.")
    return False

def _vocab(dl, n):
    "Class names: the DataLoader's vocab (the last one when there is one per target), else 0..n-1"
    v = getattr(dl, 'vocab', None)
    if v is None: return list(range(n))
    if len(v) and (hasattr(v[-1], 'o2i') or isinstance(v[-1], (list, tuple))): v = v[-1]
    return list(v)

def _topk(scores, k, largest=True):
    "Top `k` scores and their indices, ties broken by the lower index (stable); all of them when k is None or too big"
    if k is not None and k < 0: raise ValueError(f"k must be a number of items (0 or more), got {k}")
    k = len(scores) if k is None else min(int(k), len(scores))
    order = torch.from_numpy(np.argsort(-scores.numpy() if largest else scores.numpy(), kind='stable')[:k].copy())
    return scores[order], order

def output_kind(probs, loss=None):
    "Kind of outputs an explicit `act` or an unregistered loss produced: rows that sum to 1 are classes, values in [0, 1] labels"
    if probs.ndim == 2 and probs.shape[1] > 1 and bool(((probs.sum(1) - 1).abs() < 1e-3).all()): return 'multiclass'
    if bool(((probs >= 0) & (probs <= 1)).all()): return 'multilabel'
    raise ValueError(f"The outputs{'' if loss is None else f' of {loss!r}'} are not probabilities (they leave [0, 1]). Register "
                     f"the loss's activation with fastinterp.register_activation, or pass act=.")

def as_classes(probs, decoded, targs, kind, thresh):
    "Single-label outputs as (N, C) probabilities and (N,) predicted and target classes: a one-output sigmoid becomes two classes"
    if kind == 'multilabel':  # one sigmoid output: a binary classifier
        p = probs.view(-1)
        # the decisions given (taken before any temperature), else p > thresh
        d = decoded.reshape(-1).long() if decoded is not None and decoded.numel() == len(p) else (p > thresh).long()
        return torch.stack([1 - p, p], 1), d, None if targs is None else targs.view(-1).long()
    if probs.ndim != 2: raise ValueError(f"Interpretation needs one row of class probabilities per item, got shape {tuple(probs.shape)}")
    if targs is not None: targs = class_targets(targs, probs).long()  # soft targets become classes
    if decoded is None or decoded.shape != probs.shape[:1]: decoded = probs.argmax(1)
    return probs, decoded.long(), targs

def _check_normalize(normalize):
    if normalize not in (None, 'true', 'pred', 'all'):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")

def normalize_confusion(cm, # Counts: (C, C) actual x predicted, or (L, 2, 2) one matrix per label
        normalize:str|None=None, # None (counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    ):
    "`cm` normalized as sklearn's `confusion_matrix(normalize=...)` does; an empty row or column gives 0s"
    _check_normalize(normalize)
    if normalize is None: return cm
    axis = {'true': -1, 'pred': -2, 'all': (-2, -1) if cm.ndim == 3 else None}[normalize]
    with np.errstate(all='ignore'): cm = cm / cm.sum(axis=axis, keepdims=True)
    return np.nan_to_num(cm)

def _only_with(on, what, **args):
    "Refuse arguments given (not at their default) for a mode that is off"
    given = [name for name, (v, default) in args.items() if v is not default and v != default]
    if given and not on:
        raise TypeError(f"{', '.join(f'{g}=' for g in given)} without {what.split('=')[0]}=: they are for {what}")

def _n_passes(tta, n):
    "Number of augmented passes from `tta` (True or a number) and `n`"
    if tta is True: return 4 if n is None else int(n)
    if n is not None and int(n) != int(tta): raise ValueError(f"tta={tta} and n={n} disagree on the number of passes")
    return int(tta)

class ClassificationInterpretation(fastai.interpret.ClassificationInterpretation):
    "Interpretation of a classifier from ONE inference pass: cached `probs`, `targs`, `decoded`, `losses`"
    def __init__(self,
        learn, # Model used to create the interpretation
        dl:DataLoader, # `DataLoader` inference ran over
        probs:torch.Tensor, # (N, C) probabilities (multiclass, binary) or (N, L) per label (multilabel)
        targs:torch.Tensor|None, # (N,) class indices or (N, L) 0/1 labels; None for an unlabelled `dl`
        decoded:torch.Tensor, # (N,) predicted classes or (N, L) predicted labels
        losses:torch.Tensor|None, # (N,) per-item losses; None for an unlabelled `dl`
        act=None, # Activation given to `from_learner`, if any
        multilabel:bool=False, # Whether each output is an independent label
        thresh:float=0.5, # Threshold of a multilabel prediction
    ):
        store_attr('learn,dl,probs,targs,decoded,losses,act,multilabel,thresh')
        self.temperature = vars(learn).get('temperature')  # that the probabilities were made at, if any
        self.tta_report = None  # per-pass accuracy and NLL, when built from test-time augmentation
        self.extra_measures = {}  # name -> (N,) uncertainty beyond MEASURES: 'mutual_info' and 'variance' from MC dropout
        self.vocab = _vocab(dl, probs.shape[1])

    @classmethod
    def from_learner(cls,
        learn, # Model used to create the interpretation
        ds_idx:int=1, # Index of `learn.dls` when `dl` is None
        dl:DataLoader=None, # `DataLoader` to interpret; may be unlabelled (a `test_dl`)
        act=None, # Override the loss's activation
        tta:bool|int=False, # Test-time augmentation: True (`n` passes, 4 by default) or the number of augmented passes
        mc_dropout:int=0, # MC dropout: the mean of this many passes with dropout on; adds 'mutual_info', 'variance'
        streaming:bool=False, # Keep counts and the top `k` items only: a `StreamingInterpretation`, memory flat in N
        n:int|None=None, # tta: number of augmented passes, as `Learner.tta`'s `n` (4 if None)
        item_tfms=None, # tta: item transforms to use instead of the `DataLoader`'s
        batch_tfms=None, # tta: batch transforms to use instead of the `DataLoader`'s
        beta:float=0.25, # tta: weight of the un-augmented pass in the blend
        use_max:bool=False, # tta: fastai's max over every pass, the un-augmented one too
        mode:str='mean', # tta: aggregate of the augmented passes, 'mean', 'gmean' or 'max'
        k:int=100, # streaming: items kept per list (top losses, most uncertain by each measure)
        n_bins:int=15, # streaming: calibration bins
        measures=tuple(MEASURES), # streaming: uncertainty measures whose top `k` items are kept
        progress:bool=True, # Show fastai's progress bar
    ):
        "Run inference once over `dl` and cache probabilities, targets, decoded classes and losses"
        tta_args = dict(item_tfms=item_tfms, batch_tfms=batch_tfms, beta=beta, use_max=use_max, mode=mode)
        stream_args = dict(k=k, n_bins=n_bins, measures=measures)
        _only_with(tta, 'tta=True', n=(n, None), item_tfms=(item_tfms, None), batch_tfms=(batch_tfms, None),
                   beta=(beta, 0.25), use_max=(use_max, False), mode=(mode, 'mean'))
        _only_with(streaming, 'streaming=True', k=(k, 100), n_bins=(n_bins, 15), measures=(tuple(measures), tuple(MEASURES)))
        if streaming:
            if tta or mc_dropout: raise TypeError("streaming= goes with neither tta= nor mc_dropout=: they keep every prediction")
            from .streaming import StreamingInterpretation
            return StreamingInterpretation.from_learner(learn, ds_idx, dl, act, progress=progress, **stream_args)
        if tta and act is not None: raise TypeError("act= and tta= do not go together: TTA averages the registry's probabilities")
        if mc_dropout and (tta or act is not None):
            raise TypeError("mc_dropout= goes with neither tta= nor act=: it averages the registry's probabilities over dropout passes")
        if dl is None: dl = learn.dls[ds_idx].new(shuffle=False, drop_last=False)
        dl = inference_dl(dl)  # a torch DataLoader: the same batches as a fastai one, in data set order
        if len(dl) == 0 or len(dl.dataset) == 0: raise ValueError("Cannot interpret an empty DataLoader: it holds no items")
        rec = activation_for(learn.loss_func) if act is None else None
        if rec is not None and rec.kind == 'regression':
            raise TypeError(f"ClassificationInterpretation is for classifiers; {rec.loss} is a regression loss, "
                            f"so there are no classes to interpret.")
        if tta: return cls._from_tta(learn, dl, rec, _n_passes(tta, n), progress=progress, **tta_args)
        if mc_dropout:
            with nullcontext() if progress else no_bar(learn): return cls._from_mc_dropout(learn, dl, rec, mc_dropout)
        labelled = _is_labelled(dl)
        with_loss = labelled and _per_item_loss(learn.loss_func)
        with nullcontext() if progress else no_bar(learn): res = stock_get_preds(learn, dl=dl, with_loss=with_loss, act=noop)
        raw, targs = res[0], res[1] if labelled else None
        losses = res[2] if with_loss else None
        check_finite(raw)
        probs, decoded = activate(learn, raw, act, rec)
        # the losses of the probabilities the views show: at the learner's temperature, when it has one
        if with_loss and rec is not None and vars(learn).get('temperature') is not None:
            losses = per_item_loss(learn, raw, targs, rec)
        return cls._from_probs(learn, dl, probs, targs, decoded, losses, act, rec and rec.kind,
                               rec and decision_thresh(learn, rec))

    @classmethod
    def _from_tta(cls, learn, dl, rec, n, **kwargs):
        "The interpretation of TTA probabilities, with `tta_report` comparing the passes"
        if kwargs.get('beta', 0.25) is None and not kwargs.get('use_max'):
            raise ValueError("tta=True needs one set of probabilities: beta=None is for Learner.tta")
        res = learn.tta(dl=dl, n=n, **kwargs)
        interp = cls._from_averaged(learn, dl, rec, *res)
        interp.tta_report, interp.n_tta = res.report, n
        return interp

    @classmethod
    def _from_mc_dropout(cls, learn, dl, rec, n):
        "The interpretation of the mean MC-dropout probabilities, with two epistemic measures"
        r = mc_dropout(learn, n, dl=dl)
        interp = cls._from_averaged(learn, dl, rec, r.probs, r.targs)
        interp.extra_measures, interp.mc_passes = {'mutual_info': r.mutual_info, 'variance': r.variance}, n
        return interp

    @classmethod
    def _from_averaged(cls, learn, dl, rec, probs, targs):
        "Probabilities averaged over passes (TTA, MC dropout): their losses are the NLL of the targets, whatever the loss"
        ml, thresh = rec.kind == 'multilabel', decision_thresh(learn, rec)
        losses = None if targs is None else item_nll(probs, targs, ml)
        decoded = probs > thresh if ml else rec.decodes(probs)
        return cls._from_probs(learn, dl, probs, targs, decoded, losses, None, rec.kind, thresh)

    @classmethod
    def _from_probs(cls, learn, dl, probs, targs, decoded, losses, act, kind, thresh=None):
        "Bring every kind of classifier output to (N, C) class probabilities or (N, L) label probabilities"
        probs = probs.float()
        if losses is not None: losses = losses.reshape(len(probs), -1).mean(1)  # one per item: a 1-output BCE gives (N, 1)
        if kind not in ('multiclass', 'multilabel'): kind = output_kind(probs, learn.loss_func)
        thresh = thresh if thresh is not None else getattr(learn.loss_func, 'thresh', 0.5)
        if targs is not None: targs = targs.detach().cpu()
        if kind == 'multiclass' or probs.ndim == 1 or probs.shape[1] == 1:
            probs, decoded, targs = as_classes(probs, decoded, targs, kind, thresh)
            return cls(learn, dl, probs, targs, decoded, losses, act, thresh=thresh)
        if targs is not None: targs = targs.view(probs.shape).long()
        decoded = (probs > thresh) if decoded is None or decoded.shape != probs.shape else decoded
        return cls(learn, dl, probs, targs, decoded.long(), losses, act, multilabel=True, thresh=thresh)

    # --- what the views are built from
    @property
    def labelled(self): return self.targs is not None

    def _need_labels(self, what):
        if not self.labelled: raise ValueError(f"{what} needs targets, and this DataLoader is unlabelled: "
                                               f"use the uncertainty views (most_uncertain, to_df) instead")

    def _cls(self, cls):
        "Index of class label `cls` in the vocab"
        for match in (lambda v: v == cls, lambda v: str(v) == str(cls)):  # 3 finds the folder label '3'
            for i, v in enumerate(self.vocab):
                if match(v): return i
        raise ValueError(f"Class {cls!r} is not in the vocab: {list(self.vocab)}")

    def uncertainty(self, measure='entropy'):
        "Per-item uncertainty (higher = more uncertain): `measure` of `MEASURES` or a callable; multilabel: closeness to the threshold"
        if isinstance(measure, str) and measure in self.extra_measures: return self.extra_measures[measure]
        if measure in ('mutual_info', 'variance'):
            raise ValueError(f"{measure!r} measures disagreement between dropout passes: build the interpretation with "
                             f"ClassificationInterpretation.from_learner(learn, mc_dropout=20)")
        if self.multilabel: return multilabel_uncertainty(self.probs, self.thresh)
        return uncertainty(self.probs, measure)

    def correct(self):
        "Per item: whether the prediction is right (multilabel: every label right)"
        self._need_labels('correct')
        return (self.decoded == self.targs).all(1) if self.multilabel else self.decoded == self.targs

    # --- views: each returns (scores, idxs)
    def top_losses(self,
        k:int|None=None, # How many, all if None
        largest:bool=True, # Largest losses first, or smallest
        items:bool=False, # Also return the items
    ):
        "`k` largest (or smallest) losses and their indices"
        self._need_labels('top_losses')
        if self.losses is None: raise ValueError("No per-item losses: the loss takes no `reduction` argument")
        res = _topk(self.losses, k, largest)
        return (*res, self.items(res[1])) if items else res

    def most_uncertain(self,
        k:int|None=None, # How many, all if None
        measure='entropy', # A name in `MEASURES` or a callable probs -> score
        cls=None, # Restrict to items predicted as (by='pred') or labelled as (by='target') this class
        by:str='pred', # 'pred' or 'target'
    ):
        "`k` most uncertain items and their scores, optionally for one class"
        scores = self.uncertainty(measure)
        if cls is None: return _topk(scores, k)
        if by not in ('pred', 'target'): raise ValueError(f"by must be 'pred' or 'target', got {by!r}")
        c = self._cls(cls)
        if by == 'target': self._need_labels("most_uncertain(by='target')")
        src = self.decoded if by == 'pred' else self.targs
        sel = torch.nonzero(src[:, c] == 1 if self.multilabel else src == c).view(-1)
        s, i = _topk(scores[sel], k)
        return s, sel[i]

    def _class_items(self, cls, right):
        self._need_labels('most_correct/most_incorrect')
        c = self._cls(cls)
        if self.multilabel: has, ok = self.targs[:, c] == 1, self.decoded[:, c] == 1
        else: has, ok = self.targs == c, self.decoded == c
        sel = torch.nonzero(has & (ok if right else ~ok)).view(-1)
        return sel, self.probs[sel, c]

    def most_correct(self, cls, k:int|None=None):
        "Items labelled `cls` and predicted right, by p(cls) descending: the model's surest right answers"
        sel, p = self._class_items(cls, True)
        s, i = _topk(p, k, largest=True)
        return s, sel[i]

    def most_incorrect(self, cls, k:int|None=None):
        "Items labelled `cls` and predicted wrong, by p(cls) ascending: the model's worst misses of that class"
        sel, p = self._class_items(cls, False)
        s, i = _topk(p, k, largest=False)
        return s, sel[i]

    def confusion_matrix(self,
        normalize:str|None=None, # None (counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    ):
        "Confusion matrix (actual x predicted) by counting, O(N + C^2) memory; multilabel: (L, 2, 2) per label as sklearn's"
        self._need_labels('confusion_matrix')
        _check_normalize(normalize)
        if self.multilabel:
            t, d = self.targs.numpy().astype(bool), self.decoded.numpy().astype(bool)
            cm = np.stack([(~t & ~d).sum(0), (~t & d).sum(0), (t & ~d).sum(0), (t & d).sum(0)], 1).reshape(-1, 2, 2)
        else:
            C = len(self.vocab)
            cm = np.bincount(self.targs.numpy() * C + self.decoded.numpy(), minlength=C*C).reshape(C, C)
        return normalize_confusion(cm, normalize)

    def most_confused(self, min_val:int=1):
        "(actual, predicted, count) of the off-diagonal cells with at least `min_val` items, most first"
        cm = self.confusion_matrix()
        if self.multilabel: raise ValueError("most_confused is for single-label classifiers: see confusion_matrix() per label")
        np.fill_diagonal(cm, 0)
        i, j = np.nonzero(cm >= min_val)
        order = np.lexsort((j, i, -cm[i, j]))
        return [(self.vocab[i[o]], self.vocab[j[o]], int(cm[i[o], j[o]])) for o in order]

    def classification_report(self, **kwargs):
        "scikit-learn's classification report (precision, recall, f1 per class or label) as a string"
        self._need_labels('classification_report')
        labels = list(range(len(self.vocab)))
        return skm.classification_report(self.targs.numpy(), self.decoded.numpy(), labels=None if self.multilabel else labels,
                                         target_names=[str(v) for v in self.vocab], zero_division=0, **kwargs)

    def print_classification_report(self):
        "Print scikit-learn's classification report"
        print(self.classification_report())

    def best_thresholds(self):
        "Multilabel: per label, the threshold on p(label) maximizing F1 on this data, with that F1"
        self._need_labels('best_thresholds')
        if not self.multilabel: raise ValueError("best_thresholds is for multi-label classifiers (sigmoid outputs)")
        rows = []
        for l, name in enumerate(self.vocab):
            prec, rec, th = skm.precision_recall_curve(self.targs[:, l].numpy(), self.probs[:, l].numpy())
            with np.errstate(all='ignore'): f1 = np.nan_to_num(2 * prec * rec / (prec + rec))[:-1]
            b = int(np.argmax(f1)) if len(f1) else None
            rows.append((name, float(th[b]) if b is not None else self.thresh, float(f1[b]) if b is not None else 0.))
        return pd.DataFrame(rows, columns=['label', 'threshold', 'f1'])

    def to_df(self):
        "One row per item: item, target, prediction, p(pred), p(target), loss and every uncertainty measure"
        df = pd.DataFrame({'item': self._item_names()})
        names = np.array([str(v) for v in self.vocab], dtype=object)
        if self.multilabel:
            join = lambda m: [';'.join(names[r.astype(bool)]) for r in m.numpy()]
            if self.labelled: df['target'] = join(self.targs)
            df['prediction'] = join(self.decoded)
            for l, name in enumerate(names): df[f'p({name})'] = self.probs[:, l].numpy()
            if self.losses is not None: df['loss'] = self.losses.numpy()
            df['uncertainty'] = self.uncertainty().numpy()
            for m, s in self.extra_measures.items(): df[m] = s.numpy()
            return df
        idx = torch.arange(len(self.probs))
        if self.labelled: df['target'] = names[self.targs.numpy()]
        df['prediction'] = names[self.decoded.numpy()]
        df['p_pred'] = self.probs[idx, self.decoded].numpy()
        if self.labelled:
            df['p_target'] = self.probs[idx, self.targs].numpy()
            if self.losses is not None: df['loss'] = self.losses.numpy()
        for m, f in MEASURES.items(): df[m] = f(self.probs).numpy()
        for m, s in self.extra_measures.items(): df[m] = s.numpy()
        return df

    # --- the items themselves, fetched only for those shown
    def _item_names(self):
        items = getattr(self.dl, 'items', None)
        if isinstance(items, pd.DataFrame) or items is None or len(items) != len(self.probs): return list(range(len(self.probs)))
        return [str(o) for o in items]

    def items(self, idxs):
        "The items at `idxs` (int, slice, list, tensor, array or mask), as the DataLoader holds them (paths, rows)"
        items = getattr(self.dl, 'items', None)
        if items is None: return show.idx_list(idxs, _n_items(self.dl))
        idxs = show.idx_list(idxs, len(items))
        return items.iloc[idxs] if hasattr(items, 'iloc') else [items[i] for i in idxs]

    def batch(self, idxs):
        "A batch of the inputs and targets at `idxs`, as the model saw them: data loading only, no inference"
        idxs = show.idx_list(idxs, _n_items(self.dl))
        if not idxs: raise ValueError("No items selected: a batch needs one or more")
        dl = self.dl
        b = dl.create_batch(dl.before_batch([dl.do_item(i) for i in idxs]))  # before_batch pads text
        return dl.after_batch(to_device(b, getattr(dl, 'device', None)))

    def __getitem__(self, idxs):
        "Inputs, probabilities, targets, decoded classes and losses at `idxs` (int, slice, list, tensor, array), cached"
        idxs = show.idx_list(idxs, len(self.probs))
        b = self.batch(idxs)
        n_inp = getattr(self.dl, 'n_inp', 1)
        inps = b[:n_inp] if n_inp > 1 else b[0]
        pick = lambda t: None if t is None else t[idxs]
        return inps, self.probs[idxs], pick(self.targs), self.decoded[idxs], pick(self.losses)

    def show_results(self,
        idxs, # Indices of the items: int, slice, list, tensor or array
        **kwargs # Passed to the DataLoader's `show_results`: nrows, ncols, figsize, ...
    ):
        "Show the items at `idxs` with their targets and cached predictions, as fastai shows results: no inference"
        idxs = show.idx_list(idxs, len(self.probs))
        if not idxs: raise ValueError("No items selected: show_results needs one or more")
        b, n_inp = self.batch(idxs), getattr(self.dl, 'n_inp', 1)
        if not hasattr(self.dl, 'show_results') or not self.labelled or len(b) <= n_inp:
            # a plain DataLoader, or no targets to show beside the predictions: the items titled with them
            show.show_items(self, idxs, self._titles(idxs), suptitle='Results', **kwargs)
            return
        dec = self.decoded[idxs].to(b[n_inp].device)
        if not self.multilabel and b[n_inp].ndim == 2: dec = dec[:, None]  # a tabular target is (N, 1)
        self.dl.show_results(b, type(b[n_inp])(dec.to(b[n_inp].dtype)), max_n=len(idxs), **kwargs)

    # --- calibration
    def calibration(self, n_bins:int=15):
        "ECE, MCE, Brier score, NLL and accuracy of the cached probabilities (multilabel: pooled over labels, and `label_ece`)"
        self._need_labels('calibration')
        res = cal.calibration_metrics(self.probs, self.targs, n_bins, self.multilabel, self.thresh, self.vocab)
        if not self.multilabel: res['accuracy'] = float(self.correct().double().mean())  # of the decisions shown
        return res

    # --- plots: each draws one figure and returns None, as fastai's do (a returned Figure shows twice in Jupyter)
    def plot_reliability(self, n_bins:int=15, **kwargs):
        "Reliability diagram: accuracy per confidence bin against the diagonal, gap shaded, histogram beneath"
        self._need_labels('plot_reliability')
        cal.reliability_diagram(self.probs, self.targs, n_bins, self.multilabel, **kwargs)

    def plot_top_losses(self,
        k:int|MutableSequence=9, # Number of items, or ranks in the loss ranking (a list), as fastai takes it
        largest:bool=True, # Largest losses first, or smallest
        **kwargs # nrows, ncols, figsize of the grid, as fastai's; the rest to each image's `show` (cmap, ...)
    ):
        "Show the `k` items with the largest losses; title: predicted class and p, actual class and p, loss"
        _, idxs = _ranked(lambda n: self.top_losses(n, largest), k)
        show.show_items(self, idxs, self._titles(idxs, loss=True), suptitle='Top losses', **kwargs)

    def plot_most_uncertain(self,
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        measure='entropy', # A name in `MEASURES` or a callable probs -> score
        cls=None, # Restrict to items predicted as (by='pred') or labelled as (by='target') this class
        by:str='pred', # 'pred' or 'target'
        n_classes:int=3, # Classes in each title, most probable first
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the `k` most uncertain items; title: the top classes and their probabilities"
        scores, idxs = _ranked(lambda n: self.most_uncertain(n, measure, cls, by), k)
        name = ('closeness to threshold' if self.multilabel else measure if isinstance(measure, str)
                else getattr(measure, '__name__', 'uncertainty'))
        sub = '' if cls is None else f" ({'predicted' if by == 'pred' else 'labelled'} {cls})"
        show.show_items(self, idxs, self._titles(idxs, top=n_classes, score=(name, scores.tolist())),
                        suptitle=f'Most uncertain by {name}{sub}', **kwargs)

    def plot_most_correct(self,
        cls, # Class whose items to show
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the items labelled `cls` the model got right most confidently"
        _, idxs = _ranked(lambda n: self.most_correct(cls, n), k)
        # every one is right: the colours need no legend
        show.show_items(self, idxs, self._titles(idxs), suptitle=f'Most confidently right: true {cls}', legend=False,
                        **kwargs)

    def plot_most_incorrect(self,
        cls, # Class whose items to show
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the items labelled `cls` the model got wrong, lowest p(cls) first"
        _, idxs = _ranked(lambda n: self.most_incorrect(cls, n), k)
        show.show_items(self, idxs, self._titles(idxs, loss=True), legend=False,
                        suptitle=f'Worst misses: true {cls}, lowest p({cls}) first', **kwargs)

    def plot_confusion_matrix(self,
        normalize:bool|str|None=False, # fastai's True (rows: 'true'), or None/False (counts), 'true', 'pred', 'all'
        title:str='Confusion matrix', # Title of the plot
        cmap:str='Blues', # Colormap from matplotlib
        norm_dec:int=2, # Decimals of a normalized cell (more where they would print it as 0 or 1)
        plot_txt:bool=True, # Write each cell's value in it (up to `max_text` classes)
        max_text:int=20, # Above this many classes, no cell text: it would not be readable
        **kwargs # Passed to `plt.figure` (figsize, dpi, ...), as fastai's
    ):
        "Plot the confusion matrix, readable from 2 to hundreds of classes"
        if self.multilabel: raise ValueError("plot_confusion_matrix is for single-label classifiers; see confusion_matrix()")
        if isinstance(normalize, bool): normalize = 'true' if normalize else None  # fastai's bool normalizes the rows
        show.plot_confusion(self.confusion_matrix(normalize), [str(v) for v in self.vocab], normalize, title, cmap,
                            norm_dec, plot_txt, max_text, **kwargs)

    def _title_parts(self, i, top=None):
        "Lines of the title of item `i`: strings, and the probabilities to print in them as floats"
        p, names = self.probs[i], [str(v) for v in self.vocab]
        if self.multilabel:  # every label predicted or true, with its probability
            on = torch.nonzero(self.decoded[i] + (self.targs[i] if self.labelled else 0)).view(-1).tolist()
            pred = _join([[f'{names[j]}: ', float(p[j])] for j in on if self.decoded[i, j]], ', ')
            lines = [['pred ', *(pred or ['none'])]]
            if self.labelled: lines.append(['true ' + (', '.join(names[j] for j in on if self.targs[i, j]) or 'none')])
        elif top:
            ps, cs = p.topk(min(top, len(p)))
            lines = [_join([[f'{names[c]}: ', v] for c, v in zip(cs.tolist(), ps.tolist())], '  ')]
            if self.labelled: lines.append([f"true {names[self.targs[i]]}"])
        else:
            d = int(self.decoded[i])
            lines = [[f"pred {names[d]}: ", float(p[d])]]
            if self.labelled:
                t = int(self.targs[i])
                lines[0] += [f" · true {names[t]}: ", float(p[t])]
        return lines

    def _titles(self, idxs, loss=False, top=None, score=None):
        "Titles of the items at `idxs`, every probability of the gallery formatted together: one number of decimals"
        idxs = show.idx_list(idxs)
        parts = [self._title_parts(i, top) for i in idxs]
        # a title never prints two different probabilities alike, and the gallery keeps one number of decimals
        fps = show.format_prob_groups([[s for l in ls for s in l if isinstance(s, float)] for ls in parts])
        # a score (entropy, margin) formatted over the gallery: different scores read differently
        fs = show.format_probs(score[1]) if score is not None else None
        res = []
        for j, (i, ls) in enumerate(zip(idxs, parts)):
            fp = iter(fps[j])
            lines = [''.join(next(fp) if isinstance(s, float) else s for s in l) for l in ls]
            if loss and self.losses is not None: lines.append(f"loss {show.format_loss(float(self.losses[i]))}")
            if fs is not None:  # on the second line: beside three classes it would overflow the image's width
                s = f"{score[0]} {fs[j]}"
                if len(lines) > 1: lines[-1] += f" · {s}"
                else: lines.append(s)
            res.append('\n'.join(lines))
        return res

    def _title(self, i, loss=False, top=None, score=None):
        "Title of item `i` alone: `score` is (name, value)"
        return self._titles([i], loss, top, None if score is None else (score[0], [score[1]]))[0]

    def __repr__(self):
        "What this interpretation is of: items, classes, kind, activation, accuracy, where its probabilities come from"
        n, C = len(self.probs), len(self.vocab)
        head = f"{type(self).__name__}: {n:,} items, {C} {'labels' if self.multilabel else 'classes'}"
        head += f" ({_some(self.vocab)})"
        kind = [f"{'multi-label' if self.multilabel else 'single-label'}, {_activation(self)}"]
        if self.multilabel: kind.append(f"threshold {_thresh(self.thresh)}")
        if self.labelled:
            acc = float(self.correct().double().mean())
            kind.append(f"{'every label right' if self.multilabel else 'accuracy'} {cal._pct(acc)}")
        else: kind.append('unlabelled')
        src = [_source(self.learn, self.dl)]
        n_tta = getattr(self, 'n_tta', None)
        if n_tta is None and self.tta_report is not None:
            n_tta = sum(str(r).startswith('pass ') for r in self.tta_report.index)
        if n_tta is not None or self.tta_report is not None: src.append(f"TTA {n_tta or '?'} passes")
        if self.extra_measures: src.append(f"MC dropout {getattr(self, 'mc_passes', None) or '?'} passes")
        # the temperature the probabilities were made at, where the interpretation keeps it; else the learner's now
        T = getattr(self, 'temperature', vars(self.learn).get('temperature'))
        if T is not None and self.act is None: src.append(f"temperature {_thresh(T)}")
        return '\n'.join([head, '  ' + ' · '.join(kind), '  from ' + ' · '.join(src)])

# --- helpers of the plots and the repr
def _n_items(dl):
    "How many items `dl` can load by index (None when it cannot tell)"
    try: return len(dl.dataset)
    except (AttributeError, TypeError): return None

def _ranked(view, k):
    "The (scores, idxs) of a ranking `view(k)`: its first `k`, or the ranks listed in `k`, as fastai's plot_top_losses"
    if isinstance(k, (slice, MutableSequence, tuple, range, np.ndarray, torch.Tensor)):
        scores, idxs = view(None)
        pos = show.idx_list(k, len(idxs))
        return scores[pos], idxs[pos]
    return view(k)

def _join(parts, sep):
    "The lists of `parts` joined into one, `sep` between them"
    return [s for j, p in enumerate(parts) for s in ([sep] if j else []) + p]

def _some(names, n=4):
    "The first `n` of `names` and the last, for a one-line summary"
    names = [str(v) for v in names]
    return ', '.join(names if len(names) <= n + 1 else names[:n] + ['…', names[-1]])

def _thresh(t):
    "A threshold or a temperature: one number, or one per label"
    t = torch.as_tensor(t).float()
    if t.numel() == 1: return f'{float(t):.4g}'
    return f"per label, {float(t.min()):.3g} to {float(t.max()):.3g}"

def _activation(interp):
    "Name of the activation the probabilities come from"
    act = getattr(interp, 'act', None)
    if act is not None: return f"act={getattr(act, '__name__', type(act).__name__)}"
    rec = _activation_for(interp.learn.loss_func, warn=False)  # an unregistered loss warned when predicting
    return f"{rec.name} of {rec.loss}" if rec.name in ACTIVATIONS else f"the activation of {rec.loss}"

def _source(learn, dl):
    "Which DataLoader the predictions are of: one of `learn.dls`, or another"
    ds = getattr(dl, 'dataset', None)
    names = {0: 'training set', 1: 'validation set'}
    for i, d in enumerate(getattr(getattr(learn, 'dls', None), 'loaders', []) or []):
        if ds is not None and getattr(d, 'dataset', None) is ds:
            return f"the {names.get(i, 'DataLoader')} (learn.dls[{i}])"
    n = _n_items(dl)
    return f"a {type(dl).__name__}" + ('' if n is None else f" of {n:,} items")

_FastaiCI = fastai.interpret.ClassificationInterpretation
_stock_from_learner = _FastaiCI.from_learner.__func__

def _from_learner(cls, *args, **kwargs):
    "fastai's `ClassificationInterpretation.from_learner` hands out fastinterp's (a subclass) while patched"
    if cls is _FastaiCI: return ClassificationInterpretation.from_learner(*args, **kwargs)
    return _stock_from_learner(cls, *args, **kwargs)

# what help(), show_doc and inspect.signature show where a user reaches it, from fastai's class: fastinterp's own
functools.update_wrapper(_from_learner, ClassificationInterpretation.from_learner.__func__)

add_patch(_FastaiCI, 'from_learner', classmethod(_from_learner))
