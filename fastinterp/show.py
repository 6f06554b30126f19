"Showing interpretation results, with numbers printed so that they never mislead"

__all__ = ['format_prob', 'format_probs', 'format_loss']

import math

# Most decimals a probability grows to; beyond them it prints as a bound, '>0.9999' or '<0.0001'
_MAX_DIGITS = 4

def format_prob(p, # Probability: float, numpy scalar or 0-d tensor
        digits:int=2, # Decimals shown, unless they would round `p` to 0 or 1
    ):
    "`p` with `digits` decimals; '1.00' and '0.00' only for exactly 1 and 0, else 4 decimals or '>0.9999'/'<0.0001'"
    p = float(p)
    if math.isnan(p): return 'nan'
    s = f'{p:.{digits}f}'
    if not 0 < p < 1 or 0 < float(s) < 1: return s
    d = max(digits, _MAX_DIGITS)
    s = f'{p:.{d}f}'
    if 0 < float(s) < 1: return s
    return f'>{1 - 10**-d:.{d}f}' if p > 0.5 else f'<{10**-d:.{d}f}'

def format_probs(ps, # Probabilities shown together, e.g. in one title: list, array or 1-d tensor
        digits:int=2, # Fewest decimals shown
    ):
    "Each of `ps` as `format_prob` prints it, with the fewest decimals (up to 4) that print different values differently"
    ps = [float(p) for p in (ps.tolist() if hasattr(ps, 'tolist') else ps)]
    tries = [[format_prob(p, d) for p in ps] for d in range(digits, max(digits, _MAX_DIGITS) + 1)]
    # Values closer than 1e-4 may share a string even at 4 decimals (0.99996 and 0.99998 both print '>0.9999'):
    # take the first try whose shared strings are only those
    last = tries[-1]
    return next(t for t in tries if len(set(t)) == len(set(zip(t, last))))

def format_loss(x): # Loss: float, numpy scalar or 0-d tensor
    "`x` with 2 decimals, or with one significant digit ('3e-04') below 0.01; exactly 0 is '0'"
    x = float(x)
    if x == 0: return '0'
    return f'{x:.2f}' if abs(x) >= 0.01 or not math.isfinite(x) else f'{x:.0e}'
