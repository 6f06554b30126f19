"Pure functions every layer shares: outputs as classes, per-item NLL, confusion counts, stable top-k, bin sums, checks"

__all__ = ['ROW_TOL', 'TINY', 'sums_to_one', 'check_k', 'check_finite', 'all_finite', 'nonfinite_message', 'as_probs',
           'class_targets', 'item_nll', 'brier_terms', 'output_kind', 'as_classes', 'check_normalize',
           'normalize_confusion', 'confusion_counts', 'report_from_confusion', 'topk', 'CalibrationBins', 'bin_sums',
           'ece_from_bins', 'mce_from_bins', 'loss_ignore_index', 'bincount', 'iou_from_confusion',
           'dice_from_confusion', 'BLOCK_VALUES', 'by_rows', 'row_sq']

import math, re
from typing import NamedTuple

import numpy as np, torch
import torch.nn.functional as F
import sklearn.metrics as skm

ROW_TOL = 1e-3  # how far from 1 a row of class probabilities may sum: float32 softmax outputs, rounded inputs
TINY = torch.finfo(torch.float32).tiny  # floor of a probability under a log: a finite NLL for p = 0

# --- checks: each refusal written once
def sums_to_one(x, # Tensor of nonnegative values
        axis:int=1, # The class axis
    )->bool:
    """Whether every row of `x` along `axis` sums to 1 within `ROW_TOL`, as class probabilities do

    >>> sums_to_one(torch.tensor([[0.2, 0.8], [0.5, 0.5]])), sums_to_one(torch.tensor([[2.0, -1.5]]).abs())
    (True, False)
    """
    return bool(((x.sum(axis) - 1).abs() < ROW_TOL).all())

def check_k(k, # A number of items, or None for all
    ):
    """`k` unchanged, or a ValueError when it is negative

    >>> check_k(3), check_k(None)
    (3, None)
    >>> check_k(-1)
    Traceback (most recent call last):
    ValueError: k must be a number of items (0 or more), got -1
    """
    if k is not None and k < 0: raise ValueError(f"k must be a number of items (0 or more), got {k}")
    return k

def check_finite(x, # Tensor whose first axis is the items
        what:str='model outputs', # What `x` is, for the message
    ):
    """`x` unchanged, or a ValueError saying how many of its rows hold NaN or inf

    >>> check_finite(torch.tensor([[1., float('nan')], [0., 1.], [float('inf'), 2.]]), 'logits')
    Traceback (most recent call last):
    ValueError: 2 of 3 rows of the logits hold NaN or inf
    """
    n = _nonfinite_rows(x)
    if n: raise ValueError(nonfinite_message(n, len(torch.atleast_1d(torch.as_tensor(x))), what))
    return x

def _finite_sum(t)->bool:
    """Whether the floating point tensor `t` is all finite by the fast test: True means it is, False that it may not
    be (a sum that overflows; count the rows then). Not floating point, or empty: True"""
    if not t.is_floating_point() or not t.numel(): return True
    # NaN and inf make the sum NaN or inf: one pass (isfinite is several times slower, aminmax 2x) clears the usual case
    return math.isfinite(t.sum(dtype=torch.float32) if t.element_size() < 4 else t.sum())  # float16 overflows at 65,504

def all_finite(t)->bool:
    """Whether the tensor `t` holds no NaN and no inf: one sum in the usual case

    >>> all_finite(torch.tensor([1., 2.])), all_finite(torch.full((2,), 3e38)), all_finite(torch.tensor([float('nan')]))
    (True, True, False)
    """
    return _finite_sum(t) or bool(torch.isfinite(t).all())

def _nonfinite_rows(x)->int:
    "How many rows (entries of the first axis) of `x` hold NaN or inf"
    t = torch.as_tensor(x)
    if _finite_sum(t): return 0
    bad = ~torch.isfinite(torch.atleast_1d(t))
    return int((bad.flatten(1).any(1) if bad.ndim > 1 else bad).sum())

def nonfinite_message(n:int, total:int, what:str='model outputs')->str:
    """What `check_finite` says of `n` rows with NaN or inf among `total`: one message, whole or batch by batch

    >>> nonfinite_message(2, 359)
    '2 of 359 rows of the model outputs hold NaN or inf'
    """
    return f"{n} of {total} rows of the {what} hold NaN or inf"

