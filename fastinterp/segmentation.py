"Segmentation interpretation from ONE inference pass, by counting: never all N x C x H x W probabilities at once"

__all__ = ['pixel_confusion', 'iou_from_confusion', 'dice_from_confusion', 'SegmentationStats',
           'SegmentationInterpretation']

import math
from pathlib import Path
from contextlib import nullcontext

import numpy as np, pandas as pd, torch
import matplotlib.pyplot as plt
from fastcore.basics import noop, store_attr
from fastai.callback.core import Callback
from fastai.learner import _ConstantFunc
from fastai.torch_core import to_detach, to_device
import fastai.interpret

from .activations import activation_for
from .calibration import metrics_from_sums
from .core import (TINY, CalibrationBins, bin_sums, bincount, check_k, check_normalize, dice_from_confusion,
                   iou_from_confusion, loss_ignore_index, normalize_confusion, topk)
from .loaders import every_item_dl, in_order
from .passes import no_bar
from .patching import hand_out
from .interpret import _vocab
from .preds import _probs_in, activate, learner_temperature, _frozen_get_preds
from .streaming import _has_targets
from .tta import output_shape
from .uncertainty import _nats
from . import show

# --- pure functions over masks
def _masks(x, what):
    "`x` as an int64 tensor of class indices"
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise ValueError(f"{what} must be class indices (whole numbers), got values such as {t[t != t.round()][0]:g}")
    return t.long()

def pixel_confusion(targs, # (N, H, W) or any shape: the target class of each pixel
        decoded, # The predicted class of each pixel, same shape
        n_classes:int, # Number of classes C
        ignore_index:int|None=None, # Target value of pixels left out (e.g. 255 for "void"); None: every pixel counts
    )->np.ndarray:
    """(C, C) pixel counts, target x predicted: sklearn's confusion_matrix of the flattened masks, by counting

    >>> pixel_confusion(torch.tensor([[0, 1], [1, 255]]), torch.tensor([[0, 1], [0, 1]]), 2, ignore_index=255)
    array([[1, 0],
           [1, 1]])
    """
    t, d = _masks(targs, 'targs').flatten(), _masks(decoded, 'decoded').flatten()
    if t.shape != d.shape: raise ValueError(f"targs and decoded must have the same shape, got {tuple(targs.shape)} "
                                            f"and {tuple(decoded.shape)}")
    keep = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    t, d = t[keep], d[keep]
    _check_classes(t, n_classes, ignore_index)
    _check_classes(d, n_classes, None, 'predicted')
    return bincount(t * n_classes + d, minlength=n_classes * n_classes).view(n_classes, n_classes).numpy()

def _check_classes(t, C, ignore_index, what='target'):
    if not t.numel(): return
    lo, hi = torch.aminmax(t)  # one pass; the offending value is looked for only when there is one
    if lo < 0 or hi >= C:
        v = int(t[(t < 0) | (t >= C)][0])
        extra = '' if ignore_index is None else f" (and it is not ignore_index={ignore_index})"
        raise ValueError(f"A {what} mask holds class {v}, which the vocab of {C} classes lacks{extra}: check the "
                         f"masks' codes, or pass ignore_index= for the value of pixels to leave out")

