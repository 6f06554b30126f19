"Selective prediction: risk-coverage, AURC and coverage at an accuracy against numpy references and brute force"
import numpy as np, pandas as pd, pytest, torch

from fastinterp.selective import (Selection, risk_coverage, aurc, eaurc, coverage_at, risk_coverage_from_bins,
                                  aurc_from_bins, eaurc_from_bins, coverage_at_from_bins)

def tied_data(n=600, levels=25, seed=0, p_right=None):
    "Uncertainties on few levels (many ties); the more uncertain, the more often wrong"
    rng = np.random.default_rng(seed)
    u = rng.integers(0, levels, n) / levels
    right = rng.random(n) < (1 - 0.8 * u if p_right is None else p_right)
    return u, right

def ref_curve(u, c):
    "Independent reference: distinct values by np.unique, counts and right counts by bincount, then cumulative sums"
    values, inv = np.unique(u, return_inverse=True)
    n = np.cumsum(np.bincount(inv))
    right = np.cumsum(np.bincount(inv, weights=np.asarray(c, dtype=np.float64)))
    return pd.DataFrame({'threshold': values, 'n': n, 'coverage': n / len(u), 'accuracy': right / n,
                         'risk': 1 - right / n})

def ref_aurc(u, c):
    "By the definition with ties: each item takes the risk of predicting on everything at most as uncertain as it"
    u, c = np.asarray(u, dtype=np.float64), np.asarray(c, dtype=np.float64)
    sel = u[None, :] <= u[:, None]  # row i: the items predicted on when item i is
    return float(np.mean(1 - (sel * c).sum(1) / sel.sum(1)))

def standard_aurc(u, c):
    "The usual formula without ties: (1/N) sum over k of the error rate of the k most certain"
    c = np.asarray(c, dtype=np.float64)[np.argsort(u)]
    k = np.arange(1, len(c) + 1)
    return float(np.mean(np.cumsum(1 - c) / k))

def ref_oracle(c):
    "AURC when every wrong item comes last, term by term"
    n, m = len(c), int(np.sum(c))
    k = np.arange(1, n + 1)
    return float(np.mean(np.maximum(0, k - m) / k))

def brute_coverage_at(u, c, target):
    "Every threshold tried: the highest whose predicted items reach the target accuracy"
    best = None
    for t in np.unique(u):
        sel = u <= t
        acc = c[sel].mean()
        if acc >= target: best = (float(t), float(sel.mean()), float(acc), int(sel.sum()))
    return best

@pytest.mark.parametrize('seed,levels', [(0, 25), (1, 3), (2, 1000), (3, 7)])
def test_risk_coverage_matches_reference(seed, levels):
    u, c = tied_data(levels=levels, seed=seed)
    got = risk_coverage(torch.tensor(u), torch.tensor(c))
    assert list(got.columns) == ['threshold', 'n', 'coverage', 'accuracy', 'risk']
    assert len(got) == len(np.unique(u)) and got.coverage.is_monotonic_increasing and got.coverage.iloc[-1] == 1
    assert got.threshold.dtype == got.coverage.dtype == got.accuracy.dtype == got.risk.dtype == np.float64
    assert got.n.dtype == np.int64
    pd.testing.assert_frame_equal(got, ref_curve(u, c), check_exact=False, rtol=1e-12)

def test_inputs_tensors_arrays_lists():
    u, c = tied_data(50)
    want = risk_coverage(u, c)
    for uu, cc in [(torch.tensor(u), torch.tensor(c)), (u.tolist(), c.astype(int).tolist()), (u, c.astype(np.float32)),
                   (torch.tensor(u).float().double(), torch.tensor(c).long())]:
        pd.testing.assert_frame_equal(risk_coverage(uu, cc), want)
    f32 = risk_coverage(torch.tensor(u, dtype=torch.float32), c)  # float32 scores: their float64 values as thresholds
    assert np.array_equal(f32.threshold, np.unique(u.astype(np.float32)).astype(np.float64))

def test_a_constant_uncertainty_is_one_row():
    c = np.array([1, 0, 1, 1, 0, 1])
    rc = risk_coverage(np.full(6, 0.3), c)
    assert len(rc) == 1 and rc.n.iloc[0] == 6 and rc.coverage.iloc[0] == 1 and rc.risk.iloc[0] == pytest.approx(2 / 6)
    assert aurc(np.full(6, 0.3), c) == pytest.approx(2 / 6)

