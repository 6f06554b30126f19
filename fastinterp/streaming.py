"Interpretation at scale: constant-memory statistics that stream over batches and merge across processes"

__all__ = ['StreamingStats', 'StreamingCallback', 'StreamingInterpretation']

import math, re, time
from contextlib import contextmanager, nullcontext

import numpy as np, pandas as pd, torch
import torch.distributed as dist
import sklearn.metrics as skm
from fastcore.basics import store_attr, detuplify, noop
from fastai.callback.core import Callback
from fastai.torch_core import to_detach

from .activations import activation_for
from .preds import activate, stock_get_preds, decision_thresh, per_item_loss, no_bar
from .uncertainty import MEASURES, check_finite
from .interpret import ClassificationInterpretation, _is_labelled, _per_item_loss, _vocab, as_classes, output_kind, normalize_confusion
from .calibration import CalibrationBins, _bin_sums, ece_from_bins, mce_from_bins, reliability_diagram_from_bins
from .tta import item_nll
from .loaders import _dataset_idxs, _distributed_dl, _is_distributed, inference_dl
from . import show


# --- the functional core: a state is a dict of tensors; `_REDUCE` says how each entry combines across batches and processes
_REDUCE = {'n': 'sum', 'pred_counts': 'sum', 'confusion': 'sum', **{f'bins_{f}': 'sum' for f in CalibrationBins._fields},
           'brier_sum': 'sum', 'nll_sum': 'sum', 'top': 'topk'}
_KEPT = ('score', 'idx', 'probs', 'decoded', 'targ', 'loss')  # what is kept of each top item: enough to show it

def _no_items(n_classes, device=None):
    "An empty list of kept items"
    long, flt = dict(dtype=torch.long, device=device), dict(device=device)
    return {'score': torch.empty(0, **flt), 'idx': torch.empty(0, **long), 'probs': torch.empty(0, n_classes, **flt),
            'decoded': torch.empty(0, **long), 'targ': torch.empty(0, **long), 'loss': torch.empty(0, **flt)}

def _init_state(n_classes, n_bins, lists, device=None):
    "The state of no items: zero counts and bin sums, empty top-k lists"
    z = lambda *shape, dtype=torch.long: torch.zeros(*shape, dtype=dtype, device=device)
    # calibration_bins' layout: n_bins + 1 bins (the last holds a confidence of exactly 1), int64 counts, float64 sums
    bins = {'bins_count': z(n_bins + 1), 'bins_confidence': z(n_bins + 1, dtype=torch.float64), 'bins_correct': z(n_bins + 1, dtype=torch.float64)}
    return {'n': z(()), 'pred_counts': z(n_classes), 'confusion': z(n_classes, n_classes), **bins,
            'brier_sum': z((), dtype=torch.float64), 'nll_sum': z((), dtype=torch.float64),
            'top': {l: _no_items(n_classes, device) for l in lists}}

def _select(a, b, k):
    "The top `k` of the kept items `a` and `b` by score, ties to the lower item index: the order of the in-memory `_topk`"
    m = {f: torch.cat([a[f], b[f]]) for f in _KEPT}
    if torch.unique(m['idx']).numel() < len(m['idx']):
        raise ValueError("The same item index was streamed twice: give each item its own index (`idxs`), "
                         "global across the collectors or processes that are merged")
    o = torch.argsort(m['idx'], stable=True)
    o = o[torch.argsort(m['score'][o], descending=True, stable=True)][:k]
    return {f: v[o] for f, v in m.items()}

def _candidates(scores, kept, k):
    "Positions in `scores` that may enter the top `k` beside `kept`: at least the k-th best of both (ties stay for `_select`)"
    v = scores.topk(min(k, len(scores))).values[-1]
    if len(kept['score']) == k: v = torch.maximum(v, kept['score'][-1])
    return torch.nonzero(scores >= v).view(-1)

# room between a measure and its bound for float32 rounding and rows that sum to 1 only within 1e-3 (which can lift a
# normalized entropy by up to 0.01 over the bound, for two classes)
_SLACK = 0.02

def _bounds(pmax, n_classes):
    "Upper bound of each uncertainty measure from an item's top probability alone (rows summing to 1, C > 1)"
    p = pmax.double()
    q, C = (1 - p).clamp_min(0), n_classes
    return {'least_confidence': q,
            'margin': (2 * q).clamp_max(1),  # the second probability is at most 1 - p1
            'entropy': (-torch.special.xlogy(p, p) - torch.special.xlogy(q, q) + q * math.log(C - 1)) / math.log(C),  # rest spread evenly
            'uniform_distance': 1 - (p * C - 1).clamp_min(0) / (C - 1)}  # sum of |C p_c - 1| is at least 2 (C p1 - 1)

