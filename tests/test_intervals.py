"Intervals: Wilson against scipy's binomtest, the bootstrap of calibration against a slow loop over the same resamples"
import copy, json, math, pickle
import numpy as np, pytest, torch
from scipy.stats import binomtest

from fastinterp.calibration import calibration_metrics
from fastinterp.intervals import Estimate, check_ci, wilson_interval, resample_indices, bootstrap_calibration

NAMES = ['ece', 'mce', 'brier', 'nll', 'accuracy']

# --- Wilson
def scipy_wilson(k, n, ci):
    r = binomtest(int(k), int(n)).proportion_ci(confidence_level=ci, method='wilson')
    return float(r.low), float(r.high)

@pytest.mark.parametrize('ci', [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_wilson_matches_scipy(ci):
    pairs = [(k, n) for n in range(1, 26) for k in range(n + 1)]  # n = 1, k = 0 and k = n among them
    pairs += [(k, n) for n in (100, 1000, 12_345) for k in (0, 1, 2, n // 3, n // 2, n - 1, n)]
    want = np.array([scipy_wilson(k, n, ci) for k, n in pairs])
    got = np.array([wilson_interval(k, n, ci) for k, n in pairs])  # one by one, scalars in and out
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    k, n = map(np.array, zip(*pairs))
    lo, hi = wilson_interval(k, n, ci)  # all at once
    assert lo.dtype == hi.dtype == np.float64 and lo.shape == k.shape
    np.testing.assert_allclose(np.stack([lo, hi], 1), want, rtol=1e-12, atol=1e-15)
    assert (lo[k == 0] == 0).all() and (hi[k == n] == 1).all()  # exactly, as scipy

def test_wilson_shapes_and_inputs():
    lo, hi = wilson_interval(45, 50)
    assert type(lo) is float and type(hi) is float
    lo, hi = wilson_interval(torch.tensor([[1, 2], [3, 4]]), 10)  # broadcast; a tensor of counts
    assert lo.shape == (2, 2) and np.allclose(lo[0, 1], scipy_wilson(2, 10, 0.95)[0])
    # whole-valued floats are counts too (CalibrationBins.correct is float64)
    assert wilson_interval(np.float64(3.0), 7.0) == wilson_interval(3, 7)

def test_wilson_of_no_trials_is_nan():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    lo, hi = wilson_interval(np.array([0, 1]), np.array([0, 2]))
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isfinite([lo[1], hi[1]]).all()

@pytest.mark.parametrize('k,n,match', [(3, 2, 'cannot exceed'), (-1, 5, 'whole numbers'), (1.5, 5, 'whole numbers'),
                                       (1, float('inf'), 'whole numbers'), (True, 5, 'counts'), ('1', 5, 'counts')])
def test_wilson_bad_counts(k, n, match):
    with pytest.raises(ValueError, match=match): wilson_interval(k, n)

# --- check_ci
@pytest.mark.parametrize('ci', [0, 1, 1.5, -0.1, 95, True, False, '0.95', None, float('nan')])
def test_check_ci_refuses(ci):
    with pytest.raises(ValueError, match=r"ci is a confidence level strictly between 0 and 1, such as 0\.95, got"):
        check_ci(ci)

def test_check_ci_message_and_numpy():
    with pytest.raises(ValueError, match=r"got 95$"): check_ci(95)
    with pytest.raises(ValueError, match=r"got '0\.95'$"): check_ci('0.95')
    assert check_ci(np.float32(0.5)) == 0.5 and type(check_ci(0.9)) is float

# --- Estimate
def test_estimate_is_its_float():
    e = Estimate(0.9443, 0.918, 0.963)
    assert isinstance(e, float) and e == 0.9443 and hash(e) == hash(0.9443)
    assert e + 1 == 0.9443 + 1 and e * 2 == 0.9443 * 2 and -e == -0.9443 and type(e + 1) is float
    assert e > 0.9 and e < 1 and max(e, 0.5) is e and round(e, 2) == 0.94
    assert f"{e:.2f}" == '0.94' and f"{e:.1%}" == '94.4%' and format(e, 'g') == '0.9443'
    assert json.loads(json.dumps({'acc': e})) == {'acc': 0.9443} and float(e) == 0.9443
    assert np.asarray([e, 0.5]).dtype == np.float64 and math.isclose(math.log(e), math.log(0.9443))

def test_estimate_says_its_interval():
    e = Estimate(0.9443, 0.918, 0.963)
    assert repr(e) == str(e) == '0.9443 (95% CI 0.9180 to 0.9630)'
    assert repr(Estimate(12.5, 11, 14.25, ci=0.9)) == '12.50 (90% CI 11.00 to 14.25)'
    assert repr(Estimate(1e-5, 0, 2e-5, ci=0.999)) == '1.000e-05 (99.9% CI 0.000 to 2.000e-05)'
    assert (e.lo, e.hi, e.ci) == (0.918, 0.963, 0.95)

def test_estimate_overlaps():
    a = Estimate(0.5, 0.4, 0.6)
    assert a.overlaps(Estimate(0.65, 0.55, 0.75)) and Estimate(0.65, 0.55, 0.75).overlaps(a)
    assert a.overlaps(Estimate(0.7, 0.6, 0.8))  # touching ends
    assert not a.overlaps(Estimate(0.8, 0.7, 0.9)) and not Estimate(0.8, 0.7, 0.9).overlaps(a)
    assert a.overlaps(Estimate(0.5, 0.1, 0.9)) and a.overlaps(0.45) and not a.overlaps(0.61)  # inside; a number

@pytest.mark.parametrize('clone', [lambda e: pickle.loads(pickle.dumps(e)),
                                   lambda e: pickle.loads(pickle.dumps(e, protocol=0)), copy.copy, copy.deepcopy])
def test_estimate_keeps_its_interval(clone):
    e = Estimate(0.25, 0.2, 0.3, ci=0.9)
    c = clone(e)
    assert type(c) is Estimate and c == 0.25 and (c.lo, c.hi, c.ci) == (0.2, 0.3, 0.9) and repr(c) == repr(e)

def test_estimate_refuses():
    with pytest.raises(ValueError, match='lower end'): Estimate(0.5, 0.6, 0.4)
    with pytest.raises(ValueError, match='ci is a confidence level'): Estimate(0.5, 0.4, 0.6, ci=95)

# --- the bootstrap
def awkward_probs(n=240, C=4, seed=0, dtype=torch.float32):
    "Probabilities with tied rows, top-label confidences of exactly 1 and on bin edges (of 4 and 15 bins), targets ~70% right"
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, C, generator=g, dtype=torch.float64) * 2, 1)
    special = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.75, 0.25, 0, 0], [0.5, 0.25, 0.25, 0], [0.2, 0.8, 0, 0],
                            [0.4, 0.6, 0, 0], [1 / 3, 2 / 3, 0, 0]], dtype=torch.float64)
    p[:len(special) * 6] = special.repeat(6, 1)  # 6 of each: ties
    p[-20:] = p[-40:-20]  # tied rows of ordinary probabilities
    p = p.to(dtype)
    t = torch.where(torch.rand(n, generator=g) < 0.7, p.argmax(1), torch.randint(0, C, (n,), generator=g))
    return p, t

