import re, numpy as np, pytest, torch
from scipy import stats
from fastinterp.uncertainty import *
from fastinterp.core import check_finite

# Reference computations, written independently of fastinterp's
def ref_entropy(p): return stats.entropy(p, axis=1) / np.log(p.shape[1])
def ref_margin(p): s = np.sort(p, axis=1); return 1 - (s[:, -1] - s[:, -2])
def ref_least_confidence(p): return 1 - p.max(1)
# TV distance between two distributions is also the total mass of their positive difference
def ref_uniform_distance(p): C = p.shape[1]; return 1 - np.clip(p - 1/C, 0, None).sum(1) / (1 - 1/C)

REFS = {'entropy': ref_entropy, 'margin': ref_margin, 'least_confidence': ref_least_confidence,
        'uniform_distance': ref_uniform_distance}

def dirichlet(C, alpha=1.0, n=200, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(C, alpha), size=n)

@pytest.mark.parametrize('name', list(MEASURES))
@pytest.mark.parametrize('C', [2, 3, 10, 100])
@pytest.mark.parametrize('alpha', [0.1, 1.0, 10.0])
def test_matches_reference(name, C, alpha):
    p = dirichlet(C, alpha)
    got = uncertainty(torch.tensor(p), name)
    assert got.shape == (len(p),) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), REFS[name](p), atol=1e-10)
    assert got.min() >= 0 and got.max() <= 1

@pytest.mark.parametrize('name', list(MEASURES))
@pytest.mark.parametrize('dtype, atol', [(torch.float16, 5e-3), (torch.float32, 1e-5)])
def test_low_precision_input(name, dtype, atol):
    p = torch.tensor(dirichlet(10)).to(dtype)
    got = MEASURES[name](p)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), REFS[name](p.double().numpy()), atol=atol)

@pytest.mark.parametrize('name', list(MEASURES))
@pytest.mark.parametrize('C', [2, 5, 100])
def test_one_hot_is_certain(name, C):
    assert torch.equal(MEASURES[name](torch.eye(C)), torch.zeros(C))

@pytest.mark.parametrize('name, expected', [('entropy', 1.), ('uniform_distance', 1.), ('margin', 1.),
                                            ('least_confidence', 1 - 1/7)])
def test_uniform(name, expected):
    torch.testing.assert_close(MEASURES[name](torch.full((3, 7), 1/7)), torch.full((3,), expected))

@pytest.mark.parametrize('name, row, expected', [
    ('margin', [0.5, 0.5], 1.), ('margin', [0.7, 0.2, 0.1], 0.5), ('least_confidence', [0.7, 0.2, 0.1], 0.3),
    ('entropy', [0.5, 0.5, 0.], float(np.log(2) / np.log(3))), ('uniform_distance', [0.5, 0.5, 0.], 0.5)])
def test_hand_cases(name, row, expected):
    torch.testing.assert_close(MEASURES[name](torch.tensor([row])), torch.tensor([expected]))

@pytest.mark.parametrize('name', list(MEASURES))
@pytest.mark.parametrize('C', [2, 4])
def test_more_peaked_is_less_uncertain(name, C):
    # From uniform (a=0) to one-hot (a=1): every measure must fall all the way
    a = torch.linspace(0, 1, 11)[:, None]
    p = (1 - a) / C + a * torch.eye(C)[0]
    assert (MEASURES[name](p).diff() < 0).all()

@pytest.mark.parametrize('name', list(MEASURES))
def test_single_class_and_empty(name):
    assert torch.equal(MEASURES[name](torch.ones(4, 1)), torch.zeros(4))
    assert MEASURES[name](torch.zeros(0, 3)).shape == (0,)

def test_uncertainty_accepts_callable():
    p = torch.tensor([[0.2, 0.8]])
    torch.testing.assert_close(uncertainty(p, lambda x: x[:, 0]), torch.tensor([0.2]))

def test_unknown_measure():
    with pytest.raises(ValueError, match=r"Unknown uncertainty measure 'foo'.*entropy, margin, least_confidence"):
        uncertainty(torch.eye(2), 'foo')

