"Test-time augmentation that averages probabilities (not logits) in O(N x C) memory, and says whether it helped"

__all__ = ['TTACallback', 'TTAResult', 'MODES', 'SpatialTfm', 'SPATIAL', 'tta']

import random
from contextlib import contextmanager, nullcontext

import numpy as np, pandas as pd, torch
from fastcore.basics import store_attr
from fastcore.xtras import is_listy
from fasttransform import Pipeline, Transform
from fastprogress.fastprogress import master_bar
from fastai.callback.core import Callback, event
from fastai.learner import Learner, _before_epoch
from fastai.torch_core import to_detach, to_float, to_concat, detuplify, nested_reorder

from .activations import activation_for
from .core import TINY, bincount, class_targets, iou_from_confusion, item_nll, loss_ignore_index
from .loaders import _is_distributed, dataset_order, every_item_dl
from .passes import PassProgress, gc_frozen, own_bars
from .patching import add_patch
from .preds import _probs_in, activate, decision_thresh

MODES = ('mean', 'gmean', 'max')
_CLASSIFIERS = ('multiclass', 'multilabel')  # the kinds whose outputs are probabilities, with an accuracy and an NLL

def _hits_and_nll(probs, targs, activation, thresh):
    "Summed over the items: right predictions (multilabel: share of labels right at `thresh`) and NLL of the targets"
    multilabel = activation.kind == 'multilabel'
    t = targs.view(probs.shape) if multilabel else class_targets(targs, probs)
    hits = ((probs > thresh) == t.bool()).float().mean(1) if multilabel else (probs.argmax(1) == t).float()
    return float(hits.sum()), float(item_nll(probs, t, multilabel).sum())

def _renormalize(x, axis):
    "Rows of (nonnegative) `x` that sum to 1, in place"
    return x.div_(x.sum(axis, keepdim=True))

def _rows(x):
    "`x` with one row per item: a one-output model's (N,) outputs become (N, 1)"
    return x[:, None] if x.ndim == 1 else x

def _n_predicted(dl): return dl.n if getattr(dl, 'n', None) is not None else len(dl.dataset)

# --- invertible spatial transforms: what TTA of per-pixel outputs can undo before averaging
class SpatialTfm:
    """An invertible transform of the last two axes: `apply` to the inputs, `undo` to the outputs of the model

    >>> t = SPATIAL['rot90']
    >>> x = torch.arange(6.).view(1, 1, 2, 3)
    >>> t.apply(x).shape, torch.equal(t.undo(t.apply(x)), x)
    (torch.Size([1, 1, 3, 2]), True)
    """
    def __init__(self,
        name:str, # What the report calls it
        apply, # f(x): the transformed input batch
        undo, # f(y): the model's outputs put back where the untransformed input's would be
    ):
        if not (callable(apply) and callable(undo)):
            raise TypeError(f"SpatialTfm {name!r} needs two functions, apply and undo")
        self.name, self.apply, self.undo = name, apply, undo

    def check(self):
        "Refuse a transform whose `undo` does not give back what `apply` was given, on a probe of non-square images"
        x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
        try: ok = bool(torch.equal(self.undo(self.apply(x)), x))
        except Exception as e: raise ValueError(f"The spatial transform {self.name!r} fails on a (2, 3, 5, 7) batch: "
                                                f"{e}") from e
        if not ok:
            raise ValueError(f"The spatial transform {self.name!r} is not undone by its undo: TTA would average "
                             f"misaligned masks. Give undo(apply(x)) == x")
        return self

    def __repr__(self): return f"SpatialTfm({self.name!r})"

def _rot(k): return lambda x: torch.rot90(x, k, (-2, -1))
def _flip(*dims): return lambda x: x.flip(dims)
def _transpose(x): return x.transpose(-2, -1)
def _antitranspose(x): return x.flip((-2, -1)).transpose(-2, -1)

# the seven non-identity symmetries of a square, in the order TTA takes them: flips first, as most models are
# trained with flips, then the half turn, the quarter turns and the transposes
SPATIAL = {t.name: t for t in [SpatialTfm('hflip', _flip(-1), _flip(-1)), SpatialTfm('vflip', _flip(-2), _flip(-2)),
                               SpatialTfm('rot180', _rot(2), _rot(-2)), SpatialTfm('rot90', _rot(1), _rot(-1)),
                               SpatialTfm('rot270', _rot(3), _rot(-3)), SpatialTfm('transpose', _transpose, _transpose),
                               SpatialTfm('antitranspose', _antitranspose, _antitranspose)]}

