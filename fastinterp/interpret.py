"The interpretations of a classifier: in memory from ONE inference pass, or streamed into counts and the top k"

__all__ = ['ClassificationInterpretation', 'StreamingInterpretation']

import inspect, warnings
from contextlib import nullcontext

import numpy as np, torch
from fastcore.basics import detuplify, noop, store_attr
from fastai.callback.core import Callback
from fastai.learner import _ConstantFunc
from fastai.torch_core import to_detach
from fastai.data.load import DataLoader
import fastai.interpret

from .activations import activation_for
from .calibration import calibration_bins, calibration_metrics, metrics_from_sums
from .intervals import bootstrap_calibration
from .core import _nonfinite_rows, as_classes, check_k, confusion_counts, item_nll, nonfinite_message, output_kind, topk
from .loaders import _is_distributed, every_item_dl, in_order
from .passes import no_bar
from .patching import hand_out
from .preds import _probs_in, activate, decision_thresh, learner_temperature, _frozen_get_preds
from .streaming import StreamingCallback, _has_targets, batch_losses, stream
from .stats import ABSTAIN_EDGES, StreamingStats
from .uncertainty import MEASURES, mc_dropout
from .show import idx_list
from .views import Rows, Views, source

def _per_item_loss(loss)->bool:
    "Whether fastai can get per-item losses from `loss` (it sets `reduction`, or passes reduction='none')"
    if hasattr(loss, 'reduction'): return True
    try: params = inspect.signature(loss.forward if isinstance(loss, torch.nn.Module) else loss).parameters
    except (TypeError, ValueError): return True
    return 'reduction' in params or any(p.kind == p.VAR_KEYWORD for p in params.values())

def _warn_no_losses(loss, labelled, per_item):
    "After a pass: the loss views are missing from labelled data because `loss` gives no per-item losses"
    if labelled and not per_item:
        warnings.warn(f"The loss {loss!r} takes no `reduction` argument, so there are no per-item losses: "
                      f"the loss views (top_losses) are unavailable; every other view works.")

def _vocab(dl, n):
    "Class names: the DataLoader's vocab (the last one when there is one per target), else 0..n-1 (None: n is None)"
    v = getattr(dl, 'vocab', None)
    if v is None: return None if n is None else list(range(n))
    if len(v) and (hasattr(v[-1], 'o2i') or isinstance(v[-1], (list, tuple))): v = v[-1]
    return list(v)

def _only_with(on, what, **args):
    "Refuse arguments given (not at their default) for a mode that is off"
    given = [name for name, (v, default) in args.items() if v is not default and v != default]
    if given and not on:
        raise ValueError(f"{', '.join(f'{g}=' for g in given)} without {what.split('=')[0]}=: they are for {what}")

def _n_passes(tta, n):
    "Number of augmented passes from `tta` (True or a number) and `n`"
    if tta is True: return 4 if n is None else int(n)
    if n is not None and int(n) != int(tta): raise ValueError(f"tta={tta} and n={n} disagree on the number of passes")
    return int(tta)

class _Collect(Callback):
    "Each validation batch's probabilities, decisions, targets and losses, written into tensors of every item"
    order, run_train = 61, False  # after fastai's progress bar (60)
    def __init__(self, act, activation, with_loss, n=None):
        store_attr('act,activation,with_loss,n')

    def before_validate(self): self.bufs, self.seen, self.bad, self.probs_in, self.labelled = None, 0, 0, None, None

    def after_batch(self):
        raw = to_detach(self.learn.pred)
        bs, bad = len(raw), _nonfinite_rows(raw)
        self.bad += bad
        if self.bad:  # every row counted, for one error at the end
            self.seen += bs
            return
        self.probs_in = _probs_in(self.probs_in, self.learn, self.activation, raw)  # decided on the first batch
        probs, decoded = activate(self.learn, raw, self.act, self.activation, finite=True, probs_in=self.probs_in)
        if probs.ndim > 2:
            raise ValueError(f"The model's outputs have shape {tuple(probs.shape)}: a prediction per pixel, not per "
                             f"item. For a segmentation model use SegmentationInterpretation.from_learner(learn)")
        batch = {'probs': probs.float(), 'decoded': decoded}
        if self.labelled is None: self.labelled = _has_targets(self.learn.yb)  # decided on the first batch
        if self.labelled: batch['targs'] = to_detach(detuplify(self.learn.yb))
        if self.labelled and self.with_loss: batch['losses'] = batch_losses(self.learn, self.act, self.activation)
        if self.bufs is None:  # every item's, at the first batch: the probabilities are held once, no copy of them
            n = max(self.n or 0, bs)
            self.bufs = {k: v.new_empty((n, *v.shape[1:])) for k, v in batch.items()}
        s = self.seen
        for k, v in batch.items():
            buf = self.bufs[k]
            if s + bs > len(buf):  # more items than the DataLoader said: room for twice as many
                buf = self.bufs[k] = torch.cat([buf, buf.new_empty((max(len(buf), bs), *buf.shape[1:]))])
            buf[s:s + bs] = v
        self.seen += bs

    def result(self, order=None):
        "(probs, decoded, targs, losses) of every item, in data set order (`order`: the pass's own, put back)"
        if self.bad: raise ValueError(nonfinite_message(self.bad, self.seen))
        res = [None if self.bufs is None or k not in self.bufs else self.bufs[k][:self.seen]
               for k in ('probs', 'decoded', 'targs', 'losses')]
        if order is not None:
            back = torch.as_tensor(list(order)).argsort()  # as fastai's get_preds(reorder=True) puts them back
            res = [None if t is None else t.index_select(0, back) for t in res]  # 4x faster than t[back]
        return res

