"Selective prediction: predict where the uncertainty is at most a threshold, abstain elsewhere; risk against coverage"

__all__ = ['risk_coverage', 'aurc', 'eaurc', 'Selection', 'coverage_at', 'risk_coverage_from_bins', 'aurc_from_bins',
           'eaurc_from_bins', 'coverage_at_from_bins']

import numbers
from typing import NamedTuple

import numpy as np, pandas as pd, torch

from .core import check_finite

_BLOCK = 2 ** 22  # terms per block of the oracle's sum: bounded memory whatever the number of items

# --- checks, once at the boundary: each gives the groups (ties or bins) as cumulative sums, most certain first
def _array(x, what):
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if a.ndim != 1: raise ValueError(f"{what} must be one value per item (or bin), shape (N,), got shape {a.shape}")
    return a

def _as_correct(c):
    "`c` as int64 0/1, or a ValueError"
    if c.dtype == bool: return c.astype(np.int64)
    if not np.issubdtype(c.dtype, np.number) or not np.isin(c, (0, 1)).all():
        odd = c[~np.isin(c, (0, 1))] if np.issubdtype(c.dtype, np.number) else c
        raise ValueError(f"correct must be 0/1 or bool per item (1 = predicted right), "
                         f"got values such as {odd[:1].tolist()[0]!r}")
    return c.astype(np.int64)

def _lengths(a, b, what_a, what_b):
    if len(a) != len(b): raise ValueError(f"{len(a)} {what_a} for {len(b)} {what_b}")
    if not len(a): raise ValueError("Selective prediction needs at least one item")

def _item_groups(uncertainty, correct):
    "Distinct uncertainties ascending, with the items and right items at or below each (cumulative), from items"
    u, c = _array(uncertainty, 'uncertainty'), _array(correct, 'correct')
    _lengths(u, c, 'uncertainties', 'correct flags')
    if not np.issubdtype(u.dtype, np.number) or u.dtype == bool:
        raise ValueError(f"uncertainty must be numbers (higher = more uncertain), got {u.dtype} values")
    u = check_finite(torch.as_tensor(u.astype(np.float64)), 'uncertainty scores').numpy()
    c = _as_correct(c)
    order = np.argsort(u, kind='stable')
    u, right = u[order], np.cumsum(c[order])
    ends = np.append(np.flatnonzero(u[1:] != u[:-1]), len(u) - 1)  # last item of each group of ties
    return u[ends], ends + 1, right[ends]

def _bin_groups(count, correct, edges):
    "Upper edges of the non-empty bins, with the items and right items in that bin or below (cumulative), from bins"
    n, c, e = _array(count, 'count'), _array(correct, 'correct'), _array(edges, 'edges')
    _lengths(n, c, 'bin counts', 'bins of correct counts')
    if len(e) != len(n) + 1: raise ValueError(f"{len(n)} bins need {len(n) + 1} edges, got {len(e)}")
    for a, what in ((n, 'count'), (c, 'correct'), (e, 'edges')):
        if not np.issubdtype(a.dtype, np.number) or a.dtype == bool:
            raise ValueError(f"{what} must be numbers, got {a.dtype} values")
    e = e.astype(np.float64)
    if np.isnan(e).any() or not (np.diff(e) > 0).all(): raise ValueError("edges must be increasing, without NaN")
    n, c = n.astype(np.float64), c.astype(np.float64)
    whole = np.isfinite(n) & np.isfinite(c) & (n == np.round(n)) & (c == np.round(c))
    if not (whole & (c >= 0) & (c <= n)).all():
        raise ValueError("count and correct must be whole numbers per bin with 0 <= correct <= count "
                         "(items in the bin, and how many of them were predicted right)")
    if not n.sum(): raise ValueError("Selective prediction needs at least one item (every bin is empty)")
    full = n > 0  # an empty bin adds no item: no selection of its own
    return e[1:][full], np.cumsum(n).astype(np.int64)[full], np.cumsum(c).astype(np.int64)[full]

def _check_accuracy(accuracy)->float:
    if isinstance(accuracy, bool) or not isinstance(accuracy, numbers.Real) or not 0 < accuracy <= 1:
        raise ValueError(f"accuracy is a share between 0 and 1, such as 0.99, got {accuracy!r}")
    return float(accuracy)

# --- on checked groups
def _curve(thresh, n, right)->pd.DataFrame:
    N = n[-1]
    return pd.DataFrame({'threshold': thresh.astype(np.float64), 'n': n.astype(np.int64), 'coverage': n / N,
                         'accuracy': right / n, 'risk': (n - right) / n})