def _spatial_tfms(spatial, n):
    "The `n` transforms of the augmented passes of a per-pixel model"
    if spatial is None: spatial = list(SPATIAL)[:n]
    elif isinstance(spatial, (str, SpatialTfm)): spatial = [spatial]
    tfms = []
    for t in spatial:
        if isinstance(t, str):
            if t not in SPATIAL: raise ValueError(f"Unknown spatial transform {t!r}: use one of {', '.join(SPATIAL)}, "
                                                  f"or a SpatialTfm(name, apply, undo)")
            t = SPATIAL[t]
        elif not isinstance(t, SpatialTfm):
            raise TypeError(f"A spatial transform is a name ({', '.join(SPATIAL)}) or a SpatialTfm, got "
                            f"{type(t).__name__}: a transform without its undo cannot be averaged over masks")
        tfms.append(t.check())
    if len(tfms) < n:
        raise ValueError(f"n={n} augmented passes, and {len(tfms)} distinct invertible transforms to make them: "
                         f"a mask model gets at most {len(SPATIAL)} (the symmetries of a square); pass a smaller n")
    return tfms[:n]

class _SpatialPass(Callback):
    "Transform each batch's images before the model and undo it on the outputs, before the loss and TTA see them"
    order = -5  # before_batch: ahead of callbacks that read the inputs; after_pred: before TTACallback and the loss
    def __init__(self, tfm): self.tfm = tfm
    def before_batch(self):
        self.learn.xb = tuple(self.tfm.apply(x) if getattr(x, 'ndim', 0) >= 3 else x for x in self.xb)
    def after_pred(self):
        if self.pred.ndim < 3: raise ValueError(f"A spatial transform was applied, and the model's outputs have shape "
                                                f"{tuple(self.pred.shape)}: there is no mask to undo it on")
        self.learn.pred = self.tfm.undo(self.pred)

@contextmanager
def _same_random_draws(dl):
    "Every random state a look at one batch could advance, given back after: the passes draw as if it never happened"
    py, np_state, dl_rng = random.getstate(), np.random.get_state(), getattr(dl, 'rng', None)
    dl_state = dl_rng.getstate() if dl_rng is not None else None
    with torch.random.fork_rng(devices=[]):
        try: yield
        finally:
            random.setstate(py); np.random.set_state(np_state)
            if dl_rng is not None: dl_rng.setstate(dl_state)

def _spatial_outputs(learn, dl)->bool:
    "Whether the model gives one class per pixel: a softmax loss (looked up first: no batch run for the others) and "
    "outputs of a spatial shape on one batch"
    return activation_for(learn.loss_func).kind == 'multiclass' and len(output_shape(learn, dl)) >= 4

def output_shape(learn, dl)->tuple:
    "The shape of the model's outputs on one batch of `dl` (() if they are no tensor), every random state kept"
    with _same_random_draws(dl):
        b = dl.one_batch()
        xb = b[:getattr(dl, 'n_inp', 1)] if isinstance(b, (tuple, list)) else (b,)
        model, was = learn.model, learn.model.training
        model.eval()
        try:
            with torch.no_grad(): out = model(*xb)
        finally: model.train(was)
    return tuple(out.shape) if isinstance(out, torch.Tensor) else ()

def _pixel_scores(probs, targs, ignore_index):
    "Summed over the images: each image's share of right pixels and mean pixel NLL; and the (C, C) pixel confusion"
    C = probs.shape[1]
    t = targs.long()
    if t.ndim == probs.ndim: t = t[:, 0]
    keep = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    t = torch.where(keep, t, 0).clamp(0, C - 1)
    pred = probs.max(1).indices  # argmax, 5x faster along the class axis of masks
    n = keep.flatten(1).sum(1).clamp_min(1)
    hits = (((pred == t) & keep).flatten(1).sum(1) / n).sum()
    nll = ((-probs.gather(1, t[:, None])[:, 0].clamp_min(TINY).log() * keep).flatten(1).sum(1) / n).sum()
    cm = bincount((t * C + pred)[keep], minlength=C * C).view(C, C)
    return float(hits), float(nll), cm