# --- the counts of one pass
class SegmentationStats:
    """Counts of a segmentation pass, batch by batch: pixel confusion, calibration bins, per-image sums; no pixel kept

    >>> st = SegmentationStats(n_classes=3)
    >>> p = torch.softmax(torch.randn(2, 3, 4, 4) * 3, 1)
    >>> st.update(p, p.argmax(1))  # targets equal to the predictions: every pixel right
    >>> st.n, int(st.confusion().sum()), int(np.trace(st.confusion()))
    (2, 32, 32)
    """
    def __init__(self,
        n_classes:int, # Classes C
        n_bins:int=15, # Calibration bins of the pixels' top-class confidence
        ignore_index:int|None=None, # Target value of pixels left out
    ):
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be a whole number, 2 or more, got {n_classes!r}")
        self.n_classes, self.n_bins, self.ignore_index = n_classes, n_bins, ignore_index
        C = n_classes
        self.cm = torch.zeros(C * C, dtype=torch.int64)
        self.bins = CalibrationBins(torch.zeros(n_bins + 1, dtype=torch.int64), *torch.zeros(2, n_bins + 1,
                                                                                         dtype=torch.float64))
        self.brier_sum = self.nll_sum = 0.
        self.ignored = 0  # target pixels equal to ignore_index, left out of every figure
        self.labelled = None
        self._img = {k: [] for k in ('loss', 'entropy', 'correct', 'pixels', 'inter', 'pred', 'targ')}

    @property
    def n(self)->int: return sum(len(x) for x in self._img['entropy'])

    def update(self,
        probs, # (B, C, H, W) probabilities
        targs=None, # (B, H, W) target classes; None: unlabelled
    ):
        "Add one batch"
        p = probs.detach().float().cpu()
        if p.ndim < 3 or p.shape[1] != self.n_classes:
            raise ValueError(f"probs must be (B, {self.n_classes}, H, W) probabilities, got shape {tuple(p.shape)}")
        C = self.n_classes
        labelled = targs is not None
        if self.labelled is None: self.labelled = labelled
        elif self.labelled != labelled: raise ValueError("Every batch must have targets, or none")
        conf, pred = p.max(1)
        # per-pixel entropy in nats over the class axis (0 log 0 = 0), as the multi-class measures have it
        self._img['entropy'].append((_nats(p) / math.log(C)).flatten(1).mean(1).double())
        if not labelled:
            self._img['pred'].append(_per_image(pred, None, C))
            return
        t = targs.detach().cpu().long()
        if t.ndim == p.ndim and t.shape[1] == 1: t = t[:, 0]
        if t.shape != pred.shape:
            raise ValueError(f"targets of shape {tuple(t.shape)} do not match the predictions' {tuple(pred.shape)}: "
                             f"a segmentation target is one class per pixel")
        keep = None  # every pixel: no mask to apply, no copies of the kept ones
        if self.ignore_index is not None and bool((t == self.ignore_index).any()):
            keep = t != self.ignore_index
            self.ignored += int((~keep).sum())
            t = torch.where(keep, t, 0)
        _check_classes(t if keep is None else t[keep], C, self.ignore_index)
        kept = (lambda x: x) if keep is None else (lambda x: x[keep])
        masked = (lambda x: x) if keep is None else (lambda x: x * keep)
        right = pred == t if keep is None else (pred == t) & keep
        pt = p.gather(1, t[:, None])[:, 0]
        nll = masked(-pt.clamp_min(TINY).log())
        pixels = torch.full((len(t),), t[0].numel()) if keep is None else keep.flatten(1).sum(1)
        self._img['pixels'].append(pixels)
        self._img['loss'].append(nll.flatten(1).sum(1).double() / pixels.clamp_min(1))
        self._img['correct'].append(right.flatten(1).sum(1))
        self._img['inter'].append(_per_image(pred, right, C))
        self._img['pred'].append(_per_image(pred, keep, C))  # ignored pixels are neither predicted nor target
        self._img['targ'].append(_per_image(t, keep, C))
        self.cm += bincount(kept(t * C + pred).flatten(), minlength=C * C)
        b = bin_sums(kept(conf).reshape(-1, 1), kept(right).reshape(-1, 1).double(), self.n_bins)
        self.bins = CalibrationBins(*(a + x[0] for a, x in zip(self.bins, b)))
        sq = torch.linalg.vecdot(p, p, dim=1)  # sum of p^2 over the classes, without a C-wide temporary
        self.brier_sum += float(masked(sq - 2 * pt + 1).double().sum())
        self.nll_sum += float(nll.double().sum())

    def _cat(self, key): return torch.cat(self._img[key]) if self._img[key] else None

    def confusion(self)->np.ndarray: return self.cm.view(self.n_classes, self.n_classes).numpy().copy()
    def iou(self)->np.ndarray: return iou_from_confusion(self.confusion())
    def image_loss(self): return self._cat('loss')

    def compute(self)->dict:
        "Every count, per image (in the order of the batches) and over all pixels"
        keys = ('loss', 'entropy', 'correct', 'pixels', 'inter', 'pred', 'targ')
        return {**{k: self._cat(k) for k in keys}, 'confusion': self.confusion(), 'bins': self.bins,
                'brier_sum': self.brier_sum, 'nll_sum': self.nll_sum, 'n': self.n, 'ignored': self.ignored}

def _per_image(cls, keep, C):
    "(B, C) pixels of each class per image, among the `keep` pixels (None: all)"
    B = len(cls)
    idx = torch.arange(B)[:, None] * C + cls.flatten(1)
    return bincount(idx.flatten() if keep is None else idx[keep.flatten(1)], minlength=B * C).view(B, C)

