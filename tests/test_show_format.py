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
    # one number of decimals for all: exact 1 and 0 too
    ([1.0, 0.9999], 2, ['1.0000', '0.9999']),
    ([0.0, 1e-5, 0.3], 2, ['0.0000', '<0.0001', '0.3000']),
    ([0.4, 0.4], 2, ['0.40', '0.40']),
    ([float('nan'), 0.5], 2, ['nan', '0.50']),
    ([], 2, []),
    (torch.tensor([0.3, 0.7]), 2, ['0.30', '0.70']),
    (np.array([0.123, 0.124]), 3, ['0.123', '0.124']),
    # different values never print alike: as many decimals as it takes
    ([0.99996, 0.99998, 0.3], 2, ['0.99996', '0.99998', '0.30000']),
    ([0.99991, 0.99996], 2, ['0.9999', '>0.9999']),
    ([0.12341, 0.12344, 0.2], 2, ['0.12341', '0.12344', '0.20000']),
    ([0.12499, 0.12501, 0.13], 2, ['0.12499', '0.12501', '0.13000']),
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
    s = s.removeprefix('≈')  # a value float32 cannot tell from another one in its group
    if s[0] in '<>':
        bound = float(s[1:])
        assert (p > bound if s[0] == '>' else p < bound) and 0 < bound < 1, (p, s)
        return
    if 'e' in s:  # scientific notation: rounded to its last significant digit
        mantissa, exp = s.split('e')
        step = 10 ** (int(exp) - len(mantissa.partition('.')[2]))
        assert abs(float(s) - p) <= 0.5 * step * (1 + 1e-9) and float(s) > 0, (p, s)
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
        if np.float32(x) != np.float32(y): assert sx != sy, (x, y, sx, sy)
        if x == y: assert sx == sy

# --- two different probabilities in one title never print the same
@pytest.mark.parametrize('ps', [
    [0.5000005, 0.4999995], [0.123451, 0.123452], [0.999991, 0.999992],          # the three that printed alike
    [0.5, float(np.nextafter(np.float32(0.5), np.float32(1)))],                  # float32 neighbours at 0.5
    [0.5, float(np.nextafter(np.float32(0.5), np.float32(0)))],
    [float(np.nextafter(np.float32(1), np.float32(0))), float(np.float32(1 - 2**-23))],  # the two float32 below 1
    [1e-12, 2e-12, 0.5], [1e-5, 2e-5], [1e-30, 0.0], [1e-45, 3e-45],                # near 0, down to float32's smallest
    [0.0001, 0.00010001], [0.99996, 0.99998], [1.0, float(np.float32(1 - 2**-24))],
])
def test_format_probs_tells_apart_what_float32_tells_apart(ps):
    fs = format_probs(ps)
    assert len(set(fs)) == len(ps), (ps, fs)
    for p, s in zip(ps, fs): assert_honest(p, s)

@pytest.mark.parametrize('ps, expected', [
    ([0.3, 0.3], ['0.30', '0.30']),               # exactly equal: alike, no marker
    ([1.0, 1.0, 0.0], ['1.00', '1.00', '0.00']),  # exact 1 and 0 as they are
    ([float('nan'), float('nan'), 0.25], ['nan', 'nan', '0.25']),
    # equal at float32 precision, not exactly: alike, and marked as such
    ([0.3, 0.3 + 1e-12], ['≈0.30', '≈0.30']),
])
def test_format_probs_equal_values(ps, expected):
    assert format_probs(ps) == expected

def test_format_probs_on_float32_neighbours():
    "Any two adjacent float32 probabilities, from 1e-40 to 1, print differently and honestly"
    rng = np.random.default_rng(3)
    a = np.concatenate([10 ** -rng.uniform(0, 40, 3000), 1 - 10 ** -rng.uniform(0, 7.2, 1000)]).astype(np.float32)
    a = a[(a > 0) & (a < 1)]
    b = np.nextafter(a, np.float32(1))
    for x, y in zip(a.tolist(), b.tolist()):
        sx, sy = format_probs([x, y])
        assert sx != sy, (x, y, sx, sy)
        assert_honest(x, sx); assert_honest(y, sy)

def decimals(s): return None if s[0] in '<>≈' or 'e' in s or '.' not in s else len(s.split('.')[1])

def test_format_prob_groups_share_one_number_of_decimals():
    "A gallery's titles: each group tells its own values apart, all groups with one number of decimals"
    groups = [[0.37, 0.12], [0.9986, 0.0012], [0.5, 0.25], [1.0, 1.0], [0.501, 0.499]]
    res = format_prob_groups(groups)
    assert res == [['0.3700', '0.1200'], ['0.9986', '0.0012'], ['0.5000', '0.2500'], ['1.0000', '1.0000'],
                   ['0.5010', '0.4990']]
    assert format_prob_groups([[0.5, 0.25], [0.91, 0.912]]) == [['0.500', '0.250'], ['0.910', '0.912']]
    assert format_prob_groups([]) == [] and format_prob_groups([[]]) == [[]]
    rng, pool = np.random.default_rng(4), random_probs(300, seed=5)
    for _ in range(300):
        gs = [rng.choice(pool, rng.integers(1, 4)) for _ in range(5)]
        res = format_prob_groups(gs)
        assert len({decimals(s) for g in res for s in g} - {None}) <= 1, (gs, res)
        for g, r in zip(gs, res):
            for p, s in zip(g, r): assert_honest(p, s)
            keys = {}
            for p, s in zip(g, r): keys.setdefault(s, set()).add(np.float32(p))
            assert all(len(k) == 1 for k in keys.values()), (g, r)