def as_probs(probs, # Probabilities: tensor, array or nested list
        multiclass:bool=True, # Whether they must be (N, C) rows of class probabilities
    )->torch.Tensor:
    """`probs` as a finite float32/float64 tensor, (N, C) when `multiclass`: the check of every measure's input

    >>> as_probs([[0.25, 0.75]]).dtype, as_probs(torch.tensor([[0.5, 0.5]], dtype=torch.float64)).dtype
    (torch.float32, torch.float64)
    """
    x = torch.as_tensor(probs)
    # float16 loses too much in log and 1-p; float64 input keeps its precision
    x = x.double() if x.dtype == torch.float64 else x.float()
    if multiclass and x.ndim != 2:
        raise ValueError(f"Multi-class uncertainty needs probabilities of shape (N, C), got shape {tuple(x.shape)}. "
                         f"For a one-output sigmoid model use `multilabel_uncertainty`.")
    return check_finite(x, 'probabilities')

# --- outputs as classes
def class_targets(targs, # (N,) class indices, or (N, C) soft or one-hot targets
        probs, # (N, C) probabilities they go with
    )->torch.Tensor:
    """Targets as class indices (soft or one-hot targets become their argmax)

    >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    >>> class_targets(torch.tensor([[1., 0.], [0., 1.]]), p), class_targets(torch.tensor([[1], [0]]), p)
    (tensor([0, 1]), tensor([1, 0]))
    """
    return targs.argmax(1) if targs.shape == probs.shape else targs.view(-1)

def loss_ignore_index(loss, # A loss: PyTorch's, or fastai's wrapper of one
    )->int|None:
    """The target value the loss leaves out (`ignore_index`), through fastai's wrappers; None if it has none

    >>> import torch.nn as nn
    >>> loss_ignore_index(nn.CrossEntropyLoss(ignore_index=255)), loss_ignore_index(nn.MSELoss())
    (255, None)
    """
    for o in (loss, getattr(loss, 'func', None)):
        ii = getattr(o, 'ignore_index', None)
        if isinstance(ii, int): return ii
    return None

def item_nll(probs, # (N, C) probabilities; multilabel: (N, L) per label
        targs, # (N,) class indices (or soft rows); multilabel: (N, L) 0/1 labels
        multilabel:bool=False, # Binary cross-entropy of each label, averaged over the labels
    )->torch.Tensor:
    """Per-item negative log-likelihood of the targets under `probs`, in nats, finite for p = 0

    >>> item_nll(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.tensor([0, 1])).div(torch.tensor(2.).log())  # in bits
    tensor([1.0000, 3.3219])
    """
    probs = probs.float()
    if multilabel:
        t = targs.view(probs.shape).float()
        return F.binary_cross_entropy(probs.clamp(TINY, 1 - 1e-7), t, reduction='none').mean(1)
    return -probs.gather(1, class_targets(targs, probs).view(-1, 1).long()).clamp_min(TINY).log().view(-1)

# --- row-wise work in blocks of rows: temporaries of a few MB, whatever N
BLOCK_VALUES = 2 ** 18  # values per block of rows: 1 MB of float32, 2 MB of float64