def _score(name, probs):
    "`MEASURES[name]` of each row: on the CPU, bit for bit what it gives that row within any batch, the whole data set's included"
    # torch sums a lone row of 32,768 values or more over several threads, in another order than each row of a batch
    if len(probs) == 1: return MEASURES[name](probs.repeat(2, 1))[:1]
    return MEASURES[name](probs)

def _brier_nll(probs, targs):
    "Float64 sums over the batch of each item's Brier score and NLL, the terms `brier` and `nll` average"
    # Brier: sum_c (p_c - [c = t])^2 = |p|^2 - 2 p_t + 1 in float64, within 1e-15 of the terms `brier` sums, without its
    # (B, C) float64 temporaries: at 1,000 classes they take longer than the rest of the update
    sq = torch.linalg.vector_norm(probs, dim=1, dtype=torch.float64).square()
    pt = probs.gather(1, targs[:, None])[:, 0].double()
    return (sq - 2 * pt + 1).sum(), item_nll(probs, targs).double().sum()

def _update(kept, # The state's top-k lists, read only
        probs, # (B, C) float32 probabilities, rows summing to 1
        targs, # (B,) target classes, or None
        losses, # (B,) per-item losses, or None
        idxs, # (B,) item indices
        decoded, # (B,) predicted classes, or None for the argmax
        k:int, # Items kept per list
        n_bins:int, # Calibration bins
    ):
    "One batch's contribution: the sums it adds, its confusion cells, and per list the items that may enter the top `k` beside `kept`"
    C = probs.shape[1]
    pmax, pred = probs.max(1)  # the first maximum, as argmax
    if decoded is None: decoded = pred
    res = {'sums': {'n': len(probs), 'pred_counts': torch.bincount(decoded, minlength=C)}, 'cells': None, 'top': {}}
    if targs is not None:
        res['cells'] = targs * C + decoded  # confusion cells to count: O(B), where a C x C bincount per batch is O(C^2)
        # the sums calibration_bins makes of (top probability, argmax right), without its checks of the whole batch again
        bins = _bin_sums(pmax[:, None], (pred == targs)[:, None], n_bins)
        res['sums'].update({f'bins_{f}': s[0] for f, s in zip(CalibrationBins._fields, bins)})
        res['sums']['brier_sum'], res['sums']['nll_sum'] = _brier_nll(probs, targs)
    if k == 0: return res
    rows = {'probs': probs, 'decoded': decoded, 'idx': idxs,
            'targ': targs if targs is not None else torch.full_like(decoded, -1),
            'loss': losses if losses is not None else probs.new_full((len(probs),), math.nan)}
    bounds = _bounds(pmax, C) if C > 1 else None
    for name, kl in kept.items():
        pos = None  # the positions scored; None: all of them
        if name == 'loss':
            if losses is None: continue
            scores = losses
        else:
            if bounds is not None and len(kl['score']) == k:
                # an item whose bound is below the k-th kept score cannot enter: score the others only
                pos = torch.nonzero(bounds[name] >= float(kl['score'][-1]) - _SLACK).view(-1)
                if not len(pos): continue
            scores = _score(name, probs if pos is None else probs[pos])
        c = _candidates(scores, kl, k)
        if not len(c): continue
        at = c if pos is None else pos[c]
        res['top'][name] = {'score': scores[c], **{f: r[at] for f, r in rows.items()}}
    return res

def _add(state, res, k):
    "Add a batch's contribution `res` to `state`, in place"
    for key, v in res['sums'].items(): state[key] += v
    if res['cells'] is not None: state['confusion'].view(-1).index_add_(0, res['cells'], torch.ones_like(res['cells']))
    for name, cand in res['top'].items(): state['top'][name] = _select(state['top'][name], cand, k)

def _merge(a, b, k):
    "The state of the items of `a` and of `b` together"
    return {key: ({l: _select(a[key][l], b[key][l], k) for l in a[key]} if how == 'topk' else a[key] + b[key])
            for key, how in _REDUCE.items()}

def _compute(state):
    "Figures from a state: counts as numpy arrays, sums as floats, kept items as CPU tensors"
    cpu = lambda t: t.detach().cpu()
    return {'n': int(state['n']), 'pred_counts': cpu(state['pred_counts']).numpy(), 'confusion': cpu(state['confusion']).numpy(),
            'calibration_bins': CalibrationBins(*(cpu(state[f'bins_{f}']) for f in CalibrationBins._fields)),
            'brier_sum': float(state['brier_sum']), 'nll_sum': float(state['nll_sum']),
            'top': {l: {f: cpu(v) for f, v in kept.items()} for l, kept in state['top'].items()}}