def _mean_iou(cm):
    "The mean IoU over the classes in the targets or the predictions (NaN if none)"
    iou = iou_from_confusion(cm.numpy())
    return float(np.nanmean(iou)) if not np.isnan(iou).all() else float('nan')

class TTACallback(Callback):
    """Running aggregate of the registry's probabilities over validation passes, in data set order, in O(N x C) memory

    >>> cb = TTACallback()
    >>> _ = learn.get_preds(cbs=[cb]); _ = learn.get_preds(cbs=[cb])  # two passes, added up item by item
    >>> cb.n_passes, cb.value.shape, torch.allclose(cb.value.sum(1), torch.ones(60))
    (2, torch.Size([60, 3]), True)
    """
    order = 100  # after every callback that may change `pred` (mixed precision casts it back, for one)
    def __init__(self,
        mode:str='mean', # 'mean' of probabilities, 'gmean' (of log-probabilities, renormalized), elementwise 'max'
        activation=None, # Registry record of the loss (resolved from the learner when None)
        spatial:bool=False, # Per-pixel outputs (B, C, H, W), each pass's transform undone before this callback
    ):
        if mode not in MODES: raise ValueError(f"Unknown TTA mode {mode!r}: use one of {', '.join(MODES)}")
        store_attr()
        if activation is not None: self._check_mode()
        self.reset()

    def reset(self):
        "Forget every pass"
        self.n_passes, self.agg, self.targs, self.stats, self.items, self.cms = 0, None, None, [], None, []
        self.probs_in = None  # whether the model's outputs are probabilities already: seen on the first batch

    @property
    def multilabel(self): return self.activation is not None and self.activation.kind == 'multilabel'

    def _check_mode(self):
        if self.mode == 'gmean' and self.activation.kind not in _CLASSIFIERS:
            raise ValueError(f"mode='gmean' averages log-probabilities, and the outputs of {self.activation.loss} "
                             f"({self.activation.kind}) are not probabilities: use mode='mean' or 'max'")

    def before_validate(self):
        if self.n_passes and self.agg is None:
            raise ValueError("The aggregate was handed over by result(inplace=True): reset() before more passes")
        if self.activation is None: self.activation = activation_for(self.learn.loss_func); self._check_mode()
        self.thresh = decision_thresh(self.learn, self.activation)  # where the learner's temperature puts its decisions
        if _is_distributed(self.dl):
            raise ValueError("TTA adds up the passes item by item on one process, and this pass runs over a "
                             "DistributedDL (a slice of the items per process): run it on one process, "
                             "outside distrib_ctx")
        self.places = self._places(dataset_order(self.dl))
        self.pos, self._targs, self.correct, self.nll, self.seen, self.cm = 0, [], 0., 0., 0, None

    def _places(self, order):
        "Row of the aggregate of each item of this pass (None: its position), whatever the order the passes run in"
        items = torch.arange(_n_predicted(self.dl)) if order is None else order.sort().values
        if len(items) > 1 and bool((items[1:] == items[:-1]).any()):
            raise ValueError("This DataLoader yields some items more than once: TTA adds up the passes item by item")
        if self.items is None: self.items = items
        elif not torch.equal(items, self.items):
            other = '' if len(items) != len(self.items) else 'but other ones '
            raise ValueError(f"Every pass must predict the items of the first: this DataLoader yields {len(items)} "
                             f"items {other}and the first pass had {len(self.items)}")
        rows = None if order is None else order.argsort().argsort()  # rows in data set order, for a subset of it too
        return None if rows is None or torch.equal(rows, torch.arange(len(rows))) else rows

    def after_batch(self):
        if not hasattr(self.learn, 'pred'): return
        # activated where the model ran (a batch on the GPU), in float32 even from a half-precision model
        out = to_float(self.pred)
        self.probs_in = _probs_in(self.probs_in, self.learn, self.activation, out)  # the same model in every pass
        probs = to_detach(activate(self.learn, out, activation=self.activation, probs_in=self.probs_in)[0]).float()
        if probs.ndim > 2 and not self.spatial:
            raise ValueError(f"TTA averages one row of class probabilities (or regression outputs) per item, shape "
                             f"(N, C), and this model's outputs have shape {tuple(probs.shape)}: spatial outputs "
                             f"(segmentation masks, points) would need each augmentation undone before averaging, "
                             f"which this callback cannot do: Learner.tta does it for per-pixel outputs (flips and "
                             f"rotations, each undone). Flatten the outputs to (N, C) if they are not spatial")
        if self.agg is None: self._allocate(probs)
        start, self.pos = self.pos, self.pos + len(probs)
        self._accumulate(slice(start, self.pos) if self.places is None else self.places[start:self.pos], probs)
        yb = to_detach(self.yb)
        if not yb or yb[0].numel() == 0: return
        if self.n_passes == 0: self._targs.append(yb)
        if self.activation.kind in _CLASSIFIERS: self._score(probs, yb[0])

    def _allocate(self, probs):
        # a running max starts below every output: regression outputs and unknown losses' raw scores can be negative
        self.agg = probs.new_full((len(self.items), *probs.shape[1:]), -torch.inf if self.mode == 'max' else 0.)

    def _accumulate(self, rows, probs):
        if self.mode == 'mean': self.agg[rows] += probs
        elif self.mode == 'max': self.agg[rows] = torch.maximum(self.agg[rows], probs)
        elif self.multilabel:  # each label's logit
            self.agg[rows] += probs.clamp_min(TINY).log() - (1 - probs).clamp_min(TINY).log()
        else: self.agg[rows] += probs.clamp_min(TINY).log()

    def _score(self, probs, targs):
        "Add this batch's correct predictions and NLL to the pass's totals (per pixel: per image, and the confusion)"
        if probs.ndim > 2:
            hits, nll, cm = _pixel_scores(probs, targs, loss_ignore_index(self.learn.loss_func))
            self.cm = cm if self.cm is None else self.cm + cm
        else: hits, nll = _hits_and_nll(_rows(probs), targs, self.activation, self.thresh)
        self.correct, self.nll, self.seen = self.correct + hits, self.nll + nll, self.seen + len(probs)

    def after_validate(self):
        if self.agg is None: return
        if self.pos != len(self.agg):
            raise RuntimeError(f"A pass gave {self.pos} predictions for the {len(self.agg)} items of its DataLoader: "
                               f"every pass must predict every item once (drop_last=False)")
        if self.n_passes == 0 and self._targs:
            self.targs = detuplify(to_concat(self._targs))
            if self.places is not None: self.targs = nested_reorder(self.targs, self.places.argsort())
        self.n_passes += 1
        if self.seen: self.stats.append((self.correct / self.seen, self.nll / self.seen))
        if self.cm is not None: self.cms.append(self.cm)

    @property
    def value(self):
        "The aggregated probabilities: rows of a multiclass result sum to 1, multilabel values stay in [0, 1]"
        return self.result()

    def result(self,
        inplace:bool=False, # Finish the aggregate in its own buffer (no copy); no further pass may be added then
        renormalize:bool=True, # Rows of a multiclass max sum to 1; False keeps the raw max, to take with more passes
    ):
        "The aggregated probabilities, as `value`; `inplace` saves the one N x C copy"
        if not self.n_passes: raise ValueError("No pass has run: there is nothing to aggregate")
        if self.agg is None: raise ValueError("The aggregate was already handed over by result(inplace=True)")
        x = self.agg if inplace else self.agg.clone()
        if inplace: self.agg = None
        if self.mode == 'mean': return x.div_(self.n_passes)
        if self.mode == 'gmean':
            x.div_(self.n_passes)
            # multilabel: the sigmoid of the mean logit, i.e. p^(1/n) / (p^(1/n) + (1-p)^(1/n)) per label
            if self.multilabel: return x.sigmoid_()
            # a softmax of the mean log-probabilities
            return _renormalize(x.sub_(x.amax(self.activation.axis, keepdim=True)).exp_(), self.activation.axis)
        return _renormalize(x, self.activation.axis) if self._multiclass and renormalize else x

    @property
    def _multiclass(self): return self.activation is not None and self.activation.kind == 'multiclass'

