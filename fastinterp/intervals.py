"How sure is a figure? Numbers with their confidence interval, Wilson intervals, bootstrap intervals of calibration"

__all__ = ['Estimate', 'check_ci', 'wilson_interval', 'resample_indices', 'bootstrap_calibration']

import numbers
from statistics import NormalDist

import numpy as np, torch

from .calibration import _checked
from .core import CalibrationBins, brier_terms, ece_from_bins, item_nll, mce_from_bins

_CHUNK_VALUES = 2 ** 22  # counts per chunk of resamples (b x N): 32 MB of indices, 32 MB of counts

def check_ci(ci, # Confidence level, such as 0.95
    )->float:
    """`ci` as a float, or a ValueError unless it is a real number strictly between 0 and 1

    >>> check_ci(0.9)
    0.9
    >>> check_ci(95)
    Traceback (most recent call last):
    ValueError: ci is a confidence level strictly between 0 and 1, such as 0.95, got 95
    """
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:  # NaN fails 0 < ci < 1 too
        raise ValueError(f"ci is a confidence level strictly between 0 and 1, such as 0.95, got {ci!r}")
    return float(ci)

def _sig(x:float)->str: return f"{x:#.4g}"  # 4 significant digits, trailing zeros kept: 0.9180

class Estimate(float):
    """A number with its confidence interval: the float `value` everywhere, plus `.lo`, `.hi` and `.ci`

    >>> a, b = Estimate(0.9443, 0.918, 0.963), Estimate(0.9012, 0.87, 0.925)
    >>> a
    0.9443 (95% CI 0.9180 to 0.9630)
    >>> round(a - b, 4), f"{a:.1%}", a > b, a.overlaps(b)  # higher, but not shown to differ
    (0.0431, '94.4%', True, True)
    """
    def __new__(cls, value, # The point estimate
            lo, # Lower end of the interval
            hi, # Upper end of the interval
            ci:float=0.95, # Its confidence level
        ):
        self = super().__new__(cls, value)
        self.lo, self.hi, self.ci = float(lo), float(hi), check_ci(ci)
        if self.lo > self.hi: raise ValueError(f"The interval's lower end {lo!r} is above its upper end {hi!r}")
        return self

    def overlaps(self, other)->bool:
        "Whether this interval and `other`'s (an `Estimate`, or a number) overlap: then they are not shown to differ"
        lo, hi = (other.lo, other.hi) if isinstance(other, Estimate) else (float(other),) * 2
        return self.lo <= hi and lo <= self.hi

    def __repr__(self): return f"{_sig(float(self))} ({self.ci * 100:.4g}% CI {_sig(self.lo)} to {_sig(self.hi)})"
    __str__ = __repr__  # print shows the interval; a format spec (f"{e:.3f}") formats the float alone
    def __reduce__(self): return (Estimate, (float(self), self.lo, self.hi, self.ci))  # pickle and copy keep it

def _counts(x, what):
    "`x` as a float64 array of whole numbers 0 or more, or a ValueError"
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} must be whole numbers (counts), got {a.dtype} values")
    a = a.astype(np.float64)
    bad = ~(np.isfinite(a) & (a >= 0) & (a == np.round(a)))
    if bad.any(): raise ValueError(f"{what} must be whole numbers, 0 or more, got {a[bad][0]:g}")
    return a

def wilson_interval(k, # Successes: a count, or an array of counts
        n, # Trials: a count, or an array of counts (broadcast with k)
        ci:float=0.95, # Confidence level
    ):
    """Wilson score interval (lo, hi) of k successes in n trials, as scipy's binomtest(k, n).proportion_ci(ci, 'wilson')

    >>> [round(v, 4) for v in wilson_interval(45, 50)]  # 90% right of 50: the interval is not symmetric about 0.9
    [0.7864, 0.9565]
    >>> lo, hi = wilson_interval(np.array([0, 3, 0]), np.array([10, 3, 0]))  # k = 0, k = n end at 0, 1; n = 0: NaN
    >>> lo.round(4), hi.round(4)
    (array([0.    , 0.4385,    nan]), array([0.2775, 1.    ,    nan]))
    """
    k, n = np.broadcast_arrays(_counts(k, 'k (successes)'), _counts(n, 'n (trials)'))
    if (k > n).any():
        i = np.flatnonzero(k > n)[0]
        raise ValueError(f"k (successes) cannot exceed n (trials), got k={k.flat[i]:g} for n={n.flat[i]:g}")
    z = NormalDist().inv_cdf(0.5 + 0.5 * check_ci(ci))
    with np.errstate(invalid='ignore', divide='ignore'):
        # Newcombe (1998), written as scipy writes it, so that the ends agree to the last bits
        p = k / n
        denom = 2 * (n + z ** 2)
        centre = (2 * n * p + z ** 2) / denom
        delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z ** 2)
        lo = np.where(k == 0, 0.0, centre - delta)
        hi = np.where(k == n, 1.0, centre + delta)
    lo, hi = np.where(n == 0, np.nan, lo), np.where(n == 0, np.nan, hi)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)

def _whole(x, what, least=1)->int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < least:
        raise ValueError(f"{what} must be a whole number, {least} or more, got {x!r}")
    return int(x)