# --- torch.distributed
def _comm_device(group=None):
    "Where collectives run: nccl moves only CUDA tensors, gloo CPU ones"
    if dist.get_backend(group) == 'nccl': return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')

def _all_gather(t, group=None):
    "`t` from every rank of `group`, in rank order (same shape everywhere)"
    res = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(res, t.contiguous(), group=group)
    return res

def _gather_top(kept, k, group=None):
    "The top `k` of every rank's kept items: each rank sends `k` rows (padded with index -1, dropped again) so the shapes agree"
    pad = k - len(kept['idx'])
    per_field = {f: _all_gather(torch.cat([v, v.new_full((pad, *v.shape[1:]), -1)]), group) for f, v in kept.items()}
    res = _no_items(kept['probs'].shape[1], kept['probs'].device)
    for r in range(dist.get_world_size(group)):
        real = per_field['idx'][r] >= 0
        res = _select(res, {f: per_field[f][r][real] for f in _KEPT}, k)
    return res

def _sync(state, k, group=None):
    "The state of the items of every rank of `group`: counts all-reduced, top-k lists all-gathered and selected again"
    res = {}
    for key, how in _REDUCE.items():
        if how == 'topk': res[key] = {l: _gather_top(kept, k, group) if k else kept for l, kept in state[key].items()}
        else:
            res[key] = state[key].clone()
            dist.all_reduce(res[key], group=group)
    return res

def _to(state, device):
    "`state` with every tensor on `device`"
    return {key: v.to(device) if torch.is_tensor(v) else {l: {f: t.to(device) for f, t in kept.items()} for l, kept in v.items()}
            for key, v in state.items()}