@pytest.mark.parametrize('shape', [(5,), (2, 3, 4)])
@pytest.mark.parametrize('name', list(MEASURES))
def test_wrong_shape(name, shape):
    with pytest.raises(ValueError, match=re.escape(f"shape (N, C), got shape {shape}")):
        MEASURES[name](torch.rand(shape))

@pytest.mark.parametrize('name', list(MEASURES))
def test_non_finite_probs(name):
    p = torch.full((100, 3), 1/3)
    p[[3, 50, 97], [0, 1, 2]] = torch.tensor([float('nan'), float('inf'), -float('inf')])
    with pytest.raises(ValueError, match=r"3 of 100 rows of the probabilities hold NaN or inf"):
        MEASURES[name](p)

@pytest.mark.parametrize('x, n', [(torch.tensor([1., float('nan'), 2.]), 1),
                                  (torch.full((4, 2, 5), float('inf')), 4),
                                  (np.array([[0., np.nan], [np.nan, np.nan]]), 2)])
def test_check_finite_counts_rows(x, n):
    with pytest.raises(ValueError, match=rf"^{n} of {len(x)} rows of the raw outputs hold NaN or inf$"):
        check_finite(x, 'raw outputs')

# finite values whose sum overflows (float32's 3.4e38, float16's 65,504) are finite all the same
@pytest.mark.parametrize('x', [torch.randn(3, 4), torch.arange(5), np.ones(3), torch.zeros(0, 2),
                               torch.full((4, 3), 3e38), torch.tensor([3e38, -3e38, 3e38, 3e38]),
                               torch.full((1024, 100), 60_000., dtype=torch.float16),
                               torch.full((8, 2), 3e38, dtype=torch.bfloat16)])
def test_check_finite_passes_through(x):
    assert check_finite(x) is x

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_check_finite_in_every_float_dtype(dtype):
    "An inf beside its opposite (a NaN sum), a lone NaN, in every float dtype: counted by row"
    x = torch.ones(5, 3, dtype=dtype)
    x[1, 0], x[1, 2], x[4, 1] = float('inf'), -float('inf'), float('nan')
    with pytest.raises(ValueError, match=r"^2 of 5 rows of the logits hold NaN or inf$"): check_finite(x, 'logits')

# Multi-label: each label's closeness to the threshold
def ref_label(p, t): return np.interp(p, [0, t, 1], [1 - t / max(t, 1 - t), 1, 1 - (1 - t) / max(t, 1 - t)])

@pytest.mark.parametrize('thresh', [0.5, 0.3, 0.9])
@pytest.mark.parametrize('L', [1, 6])
def test_label_uncertainty_matches_reference(thresh, L):
    p = np.random.default_rng(1).random((50, L))
    got = label_uncertainty(torch.tensor(p), thresh)
    assert got.shape == (50, L)
    np.testing.assert_allclose(got.numpy(), ref_label(p, thresh), atol=1e-12)
    np.testing.assert_allclose(multilabel_uncertainty(torch.tensor(p), thresh).numpy(), ref_label(p, thresh).max(1),
                               atol=1e-12)

@pytest.mark.parametrize('p, expected', [(0.5, 1.), (0., 0.), (1., 0.), (0.75, 0.5), (0.25, 0.5)])
def test_label_uncertainty_hand_cases(p, expected):
    torch.testing.assert_close(label_uncertainty(torch.tensor([[p]])), torch.tensor([[expected]]))

def test_one_output_binary_model():
    p = torch.tensor([0.5, 0.9, 0.02])
    expected = torch.tensor([1., 0.2, 0.04])
    torch.testing.assert_close(multilabel_uncertainty(p), expected)
    torch.testing.assert_close(multilabel_uncertainty(p[:, None]), expected)

def test_multilabel_errors():
    with pytest.raises(ValueError, match=r"thresh must lie strictly between 0 and 1, got 1.5"):
        label_uncertainty(torch.rand(3, 2), thresh=1.5)
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 4\)"):
        multilabel_uncertainty(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match=r"1 of 2 rows of the probabilities hold NaN or inf"):
        multilabel_uncertainty(torch.tensor([[0.1, float('nan')], [0.2, 0.3]]))