def _chunk_size(n:int, chunk)->int:
    "Resamples per chunk: `chunk`, or as many as keep b x n within `_CHUNK_VALUES` (at least 1); never n_resamples"
    return max(1, _CHUNK_VALUES // max(1, n)) if chunk is None else _whole(chunk, 'chunk (resamples per chunk)')

def resample_indices(n:int, # Items to resample from
        n_resamples:int, # Resamples, each of n items drawn with replacement
        seed:int=0, # Seed of the torch.Generator they are drawn from
        chunk:int|None=None, # Resamples per chunk; None: as many as keep b x n within 2**22
    ):
    """Generator of (b, n) int64 tensors of item indices, b resamples at a time, together `n_resamples` rows

    >>> [tuple(idx.shape) for idx in resample_indices(5, 7, chunk=3)]
    [(3, 5), (3, 5), (1, 5)]
    >>> torch.equal(torch.cat(list(resample_indices(5, 7, chunk=3))), next(resample_indices(5, 7, chunk=7)))
    True
    """
    n, n_resamples = _whole(n, 'n (items)'), _whole(n_resamples, 'n_resamples')  # checked now, not at the first draw
    return _draws(n, n_resamples, _chunk_size(n, chunk), torch.Generator().manual_seed(seed))

def _draws(n, n_resamples, b, g, out=None):
    "Chunks of resamples; with `out`, a (b, n) int64 buffer, each chunk drawn into its leading rows (no new memory)"
    # torch draws a CPU tensor's random integers one after another: the rows do not depend on the chunk size
    for start in range(0, n_resamples, b):
        size = (min(b, n_resamples - start), n)
        yield torch.randint(0, n, size, generator=g) if out is None else torch.randint(0, n, size, generator=g,
                                                                                         out=out[:size[0]])

def _item_terms(p, t, n_bins):
    "(N, 3 (n_bins+1) + 2) float64 per-item terms: a resample's counts times them give its bin sums, Brier and NLL sums"
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number of bins (1 or more), got {n_bins!r}")
    conf, pred = p.max(1)
    conf = conf.float()  # binned and summed as core.bin_sums does: float32 edges, a last bin for a confidence of 1
    b = torch.bucketize(conf, torch.linspace(0, 1, n_bins + 1, device=p.device), right=True) - 1
    N, nb = len(p), n_bins + 1
    m = torch.zeros(N, 3 * nb + 2, dtype=torch.float64, device=p.device)
    rows = torch.arange(N, device=p.device)
    m[rows, b] = 1
    m[rows, nb + b] = conf.double()
    m[rows, 2 * nb + b] = (pred == t).double()
    m[:, -2], m[:, -1] = brier_terms(p, t), item_nll(p, t).double()
    return m.cpu()  # where the resamples are drawn

def _metrics(s, N, nb):
    "ECE, MCE, Brier, NLL and accuracy (b, 5) of the (b, 3 nb + 2) summed terms of b resamples of N items"
    bins = CalibrationBins(*s[:, :3 * nb].reshape(-1, 3, nb).unbind(1))
    return torch.stack([ece_from_bins(bins), mce_from_bins(bins), s[:, -2] / N, s[:, -1] / N,
                        bins.correct.sum(-1) / N], 1)

_NAMES = ('ece', 'mce', 'brier', 'nll', 'accuracy')

def bootstrap_calibration(probs, # (N, C) probabilities of single-label classes
        targs, # (N,) class indices (or one-hot rows)
        n_bins:int=15, # Equal-width bins of ECE and MCE
        ci:float=0.95, # Confidence level
        n_resamples:int=1000, # Bootstrap resamples of the N items
        seed:int=0, # Seed of `resample_indices`
        chunk:int|None=None, # Resamples per chunk (memory b x N); None: as many as keep b x N within 2**22
    )->dict:
    """Percentile bootstrap intervals {name: (lo, hi)} of the ECE, MCE, Brier score, NLL and accuracy of the items

    >>> g = torch.Generator().manual_seed(0)
    >>> p = torch.softmax(torch.randn(500, 3, generator=g) * 2, 1)
    >>> y = torch.multinomial(p, 1, generator=g)[:, 0]  # labels drawn from p: a calibrated model
    >>> iv = bootstrap_calibration(p, y, n_bins=10)
    >>> m = fastinterp.calibration.calibration_metrics(p, y, n_bins=10)
    >>> Estimate(m['accuracy'], *iv['accuracy']), Estimate(m['ece'], *iv['ece'])  # resampling adds to an ECE
    (0.7320 (95% CI 0.6959 to 0.7700), 0.03837 (95% CI 0.02839 to 0.08027))
    """
    alpha = 1 - check_ci(ci)
    p, t = _checked(probs, targs, False)
    N, nb = len(p), n_bins + 1
    n_resamples, b = _whole(n_resamples, 'n_resamples'), _chunk_size(N, chunk)
    m = _item_terms(p, t, n_bins)
    # one buffer of indices and one of counts, reused by every chunk: memory flat in n_resamples whatever the allocator
    # does with freed blocks (glibc kept up to 3x one chunk's worth when each chunk allocated its own)
    b = min(b, n_resamples)
    idx_buf, w_buf = torch.empty(b, N, dtype=torch.int64), torch.empty(b, N, dtype=torch.float64)
    ones = torch.ones(()).double()
    stats = []
    for idx in _draws(N, n_resamples, b, torch.Generator().manual_seed(seed), out=idx_buf):
        # each resample as counts of every item: its sums are one matrix product, its items never gathered
        w = w_buf[:len(idx)].zero_().scatter_add_(1, idx, ones.expand(idx.shape))
        stats.append(_metrics(w @ m, N, nb))
    # numpy's default percentile (linear interpolation between order statistics, Hyndman and Fan's type 7)
    lo, hi = np.quantile(torch.cat(stats).numpy(), [alpha / 2, 1 - alpha / 2], axis=0)
    return {k: (float(a), float(b)) for k, a, b in zip(_NAMES, lo, hi)}