def _aurc(thresh, n, right)->float:
    # every item of a group takes the risk of the selection that holds its whole group: a tie's order cannot matter
    return float((np.diff(n, prepend=0) * ((n - right) / n)).sum() / n[-1])

def _oracle_aurc(N:int, m:int)->float:
    "AURC of the ranking that puts the m right items of N first: (1/N) sum over k = m+1..N of (k - m) / k"
    total = 0.0
    for start in range(m + 1, N + 1, _BLOCK):  # blocks of terms, not items one by one
        k = np.arange(start, min(start + _BLOCK, N + 1), dtype=np.float64)
        total += float(((k - m) / k).sum())
    return total / N

def _eaurc(thresh, n, right)->float: return _aurc(thresh, n, right) - _oracle_aurc(int(n[-1]), int(right[-1]))

class _Selection(NamedTuple):
    threshold: float|None  # Predict on the items whose uncertainty is at most this; None when none reaches the target
    coverage: float        # Share of the items predicted on
    accuracy: float|None   # Accuracy on them
    n: int                 # How many they are

class Selection(_Selection):
    """Where to abstain: the threshold, and the coverage, accuracy and number of the items predicted on

    >>> s = coverage_at([0.1, 0.2, 0.2, 0.4, 0.5], [1, 1, 1, 0, 1], accuracy=0.9)
    >>> s
    Selection(threshold=0.2, coverage=0.6, accuracy=1.0, n=3)
    >>> print(s)
    uncertainty <= 0.2 keeps 60.0% of the items (3 of 5) at 100.0% accuracy (target 90%)
    """
    # what `coverage_at` asked and saw, for the sentence; not fields: a Selection compares as the 4 numbers it holds
    target, first, total = None, None, None

    @property
    def reached(self)->bool:
        "Whether some threshold reaches the target accuracy"
        return self.threshold is not None

    def __str__(self):
        target = '' if self.target is None else f"{self.target * 100:.4g}% "
        if not self.reached:
            seen = '' if self.first is None else f" ({self.first:.1%})"
            return (f"no threshold reaches {target}accuracy: the most certain group of items is already below it"
                    f"{seen}")
        of = '' if self.total is None else f" ({self.n:,} of {self.total:,})"
        aim = '' if self.target is None else f" (target {self.target * 100:.4g}%)"
        return (f"uncertainty <= {self.threshold:.4g} keeps {self.coverage:.1%} of the items{of} at "
                f"{self.accuracy:.1%} accuracy{aim}")

def _coverage_at(thresh, n, right, accuracy)->Selection:
    acc = right / n
    ok = np.flatnonzero(acc >= accuracy)  # accuracy need not fall as coverage grows: the last that reaches it
    if len(ok):
        j = ok[-1]
        s = Selection(float(thresh[j]), float(n[j] / n[-1]), float(acc[j]), int(n[j]))
    else: s = Selection(None, 0.0, None, 0)
    s.target, s.first, s.total = accuracy, float(acc[0]), int(n[-1])
    return s

# --- the public functions, on items
def risk_coverage(uncertainty, # (N,) per-item uncertainty, higher = more uncertain (such as 1 - max probability)
        correct, # (N,) 1 (or True) where the prediction was right
    )->pd.DataFrame:
    """Risk against coverage, predicting where uncertainty <= threshold: a row per distinct uncertainty (ties together)

    >>> risk_coverage(torch.tensor([0.1, 0.2, 0.2, 0.4, 0.5]), torch.tensor([1, 1, 0, 1, 0]))
       threshold  n  coverage  accuracy      risk
    0        0.1  1       0.2  1.000000  0.000000
    1        0.2  3       0.6  0.666667  0.333333
    2        0.4  4       0.8  0.750000  0.250000
    3        0.5  5       1.0  0.600000  0.400000
    """
    return _curve(*_item_groups(uncertainty, correct))

def aurc(uncertainty, # (N,) per-item uncertainty, higher = more uncertain
        correct, # (N,) 1 (or True) where the prediction was right
    )->float:
    """Area under the risk-coverage curve (Geifman and El-Yaniv 2017): mean over k of the risk of the k most certain

    >>> u, c = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([1, 0, 1, 1])
    >>> aurc(u, c)  # (0/1 + 1/2 + 1/3 + 1/4) / 4
    0.2708333333333333
    >>> aurc(torch.tensor([0.1, 0.2, 0.2, 0.4]), c)  # a tie: both take the risk of the first 3, (0 + 2/3 + 1/4) / 4
    0.22916666666666666
    """
    return _aurc(*_item_groups(uncertainty, correct))

