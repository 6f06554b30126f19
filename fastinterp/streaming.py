"fastai's loop streamed: a callback that adds each validation batch to a `StreamingStats`, and the pass that runs it"

__all__ = ['batch_losses', 'StreamingCallback', 'stream']

import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
from fastcore.basics import detuplify, noop, store_attr
from fastai.callback.core import Callback
from fastai.torch_core import to_detach

from .activations import activation_for
from .core import as_classes, check_finite, class_targets, output_kind
from .distributed import cpu_broadcast
from .loaders import _dataset_idxs, _is_distributed, in_order
from .passes import no_bar
from .preds import _frozen_get_preds, _probs_in, activate, decision_thresh, learner_temperature, per_item_loss
from .stats import StreamingStats
from .uncertainty import MEASURES

def _as_classes(probs, decoded, targs, kind, thresh):
    "A batch as the in-memory interpretation sees a whole set; multi-label models are refused"
    if kind == 'multilabel' and probs.ndim == 2 and probs.shape[1] > 1:
        raise ValueError("Streaming interpretation is for single-label classifiers (softmax, or one sigmoid output); "
                         "use the in-memory ClassificationInterpretation for a multi-label model")
    return as_classes(probs.float(), decoded, targs, kind, thresh)

def _has_targets(yb)->bool:
    "Whether a batch's targets `learn.yb` are there: an unlabelled test_dl has none, or empty ones (a tabular one)"
    return len(yb) > 0 and all(getattr(t, 'numel', lambda: 1)() > 0 for t in yb)

def batch_losses(learn, # The Learner in a validation batch of `get_preds(with_loss=True)`'s kind (loss not reduced)
        act=None, # An activation given instead of the registry's: the loss is the model's own then
        activation=None, # The loss's `LossActivation`
    )->torch.Tensor:
    """Per-item losses of the current batch, one value per item, as `get_preds(with_loss=True)` gathers them

    >>> cb = Callback()  # any callback sees the batch: here the last one of a validation
    >>> cb.after_batch = lambda: setattr(cb, 'losses', batch_losses(cb.learn))
    >>> with learn.loss_not_reduced(): _ = learn.validate(cbs=[cb])
    >>> cb.losses.shape  # the last batch of the 60 items
    torch.Size([28])
    """
    bs = len(learn.pred)
    if act is None and learner_temperature(learn) is not None:  # the loss of the probabilities kept
        return to_detach(per_item_loss(learn, learn.pred, *learn.yb, activation=activation), gather=False)
    loss = learn.loss
    if loss.ndim == 0:  # a validation that reduces the loss: again per item, the way get_preds has it computed
        with learn.loss_not_reduced(): loss = learn.loss_func(learn.pred, *learn.yb)
    # one value per item, as the in-memory `losses` are brought to it: a one-output BCE gives (bs, 1)
    return to_detach(loss if loss.shape == (bs,) else loss.reshape(bs, -1).mean(1), gather=False)