class _Count(Callback):
    "Each validation batch's probabilities counted into a `SegmentationStats`, then dropped"
    order, run_train = 61, False
    def __init__(self, stats, act, activation): store_attr()

    def before_validate(self): self.labelled, self.probs_in = None, None

    def before_batch(self):  # before the loss, which would fail on such a class with an IndexError of its own
        if self.labelled is None: self.labelled = _has_targets(self.learn.yb)  # decided on the first batch
        if not self.labelled: return
        t = self.learn.yb[0]
        keep = t != self.stats.ignore_index if self.stats.ignore_index is not None else torch.ones_like(t, dtype=bool)
        _check_classes(t[keep].long(), self.stats.n_classes, self.stats.ignore_index)

    def after_batch(self):
        raw = to_detach(self.learn.pred)
        self.probs_in = _probs_in(self.probs_in, self.learn, self.activation, raw)  # decided on the first batch
        probs, _ = activate(self.learn, raw, self.act, self.activation, probs_in=self.probs_in)
        if probs.ndim < 4:
            raise ValueError(f"The model's outputs have shape {tuple(probs.shape)}: one row per item, not per pixel. "
                             f"This is a classifier: use ClassificationInterpretation.from_learner(learn)")
        self.stats.update(probs, to_detach(self.learn.yb[0]) if self.labelled else None)