@pytest.mark.parametrize('seed,levels', [(0, 25), (1, 3), (2, 10 ** 6), (3, 7)])
def test_aurc_matches_reference(seed, levels):
    u, c = tied_data(levels=levels, seed=seed)
    assert aurc(u, c) == pytest.approx(ref_aurc(u, c), rel=1e-12)
    assert eaurc(u, c) == pytest.approx(ref_aurc(u, c) - ref_oracle(c), rel=1e-10, abs=1e-14)
    assert eaurc(u, c) >= 0
    # the order of tied items cannot matter
    perm = np.random.default_rng(seed).permutation(len(u))
    assert aurc(u[perm], c[perm]) == pytest.approx(aurc(u, c), rel=1e-13)

def test_aurc_without_ties_is_the_standard_formula():
    rng = np.random.default_rng(5)
    u, c = rng.random(1000), rng.random(1000) < 0.8
    assert len(np.unique(u)) == 1000
    assert aurc(u, c) == pytest.approx(standard_aurc(u, c), rel=1e-12)

def test_a_perfect_ranking_is_the_oracle():
    rng = np.random.default_rng(1)
    c = rng.random(2000) < 0.85
    u = np.where(c, 0, 1) + rng.random(2000) * 0.5  # every right item more certain than every wrong one
    assert aurc(u, c) == pytest.approx(ref_oracle(c), rel=1e-12)
    assert abs(eaurc(u, c)) < 1e-14
    assert eaurc(-u, c) > 0.4  # the worst ranking: every wrong item first
    # the oracle tends to Geifman et al.'s risk + (1 - risk) ln(1 - risk)
    c = np.arange(10 ** 6) % 10 != 0
    r = 0.1
    assert aurc(np.arange(10 ** 6) + np.where(c, 0, 2e6), c) == pytest.approx(r + (1 - r) * np.log(1 - r), abs=1e-5)

def test_all_right_and_all_wrong():
    u = np.array([0.3, 0.1, 0.2])
    assert aurc(u, [1, 1, 1]) == 0 and eaurc(u, [1, 1, 1]) == 0
    assert aurc(u, [0, 0, 0]) == 1 and eaurc(u, [0, 0, 0]) == 0