def slow_bootstrap(probs, targs, n_bins, ci, n_resamples, seed):
    "Every resample of `resample_indices` through calibration_metrics, then numpy's percentiles"
    vals = [calibration_metrics(probs[row], targs[row], n_bins)
            for idx in resample_indices(len(probs), n_resamples, seed) for row in idx]
    alpha = 1 - ci
    return {k: tuple(np.percentile([v[k] for v in vals], [100 * alpha / 2, 100 * (1 - alpha / 2)])) for k in NAMES}

@pytest.mark.parametrize('n_bins,ci,dtype,chunk', [(15, 0.95, torch.float32, None), (4, 0.9, torch.float32, 7),
                                                   (5, 0.95, torch.float64, 13), (15, 0.5, torch.float64, 1)])
def test_bootstrap_matches_a_slow_loop(n_bins, ci, dtype, chunk):
    p, t = awkward_probs(dtype=dtype)
    got = bootstrap_calibration(p, t, n_bins=n_bins, ci=ci, n_resamples=60, seed=3, chunk=chunk)
    want = slow_bootstrap(p, t, n_bins, ci, 60, seed=3)
    assert list(got) == NAMES
    for k in NAMES: np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)

def test_bootstrap_takes_one_hot_targets_and_arrays():
    p, t = awkward_probs()
    want = bootstrap_calibration(p, t, n_resamples=30)
    assert bootstrap_calibration(p.numpy(), torch.eye(4)[t].numpy(), n_resamples=30) == want

def test_bootstrap_seed():
    p, t = awkward_probs()
    a, b = (bootstrap_calibration(p, t, n_resamples=200, seed=s) for s in (5, 5))
    assert a == b
    c = bootstrap_calibration(p, t, n_resamples=200, seed=6)
    assert all(c[k] != a[k] for k in NAMES)

def test_bootstrap_does_not_depend_on_the_chunk():
    p, t = awkward_probs()
    want = bootstrap_calibration(p, t, n_resamples=50, seed=1)
    for chunk in (1, 3, 50, 1000): assert bootstrap_calibration(p, t, n_resamples=50, seed=1, chunk=chunk) == want