# --- the interpretation
class SegmentationInterpretation(fastai.interpret.SegmentationInterpretation):
    """Interpretation of a segmentation model from ONE pass: pixel confusion, IoU, per-image losses, calibration

    >>> interp = SegmentationInterpretation.from_learner(seg_learn, progress=False)
    >>> interp.confusion_matrix().shape, len(interp.iou()), interp.top_losses(2)[1].shape
    ((11, 11), 11, torch.Size([2]))
    """
    def __init__(self,
        learn, # Model used to create the interpretation
        dl, # `DataLoader` inference ran over
        res:dict, # `SegmentationStats.compute()` of the pass, per image in data set order
        vocab, # Class names
        act=None, # Activation given to `from_learner`, if any
        ignore_index:int|None=None, # Target value of the pixels left out
        n_bins:int=15, # Calibration bins
    ):
        self.learn, self.dl, self.res, self.vocab, self.act = learn, dl, res, list(vocab), act
        self.ignore_index, self.n_bins = ignore_index, n_bins
        self.losses = res['loss']  # per image: the mean NLL of its pixels' targets (fastai's interpretation attribute)
        self.labelled = res['loss'] is not None
        self.temperature = learner_temperature(learn)
        self.tta_report = None

    @classmethod
    def from_learner(cls,
        learn, # Model used to create the interpretation
        ds_idx:int=1, # Index of `learn.dls` when `dl` is None
        dl=None, # `DataLoader` to interpret; may be unlabelled (a `test_dl`)
        act=None, # Override the loss's activation
        streaming:bool=False, # Accepted for symmetry: the segmentation interpretation always counts, never keeps pixels
        ignore_index:int|None=None, # Target value of pixels to leave out; None: the loss's `ignore_index`, if any
        n_bins:int=15, # Calibration bins of the pixels' top-class confidence
        tta:bool|int=False, # Test-time augmentation (`Learner.tta`, each flip or rotation undone): passes, or True
        progress:bool=True, # Show fastai's progress bar
        **tta_kwargs # Passed to `Learner.tta` with `tta` (beta, mode, spatial)
    ):
        """Run inference once over `dl`, counting pixels per class and per image: memory independent of the images

        >>> interp = SegmentationInterpretation.from_learner(seg_learn, progress=False)
        >>> round(float(np.nanmean(interp.iou())), 6) == round(interp.mean_iou(), 6), interp.n
        (True, 40)
        """
        if tta_kwargs and not tta: raise ValueError(f"{', '.join(tta_kwargs)} are for tta=: give tta=True or a number")
        dl = every_item_dl(learn, ds_idx, dl)
        activation = None if act is not None else activation_for(learn.loss_func)
        if activation is not None and activation.kind != 'multiclass':
            raise ValueError(f"SegmentationInterpretation is for one class per pixel (a softmax loss), and "
                             f"{activation.loss} is {activation.kind}")
        ii = loss_ignore_index(learn.loss_func) if ignore_index is None else int(ignore_index)
        vocab = _mask_codes(dl) or _vocab(dl, None)
        if vocab is None: vocab = _vocab(dl, output_shape(learn, dl)[1])  # 0..C-1, C the model's output channels
        if tta: return cls._from_tta(learn, dl, vocab, ii, n_bins, 4 if tta is True else int(tta), progress,
                                     **tta_kwargs)
        dl, ordered = in_order(dl)
        order = None if ordered else dl.get_idxs()
        run = dl if ordered else dl.new(get_idxs=_ConstantFunc(order))
        stats = SegmentationStats(len(vocab), n_bins, ii)
        cb = _Count(stats, act, activation)
        with nullcontext() if progress else no_bar(learn):
            _frozen_get_preds(learn, dl=run, act=noop, cbs=[cb], with_preds=False, with_targs=False, reorder=False)
        res = stats.compute()
        if order is not None: res = _reorder(res, torch.as_tensor(list(order)).argsort())
        return cls(learn, dl, res, vocab, act, ii, n_bins)

    @classmethod
    def _from_tta(cls, learn, dl, vocab, ii, n_bins, n, progress, **kwargs):
        "Counts of TTA's per-pixel probabilities (each pass undone); they are held once, N x C x H x W, by TTA itself"
        if 'beta' in kwargs and kwargs['beta'] is None:
            raise ValueError("tta= needs one set of probabilities: beta=None is for Learner.tta")
        res = learn.tta(dl=dl, n=n, progress=progress, **kwargs)
        probs, targs = res
        stats = SegmentationStats(probs.shape[1], n_bins, ii)
        for s in range(0, len(probs), 64):
            stats.update(probs[s:s + 64], None if targs is None else targs[s:s + 64])
        interp = cls(learn, dl, stats.compute(), vocab, None, ii, n_bins)
        interp.tta_report = res.report
        return interp

    # --- what was counted
    @property
    def n(self)->int: return self.res['n']

    def _need_labels(self, what):
        if not self.labelled: raise ValueError(f"{what} needs targets: this DataLoader has none (a test_dl without "
                                               f"labels); only most_uncertain and the plots of predictions work")

    def confusion_matrix(self,
        normalize:str|None=None, # None (pixel counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    )->np.ndarray:
        """(C, C) pixels, target x predicted, equal to sklearn's on the flattened masks; `normalize` as sklearn's

        >>> interp = SegmentationInterpretation.from_learner(seg_learn, progress=False)
        >>> int(interp.confusion_matrix().sum()) == interp.n * 16 * 16
        True
        """
        self._need_labels('confusion_matrix')
        return normalize_confusion(self.res['confusion'], check_normalize(normalize))

    def iou(self)->np.ndarray:
        "(C,) IoU per class over every pixel, in vocab order; NaN for a class absent from targets and predictions"
        self._need_labels('iou')
        return iou_from_confusion(self.res['confusion'])

    def dice(self)->np.ndarray:
        "(C,) Dice per class over every pixel, in vocab order; NaN for a class absent from targets and predictions"
        self._need_labels('dice')
        return dice_from_confusion(self.res['confusion'])

    def mean_iou(self)->float:
        "Mean of the IoU over the classes present in the targets or the predictions"
        return float(np.nanmean(self.iou()))

    def pixel_accuracy(self)->float:
        "Share of the (not ignored) pixels predicted right"
        self._need_labels('pixel_accuracy')
        cm = self.res['confusion']
        return float(np.trace(cm) / max(cm.sum(), 1))

    def per_class(self)->pd.DataFrame:
        "Per class: target pixels, predicted pixels, right pixels, IoU and Dice"
        cm = self.confusion_matrix()
        return pd.DataFrame({'class': self.vocab, 'pixels': cm.sum(1), 'predicted': cm.sum(0),
                             'correct': np.diag(cm), 'iou': self.iou(), 'dice': self.dice()})

    def image_iou(self)->torch.Tensor:
        "(N,) each image's mean IoU over the classes in its target or its prediction"
        self._need_labels('image_iou')
        inter, pred, targ = (self.res[k].double() for k in ('inter', 'pred', 'targ'))
        union = pred + targ - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.nan)
        return iou.nanmean(1)

    def top_losses(self,
        k:int|None=None, # How many images, all if None
        largest:bool=True, # Largest losses first, or smallest
    ):
        "`(losses, idxs)`: images by mean pixel loss (NLL of the targets), ties to the lower index"
        self._need_labels('top_losses')
        s = self.res['loss']
        vals, idxs = topk(s if largest else -s, check_k(k))
        return (vals if largest else -vals), idxs

    def most_uncertain(self,
        k:int|None=None, # How many images, all if None
    ):
        "`(scores, idxs)`: images by mean pixel entropy (normalized by log C, in [0, 1]), most uncertain first"
        return topk(self.res['entropy'], check_k(k))

    def calibration(self,
        n_bins:int|None=None, # Must be the number counted (None: it)
    )->dict:
        "ECE, MCE, Brier, NLL and accuracy over every pixel, from the counted bins and sums"
        self._need_labels('calibration')
        if n_bins is not None and n_bins != self.n_bins:
            raise ValueError(f"The pixels were counted in {self.n_bins} bins: build with n_bins={n_bins} for others")
        return metrics_from_sums(self.res['bins'], self.res['brier_sum'], self.res['nll_sum'])

    def items(self, idxs):
        "The images at `idxs`: their files where the DataLoader has them, else their positions"
        items = getattr(self.dl, 'items', None)
        ok = items is not None and len(items) == self.n
        name = lambda o: str(o[0] if isinstance(o, (tuple, list)) else o)  # (image, mask) pairs: the image
        return [name(items[i]) if ok else int(i) for i in show.idx_list(idxs)]

    # --- plots
    def _predict(self, idxs):
        "Inputs, targets, probabilities of the images at `idxs`: the model run again on them alone (nothing was kept)"
        dl = self.dl
        b = dl.after_batch(to_device(dl.create_batch(dl.before_batch([dl.do_item(i) for i in idxs])),
                                     getattr(dl, 'device', None)))
        n_inp = getattr(self.dl, 'n_inp', 1)
        xb, yb = b[:n_inp], b[n_inp:]
        model = self.learn.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad(): out = model(*[x.to(next(model.parameters()).device) for x in xb])
        finally: model.train(was)
        probs, _ = activate(self.learn, to_detach(out), self.act, None if self.act is not None else
                            activation_for(self.learn.loss_func))
        return b, (torch.as_tensor(yb[0].cpu()).as_subclass(torch.Tensor) if yb else None), \
            probs.float().cpu().as_subclass(torch.Tensor)

    def _plot(self, idxs, title, scores):
        idxs = show.idx_list(idxs)
        b, targs, probs = self._predict(idxs)
        imgs = self.dl.decode_batch(b, max_n=len(idxs))
        ent = _nats(probs) / math.log(probs.shape[1])
        cols = ['image', 'target', 'predicted', 'uncertainty (entropy)'] if targs is not None else \
               ['image', 'predicted', 'uncertainty (entropy)']
        fig, axs = plt.subplots(len(idxs), len(cols), figsize=(2.7 * len(cols) + 1, 2.9 * len(idxs) + 0.8),
                                squeeze=False, layout='constrained')
        C = probs.shape[1]
        cmap = _class_colours(C)
        iou = self.image_iou()[idxs] if self.labelled else None
        names = self.items(idxs)
        for r, i in enumerate(idxs):
            x = imgs[r][0]
            panels = [('image', x)] + ([('target', targs[r])] if targs is not None else []) + \
                     [('predicted', probs[r].argmax(0)), ('uncertainty (entropy)', ent[r])]
            for c, (name, v) in enumerate(panels):
                ax = axs[r, c]
                if name == 'image': x.show(ctx=ax)
                elif name.startswith('uncertainty'):
                    im = ax.imshow(v.numpy(), cmap='magma', vmin=0, vmax=1)
                    if r == 0: fig.colorbar(im, ax=axs[:, c].tolist(), fraction=0.05, pad=0.02,
                                            label='entropy / log C: 0 sure, 1 uniform')
                else: ax.imshow(_shown(v, self.ignore_index).numpy(), cmap=cmap, vmin=-0.5, vmax=C - 0.5,
                                interpolation='nearest')
                ax.set_axis_off()
                if r == 0: ax.set_title(name, fontsize=10)
            name = names[r] if isinstance(names[r], int) else Path(names[r]).name  # its file, where there is one
            line = (f"image {name} · {scores[0]} {scores[1][r]}" + (f" · IoU {iou[r]:.3f}" if iou is not None else ''))
            axs[r, 0].text(0, -0.08, line, transform=axs[r, 0].transAxes, fontsize=9, va='top')
        present = sorted(set(torch.cat([probs.argmax(1).flatten()] + ([targs.flatten()] if targs is not None
                                                                       else [])).tolist()) & set(range(C)))
        handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(c)) for c in present]
        fig.legend(handles, [str(self.vocab[c]) for c in present], loc='lower center', ncol=min(len(present), 11),
                   fontsize=8, frameon=False)
        fig.suptitle(title, fontsize=12)

    def plot_top_losses(self,
        k:int=4, # Number of images
        largest:bool=True, # Largest losses first
    ):
        "Image, target, predicted mask and per-pixel entropy of the `k` images of largest mean pixel loss"
        vals, idxs = self.top_losses(k, largest)
        self._plot(idxs, 'Top losses: mean pixel loss, largest first' if largest else 'Smallest losses',
                   ('loss', [show.format_loss(float(v)) for v in vals]))

    def plot_most_uncertain(self,
        k:int=4, # Number of images
    ):
        "Image, (target,) predicted mask and per-pixel entropy of the `k` images of highest mean entropy"
        vals, idxs = self.most_uncertain(k)
        self._plot(idxs, 'Most uncertain: mean pixel entropy, highest first',
                   ('entropy', [f'{float(v):.3f}' for v in vals]))

    def plot_confusion_matrix(self,
        normalize:bool|str|None='true', # As `confusion_matrix` (True: 'true'); rows by default: pixel counts span
                                        # orders of magnitude, the background's above all
        title:str='Pixel confusion matrix', # Title of the plot
        cmap:str='Blues', # Colormap from matplotlib
        norm_dec:int=2, # Decimals of a normalized cell
        plot_txt:bool=True, # Write each cell's value in it (up to `max_text` classes)
        max_text:int=20, # Above this many classes, no cell text
        **kwargs # Passed to `plt.figure` (figsize, dpi, ...)
    ):
        "Plot the pixel confusion matrix, target rows x predicted columns"
        if isinstance(normalize, bool): normalize = 'true' if normalize else None
        show.plot_confusion(self.confusion_matrix(normalize), [str(v) for v in self.vocab], normalize, title, cmap,
                            norm_dec, plot_txt, max_text, unit='pixels', **kwargs)

    def plot_reliability(self, **kwargs):
        "Reliability diagram of the pixels' top-class confidence, from the counted bins"
        self._need_labels('plot_reliability')
        show.reliability_diagram_from_bins(self.res['bins'], title='Reliability diagram (pixels)', unit='pixels',
                                           **kwargs)

    def __repr__(self):
        head = f"SegmentationInterpretation: {self.n:,} images, {len(self.vocab)} classes"
        if not self.labelled: return head + ", no targets"
        return (f"{head}\n  mean IoU {self.mean_iou():.4f} · pixel accuracy {self.pixel_accuracy():.4f}"
                + (f" · {self.res['ignored']:,} pixels of ignore_index {self.ignore_index} left out"
                   if self.res['ignored'] else ''))

