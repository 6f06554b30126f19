"Streamed statistics: a functional state (init, update, merge, sync, compute) and `StreamingStats`, its thin class"

__all__ = ['StreamingStats']

import math

import torch
import torch.distributed as dist

from .core import (CalibrationBins, bin_sums, by_rows, check_finite, check_k, item_nll, row_sq, sums_to_one, topk,
                   ROW_TOL)
from .distributed import all_gather, all_reduced, comm_device
from .uncertainty import MEASURES, scores, _least_confidence_of, _margin_of

# --- the functional core: a state is a dict of tensors; `_REDUCE` says how each entry combines across batches and
# processes
_REDUCE = {'n': 'sum', 'pred_counts': 'sum', 'confusion': 'sum',
           **{f'bins_{f}': 'sum' for f in CalibrationBins._fields},
           'brier_sum': 'sum', 'nll_sum': 'sum', 'abstain_count': 'sum', 'abstain_correct': 'sum', 'top': 'topk'}
_FIELDS = ('score', 'idx', 'probs', 'decoded', 'targ', 'loss')  # what is kept of each top item: enough to show it

_HOLD = 2 ** 21  # values of small batches' probabilities added together: 8 MB of float32, whatever the number of items

# Selective prediction streamed: the items counted by their least confidence 1 - p(top), in bins (e_{i-1}, e_i] whose
# upper edges are 0 (p(top) = 1 exactly), then 2,000 log-spaced from 1e-7 to 1: a threshold is known to 0.8% of its
# value (a good model's thresholds lie near 0, where equal-width bins would lump them together)
ABSTAIN_EDGES = torch.cat([torch.tensor([-1e-9, 0.], dtype=torch.float64),
                           torch.logspace(-7, 0, 2000, dtype=torch.float64)])

def _no_items(n_classes, device=None):
    "An empty list of kept items"
    long, flt = dict(dtype=torch.long, device=device), dict(device=device)
    return {'score': torch.empty(0, **flt), 'idx': torch.empty(0, **long), 'probs': torch.empty(0, n_classes, **flt),
            'decoded': torch.empty(0, **long), 'targ': torch.empty(0, **long), 'loss': torch.empty(0, **flt)}

def _init_state(n_classes, n_bins, lists, device=None):
    "The state of no items: zero counts and bin sums, empty top-k lists"
    z = lambda *shape, dtype=torch.long: torch.zeros(*shape, dtype=dtype, device=device)
    # calibration_bins' layout: n_bins + 1 bins (the last holds a confidence of exactly 1), int64 counts, float64 sums
    bins = {'bins_count': z(n_bins + 1), 'bins_confidence': z(n_bins + 1, dtype=torch.float64),
            'bins_correct': z(n_bins + 1, dtype=torch.float64)}
    return {'n': z(()), 'pred_counts': z(n_classes), 'confusion': z(n_classes, n_classes), **bins,
            'brier_sum': z((), dtype=torch.float64), 'nll_sum': z((), dtype=torch.float64),
            'abstain_count': z(len(ABSTAIN_EDGES) - 1), 'abstain_correct': z(len(ABSTAIN_EDGES) - 1),
            'top': {l: _no_items(n_classes, device) for l in lists}}

def _select(a, b, k):
    "The top `k` of the kept items `a` and `b` by score, ties to the lower item index, as the in-memory views order"
    m = {f: torch.cat([a[f], b[f]]) if len(a['idx']) else b[f] for f in _FIELDS}  # a pass's first block: b alone
    o = torch.argsort(m['idx'])
    i = m['idx'][o]
    if bool((i[1:] == i[:-1]).any()):  # neighbours once sorted: no unique(), whose first call costs 0.3-0.5 ms
        raise ValueError("The same item index was streamed twice: give each item its own index (`idxs`), "
                         "global across the collectors or processes that are merged")
    o = o[topk(m['score'][o], k)[1]]  # indices are unique: in index order, a stable top-k sends ties to the lower one
    return {f: v.index_select(0, o) for f, v in m.items()}