class StreamingStats:
    "Confusion counts, calibration bins, per-class counts and the top `k` items by loss and by each uncertainty measure, in constant memory"
    def __init__(self,
        n_classes:int, # Number of classes C
        k:int=100, # Items kept per list: memory is O(k*C + C^2 + n_bins), whatever the number of items
        n_bins:int=15, # Calibration bins, equal width over [0, 1]
        measures=tuple(MEASURES), # Names in `MEASURES` whose top `k` items are kept
    ):
        if int(n_classes) < 1: raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        if int(k) < 0: raise ValueError(f"k must be a number of items (0 or more), got {k}")
        if int(n_bins) < 1: raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        measures = tuple(measures)
        unknown = [m for m in measures if m not in MEASURES]
        if unknown: raise ValueError(f"Unknown uncertainty measure(s) {unknown}: streaming keeps the named ones, {', '.join(MEASURES)}")
        self.n_classes, self.k, self.n_bins = int(n_classes), int(k), int(n_bins)
        # in MEASURES' order: processes gather the lists one after the other, so they must agree on it whatever order each was given
        self.measures = tuple(m for m in MEASURES if m in measures)
        self.reset()

    def reset(self):
        "Forget every item"
        self.state, self.labelled, self.with_loss = None, None, None

    @property
    def n(self):
        "Number of items streamed so far"
        return 0 if self.state is None else int(self.state['n'])

    def _lists(self): return ('loss', *self.measures)

    def _flags(self, labelled, with_loss):
        "Check that a batch has targets and losses like the batches before it, and remember it"
        for name, was, now in (('targets', self.labelled, labelled), ('losses', self.with_loss, with_loss)):
            if was is not None and was != now:
                raise ValueError(f"This batch {'has' if now else 'has no'} {name}, and the earlier ones {'had' if was else 'had none'}: "
                                 f"stream labelled and unlabelled data into separate collectors")
        self.labelled, self.with_loss = labelled, with_loss

    def update(self,
        probs, # (B, C) probabilities, rows summing to 1
        targs=None, # (B,) target classes, for the confusion, the calibration figures (bins, Brier, NLL) and the losses
        losses=None, # (B,) per-item losses, for the top losses (need `targs`)
        idxs=None, # (B,) item indices, global across what is merged; default: continue from the items already seen
        decoded=None, # (B,) predicted classes; default: argmax of `probs`
    ):
        "Add one batch"
        probs, targs, losses, idxs, decoded = self._check(probs, targs, losses, idxs, decoded)
        if not len(probs): return self
        self._flags(targs is not None, losses is not None)
        if self.state is None: self.state = _init_state(self.n_classes, self.n_bins, self._lists(), probs.device)
        _add(self.state, _update(self.state['top'], probs, targs, losses, idxs, decoded, self.k, self.n_bins), self.k)
        return self

    def _check(self, probs, targs, losses, idxs, decoded):
        "The batch as tensors of the right shapes, dtypes and ranges, or a ValueError saying what is wrong"
        probs = torch.as_tensor(probs)
        C = self.n_classes
        if probs.ndim != 2 or probs.shape[1] != C:
            raise ValueError(f"probs must have shape (batch size, {C}), got {tuple(probs.shape)}")
        if not probs.is_floating_point(): raise ValueError(f"probs must be floating point, got {probs.dtype}")
        probs, B = probs.float(), len(probs)
        if B:  # one pass for the range (NaN and inf show in it), one for the row sums
            lo, hi = torch.aminmax(probs)
            if not (torch.isfinite(lo) and torch.isfinite(hi)): check_finite(probs, 'probabilities')  # says how many rows
            if lo < 0 or hi > 1:
                raise ValueError("probs hold values outside [0, 1]: pass probabilities (e.g. the softmax of the logits), not logits")
            off = float((probs.sum(1) - 1).abs().max())
            if off > 1e-3: raise ValueError(f"Rows of probs must sum to 1 (a single-label classifier's softmax); one is off by {off:.3g}")
        def classes(t, what):
            t = torch.as_tensor(t, device=probs.device)
            if t.shape != (B,): raise ValueError(f"{what} must have shape ({B},), one per item, got {tuple(t.shape)}")
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"{what} must be integer class indices, got {t.dtype}")
            if B and (t.min() < 0 or t.max() >= C): raise ValueError(f"{what} must lie in [0, {C}), got values from {int(t.min())} to {int(t.max())}")
            return t.long()
        if targs is not None: targs = classes(targs, 'targs')
        if decoded is not None: decoded = classes(decoded, 'decoded')
        if losses is not None:
            if targs is None: raise ValueError("losses need targs: a per-item loss is measured against a target")
            losses = torch.as_tensor(losses, device=probs.device)
            if losses.shape != (B,) or not losses.is_floating_point():
                raise ValueError(f"losses must be floats of shape ({B},), got {losses.dtype} of shape {tuple(losses.shape)}")
            if torch.isnan(losses).any(): raise ValueError(f"{int(torch.isnan(losses).sum())} of the {B} losses are NaN")
            losses = losses.float()
        if idxs is None: idxs = torch.arange(self.n, self.n + B, device=probs.device)
        else:
            idxs = torch.as_tensor(idxs, device=probs.device)
            if idxs.shape != (B,) or idxs.is_floating_point(): raise ValueError(f"idxs must be {B} integer item indices, got {idxs.dtype} of shape {tuple(idxs.shape)}")
            if B and idxs.min() < 0: raise ValueError("idxs must be item indices, 0 or more")
            idxs = idxs.long()
        return probs, targs, losses, idxs, decoded

    def _setup(self): return (self.n_classes, self.k, self.n_bins, self.measures)

    def merge(self, other:'StreamingStats'):
        "Add the items of `other` (streamed elsewhere, with its own global `idxs`): the result does not depend on the order of merges"
        if not isinstance(other, StreamingStats): raise TypeError(f"Can only merge a StreamingStats, got {type(other).__name__}")
        if self._setup() != other._setup():
            raise ValueError(f"Cannot merge collectors set up differently: (n_classes, k, n_bins, measures) {self._setup()} here, "
                             f"{other._setup()} in the other")
        if other.state is None: return self
        self._flags(other.labelled, other.with_loss)
        mine = self.state or _init_state(self.n_classes, self.n_bins, self._lists(), other.state['n'].device)
        self.state = _merge(mine, other.state, self.k)  # new tensors: `other` stays as it was
        return self

    def sync(self, group=None):
        "Merge the statistics of every process of `group` once, at the end (all_reduce of counts, all_gather of top-k lists): each ends with the same"
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("sync needs torch.distributed to be initialized (torch.distributed.init_process_group)")
        if dist.get_world_size(group) == 1: return self
        dev = _comm_device(group)
        here = self.state['n'].device if self.state is not None else torch.device('cpu')
        self._sync_setup(dev, group)
        state = self.state or _init_state(self.n_classes, self.n_bins, self._lists())  # a rank that saw nothing still takes part
        self.state = _to(_sync(_to(state, dev), self.k, group), here)
        return self

    def _sync_setup(self, dev, group):
        "Check that every rank is set up alike and agrees on targets and losses (a rank that saw no item takes the others')"
        code = lambda flag: -1 if flag is None else int(flag)
        mask = sum(1 << list(MEASURES).index(m) for m in self.measures)
        mine = torch.tensor([self.n_classes, self.k, self.n_bins, mask, code(self.labelled), code(self.with_loss)], device=dev)
        rows = [t.tolist() for t in _all_gather(mine, group)]
        for r, row in enumerate(rows):
            if row[:4] != rows[0][:4]:
                raise ValueError(f"Ranks 0 and {r} are set up differently: (n_classes, k, n_bins, measures bitmask) {rows[0][:4]} and {row[:4]}")
        flags = []
        for i, name in ((4, 'targets'), (5, 'losses')):
            known = {row[i] for row in rows if row[i] >= 0}
            if len(known) > 1: raise ValueError(f"Some ranks streamed {name} and others did not")
            flags.append(bool(known.pop()) if known else None)
        self.labelled, self.with_loss = flags

    def compute(self):
        "The figures: item count, predicted counts, confusion matrix (actual x predicted), calibration bins, Brier and NLL sums, top items per list"
        if self.state is None: raise ValueError("Nothing was streamed: call update with at least one item first")
        return _compute(self.state)