class TTAResult(tuple):
    """(probabilities, targets) as fastai's `tta` returns them; `report`: accuracy and NLL per pass, plain, of TTA

    >>> res = learn.tta(n=2, batch_tfms=lambda b: (b[0] + 0.1 * torch.randn_like(b[0]), *b[1:]), progress=False)
    >>> list(res.report.index), list(res.report.columns)
    (['pass 1', 'pass 2', 'un-augmented', 'TTA (mean, beta=0.25)'], ['accuracy', 'nll'])
    """
    report:pd.DataFrame|None = None

def _augmented_dl(dl, item_tfms, batch_tfms):
    "`dl` for the augmented passes, and whether its dataset switches to training transforms (a fastai `Datasets`)"
    switches = hasattr(dl.dataset, 'set_split_idx')
    if item_tfms is None and batch_tfms is None:
        if switches: return dl, True
        raise TypeError(f"TTA needs augmentations, and the dataset of this DataLoader ({type(dl.dataset).__name__}) "
                        f"cannot switch to training transforms: it is not a fastai Datasets. Pass item_tfms= and/or "
                        f"batch_tfms= with the augmentations to apply.")
    # the transforms given replace the DataLoader's, as in fastai; the kind not given stays (fastai drops it, ToTensor
    # with it)
    given = (('after_item', item_tfms), ('after_batch', batch_tfms))
    tfms = {attr: v if switches else _training_pipeline(v) for attr, v in given if v is not None}
    return dl.new(**tfms), switches