def _candidates(scores, kept, k):
    "Positions in `scores` that may enter the top `k` beside `kept`: at least the k-th best of both (ties: `_select`)"
    if len(kept['score']) == k:  # the k-th kept bounds the top k of everything seen from below: above it may enter
        return torch.nonzero(scores >= kept['score'][-1]).view(-1)
    v = scores.topk(min(k, len(scores))).values[-1]
    return torch.nonzero(scores >= v).view(-1)

# room between a measure and its bound: float32 rounding, and rows that sum to 1 only within ROW_TOL, which lift a
# margin by up to ROW_TOL over its bound, a uniform distance by up to 2 ROW_TOL (its L1 and L2 forms) and a normalized
# entropy by up to 0.01 (two classes). Least confidence needs none: it is scored from the top probability alone
_SLACK = {'margin': ROW_TOL + 1e-5, 'uniform_distance': 2 * ROW_TOL + 1e-5, 'entropy': 0.02}

def _bound(name, pmax, sq, n_classes):
    """Upper bound of the uncertainty measure `name` (one in `_SLACK`) of each item from its top probability `pmax` and
    its sum of squared probabilities `sq` (float64) alone, rows summing to 1, C > 1: an item whose bound is below the
    k-th kept score is not scored"""
    p, C = pmax.double(), n_classes
    q = (1 - p).clamp_min(0)
    if name == 'margin':  # the second probability is at most p1, 1 - p1 and sqrt(sum p^2 - p1^2)
        return (q + torch.minimum(torch.minimum(p, q), (sq - p * p).clamp_min(0).sqrt())).clamp_max(1)
    # L1 = sum_c |C p_c - 1| is at least 2 (C p1 - 1), and at least L2^2 / Linf, where L2^2 = C^2 sum p^2 - C and
    # Linf <= max(C p1 - 1, 1)
    l1 = torch.maximum(2 * (p * C - 1).clamp_min(0), (C * C * sq - C).clamp_min(0) / (p * C - 1).clamp_min(1))
    if name == 'uniform_distance': return 1 - l1 / (2 * (C - 1))
    # entropy: the rest spread evenly; and Pinsker's KL(p || uniform) >= |p - 1/C|_1^2 / 2, with H = log C - KL
    even = (-torch.special.xlogy(p, p) - torch.special.xlogy(q, q) + q * math.log(C - 1)) / math.log(C)
    return torch.minimum(even, 1 - (l1 / C).square() / (2 * math.log(C)))

def _score(name, probs, pos=None):
    """The measure `name` of each row (or of the rows at `pos`): on the CPU, bit for bit what it gives that row in any
    batch, the whole set's too"""
    # torch sums a lone row of 32,768 values or more over several threads, in another order than each row of a batch
    if pos is None:
        if len(probs) == 1: return scores(probs.repeat(2, 1), name)[:1]
        return by_rows(lambda b: scores(b, name), probs)
    n = len(pos)
    # index_select: 4x faster than indexing with a tensor of positions, which goes through the general advanced index
    return by_rows(lambda at: scores(probs.index_select(0, at), name), pos.repeat(2) if n == 1 else pos,
                   probs.shape[1])[:n]

def _margin_at(probs, pmax, pred, pos):
    "The margin of the rows at `pos`, their top probability and its class known (`pmax`, `pred`): `margin` of them"
    return by_rows(lambda at: _margin_of(probs.index_select(0, at), pmax[at], pred[at], mine=True), pos,
                   probs.shape[1])

