"""Inference passes through fastai's loop: progress bars that name each pass, fastai's own bar hidden or not, and the
objects held before a pass kept out of the garbage collector's sweeps"""

__all__ = ['PassProgress', 'own_bars', 'no_bar', 'gc_frozen']

import gc
from contextlib import contextmanager, nullcontext

from fastcore.basics import store_attr
from fastprogress.fastprogress import progress_bar, ConsoleProgressBar
from fastai.callback.core import Callback

class PassProgress(Callback):
    """A bar over the batches of a validation pass, named `label`, under `master`; no loss (fastai's is the training's)

    >>> cb = PassProgress('pass 1/2')
    >>> cb.order, cb.label
    (60, 'pass 1/2')
    """
    order = 60  # fastai's ProgressCallback.order (not imported: loading it adds it to every new Learner)
    def __init__(self, label='', master=None): store_attr()

    def before_validate(self):
        self.bar = progress_bar(self.dl, parent=self.master, leave=False)
        # the console shows a master bar as a prefix ('Epoch 1/3'), a notebook as a bar of its own
        if isinstance(self.bar, ConsoleProgressBar): self.bar.prefix = self.label
        else: self.bar.comment = self.label
        self.bar.update(0)

    def after_batch(self): self.bar.update(self.iter + 1)
    def after_validate(self):
        if self.bar.last_v is not None: self.bar.on_iter_end()  # a pass cut short; a full one has closed its bar

def own_bars(learn):
    """Without fastai's progress bar, which calls passes epochs and shows the last training loss: passes show their own

    >>> from fastai.callback.core import Callback
    >>> class ProgressCallback(Callback): pass  # stands in for fastai's, whose import adds it to every new Learner
    >>> _ = learn.add_cb(ProgressCallback())
    >>> with own_bars(learn): inside = hasattr(learn, 'progress')
    >>> inside, hasattr(learn, 'progress')  # out for the block, back after it
    (False, True)
    >>> _ = learn.remove_cb(learn.progress)
    """
    return learn.removed_cbs([learn.progress] if hasattr(learn, 'progress') else [])

def no_bar(learn):
    """`learn.no_bar()` where fastai's progress bar is on; nothing to hide otherwise (fastinterp never loads it itself)

    >>> with no_bar(learn): probs = learn.get_preds()[0]  # nothing printed
    >>> probs.shape
    torch.Size([60, 3])
    """
    return learn.no_bar() if hasattr(type(learn), 'no_bar') and hasattr(learn, 'progress') else nullcontext()

@contextmanager
def gc_frozen():
    """The objects the process holds when a pass starts kept out of the garbage collector's sweeps until it ends
    (`gc.freeze`), the objects the pass makes collected as ever

    Python runs a full collection, which visits every object the process holds, each time the objects that outlived
    the two young generations since the last one reach a quarter of the old generation; fastai's loop makes such
    objects batch after batch (freed soon after by their reference counts), so a pass over 100,000 items of the scale
    bench ran one and a pass over 1,000,000 items a dozen: some 140 ms each with torch and fastai loaded, a quarter of
    the pass, and none freed anything. Frozen, those objects are not visited; cycles the pass leaves among its own
    objects are still collected, and garbage among the frozen ones waits for the end of the pass. Nothing is done where
    the collector is off or objects are frozen already (by the caller, or an outer pass), so a freeze made outside is
    never undone here.

    >>> import gc
    >>> with gc_frozen(): inside = gc.get_freeze_count() > 0
    >>> inside, gc.get_freeze_count()  # frozen for the block, as before after it
    (True, 0)
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try: yield
    finally: gc.unfreeze()
