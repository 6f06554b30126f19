import math, numpy as np, pytest, torch
from fastinterp.show import *

@pytest.mark.parametrize('p, digits, expected', [
    (0.5, 2, '0.50'), (0.123, 2, '0.12'), (1.0, 2, '1.00'), (0.0, 2, '0.00'), (1, 2, '1.00'),
    # would round to 1.00 or 0.00: 4 decimals, then a bound
    (0.9986, 2, '0.9986'), (0.99861, 2, '0.9986'), (0.996, 2, '0.9960'), (0.99996, 2, '>0.9999'),
    (0.0012, 2, '0.0012'), (0.004, 2, '0.0040'), (0.00001, 2, '<0.0001'), (1e-300, 2, '<0.0001'),
    # more digits asked for
    (0.1234, 3, '0.123'), (0.9996, 3, '0.9996'), (0.99996, 4, '>0.9999'), (0.999996, 5, '>0.99999'),
    (0.00001, 5, '0.00001'),
    # other scalar types
    (float('nan'), 2, 'nan'), (np.float32(0.25), 2, '0.25'), (np.float64(0.9999), 2, '0.9999'),
    (torch.tensor(0.999999), 2, '>0.9999'), (torch.tensor(1.), 2, '1.00'), (torch.tensor(0.75, dtype=torch.float16), 2, '0.75'),
])
def test_format_prob(p, digits, expected):
    assert format_prob(p, digits) == expected

@pytest.mark.parametrize('ps, digits, expected', [
    ([0.5, 0.25], 2, ['0.50', '0.25']),
    ([0.91, 0.912], 2, ['0.910', '0.912']),
    ([0.9123, 0.9124, 0.5], 2, ['0.9123', '0.9124', '0.5000']),
    ([1.0, 0.9999], 2, ['1.00', '0.9999']),
    ([0.0, 1e-5, 0.3], 2, ['0.00', '<0.0001', '0.30']),
    ([0.4, 0.4], 2, ['0.40', '0.40']),
    ([float('nan'), 0.5], 2, ['nan', '0.50']),
    ([], 2, []),
    (torch.tensor([0.3, 0.7]), 2, ['0.30', '0.70']),
    (np.array([0.123, 0.124]), 3, ['0.123', '0.124']),
    # collide even at 4 decimals: they stay together, and do not force extra decimals on the rest
    ([0.99996, 0.99998, 0.3], 2, ['>0.9999', '>0.9999', '0.30']),
    ([0.99991, 0.99996], 2, ['0.9999', '>0.9999']),
    ([0.12341, 0.12344, 0.2], 2, ['0.12', '0.12', '0.20']),
    # 2 decimals print 0.12501 like 0.13, which 4 decimals tell apart
    ([0.12499, 0.12501, 0.13], 2, ['0.125', '0.125', '0.130']),
])
def test_format_probs(ps, digits, expected):
    assert format_probs(ps, digits) == expected

@pytest.mark.parametrize('x, expected', [
    (0.5, '0.50'), (2.5, '2.50'), (0.01, '0.01'), (0.0003, '3e-04'), (0.00967, '1e-02'), (1e-7, '1e-07'),
    (0.0, '0'), (torch.tensor(0.25), '0.25'), (np.float32(4e-3), '4e-03'), (float('nan'), 'nan'), (float('inf'), 'inf'),
])
def test_format_loss(x, expected):
    assert format_loss(x) == expected

def random_probs(n, seed=0):
    "Probabilities over (0, 1), dense near 0 and 1, plus exact 0 and 1"
    rng = np.random.default_rng(seed)
    k = n // 3
    near = 10 ** -rng.uniform(0, 10, k)
    return np.concatenate([rng.random(n - 2*k - 2), near, 1 - near, [0., 1.]])

def assert_honest(p, s):
    "`s` is within rounding of `p`, and reads 0 or 1 only for exact 0 or 1"
    if s[0] in '<>':
        bound = float(s[1:])
        assert (p > bound if s[0] == '>' else p < bound) and 0 < bound < 1, (p, s)
        return
    v, decimals = float(s), len(s.split('.')[1])
    assert abs(v - p) <= 0.5 * 10**-decimals + 1e-12, (p, s)
    if p < 1: assert v < 1, (p, s)
    if p > 0: assert v > 0, (p, s)

@pytest.mark.parametrize('digits', [2, 3])
def test_format_prob_never_misleads(digits):
    for p in random_probs(10_000): assert_honest(p, format_prob(p, digits))

def test_format_probs_tells_apart_values_1e4_apart():
    rng = np.random.default_rng(1)
    a = random_probs(10_000, seed=2)
    b = np.clip(a + rng.uniform(-3e-4, 3e-4, len(a)), 0, 1)  # many pairs within a few 1e-4 of each other
    for x, y in zip(a, b):
        sx, sy = format_probs([x, y])
        assert_honest(x, sx); assert_honest(y, sy)
        if abs(x - y) > 1e-4: assert sx != sy, (x, y, sx, sy)
        if x == y: assert sx == sy