def by_rows(f, # Function of a block of rows of `x` (or of the rows of another tensor at positions `x`) -> (len,) ...
        x, # (N, ...) rows, or (N,) positions of rows of `width` values each
        width:int|None=None, # Values per row when `x` holds positions; default: those of a row of `x`
        values:int=BLOCK_VALUES, # Values per block
    ):
    """`f` of `x` taken a block of rows at a time, concatenated: per row the same values, temporaries bounded by the
    block

    >>> by_rows(lambda b: b.sum(1), torch.ones(1000, 100), values=3_000).shape  # 34 blocks of 30 rows, the last 970-999
    torch.Size([1000])
    """
    n = len(x)
    rows = max(16, values // max(1, x[0].numel() if width is None else width)) if n else 1
    if n <= rows: return f(x)
    # every block exactly `rows` rows, the last one ending at n (it overlaps the one before: those rows are scored
    # again, to the same values): temporaries of one size, which the allocator reuses, and never a lone row, which
    # torch sums over several threads in another order than the rows of a batch
    starts = list(range(0, n - rows + 1, rows))
    if starts[-1] + rows < n: starts.append(n - rows)
    res = None
    for i in starts:
        r = f(x[i:i + rows])
        # written into one result: small pieces kept between the blocks' temporaries would keep glibc from reusing them
        if res is None: res = r.new_empty((n, *r.shape[1:]))
        res[i:i + rows] = r
    return res

def row_sq(probs, # (N, C) probabilities
    )->torch.Tensor:
    """Sum of the squared values of each row in float64, a block of rows at a time (no N x C float64 copy)

    >>> row_sq(torch.tensor([[0.5, 0.5], [1., 0.]]))
    tensor([0.5000, 1.0000], dtype=torch.float64)
    """
    if not len(probs): return probs.new_zeros(0, dtype=torch.float64)
    # blocks of one size: vector_norm's float64 copy of each is a temporary the allocator reuses block after block;
    # a quarter of the usual block (512 kB of float64), whose fresh pages took more time than the sums on a first call
    # (2.0-2.4 against 1.4 ms for 10,000 x 100)
    return by_rows(lambda b: torch.linalg.vector_norm(b, dim=1, dtype=torch.float64).square(), probs,
                   values=BLOCK_VALUES // 4)

def brier_terms(probs, # (N, C) probabilities
        targs, # (N,) class indices
    )->torch.Tensor:
    """Per item, in float64: sum_c (p_c - [c = t])^2, as |p|^2 - 2 p_t + 1 (no one-hot, no N x C float64 temporary)

    >>> brier_terms(torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([0]))  # 0.3^2 + 0.2^2 + 0.1^2
    tensor([0.1400], dtype=torch.float64)
    """
    return row_sq(probs) - 2 * probs.gather(1, targs.view(-1, 1).long())[:, 0].double() + 1

def output_kind(probs, # Probabilities an explicit `act` or an unregistered loss gave
        loss=None, # The loss, for the message
    )->str:
    """'multiclass' when rows sum to 1, 'multilabel' when values lie in [0, 1]; else a ValueError

    >>> output_kind(torch.tensor([[0.3, 0.7]])), output_kind(torch.tensor([[0.9, 0.8]]))
    ('multiclass', 'multilabel')
    """
    if probs.ndim == 2 and probs.shape[1] > 1 and sums_to_one(probs): return 'multiclass'
    if bool(((probs >= 0) & (probs <= 1)).all()): return 'multilabel'
    raise ValueError(f"The outputs{'' if loss is None else f' of {loss!r}'} are not probabilities (they leave [0, 1]). "
                     f"Register the loss's activation with fastinterp.register_activation, or pass act=.")

def as_classes(probs, # (N, C) class probabilities, or (N,) / (N, 1) of one sigmoid output
        decoded, # Decisions taken (before any temperature), or None
        targs, # Targets, or None
        kind:str, # 'multiclass' or 'multilabel' (one sigmoid output)
        thresh, # Threshold of a one-output sigmoid
    ):
    """(N, C) probabilities and (N,) predicted and target classes: a one-output sigmoid becomes two classes

    >>> probs, decoded, targs = as_classes(torch.tensor([0.2, 0.9]), None, torch.tensor([0., 1.]), 'multilabel', 0.5)
    >>> probs, decoded, targs
    (tensor([[0.8000, 0.2000],
            [0.1000, 0.9000]]), tensor([0, 1]), tensor([0, 1]))
    """
    if kind == 'multilabel':  # one sigmoid output: a binary classifier
        p = probs.view(-1)
        d = decoded.reshape(-1).long() if decoded is not None and decoded.numel() == len(p) else (p > thresh).long()
        return torch.stack([1 - p, p], 1), d, None if targs is None else targs.view(-1).long()
    if probs.ndim != 2:
        raise ValueError(f"Interpretation needs one row of class probabilities per item, "
                         f"got shape {tuple(probs.shape)}")
    if targs is not None: targs = class_targets(targs, probs).long()  # soft targets become classes
    if decoded is None or decoded.shape != probs.shape[:1]: decoded = probs.argmax(1)
    return probs, decoded.long(), targs

# --- counting
def check_normalize(normalize):
    """`normalize` unchanged if sklearn's confusion_matrix takes it; else a ValueError

    >>> check_normalize('true')
    'true'
    >>> check_normalize('rows')
    Traceback (most recent call last):
    ValueError: normalize must be None, 'true', 'pred' or 'all', got 'rows'
    """
    if normalize not in (None, 'true', 'pred', 'all'):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    return normalize

def normalize_confusion(cm, # Counts: (C, C) actual x predicted, or (L, 2, 2) one matrix per label
        normalize:str|None=None, # None (counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    ):
    """`cm` normalized as sklearn's `confusion_matrix(normalize=...)` does; an empty row or column gives 0s

    >>> normalize_confusion(np.array([[3, 1], [0, 0]]), 'true')
    array([[0.75, 0.25],
           [0.  , 0.  ]])
    """
    if check_normalize(normalize) is None: return cm
    axis = {'true': -1, 'pred': -2, 'all': (-2, -1) if cm.ndim == 3 else None}[normalize]
    with np.errstate(all='ignore'): cm = cm / cm.sum(axis=axis, keepdims=True)
    return np.nan_to_num(cm)

def confusion_counts(targs, # (N,) classes; multilabel: (N, L) 0/1 labels
        decoded, # (N,) predicted classes; multilabel: (N, L) 0/1
        n_classes:int, # Number of classes C
        multilabel:bool=False, # One 2 x 2 matrix per label, as sklearn's multilabel_confusion_matrix
    )->np.ndarray:
    """Confusion counts (C, C) actual x predicted by counting, O(N + C^2); multilabel: (L, 2, 2)

    >>> confusion_counts(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 1, 0]])
    """
    t, d = np.asarray(targs), np.asarray(decoded)
    if multilabel:
        t, d = t.astype(bool), d.astype(bool)
        return np.stack([(~t & ~d).sum(0), (~t & d).sum(0), (t & ~d).sum(0), (t & d).sum(0)], 1).reshape(-1, 2, 2)
    C = n_classes
    return np.bincount(t.astype(np.int64) * C + d, minlength=C * C).reshape(C, C)

def iou_from_confusion(cm, # (C, C) pixel counts, target x predicted
    )->np.ndarray:
    """(C,) intersection over union per class; NaN for a class absent from both targets and predictions

    >>> iou_from_confusion(np.array([[3, 1], [0, 0]]))  # class 1: predicted once, never there
    array([0.75, 0.  ])
    """
    cm = np.asarray(cm, dtype=np.float64)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(invalid='ignore', divide='ignore'): return np.where(union > 0, inter / union, np.nan)

def dice_from_confusion(cm, # (C, C) pixel counts, target x predicted
    )->np.ndarray:
    """(C,) Dice (F1) per class, 2 |A and B| / (|A| + |B|); NaN for a class absent from both

    >>> dice_from_confusion(np.array([[3, 1], [0, 0]]))
    array([0.85714286, 0.        ])
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid='ignore', divide='ignore'): return np.where(total > 0, 2 * np.diag(cm) / total, np.nan)

def report_from_confusion(cm, # (C, C) confusion counts, actual x predicted
        names, # Class names
        **kwargs # Passed to sklearn's classification_report (digits, output_dict)
    ):
    """scikit-learn's classification report of the items `cm` counts: the same as from the items themselves

    >>> rep = report_from_confusion(np.array([[3, 1], [0, 4]]), ['cat', 'dog'], output_dict=True)
    >>> rep['cat']['recall'], rep['dog']['precision'], rep['dog']['support']
    (0.75, 0.8, 4)
    """
    C = len(names)
    actual, pred = np.divmod(np.arange(C * C), C)  # one (actual, predicted) pair per cell, weighted by its count
    rep = skm.classification_report(actual, pred, labels=list(range(C)), sample_weight=np.asarray(cm).reshape(-1),
                                    target_names=[str(v) for v in names], zero_division=0, **kwargs)
    if isinstance(rep, dict):
        for row in rep.values():
            if isinstance(row, dict) and 'support' in row: row['support'] = int(row['support'])
        return rep
    return re.sub(r'(\d+)\.0$', lambda m: '  ' + m.group(1), rep, flags=re.M)  # weighted supports print as 35.0

def topk(scores, # (N,) scores
        k:int|None, # How many; all when None or more than N
        largest:bool=True, # Largest first, or smallest
    ):
    """Top `k` scores and their indices, ties to the lower index (stable), as a full stable sort orders them

    >>> topk(torch.tensor([0.5, 0.9, 0.5, 0.1]), 3)  # the tie: the lower index first
    (tensor([0.9000, 0.5000, 0.5000]), tensor([1, 0, 2]))
    """
    check_k(k)
    n = len(scores)
    k = n if k is None else min(int(k), n)
    s = scores if largest else -scores
    if 0 < k < n // 4:
        # O(N log k): the k-th best bounds the candidates, ties with it included, then a stable sort of those alone
        kth = torch.topk(s, k, sorted=False).values.min()
        if not torch.isnan(kth):
            cand = torch.nonzero(s >= kth).view(-1)
            order = cand[torch.argsort(s[cand], descending=True, stable=True)[:k]]
            return scores[order], order
    order = torch.argsort(s, descending=True, stable=True)[:k]  # on the scores' device, a GPU's too
    return scores[order], order

# --- calibration bin sums
class CalibrationBins(NamedTuple):
    """Per-bin sums every calibration figure is computed from: those of batches (or processes) add up to the whole's

    >>> b = bin_sums(torch.tensor([[0.9], [0.95]]), torch.tensor([[1.], [0.]]), n_bins=10)
    >>> int(b.count[0, 9]), round(b.confidence[0, 9].item(), 4), b.correct[0, 9].item()
    (2, 1.85, 1.0)
    """
    count: torch.Tensor      # (..., n_bins+1) int64: items in each bin
    confidence: torch.Tensor # (..., n_bins+1) float64: their summed confidence
    correct: torch.Tensor    # (..., n_bins+1) float64: how many were right (multilabel: how many had the label)

def bincount(idx, # (N,) int64 indices, 0 or more
        weights=None, # (N,) weights, or None to count
        minlength:int=0, # Length of the result at least
    )->torch.Tensor:
    """`torch.bincount`, through numpy's on the CPU: 5x faster for the 131,072 pixels of a batch (0.15 ms, not 0.76)

    >>> bincount(torch.tensor([0, 2, 2]), minlength=4), bincount(torch.tensor([1, 1]), torch.tensor([0.5, 2.]))
    (tensor([1, 0, 2, 0]), tensor([0.0000, 2.5000], dtype=torch.float64))
    """
    if idx.device.type != 'cpu': return torch.bincount(idx, weights=weights, minlength=minlength)
    w = None if weights is None else weights.detach().double().numpy()
    return torch.from_numpy(np.bincount(idx.numpy(), weights=w, minlength=minlength))

def bin_sums(conf, # (N, K) confidences in [0, 1]
        hit, # (N, K) outcomes: 1 right (or label on), 0 not
        n_bins:int, # Equal-width bins over [0, 1]
    )->CalibrationBins:
    """`CalibrationBins` of each column of `conf` against `hit`, shape (K, n_bins+1), binned as torchmetrics bins

    >>> bin_sums(torch.tensor([[0.05], [0.55], [1.0]]), torch.ones(3, 1), n_bins=2).count  # the last bin: exactly 1
    tensor([[1, 1, 1]])
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number of bins (1 or more), got {n_bins!r}")
    # float32 confidences bucketized on float32 edges, [i/n, (i+1)/n), and one more bin for a confidence of exactly 1
    conf = conf.float()
    edges = torch.linspace(0, 1, n_bins + 1, device=conf.device)
    K, nb = conf.shape[1], n_bins + 1
    idx = ((torch.bucketize(conf, edges, right=True) - 1) + torch.arange(K, device=conf.device) * nb).flatten()
    weights = (None, conf.double().flatten(), hit.double().flatten())
    return CalibrationBins(*(bincount(idx, weights=w, minlength=K * nb).view(K, nb) for w in weights))

def ece_from_bins(bins:CalibrationBins)->torch.Tensor:
    """Expected calibration error: per bin |accuracy - mean confidence| weighted by its share of the items, summed

    >>> conf = torch.tensor([[0.9], [0.9], [0.6], [0.6]])
    >>> bins = bin_sums(conf, torch.tensor([[1.], [1.], [0.], [1.]]), 10)
    >>> round(float(ece_from_bins(bins)[0]), 4)  # (|2 - 1.8| + |1 - 1.2|) / 4
    0.1
    """
    # sum_b n_b/N * |correct_b/n_b - conf_b/n_b| = sum_b |correct_b - conf_b| / N: no division by empty bins
    return (bins.correct - bins.confidence).abs().sum(-1) / bins.count.sum(-1).clamp_min(1)

def mce_from_bins(bins:CalibrationBins)->torch.Tensor:
    """Maximum calibration error: the largest |accuracy - mean confidence| of a bin (an empty bin counts as 0)

    >>> conf = torch.tensor([[0.9], [0.9], [0.6], [0.6]])
    >>> bins = bin_sums(conf, torch.tensor([[1.], [1.], [0.], [1.]]), 10)
    >>> round(float(mce_from_bins(bins)[0]), 4)  # both bins are off by 0.1
    0.1
    """
    return ((bins.correct - bins.confidence).abs() / bins.count.clamp_min(1)).max(-1).values