def _update(kept, # The state's top-k lists, read only
        probs, # (B, C) float32 probabilities, rows summing to 1
        targs, # (B,) target classes, or None
        losses, # (B,) per-item losses, or None
        idxs, # (B,) item indices
        decoded, # (B,) predicted classes, or None for the argmax
        k:int, # Items kept per list
        n_bins:int, # Calibration bins
        own:bool=False, # `probs` is the collector's block of held batches, which it may write over and put back
    ):
    "One batch's contribution: the sums it adds, its confusion cells, per list the items that may enter the top `k`"
    C = probs.shape[1]
    pmax, pred = probs.max(1)  # the first maximum, as argmax
    if decoded is None: decoded = pred
    lc = _least_confidence_of(pmax)  # least confidence, from the top probability alone: every item scored
    res = {'sums': {'n': len(probs), 'pred_counts': torch.bincount(decoded, minlength=C)}, 'cells': None, 'top': {}}
    sq = None  # sum of squared probabilities of each row, for the Brier score and the bounds of the measures
    if targs is not None or (k and C > 1):
        sq = row_sq(probs)
    if targs is not None:
        res['cells'] = targs * C + decoded  # confusion cells to count: O(B), where a C x C bincount per batch is O(C^2)
        # the sums calibration_bins makes of (top probability, argmax right), without checking the batch again
        bins = bin_sums(pmax[:, None], (pred == targs)[:, None], n_bins)
        res['sums'].update({f'bins_{f}': s[0] for f, s in zip(CalibrationBins._fields, bins)})
        # brier_terms' sum_c (p_c - [c = t])^2 as |p|^2 - 2 p_t + 1, its |p|^2 computed once for the bounds too
        res['sums']['brier_sum'] = (sq - 2 * probs.gather(1, targs.view(-1, 1))[:, 0].double() + 1).sum()
        res['sums']['nll_sum'] = item_nll(probs, targs).double().sum()
        # least confidence as the in-memory measure has it (float32), binned so that threshold e_i predicts u <= e_i
        at = torch.bucketize(lc.double(), ABSTAIN_EDGES[1:].to(lc.device))
        nb = len(ABSTAIN_EDGES) - 1
        res['sums']['abstain_count'] = torch.bincount(at, minlength=nb)
        res['sums']['abstain_correct'] = torch.bincount(at[decoded == targs], minlength=nb)  # the decisions shown
    if k == 0: return res
    rows = {'probs': probs, 'decoded': decoded, 'idx': idxs,
            'targ': targs if targs is not None else torch.full_like(decoded, -1),
            'loss': losses if losses is not None else probs.new_full((len(probs),), math.nan)}
    for name, kl in kept.items():
        pos = None  # the positions scored; None: all of them
        if name == 'loss':
            if losses is None: continue
            scores = losses
        elif name == 'least_confidence': scores = lc
        else:
            if C > 1 and len(kl['score']) == k:
                # an item whose bound is below the k-th kept score cannot enter: score the others only
                pos = torch.nonzero(_bound(name, pmax, sq, C) >= float(kl['score'][-1]) - _SLACK[name]).view(-1)
                if not len(pos): continue
            if name == 'margin' and C > 1:  # from the top probabilities and classes known already
                # every row of a block the collector holds: scored in place, where a copy of the block took longer
                if pos is None and own: scores = _margin_of(probs, pmax, pred, put_back=True)
                else:
                    if pos is None: pos = torch.arange(len(probs), device=probs.device)
                    scores = _margin_at(probs, pmax, pred, pos)
            else: scores = _score(name, probs, pos)
        c = _candidates(scores, kl, k)
        if not len(c): continue
        at = c if pos is None else pos[c]
        res['top'][name] = {'score': scores[c], **{f: r.index_select(0, at) for f, r in rows.items()}}
    return res

def _add(state, res, k):
    "Add a contribution `res` to `state`, in place"
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
    return {'n': int(state['n']), 'pred_counts': cpu(state['pred_counts']).numpy(),
            'confusion': cpu(state['confusion']).numpy(),
            'calibration_bins': CalibrationBins(*(cpu(state[f'bins_{f}']) for f in CalibrationBins._fields)),
            'brier_sum': float(state['brier_sum']), 'nll_sum': float(state['nll_sum']),
            **{f: cpu(state[f]).numpy() for f in ('abstain_count', 'abstain_correct')},
            'top': {l: {f: cpu(v) for f, v in kept.items()} for l, kept in state['top'].items()}}

# --- across processes
def _gather_top(kept, k, group=None):
    "The top `k` of every rank's kept items: each sends `k` rows (padded with index -1, dropped again), shapes alike"
    pad = k - len(kept['idx'])
    padded = lambda v: torch.cat([v, v.new_full((pad, *v.shape[1:]), -1)])
    # in _FIELDS' order on every rank, whatever order a rank's dict has: one collective after the other, alike
    per_field = {f: all_gather(padded(kept[f]), group) for f in _FIELDS}
    res = _no_items(kept['probs'].shape[1], kept['probs'].device)
    for r in range(dist.get_world_size(group)):
        real = per_field['idx'][r] >= 0
        res = _select(res, {f: per_field[f][r][real] for f in _FIELDS}, k)
    return res