def test_the_point_estimate_lies_inside():
    "An over-confident model on 5,000 items: each figure inside its 95% interval, narrower than on 500 items"
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5000, 10, generator=g) * 3
    t = torch.multinomial(torch.softmax(z / 2, 1), 1, generator=g)[:, 0]
    p = torch.softmax(z, 1)
    point = calibration_metrics(p, t)
    iv = bootstrap_calibration(p, t, n_resamples=400)
    for k in NAMES:
        lo, hi = iv[k]
        assert lo < point[k] < hi, (k, lo, point[k], hi)
        # the MCE, the largest of 16 bins' errors, some of few items, stays wide
        if k != 'mce': assert hi - lo < 0.2 * max(point[k], 0.1), k
    wide = bootstrap_calibration(p[:500], t[:500], n_resamples=400)
    assert all(wide[k][1] - wide[k][0] > iv[k][1] - iv[k][0] for k in NAMES if k != 'mce')  # 10x fewer items

def test_resample_indices():
    chunks = list(resample_indices(10, 23, seed=2, chunk=5))
    assert [c.shape for c in chunks] == [(5, 10)] * 4 + [(3, 10)] and all(c.dtype == torch.int64 for c in chunks)
    every = torch.cat(chunks)
    assert every.min() >= 0 and every.max() <= 9
    assert torch.equal(every, torch.cat(list(resample_indices(10, 23, seed=2))))  # the rows whatever the chunk
    g = torch.Generator().manual_seed(2)
    assert torch.equal(every, torch.randint(0, 10, (23, 10), generator=g))  # a plain torch.Generator's draws
    assert not torch.equal(every, torch.cat(list(resample_indices(10, 23, seed=3))))

def test_memory_is_flat_in_n_resamples():
    "The chunk size depends on the number of items only: memory per chunk b x N, whatever n_resamples"
    for n in (100, 100_000):
        b = {len(next(resample_indices(n, r))) for r in (10 ** 5, 10 ** 6, 10 ** 12)}
        assert len(b) == 1 and b.pop() * n <= 2 ** 22
    assert len(next(resample_indices(100_000, 10))) == 10  # fewer resamples than a chunk: one chunk of them
    assert len(next(resample_indices(2 ** 22 + 1, 10 ** 6))) == 1  # more items than a chunk: one resample at a time

@pytest.mark.parametrize('kwargs,match', [
    (dict(ci=0), 'ci is a confidence level'), (dict(ci=1), 'ci is a confidence level'),
    (dict(ci=1.5), 'ci is a confidence level'), (dict(ci=-0.1), 'ci is a confidence level'),
    (dict(ci=True), 'ci is a confidence level'), (dict(ci='0.95'), 'ci is a confidence level'),
    (dict(n_resamples=0), 'n_resamples must be a whole number, 1 or more, got 0'),
    (dict(n_resamples=2.5), 'n_resamples must be a whole number'), (dict(n_resamples=True), 'n_resamples'),
    (dict(n_bins=0), 'n_bins must be a whole number'), (dict(chunk=0), 'chunk'),
])
def test_bootstrap_refuses(kwargs, match):
    p, t = awkward_probs(60)
    with pytest.raises(ValueError, match=match): bootstrap_calibration(p, t, **kwargs)

@pytest.mark.parametrize('probs,targs,match', [
    (torch.full((5, 2), 0.5), torch.zeros(4, dtype=torch.long), '4 targets for 5 rows'),
    (torch.rand(5), torch.zeros(5), r'shape \(N, C\)'),  # one sigmoid output: multilabel, out of scope
    (torch.rand(5, 3, 2), torch.zeros(5), r'shape \(N, C\)'),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 'at least one item'),
    (torch.full((3, 2), 0.5), torch.tensor([0, 1, 2]), 'class indices'),
    (torch.tensor([[0.5, float('nan')], [0.5, 0.5]]), torch.tensor([0, 1]), 'NaN or inf'),
    (torch.tensor([[2.0, -1.0]]), torch.tensor([0]), 'range from'),
])
def test_bootstrap_refuses_data(probs, targs, match):
    with pytest.raises(ValueError, match=match): bootstrap_calibration(probs, targs, n_resamples=5)

@pytest.mark.parametrize('args,match', [((10, 0), 'n_resamples must be a whole number, 1 or more, got 0'),
                                        ((0, 5), 'n \\(items\\)'), ((10, 5, 0, 0), 'chunk')])
def test_resample_indices_refuses_when_called(args, match):
    with pytest.raises(ValueError, match=match): resample_indices(*args)  # not only once iterated
