"Which data set item each prediction is: the order a loader yields its items in, and loaders in data set order"

__all__ = ['dataset_order', 'inference_dl', 'every_item_dl', 'in_order']

import math, sys

import torch
import torch.utils.data as tud
from fastai.data.load import DataLoader
from fastai.learner import _ConstantFunc

def _distributed_dl():
    "fastai's `DistributedDL` where fastai.distributed is loaded (importing it would load accelerate, which prints)"
    return getattr(sys.modules.get('fastai.distributed'), 'DistributedDL', None)

def _is_distributed(dl):
    DistributedDL = _distributed_dl()
    return DistributedDL is not None and isinstance(dl, DistributedDL)

def _sampler(dl):
    "The sampler of the items of torch DataLoader `dl`; None for a custom batch sampler, which does not show one"
    bs = dl.batch_sampler
    if bs is None: return dl.sampler  # batch_size=None: one item at a time
    return bs.sampler if type(bs) is tud.BatchSampler else None

def _torch_order(dl):
    "`dataset_order` of a torch DataLoader: from its sampler, when that is sequential"
    if isinstance(dl.dataset, tud.IterableDataset): return None
    sampler = _sampler(dl)
    if isinstance(sampler, tud.SequentialSampler): return torch.arange(len(sampler))
    what = (f"a {type(sampler).__name__}" if sampler is not None
            else f"a custom batch sampler ({type(dl.batch_sampler).__name__})")
    raise ValueError(f"Cannot trace the items of a torch DataLoader with {what} back to the data set: it may draw "
                     f"a new order at each pass, and a torch DataLoader does not tell which. To predict item by item, "
                     f"pass inference_dl(dl) (the same items in data set order) or a DataLoader with shuffle=False")

def dataset_order(dl):
    """Data set index of each item `dl` yields, in order; None for an iterable data set, whose items have no index

    >>> import torch.utils.data as tud
    >>> dataset_order(learn.dls.valid)[:5], dataset_order(tud.DataLoader(range(4), batch_size=2))
    (tensor([0, 1, 2, 3, 4]), tensor([0, 1, 2, 3]))
    >>> dataset_order(learn.dls.train)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Cannot trace the items of a shuffled DataLoader back to the data set: ...
    """
    if isinstance(dl, tud.DataLoader): return _torch_order(dl)
    get = getattr(dl, 'get_idxs', None)
    if get is None: raise TypeError(f"Expected a DataLoader (fastai's or torch's), got {type(dl).__name__}")
    if not getattr(dl, 'indexed', True) or getattr(dl, 'n', 0) is None: return None
    if getattr(dl, 'shuffle', False) and not isinstance(get, _ConstantFunc):
        raise ValueError("Cannot trace the items of a shuffled DataLoader back to the data set: it shuffles its items "
                         "anew on every pass. Run each pass through get_preds (it fixes one order), "
                         "or use dl.new(shuffle=False)")
    idxs = list(get())
    if not isinstance(get, _ConstantFunc) and idxs != list(get()):  # fastai's PartialDL, shuffle=False or not
        raise ValueError(f"Cannot trace the items of this {type(dl).__name__} back to the data set: its get_idxs "
                         f"draws another order at each call. Run each pass through get_preds (it fixes one order)")
    return None if any(i is None for i in idxs) else torch.tensor(idxs, dtype=torch.long)

def _range_order(dl):
    "The items fastai DataLoader `dl` yields as a `range` when they are 0..n-1 in order (no list of them); else None"
    get = getattr(dl, 'get_idxs', None)
    if isinstance(get, _ConstantFunc): return get() if isinstance(get(), range) else None
    stock = type(dl).get_idxs is DataLoader.get_idxs and 'get_idxs' not in vars(dl)
    n = getattr(dl, 'n', None)
    if not stock or getattr(dl, 'shuffle', True) or not getattr(dl, 'indexed', False) or n is None: return None
    return range(n)

def in_order(dl):
    """`dl` and whether it yields its items in data set order as it is, with an index that holds no list of them

    fastai's `get_idxs` builds a list of every index at each pass (36 MB for a million items): where the order is
    0..n-1, `dl` comes back with a `range` for an index instead, so a pass keeps nothing that grows with N.

    >>> dl, ordered = in_order(learn.dls.valid)
    >>> ordered, dl.get_idxs()
    (True, range(0, 60))
    >>> in_order(learn.dls.train)[1]  # shuffled: an order to fix and put back
    False
    """
    if _is_distributed(dl) or not isinstance(dl, DataLoader): return dl, False
    r = _range_order(dl)
    if r is None: return dl, False
    return (dl if isinstance(dl.get_idxs, _ConstantFunc) else dl.new(get_idxs=_ConstantFunc(r))), True

