"The shared pure functions against independent numpy references, on random data with ties"
import numpy as np, pytest, torch
from fastinterp.core import brier_terms, confusion_counts, topk
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
