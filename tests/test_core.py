"The shared pure functions against independent numpy references, on random data with ties"
import numpy as np, pytest, torch
from fastinterp.core import brier_terms, by_rows, confusion_counts, row_sq, topk
from sklearn.metrics import confusion_matrix

@pytest.mark.parametrize('n', [0, 1, 7, 1000, 20000])
@pytest.mark.parametrize('k', [None, 0, 1, 9, 100, 10**6])
@pytest.mark.parametrize('largest', [True, False])
def test_topk_is_a_stable_sort_cut_at_k(n, k, largest):
    g = torch.Generator().manual_seed(n)
    for x in (torch.randint(0, 5, (n,), generator=g).float() / 5, torch.rand(n, generator=g)):  # ties, none
        vals, idxs = topk(x, k, largest)
        s = x.numpy()
        ref = np.argsort(-s if largest else s, kind='stable')[:n if k is None else k]  # ties: the lower index first
        np.testing.assert_array_equal(idxs.numpy(), ref)
        assert torch.equal(vals, x[idxs])

def test_brier_terms_equal_the_one_hot_sum():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(500, 13, generator=g) * 3, 1)
    t = torch.randint(0, 13, (500,), generator=g)
    ref = ((p.double().numpy() - np.eye(13)[t.numpy()]) ** 2).sum(1)
    np.testing.assert_allclose(brier_terms(p, t).numpy(), ref, rtol=0, atol=1e-12)

def test_confusion_counts_equal_sklearn():
    g = torch.Generator().manual_seed(0)
    t, d = torch.randint(0, 7, (3000,), generator=g), torch.randint(0, 7, (3000,), generator=g)
    np.testing.assert_array_equal(confusion_counts(t, d, 9), confusion_matrix(t, d, labels=range(9)))

def test_brier_terms_by_blocks_equal_the_one_hot_sum():
    # 50,000 x 100 values: more than one block of rows (2**22 values), the last one partial
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(50_000, 100, generator=g) * 3, 1)
    t = torch.randint(0, 100, (50_000,), generator=g)
    ref = ((p.double().numpy() - np.eye(100)[t.numpy()]) ** 2).sum(1)
    np.testing.assert_allclose(brier_terms(p, t).numpy(), ref, rtol=0, atol=1e-12)
    assert brier_terms(p[:0], t[:0]).shape == (0,)

@pytest.mark.parametrize('n', [0, 1, 15, 16, 31, 32, 33, 47, 1000])
def test_by_rows_blocks_every_row_once_and_none_below_the_block(n):
    x = torch.arange(n * 10, dtype=torch.float64).view(n, 10)
    sizes = []
    got = by_rows(lambda b: sizes.append(len(b)) or b.sum(1), x, values=100)  # 16 rows a block at least
    np.testing.assert_array_equal(got.numpy(), x.numpy().sum(1))
    assert sizes == [n] if n <= 16 else set(sizes) == {16}  # blocks of one size: 16 rows at least
    assert len(sizes) == max(1, -(-n // 16))  # the last one overlapping the one before it
    pos = torch.randperm(n)  # positions into rows of a given width
    np.testing.assert_array_equal(by_rows(lambda at: x[at].sum(1), pos, width=10, values=100).numpy(),
                                  x.numpy()[pos.numpy()].sum(1))
    np.testing.assert_allclose(row_sq(x.float()).numpy(), (x.float().double().numpy() ** 2).sum(1), rtol=1e-14)

@pytest.mark.parametrize('measure', ['entropy', 'margin', 'least_confidence', 'uniform_distance'])
def test_measures_by_blocks_equal_the_whole_and_numpy(measure):
    from fastinterp.uncertainty import MEASURES, uncertainty
    g = torch.Generator().manual_seed(2)
    # rounded to a few levels: ties within and across the blocks
    p = (torch.softmax(torch.randn(60_000, 100, generator=g) * 2, 1) * 64).round() + 1
    p = p / p.sum(1, keepdim=True)
    whole = MEASURES[measure].__wrapped__(p)  # one call over every row at once
    blocks = uncertainty(p, measure)
    assert torch.equal(blocks, whole)  # per row the same value, bit for bit
    q, C = p.double().numpy(), 100
    ref = {'entropy': lambda: -(q * np.log(q)).sum(1) / np.log(C),
           'margin': lambda: 1 - (np.sort(q, 1)[:, -1] - np.sort(q, 1)[:, -2]),
           'least_confidence': lambda: 1 - q.max(1),
           'uniform_distance': lambda: 1 - np.abs(q * C - 1).sum(1) / (2 * (C - 1))}[measure]()
    np.testing.assert_allclose(blocks.numpy(), ref, atol=2e-6)

def test_calibration_bins_equal_a_numpy_binning_with_confidences_on_the_edges():
    from fastinterp.core import bin_sums
    g = torch.Generator().manual_seed(3)
    n, n_bins = 20_000, 10
    conf = torch.randint(0, 21, (n, 1), generator=g).float() / 20  # 0, 0.05, ..., 1: half of them on an edge
    hit = (torch.rand(n, 1, generator=g) < conf).float()
    b = bin_sums(conf, hit, n_bins)
    c, h = conf[:, 0].numpy(), hit[:, 0].numpy()
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    idx = np.searchsorted(edges, c, side='right') - 1  # [i/n, (i+1)/n), and a bin of its own for exactly 1
    np.testing.assert_array_equal(b.count[0].numpy(), np.bincount(idx, minlength=n_bins + 1))
    np.testing.assert_allclose(b.confidence[0].numpy(), np.bincount(idx, c.astype(np.float64), n_bins + 1), atol=1e-6)
    np.testing.assert_array_equal(b.correct[0].numpy(), np.bincount(idx, h, n_bins + 1))
