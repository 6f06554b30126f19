"Per-item uncertainty scores from predicted probabilities: higher means more uncertain, always in [0, 1]"

__all__ = ['check_finite', 'entropy', 'margin', 'least_confidence', 'uniform_distance', 'MEASURES', 'uncertainty',
           'label_uncertainty', 'multilabel_uncertainty']

import math
import torch

def check_finite(x, # Tensor whose first axis is the items
        what:str='model outputs', # What `x` is, for the message
    ):
    "Return `x` unchanged, or raise a ValueError saying how many of its rows hold NaN or inf"
    t = torch.as_tensor(x)
    if not t.is_floating_point(): return x
    # NaN and inf show in the min or max: one fast pass (isfinite is several times slower) clears the common case
    if t.numel() and all(bool(torch.isfinite(v)) for v in torch.aminmax(t)): return x
    bad = ~torch.isfinite(torch.atleast_1d(t))
    if bad.ndim > 1: bad = bad.flatten(1).any(1)
    n = int(bad.sum())
    if n: raise ValueError(f"{n} of {len(bad)} rows of the {what} hold NaN or inf")
    return x

def _as_probs(probs, multiclass=True):
    "`probs` as a finite float32/float64 tensor, (N, C) when `multiclass`"
    x = torch.as_tensor(probs)
    # float16 loses too much in log and 1-p; float64 input keeps its precision
    x = x.double() if x.dtype == torch.float64 else x.float()
    if multiclass and x.ndim != 2:
        raise ValueError(f"Multi-class uncertainty needs probabilities of shape (N, C), got shape {tuple(x.shape)}. "
                         f"For a one-output sigmoid model use `multilabel_uncertainty`.")
    check_finite(x, 'probabilities')
    return x

# Rounding can step a hair outside [0, 1]; callers sort and threshold on these scores
def _unit(x): return x.clamp(0, 1)

def entropy(probs): # (N, C) probabilities, rows summing to 1
    "Shannon entropy of each row divided by log(C): 0 for one-hot, 1 for uniform"
    p = _as_probs(probs)
    C = p.shape[1]
    if C == 1: return p.new_zeros(len(p))
    return _unit(-torch.special.xlogy(p, p).sum(1) / math.log(C))  # xlogy makes 0*log(0) = 0

def margin(probs): # (N, C) probabilities, rows summing to 1
    "1 minus the gap between the two most likely classes: 1 for a tie, 0 for one-hot"
    p = _as_probs(probs)
    if p.shape[1] == 1: return p.new_zeros(len(p))
    top = p.topk(2, dim=1).values
    return _unit(1 - (top[:, 0] - top[:, 1]))

def least_confidence(probs): # (N, C) probabilities, rows summing to 1
    "1 minus the probability of the most likely class"
    p = _as_probs(probs)
    return _unit(1 - p.max(1).values)

def uniform_distance(probs): # (N, C) probabilities, rows summing to 1
    "1 - TV(p, uniform) / (1 - 1/C), with TV = 0.5*sum|p - 1/C|: 1 for uniform, 0 for one-hot"
    p = _as_probs(probs)
    C = p.shape[1]
    if C == 1: return p.new_zeros(len(p))
    # tv / (1 - 1/C) rearranged so one-hot and uniform rows come out exact, with no 1/C rounding
    return _unit(1 - (p * C - 1).abs().sum(1) / (2 * (C - 1)))

MEASURES = {'entropy': entropy, 'margin': margin, 'least_confidence': least_confidence,
            'uniform_distance': uniform_distance}

def uncertainty(probs, # (N, C) probabilities, rows summing to 1
        measure='entropy', # Name in `MEASURES`, or a callable: probs -> (N,) scores
    ):
    "Per-item uncertainty of multi-class `probs` under `measure`"
    if callable(measure): return measure(probs)
    if measure not in MEASURES:
        raise ValueError(f"Unknown uncertainty measure {measure!r}: known measures are {', '.join(MEASURES)}, "
                         f"or pass a callable")
    return MEASURES[measure](probs)

def label_uncertainty(probs, # (N, L) sigmoid probabilities, or (N,) / (N, 1) for a one-output binary model
        thresh:float=0.5, # Decision threshold: one for every label, or (L,) one per label
    ):
    "(N, L) closeness of each label's probability to `thresh`: 1 at the threshold, 0 at the farther of 0 and 1"
    p = _as_probs(probs, multiclass=False)
    t = torch.as_tensor(thresh, dtype=p.dtype, device=p.device)  # a float, or one per label (a temperature moves them)
    if not bool(((t > 0) & (t < 1)).all()): raise ValueError(f"thresh must lie strictly between 0 and 1, got {thresh}")
    if p.ndim == 1: p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"Multi-label uncertainty needs probabilities of shape (N, L) or (N,), got shape {tuple(p.shape)}")
    return _unit(1 - (p - t).abs() / torch.maximum(t, 1 - t))

def multilabel_uncertainty(probs, # (N, L) sigmoid probabilities, or (N,) / (N, 1) for a one-output binary model
        thresh:float=0.5, # Decision threshold of each label
    ):
    "Per-item uncertainty of a multi-label model: that of its most uncertain label"
    u = label_uncertainty(probs, thresh)
    # max over zero labels is undefined: an item with no labels has nothing to be unsure about
    return u.max(1).values if u.shape[1] else u.new_zeros(len(u))