# --- fastai: the callback that streams validation batches
def _as_classes(probs, decoded, targs, kind, thresh):
    "A batch as the in-memory interpretation sees a whole set; multi-label models are refused"
    if kind == 'multilabel' and probs.ndim == 2 and probs.shape[1] > 1:
        raise ValueError("Streaming interpretation is for single-label classifiers (softmax, or one sigmoid output); "
                         "use the in-memory ClassificationInterpretation for a multi-label model")
    return as_classes(probs.float(), decoded, targs, kind, thresh)

class StreamingCallback(Callback):
    "Stream each validation batch into a `StreamingStats`: registry probabilities, per-item losses, data set indices"
    order = 61  # after ProgressCallback (60), whose loss comment would hide the items/s; and after DistributedTrainer (11) wraps the DataLoader
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
        self.rec = activation_for(self.learn.loss_func) if self.act is None else None
        if self.rec is not None and self.rec.kind == 'regression':
            raise TypeError(f"Interpretation is for classifiers; {self.rec.loss} is a regression loss, so there are no classes to interpret.")
        self.kind = self.rec and self.rec.kind
        self.thresh = (decision_thresh(self.learn, self.rec) if self.rec is not None and self.rec.thresh is not None
                       else getattr(self.learn.loss_func, 'thresh', 0.5))
        self.idxs, self.real = _dataset_idxs(self.learn.dl)
        self.stats, self.seen, self.start = None, 0, time.perf_counter()

    def after_batch(self):
        raw = to_detach(self.learn.pred, gather=False)  # this process's batch: processes merge once, at the end
        bs = len(raw)
        pos = slice(self.seen, self.seen + bs)
        self.seen += bs
        idxs = torch.arange(pos.start, pos.stop) if self.idxs is None else self.idxs[pos]
        check_finite(raw)
        probs, decoded = activate(self.learn, raw, self.act, self.rec)
        targs = losses = None
        if len(self.learn.yb):
            targs = to_detach(detuplify(self.learn.yb), gather=False)
            if self.with_loss: losses = self._losses(bs)
        if self.kind not in ('multiclass', 'multilabel'): self.kind = output_kind(probs)
        probs, decoded, targs = _as_classes(probs, decoded, targs, self.kind, self.thresh)
        if self.real is not None:
            real = self.real[pos]
            probs, decoded, idxs = probs[real], decoded[real], idxs[real]
            targs, losses = (None if t is None else t[real] for t in (targs, losses))
        if self.stats is None: self.stats = StreamingStats(probs.shape[1], self.k, self.n_bins, self.measures)
        self.stats.update(probs, targs, losses, idxs, decoded)
        self.items_per_s = self.stats.n / (time.perf_counter() - self.start)
        pbar = getattr(getattr(self.learn, 'progress', None), 'pbar', None)
        if pbar is not None: pbar.comment = f'{self.items_per_s:,.0f} items/s'

    def _losses(self, bs):
        "Per-item losses of the batch, as `get_preds(with_loss=True)` gathers them"
        loss = self.learn.loss
        if self.act is None and vars(self.learn).get('temperature') is not None:  # the loss of the probabilities kept
            return to_detach(per_item_loss(self.learn, self.learn.pred, *self.learn.yb, rec=self.rec), gather=False)
        if loss.ndim == 0:  # a validation that reduces the loss: compute it again per item, the way get_preds has it computed
            with self.learn.loss_not_reduced(): loss = self.learn.loss_func(self.learn.pred, *self.learn.yb)
        # one value per item, as the in-memory `losses` are brought to it: a one-output BCE gives (bs, 1)
        return to_detach(loss.reshape(bs, -1).mean(1), gather=False)

    def after_validate(self):
        if self.stats is None: return
        # under a DistributedDL each process saw a slice of the data: merge them so every process has the figures of all of it
        if _is_distributed(self.learn.dl) and dist.is_available() and dist.is_initialized(): self.stats.sync()