def _class_colours(C):
    "C colours that differ at a glance: tab10, then Dark2 and Set1 (tab20 pairs a dark and a light of one hue)"
    from matplotlib.colors import ListedColormap
    cols = [*plt.get_cmap('tab10').colors, *plt.get_cmap('Dark2').colors, *plt.get_cmap('Set1').colors]
    return ListedColormap(cols[:C]) if C <= len(cols) else plt.get_cmap('nipy_spectral', C)

def _shown(mask, ignore_index):
    "A mask to draw: ignored pixels as NaN (blank)"
    m = mask.double()
    return torch.where(mask == ignore_index, torch.nan, m) if ignore_index is not None else m

def _reorder(res, back):
    "Per-image entries of `res` put back in data set order"
    return {k: v[back] if isinstance(v, torch.Tensor) and k not in ('confusion',) and len(v) == len(back) else v
            for k, v in res.items()}

def _mask_codes(dl):
    "The codes of the masks: fastai's MaskBlock keeps them in its `AddMaskCodes` item transform; None without one"
    for f in getattr(getattr(dl, 'after_item', None), 'fs', []):
        if getattr(f, 'codes', None) is not None: return [str(c) for c in f.codes]
    return None

hand_out(fastai.interpret.SegmentationInterpretation, SegmentationInterpretation)