class ClassificationInterpretation(Views, fastai.interpret.ClassificationInterpretation):
    """Interpretation of a classifier from ONE inference pass: cached `probs`, `targs`, `decoded`, `losses`

    >>> interp = ClassificationInterpretation.from_learner(learn, progress=False)  # one inference pass
    >>> interp.probs.shape, int(interp.confusion_matrix().sum()), [t.shape for t in interp.top_losses(4)]
    (torch.Size([60, 3]), 60, [torch.Size([4]), torch.Size([4])])
    """
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
        self.temperature = learner_temperature(learn)  # that the probabilities were made at, if any
        self.tta_report = None  # per-pass accuracy and NLL, when built from test-time augmentation
        self.extra_measures = {}  # name -> (N,) uncertainty beyond MEASURES: 'mutual_info', 'variance' of MC dropout
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
        """Run inference once over `dl` and cache probabilities, targets, decoded classes and losses

        >>> interp = ClassificationInterpretation.from_learner(learn, progress=False)
        >>> nll = -interp.probs.gather(1, interp.targs[:, None])[:, 0].log()  # cross-entropy, by hand
        >>> len(interp.probs), torch.allclose(interp.losses, nll, atol=1e-5), interp.top_losses(3)[1].shape
        (60, True, torch.Size([3]))
        """
        tta_args = dict(item_tfms=item_tfms, batch_tfms=batch_tfms, beta=beta, use_max=use_max, mode=mode)
        stream_args = dict(k=k, n_bins=n_bins, measures=measures)
        _only_with(tta, 'tta=True', n=(n, None), item_tfms=(item_tfms, None), batch_tfms=(batch_tfms, None),
                   beta=(beta, 0.25), use_max=(use_max, False), mode=(mode, 'mean'))
        _only_with(streaming, 'streaming=True', k=(k, 100), n_bins=(n_bins, 15),
                   measures=(tuple(measures), tuple(MEASURES)))
        if streaming:
            if tta or mc_dropout:
                raise ValueError("streaming= goes with neither tta= nor mc_dropout=: they keep every prediction")
            return StreamingInterpretation.from_learner(learn, ds_idx, dl, act, progress=progress, **stream_args)
        if tta and act is not None:
            raise ValueError("act= and tta= do not go together: TTA averages the registry's probabilities")
        if mc_dropout and (tta or act is not None):
            raise ValueError("mc_dropout= goes with neither tta= nor act=: it averages the registry's probabilities "
                             "over dropout passes")
        dl = every_item_dl(learn, ds_idx, dl)  # a torch DataLoader: the same batches as a fastai one, in data set order
        activation = None if act is not None else activation_for(learn.loss_func).check_classifier(cls.__name__)
        if tta: return cls._from_tta(learn, dl, activation, _n_passes(tta, n), progress=progress, **tta_args)
        if mc_dropout:
            with nullcontext() if progress else no_bar(learn):
                return cls._from_mc_dropout(learn, dl, activation, mc_dropout)
        dl, ordered = in_order(dl)  # first: a pass of the DataLoader as it is, even for one batch, lists every index
        # whether there are targets is seen in the pass (no batch fetched before it): a loss without them is not
        # computed, so it is set up to give per-item losses whenever it can
        with_loss = _per_item_loss(learn.loss_func)
        order = None if ordered else dl.get_idxs()  # a custom order (a SortedDL's), fixed for the pass, put back after
        run = dl if ordered else dl.new(get_idxs=_ConstantFunc(order))
        cb = _Collect(act, activation, with_loss, getattr(run, 'n', None))
        # fastai's loop, the batches written into tensors of every item as they come: no list of batches
        with learn.loss_not_reduced() if with_loss else nullcontext(), nullcontext() if progress else no_bar(learn):
            _frozen_get_preds(learn, dl=run, act=noop, cbs=[cb], with_preds=False, with_targs=False, reorder=False)
        _warn_no_losses(learn.loss_func, cb.labelled, with_loss)
        probs, decoded, targs, losses = cb.result(order)
        return cls._from_probs(learn, dl, probs, targs, decoded, losses, act, activation and activation.kind,
                               decision_thresh(learn, activation))

    @classmethod
    def _from_tta(cls, learn, dl, activation, n, **kwargs):
        "The interpretation of TTA probabilities, with `tta_report` comparing the passes"
        if kwargs.get('beta', 0.25) is None and not kwargs.get('use_max'):
            raise ValueError("tta=True needs one set of probabilities: beta=None is for Learner.tta")
        res = learn.tta(dl=dl, n=n, **kwargs)
        interp = cls._from_averaged(learn, dl, activation, *res)
        interp.tta_report, interp.n_tta = res.report, n
        return interp

    @classmethod
    def _from_mc_dropout(cls, learn, dl, activation, n):
        "The interpretation of the mean MC-dropout probabilities, with two epistemic measures"
        r = mc_dropout(learn, n, dl=dl)
        interp = cls._from_averaged(learn, dl, activation, r.probs, r.targs)
        interp.extra_measures, interp.mc_passes = {'mutual_info': r.mutual_info, 'variance': r.variance}, n
        return interp

    @classmethod
    def _from_averaged(cls, learn, dl, activation, probs, targs):
        "Probabilities averaged over passes (TTA, MC dropout): their losses are the NLL of the targets, any loss"
        multilabel, thresh = activation.kind == 'multilabel', decision_thresh(learn, activation)
        losses = None if targs is None else item_nll(probs, targs, multilabel)
        decoded = probs > thresh if multilabel else activation.decodes(probs)
        return cls._from_probs(learn, dl, probs, targs, decoded, losses, None, activation.kind, thresh)

    @classmethod
    def _from_probs(cls, learn, dl, probs, targs, decoded, losses, act, kind, thresh):
        "Bring every kind of classifier output to (N, C) class probabilities or (N, L) label probabilities"
        probs = probs.float()
        # one loss per item: a one-output BCE gives (N, 1)
        if losses is not None: losses = losses.reshape(len(probs), -1).mean(1)
        if kind not in ('multiclass', 'multilabel'): kind = output_kind(probs, learn.loss_func)
        if targs is not None: targs = targs.detach().cpu()
        if kind == 'multiclass' or probs.ndim == 1 or probs.shape[1] == 1:
            probs, decoded, targs = as_classes(probs, decoded, targs, kind, thresh)
            return cls(learn, dl, probs, targs, decoded, losses, act, thresh=thresh)
        if targs is not None: targs = targs.view(probs.shape).long()
        decoded = (probs > thresh) if decoded is None or decoded.shape != probs.shape else decoded
        return cls(learn, dl, probs, targs, decoded.long(), losses, act, multilabel=True, thresh=thresh)

    @property
    def labelled(self): return self.targs is not None

    # --- how the views get their numbers: from the cached predictions of every item
    def _n(self): return len(self.probs)
    def _has_losses(self): return self.losses is not None
    def _every(self, view, why): return Rows(self.probs, self.targs, self.decoded, self.losses)

    def _rows(self, idxs):
        idxs = torch.as_tensor(idx_list(idxs), dtype=torch.long)
        return Rows(*(None if t is None else t[idxs] for t in (self.probs, self.targs, self.decoded, self.losses)))

    def _ranking(self, name, k, largest):
        return topk(self.losses if name == 'loss' else self.uncertainty(name), k, largest)

    def _confusion(self):
        return confusion_counts(self.targs.numpy(), self.decoded.numpy(), len(self.vocab), self.multilabel)

    def _pred_counts(self): return np.bincount(self.decoded.numpy(), minlength=len(self.vocab))

    def _bins(self, view, n_bins):
        return calibration_bins(self.probs, self.targs, 15 if n_bins is None else n_bins, self.multilabel)

    def _calibration(self, n_bins):
        res = calibration_metrics(self.probs, self.targs, 15 if n_bins is None else n_bins, self.multilabel,
                                  self.thresh, self.vocab)
        if not self.multilabel: res['accuracy'] = self._accuracy()  # of the decisions shown
        return res

    def _calibration_ci(self, n_bins, ci, n_resamples, seed):
        if self.multilabel:
            raise ValueError("calibration(ci=) resamples single-label predictions: for a multi-label model, "
                             "calibration() gives the pooled figures without intervals")
        return bootstrap_calibration(self.probs, self.targs, 15 if n_bins is None else n_bins, ci, n_resamples, seed)

    def _provenance(self):
        src = [source(self.learn, self.dl)]
        n_tta = getattr(self, 'n_tta', None)
        if n_tta is None and self.tta_report is not None:
            n_tta = sum(str(r).startswith('pass ') for r in self.tta_report.index)
        if n_tta is not None or self.tta_report is not None: src.append(f"TTA {n_tta or '?'} passes")
        if self.extra_measures: src.append(f"MC dropout {getattr(self, 'mc_passes', None) or '?'} passes")
        if getattr(self, 'n_folds', None):
            src.append(f"out of fold: {self.n_folds} models, each item predicted by the one not trained on it")
        return ['from ' + ' · '.join(src + self._temperature_note())]