def _broadcast(self, t, rank):
    "Broadcast the list `t` from `rank`: as a CUDA tensor for nccl (which moves only those), a CPU one for gloo"
    t = torch.tensor(t, dtype=torch.long, device=_comm_device())
    dist.broadcast(t, rank)
    return t.cpu().tolist()

@contextmanager
def cpu_broadcast():
    "Within: fastai's `DistributedDL._broadcast` works with gloo on a CPU (fastai's own moves its indices to CUDA)"
    DistributedDL = _distributed_dl()
    own = None if DistributedDL is None else DistributedDL.__dict__.get('_broadcast')
    # only over fastai's original: a `_broadcast` someone else installed (a test's mock) is theirs to keep
    ours = getattr(own, '__module__', None) == 'fastai.distributed' and dist.is_available() and dist.is_initialized()
    if ours: DistributedDL._broadcast = _broadcast
    try: yield
    finally:
        if ours: DistributedDL._broadcast = own

# --- the interpretation built from streamed statistics
class _Kept:
    "Rows of the kept items, looked up by data set index"
    def __init__(self, pos, rows): self.pos, self.rows = pos, rows
    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)) or (torch.is_tensor(i) and i.ndim == 0): return self.rows[self.pos[int(i)]]
        return self.rows[[self.pos[j] for j in show.idx_list(i)]]

class _KeptItems:
    "The kept items of one list, shaped like the in-memory interpretation (indexed by data set index), so that its plots draw them"
    multilabel = False
    _title_parts, _titles = ClassificationInterpretation._title_parts, ClassificationInterpretation._titles
    batch, items = ClassificationInterpretation.batch, ClassificationInterpretation.items
    def __init__(self, interp, name):
        self.dl, self.vocab, self.labelled = interp.dl, interp.vocab, interp.labelled
        self.top_losses, self.most_uncertain = interp.top_losses, interp.most_uncertain
        kept = interp.res['top'][name]
        self.pos = {i: j for j, i in enumerate(kept['idx'].tolist())}
        self.probs, self.decoded = _Kept(self.pos, kept['probs']), _Kept(self.pos, kept['decoded'])
        self.targs = _Kept(self.pos, kept['targ']) if self.labelled else None
        self.losses = _Kept(self.pos, kept['loss']) if interp.stats.with_loss else None

    def correct(self): return _Kept(self.pos, self.decoded.rows == self.targs.rows)

def _in_memory_only(view, why):
    "A view that streamed statistics cannot answer: it raises, saying why and what to use"
    def f(self, *args, **kwargs):
        raise ValueError(f"{view} is not available from streamed statistics: it {why}, and streaming keeps only counts and the "
                         f"top {self.k} items of each list. Build the in-memory interpretation for it: "
                         f"ClassificationInterpretation.from_learner(learn)")
    f.__name__, f.__doc__ = view, f"Not available from streamed statistics: {view} {why}"
    return f