def _dataset_idxs(dl):
    """Data set index of each item `dl` yields on this process (a `range` where they are 0..n-1), and which are real
    (not `DistributedDL` padding)"""
    if not _is_distributed(dl):
        r = _range_order(dl) if isinstance(dl, DataLoader) else None
        return (r if r is not None else dataset_order(dl)), None
    order = dataset_order(dl.dl)
    if order is None:
        raise ValueError("A DistributedDL over an unindexed data set: its items cannot be traced back to the data set")
    # the arithmetic of DistributedDL.get_idxs: pad to a multiple of world_size by cycling from the start,
    # one contiguous slice per rank
    n, ws = len(order), dl.world_size
    n_padded = math.ceil(n / ws) * ws
    pos = torch.arange(dl.rank * n_padded // ws, (dl.rank + 1) * n_padded // ws)
    return order[pos % n], pos < n

class _TupleBatches:
    "`collate_fn` whose list batches become tuples: the batches fastai's transforms and `Learner` take"
    def __init__(self, collate_fn): self.collate_fn = collate_fn
    def __call__(self, items):
        b = self.collate_fn(items)
        return tuple(b) if type(b) is list else b

def _not_reproducible(dl):
    "Why a fastai DataLoader cannot yield the batches of torch DataLoader `dl` in data set order; None if it can"
    if isinstance(dl.dataset, tud.IterableDataset):
        return f"its data set is an IterableDataset ({type(dl.dataset).__name__})"
    if dl.batch_sampler is None: return "it has batch_size=None, so its data set's items are batches already"
    sampler = _sampler(dl)
    if sampler is None: return f"it has a custom batch sampler ({type(dl.batch_sampler).__name__})"
    every_item = isinstance(sampler, tud.SequentialSampler) or (
        type(sampler) is tud.RandomSampler and not sampler.replacement and sampler.num_samples == len(dl.dataset))
    if not every_item or getattr(sampler, 'data_source', dl.dataset) is not dl.dataset:
        return f"its {type(sampler).__name__} may pick some items of the data set only, or some twice"
    if dl.num_workers and dl.worker_init_fn is not None:
        return "it has a worker_init_fn, which a fastai DataLoader would not call"
    return None

def inference_dl(dl):
    """`dl` as a fastai `DataLoader`: same data set, batch size and collate_fn, in data set order; fastai's as it is

    >>> import torch.utils.data as tud
    >>> dl = inference_dl(tud.DataLoader(list(zip(torch.randn(10, 8), torch.arange(10) % 3)), batch_size=4))
    >>> type(dl).__name__, len(dl), [len(b[0]) for b in dl]
    ('DataLoader', 3, [4, 4, 2])
    """
    if isinstance(dl, DataLoader): return dl
    if not isinstance(dl, tud.DataLoader):
        raise TypeError(f"Expected a DataLoader (fastai's or torch's), got {type(dl).__name__}")
    why = _not_reproducible(dl)
    if why is not None:
        raise ValueError(f"Cannot predict over this torch DataLoader in data set order: {why}. Pass a fastai "
                         f"DataLoader, or torch.utils.data.DataLoader(dataset, batch_size=..., shuffle=False) "
                         f"over the items to predict")
    return DataLoader(dl.dataset, bs=dl.batch_sampler.batch_size, shuffle=False, drop_last=False,
                      num_workers=dl.num_workers, pin_memory=dl.pin_memory, timeout=dl.timeout,
                      create_batch=_TupleBatches(dl.collate_fn))

def every_item_dl(learn, # Learner whose `dls[ds_idx]` is taken when `dl` is None
        ds_idx:int=1, # Index of `learn.dls`
        dl=None, # fastai or torch DataLoader
        what:str='interpret', # What is to be done over it, for the message
    ):
    """The DataLoader to predict every item of once, in one order: fastai's, without shuffle or drop_last; never empty

    >>> dl = every_item_dl(learn, ds_idx=0)  # the training set, in data set order
    >>> dl.shuffle, dl.drop_last, dl.n
    (False, False, 120)
    """
    dl = inference_dl(learn.dls[ds_idx] if dl is None else dl)
    distributed = _is_distributed(dl)  # a slice of the items per process, in data set order already
    if not distributed and (getattr(dl, 'shuffle', False) or getattr(dl, 'drop_last', False)):
        dl = dl.new(shuffle=False, drop_last=False)
    inner = dl.dl if distributed else dl
    if len(inner) == 0 or len(inner.dataset) == 0:
        raise ValueError(f"Cannot {what} over an empty DataLoader: it holds no items")
    return dl