def eaurc(uncertainty, # (N,) per-item uncertainty, higher = more uncertain
        correct, # (N,) 1 (or True) where the prediction was right
    )->float:
    """Excess AURC (Geifman et al. 2019): AURC less that of a ranking with every wrong item last; 0 is a perfect ranking

    >>> c = torch.tensor([1, 0, 1, 1])
    >>> eaurc(torch.tensor([0.1, 0.9, 0.2, 0.3]), c), round(eaurc(torch.tensor([0.1, 0.2, 0.3, 0.4]), c), 4)
    (0.0, 0.2083)
    """
    return _eaurc(*_item_groups(uncertainty, correct))

def coverage_at(uncertainty, # (N,) per-item uncertainty, higher = more uncertain
        correct, # (N,) 1 (or True) where the prediction was right
        accuracy:float=0.99, # Target accuracy on the items predicted on, in (0, 1]
    )->Selection:
    """The largest coverage (highest threshold) at which the items predicted on reach `accuracy`

    >>> u, c = np.array([0.1, 0.2, 0.3, 0.4, 0.5]), torch.tensor([1, 1, 0, 1, 0])
    >>> coverage_at(u, c, accuracy=0.75)  # at 0.4: 3 right of 4
    Selection(threshold=0.4, coverage=0.8, accuracy=0.75, n=4)
    >>> s = coverage_at(torch.tensor([0.1, 0.1, 0.3]), torch.tensor([1, 0, 1]))
    >>> s.reached, str(s)
    (False, 'no threshold reaches 99% accuracy: the most certain group of items is already below it (50.0%)')
    """
    accuracy = _check_accuracy(accuracy)
    return _coverage_at(*_item_groups(uncertainty, correct), accuracy)

# --- on bins of the uncertainty: what a stream keeps
def risk_coverage_from_bins(count, # (B,) items in each bin of the uncertainty
        correct, # (B,) how many of them were predicted right
        edges, # (B+1,) increasing bin edges
    )->pd.DataFrame:
    """`risk_coverage` of binned items: a row per non-empty bin at its upper edge (a threshold known to a bin width)

    >>> risk_coverage_from_bins([2, 0, 3], [2, 0, 1], edges=[0, 0.1, 0.2, 0.3])  # the empty bin adds no row
       threshold  n  coverage  accuracy  risk
    0        0.1  2       0.4       1.0   0.0
    1        0.3  5       1.0       0.6   0.4
    """
    return _curve(*_bin_groups(count, correct, edges))

def aurc_from_bins(count, # (B,) items in each bin of the uncertainty
        correct, # (B,) how many of them were predicted right
        edges, # (B+1,) increasing bin edges
    )->float:
    """`aurc` of binned items: the items of a bin are ties (within a bin the order is not known)

    >>> aurc_from_bins([1, 2, 1], [1, 1, 1], edges=[0, 0.1, 0.2, 0.4])  # as aurc with uncertainties 0.1, 0.2, 0.2, 0.4
    0.22916666666666666
    """
    return _aurc(*_bin_groups(count, correct, edges))

def eaurc_from_bins(count, # (B,) items in each bin of the uncertainty
        correct, # (B,) how many of them were predicted right
        edges, # (B+1,) increasing bin edges
    )->float:
    """`eaurc` of binned items: AURC with each bin's items tied, less that of a ranking with every wrong item last

    >>> round(eaurc_from_bins([1, 2, 1], [1, 1, 1], edges=[0, 0.1, 0.2, 0.4]), 4)  # less the oracle's 1/4 / 4
    0.1667
    """
    return _eaurc(*_bin_groups(count, correct, edges))

def coverage_at_from_bins(count, # (B,) items in each bin of the uncertainty
        correct, # (B,) how many of them were predicted right
        edges, # (B+1,) increasing bin edges
        accuracy:float=0.99, # Target accuracy on the items predicted on, in (0, 1]
    )->Selection:
    """`coverage_at` of binned items: the threshold is a bin's upper edge, so it is known only to the bin width

    >>> coverage_at_from_bins([50, 30, 20], [50, 28, 10], edges=[0, 0.05, 0.2, 1], accuracy=0.95)
    Selection(threshold=0.2, coverage=0.8, accuracy=0.975, n=80)
    """
    accuracy = _check_accuracy(accuracy)
    return _coverage_at(*_bin_groups(count, correct, edges), accuracy)