@pytest.mark.parametrize('target', [0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize('seed,levels', [(0, 25), (1, 3), (2, 1000)])
def test_coverage_at_matches_brute_force(seed, levels, target):
    u, c = tied_data(levels=levels, seed=seed)
    c[np.argmin(u)] = True  # the most certain group may reach 100%
    s = coverage_at(u, c, accuracy=target)
    want = brute_coverage_at(u, c, target)
    if want is None:
        assert s == Selection(None, 0.0, None, 0) and not s.reached
        assert str(s).startswith(f"no threshold reaches {target * 100:.4g}% accuracy")
    else:
        assert s.reached and s == want
        assert isinstance(s.threshold, float) and isinstance(s.n, int)

def test_coverage_at_says_so_plainly():
    u, c = np.array([0.1, 0.1, 0.2, 0.3]), np.array([1, 0, 1, 1])
    s = coverage_at(u, c, 0.99)
    assert s == (None, 0.0, None, 0) and not s.reached
    assert str(s) == "no threshold reaches 99% accuracy: the most certain group of items is already below it (50.0%)"
    s = coverage_at(u, c, 0.6)
    assert s == (0.3, 1.0, 0.75, 4) and s.reached
    assert str(s) == "uncertainty <= 0.3 keeps 100.0% of the items (4 of 4) at 75.0% accuracy (target 60%)"
    assert coverage_at(u, c, 0.75).threshold == 0.3  # at the target exactly: reached
    assert 'no threshold' in str(Selection(None, 0.0, None, 0))  # built by hand, it still reads

# --- bins
def fine_bins(u, c, empty_between=True):
    "One bin per distinct value, its upper edge the value (and, if asked, an empty bin between each two)"
    values = np.unique(u)
    edges = np.r_[values[0] - 1, values]
    if empty_between: edges = np.sort(np.r_[edges, (edges[1:] + edges[:-1]) / 2])
    b = np.searchsorted(edges, u, side='left') - 1  # bins (e_j, e_j+1]
    B = len(edges) - 1
    return np.bincount(b, minlength=B), np.bincount(b, weights=c.astype(float), minlength=B), edges

@pytest.mark.parametrize('seed,levels', [(0, 25), (1, 3), (2, 1000)])
@pytest.mark.parametrize('empty_between', [False, True])
def test_fine_bins_equal_the_items(seed, levels, empty_between):
    u, c = tied_data(levels=levels, seed=seed)
    count, right, edges = fine_bins(u, c, empty_between)
    pd.testing.assert_frame_equal(risk_coverage_from_bins(count, right, edges), risk_coverage(u, c))
    assert aurc_from_bins(count, right, edges) == pytest.approx(aurc(u, c), rel=1e-14)
    assert eaurc_from_bins(count, right, edges) == pytest.approx(eaurc(u, c), rel=1e-12, abs=1e-15)
    for target in (0.6, 0.9, 0.97, 1.0):
        assert coverage_at_from_bins(count, right, edges, target) == coverage_at(u, c, target)

def test_coarse_bins_are_the_items_at_their_upper_edge():
    "An item counts as predicted when its bin's upper edge is at most the threshold"
    u, c = tied_data(levels=1000, seed=4)
    edges = np.linspace(0, 1, 11)
    b = np.clip(np.searchsorted(edges, u, side='left') - 1, 0, 9)
    count, right = np.bincount(b, minlength=10), np.bincount(b, weights=c.astype(float), minlength=10)
    at_edge = edges[1:][b]
    pd.testing.assert_frame_equal(risk_coverage_from_bins(torch.tensor(count), torch.tensor(right), edges),
                                  risk_coverage(at_edge, c))
    assert aurc_from_bins(count, right, edges) == pytest.approx(aurc(at_edge, c), rel=1e-14)
    assert coverage_at_from_bins(count, right, edges, 0.9) == coverage_at(at_edge, c, 0.9)

# --- refusals
@pytest.mark.parametrize('u,c,match', [
    ([0.1, 0.2], [1], '2 uncertainties for 1 correct flags'),
    ([], [], 'at least one item'),
    ([0.1, 0.2], [1, 2], 'correct must be 0/1 or bool'),
    ([0.1, 0.2], [1, 0.5], r'correct must be 0/1 or bool .* such as 0\.5'),
    ([0.1, 0.2], ['yes', 'no'], 'correct must be 0/1 or bool'),
    ([0.1, float('nan')], [1, 0], '1 of 2 rows of the uncertainty scores hold NaN or inf'),
    ([float('inf'), 0.2], [1, 0], 'NaN or inf'),
    ([[0.1, 0.9], [0.5, 0.5]], [1, 0], r'shape \(N,\)'),
    (['a', 'b'], [1, 0], 'uncertainty must be numbers'),
])
def test_items_refused(u, c, match):
    for f in (risk_coverage, aurc, eaurc, coverage_at):
        with pytest.raises(ValueError, match=match): f(u, c)

@pytest.mark.parametrize('accuracy', [0, 1.5, -0.1, True, '0.99', None, float('nan')])
def test_accuracy_refused(accuracy):
    with pytest.raises(ValueError, match="accuracy is a share between 0 and 1, such as 0.99, got"):
        coverage_at([0.1, 0.2], [1, 0], accuracy)
    with pytest.raises(ValueError, match="accuracy is a share between 0 and 1"):
        coverage_at_from_bins([1, 1], [1, 0], [0, 0.5, 1], accuracy)
    with pytest.raises(ValueError, match=r"got 1\.5$"): coverage_at([0.1], [1], 1.5)

@pytest.mark.parametrize('count,right,edges,match', [
    ([1, 2], [1, 1], [0, 1], '2 bins need 3 edges, got 2'),
    ([1, 2], [1], [0, 0.5, 1], '2 bin counts for 1 bins'),
    ([1, 2], [1, 1], [0, 0.5, 0.5], 'increasing'),
    ([1, 2], [1, 1], [0, float('nan'), 1], 'increasing'),
    ([1, 2], [2, 1], [0, 0.5, 1], 'correct <= count'),
    ([-1, 2], [0, 1], [0, 0.5, 1], 'whole numbers'),
    ([1.5, 2], [1, 1], [0, 0.5, 1], 'whole numbers'),
    ([0, 0], [0, 0], [0, 0.5, 1], 'every bin is empty'),
    ([], [], [0], 'at least one item'),
])
def test_bins_refused(count, right, edges, match):
    for f in (risk_coverage_from_bins, aurc_from_bins, eaurc_from_bins, coverage_at_from_bins):
        with pytest.raises(ValueError, match=match): f(count, right, edges)