def _training_pipeline(tfms):
    "Transforms given for a plain dataset, training-only ones on; any other callable takes the whole item or batch"
    return Pipeline(tfms, split_idx=0) if is_listy(tfms) or isinstance(tfms, (Transform, Pipeline)) else tfms

def _run_pass(learn, dl, cbs, split_idx):
    with (dl.dataset.set_split_idx(split_idx) if split_idx is not None else nullcontext()):
        with learn.validation_context(cbs=cbs, inner=True), gc_frozen(): learn._do_epoch_validate(dl=dl)

def tta(self:Learner,
        ds_idx:int=1, # `DataLoader` to use if `dl` is None. 0: train. 1: valid
        dl=None, # `DataLoader` to predict on: fastai's, or a torch one (predicted in data set order)
        n:int=4, # Number of augmented passes
        item_tfms=None, # Item transforms to use instead of the `DataLoader`'s
        batch_tfms=None, # Batch transforms to use instead of the `DataLoader`'s
        beta:float|None=0.25, # Weight of the un-augmented pass in the blend (mode='max': by max); None: both apart
        use_max:bool=False, # fastai's switch for `mode='max'`, blended by max with the un-augmented pass, any `beta`
        mode:str='mean', # Aggregate of the augmented passes: 'mean', 'gmean' or 'max' of probabilities
        progress:bool=True, # Show a progress bar over the passes
        spatial=None, # Per-pixel models: the transforms of the passes, names of `SPATIAL` or `SpatialTfm`s, each undone
    )->TTAResult:
    """Predictions on the `ds_idx` dataset or `dl` with test-time augmentation: probabilities, whatever the loss.
    A per-pixel (segmentation) model gets flips and rotations, each undone on its outputs before they are averaged

    >>> noise = lambda b: (b[0] + 0.1 * torch.randn_like(b[0]), *b[1:])  # a plain dataset: give the augmentation
    >>> probs, targs = learn.tta(n=2, batch_tfms=noise, progress=False)
    >>> probs.shape, torch.allclose(probs.sum(1), torch.ones(60))
    (torch.Size([60, 3]), True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n is a number of augmented passes (1 or more), got {n!r}")
    if use_max: mode = 'max'
    if beta is not None and not 0 <= beta <= 1:
        raise ValueError(f"beta is a weight between 0 and 1 (or None), got {beta}")
    activation = activation_for(self.loss_func)
    # every item, in one order (the callbacks put each back in its place in the dataset); torch's in data set order
    dl = every_item_dl(self, ds_idx, dl, 'run TTA')
    tfms = None
    if spatial is not None or _spatial_outputs(self, dl):
        if item_tfms is not None or batch_tfms is not None:
            raise ValueError("This model predicts per pixel, and item_tfms/batch_tfms are applied to its inputs with "
                             "no way to undo them on its outputs: TTA would average misaligned masks. Give "
                             f"spatial= (names of {', '.join(SPATIAL)}, or SpatialTfm(name, apply, undo)) instead")
        tfms = _spatial_tfms(spatial, n)
    aug, plain = TTACallback(mode, activation, spatial=tfms is not None), TTACallback('mean', activation,
                                                                                      spatial=tfms is not None)
    if tfms is None: aug_dl, switches = _augmented_dl(dl, item_tfms, batch_tfms)
    else: aug_dl, switches = dl, False  # the validation transforms: the augmentation is the undone spatial one
    plain_dl = aug_dl if switches else dl
    show = progress and hasattr(self, 'progress')
    passes = [f'pass {i+1}/{n} ({"augmented" if tfms is None else tfms[i].name})' for i in range(n)] + \
             ['un-augmented pass']
    if show: passes = master_bar(passes)
    with own_bars(self), self.no_logging():  # no empty table of training metrics
        try:
            self(_before_epoch)
            for i, label in enumerate(passes):
                self.epoch = i  # as fastai numbers the passes
                if i == n:
                    aug.targs = None  # the un-augmented pass brings the same targets: one copy is enough
                    plain.probs_in = aug.probs_in  # and the same model: its outputs were looked at already
                cbs = [aug if i < n else plain] + ([PassProgress(label, passes)] if show else []) + \
                      ([_SpatialPass(tfms[i])] if tfms is not None and i < n else [])
                _run_pass(self, aug_dl if i < n else plain_dl, cbs, (0 if i < n else 1) if switches else None)
        finally: self(event.after_fit)
    # every step below works in the two N x C buffers the passes filled: no n x N x C stack, no extra copy
    blend = beta is not None or use_max  # fastai's use_max blends whatever beta is
    # blended by max: the max over every pass, the un-augmented one too, renormalized once (fastai's use_max)
    aug_p = aug.result(inplace=True, renormalize=not (blend and mode == 'max'))
    preds, targs = plain.result(inplace=True), plain.targs
    if blend:
        if mode == 'max':
            torch.maximum(aug_p, preds, out=aug_p)
            if activation.kind == 'multiclass': _renormalize(aug_p, activation.axis)
        else: aug_p.lerp_(preds, beta)
        del preds
    res = TTAResult((aug_p, targs) if blend else ((aug_p, preds), targs))
    res.report = _report(aug, plain, aug_p if blend else None, targs, activation, mode, beta,
                         None if tfms is None else [t.name for t in tfms], loss_ignore_index(self.loss_func))
    return res

def _report(aug, plain, blend, targs, activation, mode, beta, spatial=None, ignore_index=None):
    """Accuracy and NLL of each augmented pass, of the un-augmented pass and of the TTA result; per pixel (`spatial`:
    the passes' transforms), each image's pixel accuracy and mean pixel NLL averaged, and the mean IoU"""
    if targs is None or not aug.stats: return None
    names = [f'pass {i+1}' + ('' if spatial is None else f' ({spatial[i]})') for i in range(len(aug.stats))]
    rows = {name: s for name, s in zip(names, aug.stats)}
    rows['un-augmented'] = plain.stats[0]
    ious = aug.cms + plain.cms
    if blend is not None:
        name = f"TTA ({mode}, beta={beta})" if mode != 'max' else 'TTA (max)'
        if spatial is None:
            hits, nll = _hits_and_nll(_rows(blend), targs, activation, plain.thresh)
        else:  # in chunks of images: the per-pixel temporaries of all of them at once would be several N x H x W
            parts = [_pixel_scores(blend[s:s + 64], targs[s:s + 64], ignore_index) for s in range(0, len(blend), 64)]
            hits, nll = sum(p[0] for p in parts), sum(p[1] for p in parts)
            ious.append(sum(p[2] for p in parts))
        rows[name] = (hits / len(blend), nll / len(blend))
    df = pd.DataFrame.from_dict(rows, orient='index', columns=['accuracy', 'nll'])
    if spatial is not None: df['mean_iou'] = [_mean_iou(cm) for cm in ious]
    return df

add_patch(Learner, 'tta', tta)