class StreamingCallback(Callback):
    """Stream each validation batch into a `StreamingStats`: registry probabilities, per-item losses, data set indices

    >>> cb = StreamingCallback(k=5)
    >>> _ = learn.get_preds(cbs=[cb])  # or learn.validate(cbs=[cb]): the batches streamed as they come
    >>> cb.stats.n, len(cb.stats.compute()['top']['loss']['idx'])
    (60, 5)
    """
    # after ProgressCallback (60), whose loss comment would hide the items/s, and DistributedTrainer (11), which wraps
    # the DataLoader
    order = 61
    run_train = False
    def __init__(self,
        k:int=100, # Items kept per list
        n_bins:int=15, # Calibration bins
        measures=tuple(MEASURES), # Uncertainty measures whose top `k` items are kept
        act=None, # Override the loss's activation
        with_loss:bool=True, # Keep the top losses (of batches with targets)
    ):
        store_attr('k,n_bins,measures,act,with_loss')
        self.stats, self.items_per_s = None, None

    def before_validate(self):
        self.activation = None if self.act is not None else activation_for(self.learn.loss_func).check_classifier(
            'Streaming interpretation')
        self.kind = self.activation and self.activation.kind
        self.thresh = decision_thresh(self.learn, self.activation)
        self.idxs, self.real = _dataset_idxs(self.learn.dl)
        self.stats, self.seen, self.added, self.start, self.probs_in = None, 0, 0, time.perf_counter(), None
        self.labelled = None

    def after_batch(self):
        raw = to_detach(self.learn.pred, gather=False)  # this process's batch: processes merge once, at the end
        bs = len(raw)
        pos = slice(self.seen, self.seen + bs)
        self.seen += bs
        idxs = self.idxs[pos] if isinstance(self.idxs, torch.Tensor) else self.idxs_of(pos)
        raw = check_finite(raw)
        self.probs_in = _probs_in(self.probs_in, self.learn, self.activation, raw)  # decided on the first batch
        # a softmax over the class axis of float32 outputs checked finite above (the registry's, or that of fastai's
        # flattened losses), decided by its argmax: not checked again, and its argmax left to the collector, which
        # takes it once per block with the top probabilities (the same first maximum)
        made = self.act is None and not self.probs_in and self.kind == 'multiclass' and \
            self.activation.plain_softmax and self.activation.axis in (1, -1) and raw.dtype == torch.float32 and \
            raw.ndim == 2 and learner_temperature(self.learn) is None
        probs, decoded = activate(self.learn, raw, self.act, self.activation, finite=True, probs_in=self.probs_in,
                                  decode=not made)
        targs = losses = None
        if self.labelled is None: self.labelled = _has_targets(self.learn.yb)  # decided on the first batch
        if self.labelled:
            targs = to_detach(detuplify(self.learn.yb), gather=False)
            if self.with_loss: losses = batch_losses(self.learn, self.act, self.activation)
        if made: targs = None if targs is None else class_targets(targs, probs).long()
        else:
            if self.kind not in ('multiclass', 'multilabel'): self.kind = output_kind(probs)
            probs, decoded, targs = _as_classes(probs, decoded, targs, self.kind, self.thresh)
        if self.real is not None:
            real = self.real[pos]
            probs, idxs = probs[real], idxs[real]
            targs, losses, decoded = (None if t is None else t[real] for t in (targs, losses, decoded))
        if self.stats is None: self.stats = StreamingStats(probs.shape[1], self.k, self.n_bins, self.measures)
        self.stats._add_batch(probs, targs, losses, idxs, decoded, made)
        self.added += len(probs)  # stats.n, counted here: no tensor read per batch
        self.items_per_s = self.added / (time.perf_counter() - self.start)
        pbar = getattr(getattr(self.learn, 'progress', None), 'pbar', None)
        if pbar is not None: pbar.comment = f'{self.items_per_s:,.0f} items/s'

    def idxs_of(self, pos):
        "Data set indices at positions `pos` of an index that is a `range` (or none: positions are indices)"
        r = range(pos.start, pos.stop) if self.idxs is None else self.idxs[pos]
        return torch.arange(r.start, r.stop, r.step)

    def after_validate(self):
        if self.stats is None: return
        # under a DistributedDL each process saw a slice of the data: merged, every process has the figures of all of it
        if _is_distributed(self.learn.dl) and dist.is_available() and dist.is_initialized(): self.stats.sync()

def stream(learn, # The Learner to predict with
        dl, # fastai DataLoader of every item once (`every_item_dl`), or a `DistributedDL` over one
        cb:StreamingCallback, # What the batches are streamed into
        progress:bool=True, # Show fastai's progress bar, with items/s
    )->StreamingStats:
    """One inference pass of `learn` over `dl` through fastai's loop, streamed into `cb`: nothing gathered

    >>> from fastinterp.loaders import every_item_dl
    >>> stats = stream(learn, every_item_dl(learn), StreamingCallback(k=3), progress=False)
    >>> stats.n, int(stats.compute()['confusion'].sum())
    (60, 60)
    """
    distributed = _is_distributed(dl)
    dl, ordered = in_order(dl)  # in data set order with a `range` for an index: nothing held grows with N
    # the loss per item, computed as get_preds(with_loss=True) has it computed; with_preds/with_targs off
    with learn.loss_not_reduced() if cb.with_loss else nullcontext(), nullcontext() if progress else no_bar(learn), \
            cpu_broadcast():
        # a DistributedDL is in data set order already, and `reorder` would rebuild it without its rank
        _frozen_get_preds(learn, dl=dl, act=noop, cbs=[cb], with_preds=False, with_targs=False,
                          reorder=not (distributed or ordered))
    return cb.stats