class StreamingInterpretation:
    "The views of `ClassificationInterpretation` that streamed statistics answer exactly, in constant memory; a clear error for the others"
    multilabel = False  # streaming covers single-label classifiers
    def __init__(self,
        learn, # Model the statistics come from
        dl, # `DataLoader` they were streamed over, to show the kept items
        stats:StreamingStats, # The streamed statistics
        vocab=None, # Class names; 0..C-1 if None
        items_per_s:float|None=None, # Throughput of the streaming pass
    ):
        store_attr('learn,stats,items_per_s')
        self.temperature = vars(learn).get('temperature')  # that the probabilities were made at, if any
        self.dl = dl.dl if _is_distributed(dl) else dl
        self.res = stats.compute()
        self.vocab = list(range(stats.n_classes)) if vocab is None else list(vocab)
        self.n, self.k, self.labelled = self.res['n'], stats.k, bool(stats.labelled)

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
        "Stream one inference pass over `dl` into counts and the top `k` items: memory independent of the number of items"
        if dl is None: dl = learn.dls[ds_idx].new(shuffle=False, drop_last=False)
        dl = inference_dl(dl)  # a torch DataLoader: the same batches as a fastai one, in data set order
        distributed = _is_distributed(dl)
        inner = dl.dl if distributed else dl
        if len(inner) == 0 or len(inner.dataset) == 0: raise ValueError("Cannot interpret an empty DataLoader: it holds no items")
        with_loss = _is_labelled(inner) and _per_item_loss(learn.loss_func)
        cb = StreamingCallback(k, n_bins, measures, act, with_loss)
        # the loss per item, computed as get_preds(with_loss=True) has it computed; nothing gathered (with_preds/with_targs off)
        with learn.loss_not_reduced() if with_loss else nullcontext(), nullcontext() if progress else no_bar(learn), \
                cpu_broadcast():
            # a DistributedDL is in data set order already, and `reorder` would rebuild it without its rank
            stock_get_preds(learn, dl=dl, act=noop, cbs=[cb], with_preds=False, with_targs=False, reorder=not distributed)
        return cls(learn, dl, cb.stats, _vocab(inner, cb.stats.n_classes), cb.items_per_s)

    _need_labels = ClassificationInterpretation._need_labels
    batch, items = ClassificationInterpretation.batch, ClassificationInterpretation.items

    def _top(self, name, k, view):
        "The first `k` kept items of list `name`; every kept one when `k` is None"
        kept = self.res['top'][name]
        m = len(kept['idx'])
        if k is None: k = m
        if k < 0: raise ValueError(f"k must be a number of items (0 or more), got {k}")
        if k > m and m < self.n:
            raise ValueError(f"{view}(k={k}) needs more items than were kept: the top {m} of {self.n:,}. "
                             f"Stream with k={k} or more: from_learner(learn, streaming=True, k={k})")
        return kept['score'][:k], kept['idx'][:k]

    def top_losses(self,
        k:int|None=None, # How many; every kept item if None
        largest:bool=True, # Only the largest are kept
        items:bool=False, # Also return the items
    ):
        "`k` largest losses and their data set indices"
        self._need_labels('top_losses')
        if not self.stats.with_loss: raise ValueError("No per-item losses were streamed: the loss takes no `reduction` argument")
        if not largest: raise ValueError("top_losses(largest=False) needs the smallest losses, and streaming keeps the largest: "
                                         "use the in-memory interpretation for it")
        res = self._top('loss', k, 'top_losses')
        return (*res, self.items(res[1])) if items else res

    def most_uncertain(self,
        k:int|None=None, # How many; every kept item if None
        measure='entropy', # A name in the measures streamed
        cls=None, # Not available from streamed statistics (None)
        by:str='pred', # Unused without `cls`
    ):
        "`k` most uncertain items by `measure` and their scores"
        if callable(measure):
            raise ValueError("most_uncertain(measure=<callable>) scores every item with that function, and streaming kept the top "
                             f"{self.k} by the named measures only ({', '.join(self.stats.measures)}): use one of them, "
                             "or the in-memory interpretation")
        if measure not in self.stats.measures:
            raise ValueError(f"Measure {measure!r} was not streamed: the streamed measures are {', '.join(self.stats.measures)}")
        if cls is not None:
            raise ValueError(f"most_uncertain(cls={cls!r}) ranks the items of one class, and streaming kept the top {self.k} of all "
                             "classes together: use the in-memory interpretation for it")
        return self._top(measure, k, 'most_uncertain')

    def confusion_matrix(self,
        normalize:str|None=None, # None (counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    ):
        "Confusion matrix (actual x predicted), counted while streaming"
        self._need_labels('confusion_matrix')
        return normalize_confusion(self.res['confusion'].copy(), normalize)

    most_confused = ClassificationInterpretation.most_confused
    plot_confusion_matrix = ClassificationInterpretation.plot_confusion_matrix

    @property
    def accuracy(self):
        "Share of items predicted right"
        self._need_labels('accuracy')
        return float(np.trace(self.res['confusion']) / self.n)

    def per_class(self):
        "Per class: items labelled (support) and predicted, right answers, recall (the class's accuracy) and precision"
        df = pd.DataFrame({'class': self.vocab, 'predicted': self.res['pred_counts']})
        if not self.labelled: return df
        cm = self.res['confusion']
        df.insert(1, 'support', cm.sum(1))
        df['correct'] = np.diag(cm)
        with np.errstate(all='ignore'):
            df['recall'] = np.nan_to_num(df['correct'] / df['support'])
            df['precision'] = np.nan_to_num(df['correct'] / df['predicted'])
        return df

    def _bins(self, view, n_bins):
        "The streamed calibration bins, if `n_bins` is None or the number streamed: bins cannot be cut again"
        self._need_labels(view)
        if n_bins is not None and n_bins != self.stats.n_bins:
            raise ValueError(f"The confidences were binned into n_bins={self.stats.n_bins} while streaming and cannot be cut again into "
                             f"{n_bins}: stream with n_bins={n_bins}")
        return self.res['calibration_bins']

    def calibration(self,
        n_bins:int|None=None, # Must be the number streamed (None: that one)
    ):
        "ECE, MCE, Brier score, NLL and accuracy, as `calibration_metrics` computes them from every item"
        # ECE, MCE and accuracy come from the bins' sums; Brier and NLL are sums of per-item terms added batch by batch (and
        # process by process): the same figures up to the order of float64 additions
        b, n = self._bins('calibration', n_bins), self.n
        return {'ece': float(ece_from_bins(b)), 'mce': float(mce_from_bins(b)), 'brier': self.res['brier_sum'] / n,
                'nll': self.res['nll_sum'] / n, 'accuracy': float(b.correct.sum()) / n}

    def plot_reliability(self,
        n_bins:int|None=None, # Must be the number streamed (None: that one)
        **kwargs # Passed to `reliability_diagram_from_bins` (title, figsize)
    ):
        "Reliability diagram from the streamed bins: the figure the in-memory interpretation draws from every item"
        reliability_diagram_from_bins(self._bins('plot_reliability', n_bins), **kwargs)

    def classification_report(self, **kwargs):
        "scikit-learn's classification report from the confusion counts: the same text as from every item"
        self._need_labels('classification_report')
        C = len(self.vocab)
        actual, pred = np.divmod(np.arange(C * C), C)  # one (actual, predicted) pair per cell, weighted by its count
        rep = skm.classification_report(actual, pred, labels=list(range(C)), sample_weight=self.res['confusion'].reshape(-1),
                                        target_names=[str(v) for v in self.vocab], zero_division=0, **kwargs)
        if not isinstance(rep, str): return rep
        return re.sub(r'(\d+)\.0$', lambda m: '  ' + m.group(1), rep, flags=re.M)  # weighted supports print as 35.0: back to 35

    def print_classification_report(self):
        "Print scikit-learn's classification report"
        print(self.classification_report())

    def plot_top_losses(self,
        k:int|list=9, # Number of kept items, or ranks in the loss ranking (a list), as fastai takes it
        largest:bool=True, # Only the largest are kept
        **kwargs # nrows, ncols, figsize of the grid, as fastai's; the rest to each image's `show`
    ):
        "Show the `k` kept items with the largest losses, drawn as the in-memory interpretation draws them"
        ClassificationInterpretation.plot_top_losses(_KeptItems(self, 'loss'), k, largest, **kwargs)

    def plot_most_uncertain(self,
        k:int|list=9, # Number of kept items, or ranks in the ranking (a list)
        measure='entropy', # A name in the measures streamed
        cls=None, # Not available from streamed statistics (None)
        by:str='pred', # Unused without `cls`
        n_classes:int=3, # Classes in each title, most probable first
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the `k` most uncertain kept items, drawn as the in-memory interpretation draws them"
        # what streaming cannot answer fails here, with its reason
        self.most_uncertain(k if isinstance(k, int) else None, measure, cls, by)
        kept = _KeptItems(self, measure)
        ClassificationInterpretation.plot_most_uncertain(kept, k, measure, cls, by, n_classes, **kwargs)

    def __repr__(self):
        "What these statistics are of: items, classes, activation, accuracy, where they come from, what was kept"
        from .interpret import _some, _source, _thresh, _activation
        from .calibration import _pct
        C, act = len(self.vocab), getattr(self, 'act', None)
        kind = [f"single-label, {_activation(self)}", f"accuracy {_pct(self.accuracy)}" if self.labelled
                else 'unlabelled']
        lists = (['loss'] if self.stats.with_loss else []) + list(self.stats.measures)
        src = [_source(self.learn, self.dl), f"top {self.k} kept of {len(lists)} lists ({', '.join(lists)})",
               f"{self.stats.n_bins} calibration bins"]
        T = getattr(self, 'temperature', vars(self.learn).get('temperature'))
        if T is not None and act is None: src.append(f"temperature {_thresh(T)}")
        return '\n'.join([f"{type(self).__name__}: {self.n:,} items, {C} classes ({_some(self.vocab)})",
                          '  ' + ' · '.join(kind), '  streamed from ' + src[0], '  ' + ' · '.join(src[1:])])

    to_df = _in_memory_only('to_df', 'holds one row per item')
    uncertainty = _in_memory_only('uncertainty', 'returns the score of every item')
    correct = _in_memory_only('correct', 'returns a flag for every item')
    most_correct = _in_memory_only('most_correct', "ranks every item of a class by p(class)")
    most_incorrect = _in_memory_only('most_incorrect', "ranks every item of a class by p(class)")
    plot_most_correct = _in_memory_only('plot_most_correct', "ranks every item of a class by p(class)")
    plot_most_incorrect = _in_memory_only('plot_most_incorrect', "ranks every item of a class by p(class)")
    best_thresholds = _in_memory_only('best_thresholds', 'is for multi-label classifiers and sweeps every item')
    __getitem__ = _in_memory_only('__getitem__', 'reads the cached prediction of any item')