def _sync(state, k, group=None):
    "The state of the items of every rank of `group`: counts all-reduced, top-k lists all-gathered and selected again"
    res = {}
    for key, how in _REDUCE.items():
        if how == 'topk': res[key] = {l: _gather_top(kept, k, group) if k else kept for l, kept in state[key].items()}
        else: res[key] = all_reduced(state[key], group)
    return res

def _to(state, device):
    "`state` with every tensor on `device`"
    return {key: v.to(device) if torch.is_tensor(v)
            else {name: {f: t.to(device) for f, t in kept.items()} for name, kept in v.items()}
            for key, v in state.items()}

class StreamingStats:
    """Confusion and per-class counts, calibration bins, and the top `k` items by loss and by uncertainty: O(1) memory

    >>> a, b = StreamingStats(n_classes=3, k=2), StreamingStats(n_classes=3, k=2)
    >>> p = torch.tensor([[0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    >>> _ = a.update(p[:2], targs=torch.tensor([0, 1])); _ = b.update(p[2:], targs=torch.tensor([2, 1]), idxs=[2, 3])
    >>> res = a.merge(b).compute()  # the items of both, as if streamed into one
    >>> res['n'], int(res['confusion'].trace()), res['top']['margin']['idx'].tolist()  # a tie: the lower index first
    (4, 3, [1, 3])
    """
    def __init__(self,
        n_classes:int, # Number of classes C
        k:int=100, # Items kept per list: memory is O(k*C + C^2 + n_bins), whatever the number of items
        n_bins:int=15, # Calibration bins, equal width over [0, 1]
        measures=tuple(MEASURES), # Names in `MEASURES` whose top `k` items are kept
    ):
        if int(n_classes) < 1: raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        check_k(int(k))
        if int(n_bins) < 1: raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        measures = tuple(measures)
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"Unknown uncertainty measure(s) {unknown}: streaming keeps the named ones, "
                             f"{', '.join(MEASURES)}")
        self.n_classes, self.k, self.n_bins = int(n_classes), int(k), int(n_bins)
        # in MEASURES' order: processes gather the lists one after the other, so they must agree on it, whatever
        # order each was given
        self.measures = tuple(m for m in MEASURES if m in measures)
        self.reset()

    def reset(self):
        "Forget every item"
        self.state, self.labelled, self.with_loss, self._held = None, None, None, None

    @property
    def n(self):
        "Number of items streamed so far"
        return (0 if self.state is None else int(self.state['n'])) + (0 if self._held is None else self._held['n'])

    def _lists(self): return ('loss', *self.measures)

    def _flags(self, labelled, with_loss):
        "Check that a batch has targets and losses like the batches before it, and remember it"
        for name, was, now in (('targets', self.labelled, labelled), ('losses', self.with_loss, with_loss)):
            if was is not None and was != now:
                raise ValueError(f"This batch {'has' if now else 'has no'} {name}, and the earlier ones "
                                 f"{'had' if was else 'had none'}: "
                                 f"stream labelled and unlabelled data into separate collectors")
        self.labelled, self.with_loss = labelled, with_loss

    def update(self,
        probs, # (B, C) probabilities, rows summing to 1
        targs=None, # (B,) target classes, for the confusion, the calibration figures (bins, Brier, NLL) and the losses
        losses=None, # (B,) per-item losses, for the top losses (need `targs`)
        idxs=None, # (B,) item indices, global across what is merged; default: continue from the items already seen
        decoded=None, # (B,) predicted classes; default: argmax of `probs`
    ):
        """Add one batch. Small batches are copied into a block of `_HOLD` values, added together when it fills (or
        when the figures are asked for): one pass of the statistics per block, not per batch; memory stays O(1)"""
        return self._add_batch(probs, targs, losses, idxs, decoded)

    def _add_batch(self, probs, targs, losses, idxs, decoded, made:bool=False):
        """`update`; `made`: `probs` and `decoded` are a built-in softmax of finite outputs and its argmax (or None),
        not rechecked"""
        probs, targs, losses, idxs, decoded = self._check(probs, targs, losses, idxs, decoded, made)
        if not len(probs): return self
        self._flags(targs is not None, losses is not None)
        batch = {'probs': probs, 'targs': targs, 'losses': losses, 'idxs': idxs, 'decoded': decoded}
        h = self._held
        if h is not None and (h['probs'].device != probs.device or (decoded is None) != (h['decoded'] is None)):
            self._add_held(); h = None  # a block of another kind is made below
        if h is not None and h['n'] + len(probs) > len(h['probs']):
            self._add_block(h)  # the same buffers are filled again: nothing is allocated per block
        cap = max(len(probs), _HOLD // self.n_classes) if h is None else len(h['probs'])
        if (h is None or not h['n']) and len(probs) >= cap: return self._add(**batch)  # a block on its own: no copy
        if h is None:  # copies, not the caller's tensors: a loop may write its next batch into the same ones
            h = self._held = {'n': 0, **{f: None if v is None else v.new_empty((cap, *v.shape[1:]))
                                         for f, v in batch.items()}}
        for f, v in batch.items():
            if v is not None: h[f][h['n']:h['n'] + len(v)] = v
        h['n'] += len(probs)
        return self

    def _add(self, probs, targs, losses, idxs, decoded, own:bool=False):
        "Add checked items to the state; `own`: they are the block of held batches"
        if self.state is None: self.state = _init_state(self.n_classes, self.n_bins, self._lists(), probs.device)
        _add(self.state, _update(self.state['top'], probs, targs, losses, idxs, decoded, self.k, self.n_bins, own),
             self.k)
        return self

    def _add_block(self, h):
        "Add the items of the block `h` and empty it (the state keeps copies of what it keeps, never views of `h`)"
        n, h['n'] = h['n'], 0
        if n: self._add(**{f: None if v is None else v[:n] for f, v in h.items() if f != 'n'}, own=True)

    def _add_held(self):
        "Add the items held back, if any, and let their block go"
        if self._held is not None: self._add_block(self._held)
        self._held = None
        return self

    def _check(self, probs, targs, losses, idxs, decoded, made=False):
        "The batch as tensors of the right shapes, dtypes and ranges, or a ValueError saying what is wrong"
        probs = torch.as_tensor(probs)
        C = self.n_classes
        if probs.ndim != 2 or probs.shape[1] != C:
            raise ValueError(f"probs must have shape (batch size, {C}), got {tuple(probs.shape)}")
        if not probs.is_floating_point(): raise ValueError(f"probs must be floating point, got {probs.dtype}")
        probs, B = probs.float(), len(probs)
        if B and not made:  # one pass for the range (NaN and inf show in it), one for the row sums
            lo, hi = torch.aminmax(probs)
            if not (torch.isfinite(lo) and torch.isfinite(hi)):
                check_finite(probs, 'probabilities')  # says how many rows
            if lo < 0 or hi > 1:
                raise ValueError("probs hold values outside [0, 1]: pass probabilities (e.g. the softmax of the "
                                 "logits), not logits")
            if not sums_to_one(probs):
                off = float((probs.sum(1) - 1).abs().max())
                raise ValueError(f"Rows of probs must sum to 1 within {ROW_TOL:g} (a single-label classifier's "
                                 f"softmax); "
                                 f"one is off by {off:.3g}")
        def classes(t, what):
            t = torch.as_tensor(t, device=probs.device)
            if t.shape != (B,): raise ValueError(f"{what} must have shape ({B},), one per item, got {tuple(t.shape)}")
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"{what} must be integer class indices, got {t.dtype}")
            lo, hi = torch.aminmax(t) if B else (0, 0)  # one pass
            if lo < 0 or hi >= C:
                raise ValueError(f"{what} must lie in [0, {C}), got values from {int(lo)} to {int(hi)}")
            return t.long()
        if targs is not None: targs = classes(targs, 'targs')
        if decoded is not None: decoded = decoded.long() if made else classes(decoded, 'decoded')
        if losses is not None:
            if targs is None: raise ValueError("losses need targs: a per-item loss is measured against a target")
            losses = torch.as_tensor(losses, device=probs.device)
            if losses.shape != (B,) or not losses.is_floating_point():
                raise ValueError(f"losses must be floats of shape ({B},), got {losses.dtype} of shape "
                                 f"{tuple(losses.shape)}")
            if torch.isnan(losses).any():
                raise ValueError(f"{int(torch.isnan(losses).sum())} of the {B} losses are NaN")
            losses = losses.float()
        if idxs is None: idxs = torch.arange(self.n, self.n + B, device=probs.device)
        else:
            idxs = torch.as_tensor(idxs, device=probs.device)
            if idxs.shape != (B,) or idxs.is_floating_point():
                raise ValueError(f"idxs must be {B} integer item indices, got {idxs.dtype} of shape "
                                 f"{tuple(idxs.shape)}")
            if B and idxs.min() < 0: raise ValueError("idxs must be item indices, 0 or more")
            idxs = idxs.long()
        return probs, targs, losses, idxs, decoded

    def _setup(self): return (self.n_classes, self.k, self.n_bins, self.measures)

    def merge(self, other:'StreamingStats'):
        "Add the items of `other` (streamed elsewhere, with its own global `idxs`): in any order of merges, the same"
        if not isinstance(other, StreamingStats):
            raise TypeError(f"Can only merge a StreamingStats, got {type(other).__name__}")
        if self._setup() != other._setup():
            raise ValueError(f"Cannot merge collectors set up differently: (n_classes, k, n_bins, measures) "
                             f"{self._setup()} here, "
                             f"{other._setup()} in the other")
        self._add_held(); other._add_held()
        if other.state is None: return self
        self._flags(other.labelled, other.with_loss)
        mine = self.state or _init_state(self.n_classes, self.n_bins, self._lists(), other.state['n'].device)
        self.state = _merge(mine, other.state, self.k)  # new tensors: `other` stays as it was
        return self

    def sync(self, group=None):
        "Merge the statistics of every process of `group` once, at the end: counts all-reduced, lists all-gathered"
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("sync needs torch.distributed to be initialized (torch.distributed.init_process_group)")
        self._add_held()
        if dist.get_world_size(group) == 1: return self
        dev = comm_device(group)
        here = self.state['n'].device if self.state is not None else torch.device('cpu')
        self._sync_setup(dev, group)
        # a rank that saw nothing still takes part
        state = self.state or _init_state(self.n_classes, self.n_bins, self._lists())
        self.state = _to(_sync(_to(state, dev), self.k, group), here)
        return self

    def _sync_setup(self, dev, group):
        "Check that every rank is set up alike and agrees on targets and losses (one that saw none takes the others')"
        code = lambda flag: -1 if flag is None else int(flag)
        mask = sum(1 << list(MEASURES).index(m) for m in self.measures)
        setup = [self.n_classes, self.k, self.n_bins, mask, code(self.labelled), code(self.with_loss)]
        mine = torch.tensor(setup, device=dev)
        rows = [t.tolist() for t in all_gather(mine, group)]
        for r, row in enumerate(rows):
            if row[:4] != rows[0][:4]:
                raise ValueError(f"Ranks 0 and {r} are set up differently: (n_classes, k, n_bins, measures bitmask) "
                                 f"{rows[0][:4]} and {row[:4]}")
        flags = []
        for i, name in ((4, 'targets'), (5, 'losses')):
            known = {row[i] for row in rows if row[i] >= 0}
            if len(known) > 1: raise ValueError(f"Some ranks streamed {name} and others did not")
            flags.append(bool(known.pop()) if known else None)
        self.labelled, self.with_loss = flags

    def compute(self):
        "The figures: item count, predicted counts, confusion (actual x predicted), bin, Brier and NLL sums, kept items"
        self._add_held()
        if self.state is None: raise ValueError("Nothing was streamed: call update with at least one item first")
        return _compute(self.state)
