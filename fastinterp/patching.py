"What fastinterp changes in fastai, in one list: `patch` installs it, `unpatch` gives fastai back its own"

__all__ = ['add_patch', 'hand_out', 'patch', 'unpatch', 'is_patched', 'stock', 'patched_while']

import functools
from contextlib import contextmanager

_patches = []  # (owner, name, replacement): what `patch` installs
_stock = {}    # (owner, name) -> fastai's own attribute, while patched
_MISSING = object()  # an attribute the owner inherits: unpatching deletes ours

def _install(owner, name, new):
    _stock[(owner, name)] = owner.__dict__.get(name, _MISSING)
    setattr(owner, name, new)

def _restore(owner, name):
    f = _stock.pop((owner, name))
    if f is _MISSING: delattr(owner, name)
    else: setattr(owner, name, f)

def add_patch(owner, # Class to change, e.g. fastai's `Learner`
        name:str, # Attribute to set
        new, # What `owner.name` becomes while patched
    ):
    """Have `patch` set `owner.name` to `new` (and `unpatch` restore it)

    >>> class Owner: pass
    >>> add_patch(Owner, 'hello', lambda self: 'patched')  # installed now, since fastinterp is patched
    >>> Owner().hello(), is_patched()
    ('patched', True)
    """
    _patches.append((owner, name, new))
    if is_patched(): _install(owner, name, new)

def hand_out(fastai_cls, # fastai's interpretation class, e.g. `fastai.interpret.SegmentationInterpretation`
        ours, # fastinterp's subclass of it, whose `from_learner` it is to hand out
    ):
    """Have `fastai_cls.from_learner` build `ours` while patched; fastai's own for any other subclass of `fastai_cls`

    >>> class Stock:
    ...     @classmethod
    ...     def from_learner(cls, learn): return 'stock'
    >>> class Ours(Stock):
    ...     @classmethod
    ...     def from_learner(cls, learn): return 'ours'
    >>> class Users(Stock): pass
    >>> hand_out(Stock, Ours)
    >>> Stock.from_learner(None), Users.from_learner(None)
    ('ours', 'stock')
    """
    stock_from_learner = stock(fastai_cls, 'from_learner').__func__  # its own, or the one it inherits
    def from_learner(cls, *args, **kwargs):
        if cls is fastai_cls: return ours.from_learner(*args, **kwargs)
        return stock_from_learner(cls, *args, **kwargs)
    # what help(), show_doc and inspect.signature show where a user reaches it, from fastai's class: fastinterp's own
    functools.update_wrapper(from_learner, ours.from_learner.__func__)
    add_patch(fastai_cls, 'from_learner', classmethod(from_learner))

def is_patched()->bool:
    """Whether fastai currently uses fastinterp's `get_preds`, `predict` and interpretation

    >>> is_patched()  # `import fastinterp` patched fastai
    True
    """
    return any(key in _stock for key in ((o, n) for o, n, _ in _patches))

def patch():
    """Make fastai's `Learner` and interpretation use the registry; doing it twice changes nothing

    >>> from fastai.learner import Learner
    >>> Learner.get_preds.__module__, Learner.calibrate.__module__  # `import fastinterp` called patch()
    ('fastinterp.preds', 'fastinterp.temperature')
    """
    if is_patched(): return
    for owner, name, new in _patches: _install(owner, name, new)

def unpatch():
    """Give fastai back every attribute fastinterp changed, a fix applied for the length of a pass included

    >>> from fastai.learner import Learner
    >>> Learner.get_preds is stock(Learner, 'get_preds')  # while patched, fastai's own is kept aside
    False
    """
    for owner, name in reversed(list(_stock)): _restore(owner, name)

def stock(owner, # The class
        name:str, # The attribute
    ):
    """fastai's own `owner.name`, patched or not

    >>> from fastai.learner import Learner
    >>> stock(Learner, 'get_preds').__module__, Learner.get_preds.__module__
    ('fastai.learner', 'fastinterp.preds')
    """
    f = _stock.get((owner, name), _MISSING)
    return getattr(owner, name) if f is _MISSING else f

@contextmanager
def patched_while(owner, # Class to change for the length of the `with` block
        name:str, # Attribute to set
        new, # What `owner.name` is within
    ):
    """`owner.name` set to `new` within the block, then given back (and given back by `unpatch` if that comes first)

    >>> class Owner:
    ...     def hi(self): return 'own'
    >>> with patched_while(Owner, 'hi', lambda self: 'new'): inside = Owner().hi()
    >>> inside, Owner().hi()
    ('new', 'own')
    """
    if (owner, name) in _stock: yield; return  # already changed: the outer change stays in charge
    _install(owner, name, new)
    try: yield
    finally:
        if (owner, name) in _stock: _restore(owner, name)