class StreamingInterpretation(Views):
    """The views that streamed statistics answer exactly, in constant memory; a clear error for the others

    >>> st = ClassificationInterpretation.from_learner(learn, streaming=True, k=10, progress=False)
    >>> im = ClassificationInterpretation.from_learner(learn, progress=False)
    >>> type(st).__name__, bool((st.confusion_matrix() == im.confusion_matrix()).all())
    ('StreamingInterpretation', True)
    >>> torch.equal(st.top_losses(5)[1], im.top_losses(5)[1])  # the same items, from the top 10 kept
    True
    """
    multilabel = False  # streaming covers single-label classifiers
    def __init__(self,
        learn, # Model the statistics come from
        dl, # `DataLoader` they were streamed over, to show the kept items
        stats:StreamingStats, # The streamed statistics
        vocab=None, # Class names; 0..C-1 if None
        items_per_s:float|None=None, # Throughput of the streaming pass
        act=None, # Activation given to `from_learner`, if any
    ):
        store_attr('learn,stats,items_per_s,act')
        self.temperature = learner_temperature(learn)  # that the probabilities were made at, if any
        self.dl = dl.dl if _is_distributed(dl) else dl
        self.res = stats.compute()
        self.vocab = list(range(stats.n_classes)) if vocab is None else list(vocab)
        self.n, self.k, self.labelled = self.res['n'], stats.k, bool(stats.labelled)
        # where each kept item is: (list, position), from the first list that kept it
        self._at = {}
        for name, kept in self.res['top'].items():
            for j, i in enumerate(kept['idx'].tolist()): self._at.setdefault(i, (name, j))

    @classmethod
    def from_learner(cls,
        learn, # Model used to create the interpretation
        ds_idx:int=1, # Index of `learn.dls` when `dl` is None
        dl=None, # `DataLoader` to interpret; may be unlabelled, or a `DistributedDL` (each process streams its slice)
        act=None, # Override the loss's activation
        k:int=100, # Items kept per list (top losses, most uncertain by each measure)
        n_bins:int=15, # Calibration bins
        measures=tuple(MEASURES), # Uncertainty measures whose top `k` items are kept
        progress:bool=True, # Show fastai's progress bar, with items/s
    ):
        """Stream one inference pass over `dl` into counts and the top `k` items: memory flat in the number of items

        >>> st = StreamingInterpretation.from_learner(learn, k=5, progress=False)  # counts and the top 5 items
        >>> st.n, int(st.confusion_matrix().sum()), st.top_losses()[1].shape
        (60, 60, torch.Size([5]))
        >>> st.to_df()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: to_df is not available from streamed statistics: it holds one row per item, ...
        """
        dl = every_item_dl(learn, ds_idx, dl)  # a torch DataLoader: the same batches as a fastai one, in data set order
        dl = in_order(dl)[0]  # first: a pass of the DataLoader as it is, even for one batch, lists every index
        inner = dl.dl if _is_distributed(dl) else dl
        per_item = _per_item_loss(learn.loss_func)
        cb = StreamingCallback(k, n_bins, measures, act, per_item)  # whether there are targets is seen in the pass
        stats = stream(learn, dl, cb, progress)
        _warn_no_losses(learn.loss_func, stats.labelled, per_item)
        return cls(learn, dl, stats, _vocab(inner, stats.n_classes), cb.items_per_s, act)

    # --- how the views get their numbers: from counts, bin sums and the kept items
    def _n(self): return self.n
    def _has_losses(self): return bool(self.stats.with_loss)

    def _every(self, view, why):
        raise ValueError(f"{view} is not available from streamed statistics: it {why}, and streaming keeps only counts "
                         f"and the top {self.k} items of each list. Build the in-memory interpretation for it: "
                         f"ClassificationInterpretation.from_learner(learn)")

    def _rows(self, idxs):
        at = []
        for i in idx_list(idxs):
            if int(i) not in self._at:
                raise ValueError(f"Item {int(i)} was not kept while streaming: only the top {self.k} items of each "
                                 f"list are (top losses, most uncertain by each measure streamed)")
            at.append(self._at[int(i)])
        top = self.res['top']
        pick = lambda f: torch.stack([top[name][f][j] for name, j in at]) if at else top['loss'][f][:0]
        return Rows(pick('probs'), pick('targ') if self.labelled else None, pick('decoded'),
                    pick('loss') if self.stats.with_loss else None)

    def _ranking(self, name, k, largest):
        if name == 'loss':
            if not largest:
                raise ValueError("top_losses(largest=False) needs the smallest losses, and streaming keeps the "
                                 "largest: use the in-memory interpretation for it")
            return self._top('loss', k, 'top_losses')
        if callable(name):
            raise ValueError(f"most_uncertain(measure=<callable>) scores every item with that function, and streaming "
                             f"kept the top {self.k} by the named measures only ({', '.join(self.stats.measures)}): "
                             f"use one of them, or the in-memory interpretation")
        if name not in self.stats.measures:
            raise ValueError(f"Measure {name!r} was not streamed: the streamed measures are "
                             f"{', '.join(self.stats.measures)}")
        return self._top(name, k, 'most_uncertain')

    def _top(self, name, k, view):
        "The first `k` kept items of list `name`; every kept one when `k` is None"
        kept = self.res['top'][name]
        m = len(kept['idx'])
        k = m if check_k(k) is None else k
        if k > m and m < self.n:
            raise ValueError(f"{view}(k={k}) needs more items than were kept: the top {m} of {self.n:,}. "
                             f"Stream with k={k} or more: from_learner(learn, streaming=True, k={k})")
        return kept['score'][:k], kept['idx'][:k]

    def _confusion(self): return self.res['confusion'].copy()
    def _pred_counts(self): return self.res['pred_counts']

    def _abstain(self, measure, view):
        "The streamed counts of the items by their least confidence, in `ABSTAIN_EDGES`' bins"
        self._need_labels(view)
        if measure != 'least_confidence':
            raise ValueError(f"{view}(measure={measure!r}): streaming counts the items by least confidence "
                             f"(1 - p(top)) only; use measure='least_confidence', or the in-memory interpretation")
        return (torch.as_tensor(self.res['abstain_count']), torch.as_tensor(self.res['abstain_correct']),
                ABSTAIN_EDGES)

    def _bins(self, view, n_bins):
        "The streamed calibration bins, if `n_bins` is None or the number streamed: bins cannot be cut again"
        if n_bins is not None and n_bins != self.stats.n_bins:
            raise ValueError(f"The confidences were binned into n_bins={self.stats.n_bins} while streaming and cannot "
                             f"be cut again into {n_bins}: stream with n_bins={n_bins}")
        return self.res['calibration_bins']

    def _calibration(self, n_bins):
        # ECE, MCE and accuracy come from the bins' sums; Brier and NLL are sums of per-item terms added batch by batch
        # (and process by process): the same figures up to the order of float64 additions
        return metrics_from_sums(self._bins('calibration', n_bins), self.res['brier_sum'], self.res['nll_sum'])

    def _calibration_ci(self, n_bins, ci, n_resamples, seed):
        raise ValueError("calibration(ci=) resamples the items (a bootstrap), and streaming kept only their bin sums: "
                         "accuracy(ci=) and classification_report(ci=) have intervals from the counts; for ECE, Brier "
                         "and NLL build the in-memory interpretation")

    def _provenance(self):
        lists = (['loss'] if self.stats.with_loss else []) + list(self.stats.measures)
        rest = [f"top {self.k} kept of {len(lists)} lists ({', '.join(lists)})",
                f"{self.stats.n_bins} calibration bins"]
        return ['streamed from ' + source(self.learn, self.dl), ' · '.join(rest + self._temperature_note()),
                "risk-coverage counted by 1 - p(top) in bins: each threshold known to 0.8%"]

hand_out(fastai.interpret.ClassificationInterpretation, ClassificationInterpretation)
