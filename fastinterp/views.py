"Every view of a classifier's interpretation, written once over how an interpretation gets its numbers"

__all__ = ['Views', 'Rows']

from collections.abc import MutableSequence
from typing import NamedTuple

import numpy as np, pandas as pd, torch
import sklearn.metrics as skm
from fastai.torch_core import to_device

from .activations import ACTIVATIONS, _activation_for
from .core import as_probs, check_k, normalize_confusion, report_from_confusion, topk
from .intervals import Estimate, check_ci, wilson_interval
from .labels import estimate_label_errors, find_label_issues, label_scores, suggested_labels
from .selective import (aurc, aurc_from_bins, coverage_at, coverage_at_from_bins, risk_coverage,
                        risk_coverage_from_bins)
from .uncertainty import MEASURES, multilabel_uncertainty, scores, uncertainty
from . import show

class Rows(NamedTuple):
    """Cached predictions of some items, in the order asked for: what their titles and colours are made of

    >>> Rows._fields
    ('probs', 'targs', 'decoded', 'losses')
    """
    probs: torch.Tensor         # (n, C) class probabilities, or (n, L) per label
    targs: torch.Tensor|None    # (n,) classes or (n, L) labels; None when unlabelled
    decoded: torch.Tensor       # (n,) predicted classes or (n, L) predicted labels
    losses: torch.Tensor|None   # (n,) per-item losses; None without them

class Views:
    """The views of an interpretation; a subclass says how it gets its numbers, by the methods under 'supplied'

    >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
    >>> scores, idxs = interp.most_uncertain(3, 'margin')
    >>> bool((scores[:-1] >= scores[1:]).all()), interp.per_class().columns.tolist()
    (True, ['class', 'support', 'predicted', 'correct', 'recall', 'precision'])
    """
    multilabel = False

    # --- supplied by each interpretation
    def _n(self)->int: raise NotImplementedError  # number of items
    def _has_losses(self)->bool: raise NotImplementedError
    def _ranking(self, name, k, largest): raise NotImplementedError  # 'loss' or a measure -> (scores, idxs)
    def _rows(self, idxs)->Rows: raise NotImplementedError  # the cached predictions of the items at `idxs`
    def _every(self, view, why)->Rows: raise NotImplementedError  # every item's, or why `view` cannot have them
    def _confusion(self)->np.ndarray: raise NotImplementedError  # counts, (C, C) actual x predicted or (L, 2, 2)
    def _pred_counts(self)->np.ndarray: raise NotImplementedError  # (C,) items predicted as each class
    def _bins(self, view, n_bins): raise NotImplementedError  # `CalibrationBins` of the top-label confidence
    def _calibration(self, n_bins)->dict: raise NotImplementedError  # ECE, MCE, Brier, NLL
    def _provenance(self)->list: raise NotImplementedError  # the repr's lines on where the numbers come from
    def _calibration_ci(self, n_bins, ci, n_resamples, seed)->dict: raise NotImplementedError  # name -> (lo, hi)

    # --- what every view checks
    def _need_labels(self, what):
        if not self.labelled:
            raise ValueError(f"{what} needs targets, and this DataLoader is unlabelled: "
                             f"use the uncertainty views (most_uncertain, to_df) instead")

    def _single_label(self, what):
        if self.multilabel:
            raise ValueError(f"{what} is for single-label classifiers: see confusion_matrix() per label")

    def _cls(self, cls):
        "Index of class label `cls` in the vocab"
        for match in (lambda v: v == cls, lambda v: str(v) == str(cls)):  # 3 finds the folder label '3'
            for i, v in enumerate(self.vocab):
                if match(v): return i
        raise ValueError(f"Class {cls!r} is not in the vocab: {list(self.vocab)}")

    def _right_count(self)->tuple:
        "(items predicted right, items): multilabel, every label right"
        if self.multilabel:
            right = self.correct()
            return int(right.sum()), len(right)
        cm = self._confusion()
        return int(np.trace(cm)), int(cm.sum())

    def _accuracy(self)->float:
        "Share of items predicted right (multilabel: every label right)"
        k, n = self._right_count()
        return k / n

    def accuracy(self,
        ci:float|None=None, # Confidence level of a Wilson interval, e.g. 0.95; None: the share alone
    )->float:
        """Share of items predicted right (multilabel: every label right); with `ci`, an `Estimate` with its interval

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> a = interp.accuracy(ci=0.95)  # a float, with .lo and .hi: a Wilson interval of the right answers
        >>> a.lo <= a <= a.hi, a == interp.accuracy()
        (True, True)
        """
        self._need_labels('accuracy')
        k, n = self._right_count()
        if ci is None: return k / n
        return Estimate(k / n, *wilson_interval(k, n, check_ci(ci)), ci)

    # --- per item
    def uncertainty(self, measure='entropy'):
        "Per-item uncertainty (higher = more uncertain) by `measure`; multilabel: closeness to the threshold"
        extra = getattr(self, 'extra_measures', {})
        if isinstance(measure, str) and measure in extra: return extra[measure]
        if measure in ('mutual_info', 'variance'):
            raise ValueError(f"{measure!r} measures disagreement between dropout passes: build the interpretation "
                             f"with ClassificationInterpretation.from_learner(learn, mc_dropout=20)")
        probs = self._every('uncertainty', 'returns the score of every item').probs
        if self.multilabel: return multilabel_uncertainty(probs, self.thresh)
        return uncertainty(probs, measure)

    def correct(self):
        "Per item: whether the prediction is right (multilabel: every label right)"
        self._need_labels('correct')
        return _right(self._every('correct', 'returns a flag for every item'), self.multilabel)

    def __getitem__(self, idxs):
        "Inputs, probabilities, targets, decoded classes and losses at `idxs` (int, slice, list, tensor, array), cached"
        r = self._every('__getitem__', 'reads the cached prediction of any item')
        idxs = show.idx_list(idxs, len(r.probs))
        b = self.batch(idxs)
        n_inp = getattr(self.dl, 'n_inp', 1)
        pick = lambda t: None if t is None else t[idxs]
        return (b[:n_inp] if n_inp > 1 else b[0]), *(pick(t) for t in r)

    def to_df(self):
        "One row per item: item, target, prediction, p(pred), p(target), loss, every measure; a row's or text's values"
        r = self._every('to_df', 'holds one row per item')
        df = pd.DataFrame({'item': self._item_names()})
        names = np.array([str(v) for v in self.vocab], dtype=object)
        extra = getattr(self, 'extra_measures', {})
        if self.multilabel:
            join = lambda m: [';'.join(names[row.astype(bool)]) for row in m.numpy()]
            if self.labelled: df['target'] = join(r.targs)
            df['prediction'] = join(r.decoded)
            for j, name in enumerate(names): df[f'p({name})'] = r.probs[:, j].numpy()
            if r.losses is not None: df['loss'] = r.losses.numpy()
            df['uncertainty'] = self.uncertainty().numpy()
        else:
            at = torch.arange(len(r.probs))
            if self.labelled: df['target'] = names[r.targs.numpy()]
            df['prediction'] = names[r.decoded.numpy()]
            df['p_pred'] = r.probs[at, r.decoded].numpy()
            if self.labelled:
                df['p_target'] = r.probs[at, r.targs].numpy()
                if r.losses is not None: df['loss'] = r.losses.numpy()
            checked = as_probs(r.probs)  # checked once for every measure
            for m in MEASURES: df[m] = scores(checked, m).numpy()
        for m, s in extra.items(): df[m] = s.numpy()
        rows = show.item_rows(self.dl, range(len(df)))
        if rows is not None:  # a table's features decoded, or the text: the item as the user's data had it
            rows = rows.reset_index(drop=True)
            df = pd.concat([df, rows.rename(columns=lambda c: f'{c} (input)' if c in df.columns else c)], axis=1)
        return df

    # --- rankings: each returns (scores, idxs)
    def top_losses(self,
        k:int|None=None, # How many, all if None
        largest:bool=True, # Largest losses first, or smallest
        items:bool=False, # Also return the items
    ):
        "`k` largest (or smallest) losses and their indices"
        self._need_labels('top_losses')
        if not self._has_losses(): raise ValueError("No per-item losses: the loss takes no `reduction` argument")
        res = self._ranking('loss', k, largest)
        return (*res, self.items(res[1])) if items else res

    def most_uncertain(self,
        k:int|None=None, # How many, all if None
        measure='entropy', # A name in `MEASURES` or a callable probs -> score
        cls=None, # Restrict to items predicted as (by='pred') or labelled as (by='target') this class
        by:str='pred', # 'pred' or 'target'
    ):
        "`k` most uncertain items and their scores, optionally for one class"
        if cls is None: return self._ranking(measure, k, True)
        if by not in ('pred', 'target'): raise ValueError(f"by must be 'pred' or 'target', got {by!r}")
        r = self._every(f'most_uncertain(cls={cls!r})', 'ranks the items of one class')
        c = self._cls(cls)
        if by == 'target': self._need_labels("most_uncertain(by='target')")
        src = r.decoded if by == 'pred' else r.targs
        sel = torch.nonzero(src[:, c] == 1 if self.multilabel else src == c).view(-1)
        s, i = topk(self.uncertainty(measure)[sel], k)
        return s, sel[i]

    def _by_class(self, cls, k, right, view):
        "Items labelled `cls` predicted right (by p(cls) descending) or wrong (ascending)"
        self._need_labels(view)
        r = self._every(view, 'ranks every item of a class by p(class)')
        c = self._cls(cls)
        has, ok = (r.targs[:, c] == 1, r.decoded[:, c] == 1) if self.multilabel else (r.targs == c, r.decoded == c)
        sel = torch.nonzero(has & (ok if right else ~ok)).view(-1)
        s, i = topk(r.probs[sel, c], k, largest=right)
        return s, sel[i]

    def most_correct(self, cls, k:int|None=None):
        "Items labelled `cls` and predicted right, by p(cls) descending: the model's surest right answers"
        return self._by_class(cls, k, True, 'most_correct')

    def most_incorrect(self, cls, k:int|None=None):
        "Items labelled `cls` and predicted wrong, by p(cls) ascending: the model's worst misses of that class"
        return self._by_class(cls, k, False, 'most_incorrect')

    # --- counts
    def confusion_matrix(self,
        normalize:str|None=None, # None (counts), 'true' (rows), 'pred' (columns) or 'all', as in sklearn
    ):
        "Confusion matrix (actual x predicted) by counting, O(N + C^2) memory; multilabel: (L, 2, 2) per label"
        self._need_labels('confusion_matrix')
        return normalize_confusion(self._confusion(), normalize)

    def most_confused(self, min_val:int=1):
        "(actual, predicted, count) of the off-diagonal cells with at least `min_val` items, most first"
        cm = self.confusion_matrix()
        self._single_label('most_confused')
        np.fill_diagonal(cm, 0)
        i, j = np.nonzero(cm >= min_val)
        order = np.lexsort((j, i, -cm[i, j]))
        return [(self.vocab[i[o]], self.vocab[j[o]], int(cm[i[o], j[o]])) for o in order]

    def per_class(self,
        ci:float|None=None, # Confidence level of Wilson intervals of recall and precision, e.g. 0.95
    ):
        "Per class: items labelled (support) and predicted, right answers, recall (the class's accuracy) and precision"
        self._single_label('per_class')
        df = pd.DataFrame({'class': self.vocab, 'predicted': self._pred_counts()})
        if not self.labelled: return df
        cm = self._confusion()
        df.insert(1, 'support', cm.sum(1))
        df['correct'] = np.diag(cm)
        with np.errstate(all='ignore'):
            df['recall'] = np.nan_to_num(df['correct'] / df['support'])
            df['precision'] = np.nan_to_num(df['correct'] / df['predicted'])
        if ci is not None:  # an interval for each share: of a class of 36 items, recall is known to about 10 points
            ci = check_ci(ci)
            df['recall_lo'], df['recall_hi'] = wilson_interval(df['correct'].to_numpy(), df['support'].to_numpy(), ci)
            df['precision_lo'], df['precision_hi'] = wilson_interval(df['correct'].to_numpy(),
                                                                     df['predicted'].to_numpy(), ci)
        return df

    def _counts_per_class(self):
        "(names, right, predicted, support) per class, or per label of a multi-label model"
        cm = self._confusion()
        if self.multilabel: return [str(v) for v in self.vocab], cm[:, 1, 1], cm[:, :, 1].sum(1), cm[:, 1].sum(1)
        return [str(v) for v in self.vocab], np.diag(cm), cm.sum(0), cm.sum(1)

    def classification_report(self,
        ci:float|None=None, # Confidence level of Wilson intervals of precision and recall, e.g. 0.95
        **kwargs # Passed to scikit-learn's `classification_report` (digits, ...) when `ci` is None
    ):
        "scikit-learn's classification report (precision, recall, f1 per class or label), a string; `ci`: intervals"
        self._need_labels('classification_report')
        if ci is not None:
            if kwargs: raise ValueError(f"{', '.join(kwargs)} are for scikit-learn's report, which has no intervals")
            return _report_with_intervals(*self._counts_per_class(), self._right_count(), check_ci(ci),
                                          self.multilabel)
        if not self.multilabel: return report_from_confusion(self._confusion(), self.vocab, **kwargs)
        r = self._every('classification_report', 'of a multi-label model reads every label of every item')
        return skm.classification_report(r.targs.numpy(), r.decoded.numpy(), target_names=[str(v) for v in self.vocab],
                                         zero_division=0, **kwargs)

    def print_classification_report(self,
        ci:float|None=None, # Confidence level of intervals of precision and recall, e.g. 0.95
    ):
        "Print scikit-learn's classification report (with `ci`: precision and recall with their intervals)"
        print(self.classification_report(ci))

    def best_thresholds(self):
        "Multilabel: per label, the threshold on p(label) maximizing F1 on this data, with that F1"
        self._need_labels('best_thresholds')
        r = self._every('best_thresholds', 'is for multi-label classifiers and sweeps every item')
        if not self.multilabel: raise ValueError("best_thresholds is for multi-label classifiers (sigmoid outputs)")
        rows = []
        for j, name in enumerate(self.vocab):
            prec, recall, th = skm.precision_recall_curve(r.targs[:, j].numpy(), r.probs[:, j].numpy())
            with np.errstate(all='ignore'): f1 = np.nan_to_num(2 * prec * recall / (prec + recall))[:-1]
            b = int(np.argmax(f1)) if len(f1) else None
            rows.append((name, float(th[b]) if b is not None else self.thresh, float(f1[b]) if b is not None else 0.))
        return pd.DataFrame(rows, columns=['label', 'threshold', 'f1'])

    # --- calibration
    def calibration(self,
        n_bins:int|None=None, # Equal-width bins of ECE and MCE (None: 15, or the number streamed)
        ci:float|None=None, # Confidence level of intervals, e.g. 0.95: a bootstrap over items, accuracy's Wilson's
        n_resamples:int=1000, # Bootstrap resamples, with `ci`
        seed:int=0, # Seed of the bootstrap, with `ci`
    )->dict:
        """ECE, MCE, Brier score, NLL and accuracy of the probabilities (multilabel: pooled over labels, and
        `label_ece`); with `ci`, each an `Estimate` (a float with its interval)

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> m = interp.calibration(ci=0.95, n_resamples=200)
        >>> m['ece'].lo <= m['ece'] <= m['ece'].hi, m['ece'] == interp.calibration()['ece']
        (True, True)
        """
        self._need_labels('calibration')
        res = self._calibration(n_bins)
        if ci is None: return res
        ci = check_ci(ci)
        lims = self._calibration_ci(n_bins, ci, n_resamples, seed)
        res = {k: Estimate(v, *lims[k], ci) if k in lims else v for k, v in res.items()}
        if 'accuracy' in res: res['accuracy'] = self.accuracy(ci)  # Wilson's, as accuracy(ci) has it
        return res

    def plot_reliability(self,
        n_bins:int|None=None, # Equal-width confidence bins (None: 15, or the number streamed)
        **kwargs # Passed to `show.reliability_diagram_from_bins` (title, figsize, min_count)
    ):
        "Reliability diagram: accuracy per confidence bin against the diagonal, gap shaded, histogram beneath"
        self._need_labels('plot_reliability')
        show.reliability_diagram_from_bins(self._bins('plot_reliability', n_bins), self.multilabel, **kwargs)

    # --- label issues: which given labels are likely wrong (confident learning, Northcutt et al. 2021)
    def _given(self, view):
        "Every item's probabilities and given labels, for the label-issue views"
        self._need_labels(view)
        self._single_label(view)
        r = self._every(view, 'scores every item against the per-class thresholds of all items')
        return r.probs, r.targs

    def label_issues(self,
        k:int|None=None, # How many, most likely first; None: as many as confident learning estimates are wrong
        method:str='self_confidence', # 'self_confidence', 'normalized_margin' or 'confidence_weighted_entropy'
    ):
        """(scores, idxs) of the items whose given label is most likely wrong, scores in [0, 1], highest first

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> scores, idxs = interp.label_issues()  # as many as estimate_label_errors() counts
        >>> len(idxs) == interp.estimate_label_errors().count, bool((scores[:-1] >= scores[1:]).all())
        (True, True)
        """
        p, t = self._given('label_issues')
        if k is None: return find_label_issues(p, t, method)
        return topk(label_scores(p, t, method), check_k(k))

    def estimate_label_errors(self):
        """Confident learning's estimate of the number of label errors: `count`, and `pairs` (given, suggested, count)

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> est = interp.estimate_label_errors()
        >>> est.pairs.columns.tolist(), est.count == round(est.pairs['count'].sum())
        (['given', 'suggested', 'count'], True)
        """
        p, t = self._given('estimate_label_errors')
        count, joint = estimate_label_errors(p, t)
        i, j = np.nonzero(joint.numpy() > 0)
        pairs = pd.DataFrame({'given': [self.vocab[a] for a in i], 'suggested': [self.vocab[b] for b in j],
                              'count': joint.numpy()[i, j].round().astype(np.int64)})
        pairs = pairs.sort_values('count', ascending=False, kind='stable').reset_index(drop=True)
        return LabelErrors(count, pairs)

    def label_issues_df(self,
        k:int|None=None, # How many, most likely first; None: the estimated number of label errors
        method:str='self_confidence', # How the items are scored, see `label_issues`
    ):
        """One row per likely label error, most likely first: item, given and suggested label, their probabilities

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> interp.label_issues_df(3).columns.tolist()
        ['idx', 'item', 'given', 'suggested', 'p_given', 'p_suggested', 'score']
        """
        s, idxs = self.label_issues(k, method)
        p, t = self._given('label_issues_df')
        sug = suggested_labels(p[idxs], t[idxs])
        names = self._item_names()
        at = torch.arange(len(idxs))
        return pd.DataFrame({'idx': idxs.numpy(), 'item': [names[i] for i in idxs.tolist()],
                             'given': [self.vocab[c] for c in t[idxs].tolist()],
                             'suggested': [self.vocab[c] for c in sug.tolist()],
                             'p_given': p[idxs][at, t[idxs]].numpy(), 'p_suggested': p[idxs][at, sug].numpy(),
                             'score': s.numpy()})

    def plot_label_issues(self,
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        method:str='self_confidence', # How the items are scored, see `label_issues`
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the items most likely mislabelled; title: the given label and the suggested one, with p, and the file"
        _, idxs = _ranked(lambda n: self.label_issues(n, method), k)
        p, t = self._given('plot_label_issues')
        sug = suggested_labels(p[idxs], t[idxs]).tolist()
        names, files = [str(v) for v in self.vocab], self._item_names()
        given = t[idxs].tolist()
        fps = show.format_prob_groups([[float(p[i, g]), float(p[i, c])] for i, g, c in zip(idxs.tolist(), given, sug)])
        titles = [f"given {names[g]}: {a} · suggested {names[c]}: {b}" + _file_line(files[i])
                  for i, g, c, (a, b) in zip(idxs.tolist(), given, sug, fps)]
        show.show_items(self, idxs, titles, None, suptitle=f'Likely label errors, by {method}', **kwargs)

    # --- selective prediction: predict where the measure is at most a threshold, abstain elsewhere
    def _abstain(self, measure, view):
        "(uncertainty, correct, None) per item, or per-bin (count, correct, edges) when streamed"
        self._need_labels(view)
        return self.uncertainty(measure), self.correct(), None

    def risk_coverage(self,
        measure='least_confidence', # Uncertainty measure to abstain by (a name in `MEASURES`; 1 - p(top) by default)
    ):
        """Per threshold: the share of items predicted (coverage) and their accuracy and risk, by coverage

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> rc = interp.risk_coverage()  # predict where 1 - p(top) <= threshold
        >>> rc.columns.tolist(), float(rc['coverage'].iloc[-1])
        (['threshold', 'n', 'coverage', 'accuracy', 'risk'], 1.0)
        """
        u, c, edges = self._abstain(measure, 'risk_coverage')
        return risk_coverage(u, c) if edges is None else risk_coverage_from_bins(u, c, edges)

    def aurc(self,
        measure='least_confidence', # Uncertainty measure to abstain by
    )->float:
        """Area under the risk-coverage curve (Geifman and El-Yaniv 2017): lower is better, 0 for a model never wrong

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> 0 <= interp.aurc() <= 1 - interp.accuracy()  # a ranking no better than chance gives the error rate
        True
        """
        u, c, edges = self._abstain(measure, 'aurc')
        return aurc(u, c) if edges is None else aurc_from_bins(u, c, edges)

    def coverage_at(self,
        accuracy:float=0.99, # Accuracy the predicted items must reach
        measure='least_confidence', # Uncertainty measure to abstain by
    ):
        """The `Selection` (threshold, coverage, accuracy, n) of the most items predicted at `accuracy` or better

        >>> interp = fastinterp.ClassificationInterpretation.from_learner(learn, progress=False)
        >>> sel = interp.coverage_at(0.9)  # predict where 1 - p(top) <= sel.threshold
        >>> sel.accuracy >= 0.9 if sel.threshold is not None else sel.coverage == 0
        True
        """
        u, c, edges = self._abstain(measure, 'coverage_at')
        return coverage_at(u, c, accuracy) if edges is None else coverage_at_from_bins(u, c, edges, accuracy)

    def plot_risk_coverage(self,
        measure='least_confidence', # Uncertainty measure to abstain by
        accuracy=(0.99, 0.95), # Target accuracies whose threshold and coverage are marked
        **kwargs # Passed to `show.plot_risk_coverage` (title, figsize)
    ):
        "Accuracy of the items predicted against the share predicted, as the threshold on `measure` rises"
        u, c, edges = self._abstain(measure, 'plot_risk_coverage')  # every item scored once for the curve and marks
        targets = [float(a) for a in np.atleast_1d(accuracy)]
        if edges is None: rc, area, marks = risk_coverage(u, c), aurc(u, c), [coverage_at(u, c, a) for a in targets]
        else: rc, area, marks = (risk_coverage_from_bins(u, c, edges), aurc_from_bins(u, c, edges),
                                 [coverage_at_from_bins(u, c, edges, a) for a in targets])
        name = measure if isinstance(measure, str) else getattr(measure, '__name__', 'uncertainty')
        show.plot_risk_coverage(rc, marks, targets, name, area, **kwargs)

    # --- plots: each draws one figure and returns None, as fastai's do (a returned Figure shows twice in Jupyter)
    def _show(self, idxs, titles, **kwargs):
        show.show_items(self, idxs, titles, _right(self._rows(idxs), self.multilabel) if self.labelled else None,
                        **kwargs)

    def plot_top_losses(self,
        k:int|MutableSequence=9, # Number of items, or ranks in the loss ranking (a list), as fastai takes it
        largest:bool=True, # Largest losses first, or smallest
        **kwargs # nrows, ncols, figsize of the grid, as fastai's; the rest to each image's `show` (cmap, ...)
    ):
        "Show the `k` items with the largest losses; title: predicted class and p, given label and p, loss"
        _, idxs = _ranked(lambda n: self.top_losses(n, largest), k)
        self._show(idxs, self._titles(idxs, loss=True), suptitle='Top losses', **kwargs)

    def plot_most_uncertain(self,
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        measure='entropy', # A name in `MEASURES` or a callable probs -> score
        cls=None, # Restrict to items predicted as (by='pred') or labelled as (by='target') this class
        by:str='pred', # 'pred' or 'target'
        n_classes:int=3, # Classes in each title, most probable first
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the `k` most uncertain items; title: the top classes and their probabilities"
        vals, idxs = _ranked(lambda n: self.most_uncertain(n, measure, cls, by), k)
        name = ('closeness to threshold' if self.multilabel else measure if isinstance(measure, str)
                else getattr(measure, '__name__', 'uncertainty'))
        sub = '' if cls is None else f" ({'predicted' if by == 'pred' else 'labelled'} {cls})"
        self._show(idxs, self._titles(idxs, top=n_classes, score=(name, vals.tolist())),
                   suptitle=f'Most uncertain by {name}{sub}', **kwargs)

    def plot_most_correct(self,
        cls, # Class whose items to show
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the items labelled `cls` the model got right most confidently"
        _, idxs = _ranked(lambda n: self._by_class(cls, n, True, 'plot_most_correct'), k)
        # every one is right: the colours need no legend
        self._show(idxs, self._titles(idxs), suptitle=f'Most confidently right: labelled {cls}', legend=False, **kwargs)

    def plot_most_incorrect(self,
        cls, # Class whose items to show
        k:int|MutableSequence=9, # Number of items, or ranks in the ranking (a list)
        **kwargs # nrows, ncols, figsize of the grid; the rest to each image's `show`
    ):
        "Show the items labelled `cls` the model got wrong, lowest p(cls) first"
        _, idxs = _ranked(lambda n: self._by_class(cls, n, False, 'plot_most_incorrect'), k)
        self._show(idxs, self._titles(idxs, loss=True), legend=False,
                   suptitle=f'Worst misses: labelled {cls}, lowest p({cls}) first', **kwargs)

    def plot_confusion_matrix(self,
        normalize:bool|str|None=False, # fastai's True (rows: 'true'), or None/False (counts), 'true', 'pred', 'all'
        title:str='Confusion matrix', # Title of the plot
        cmap:str='Blues', # Colormap from matplotlib
        norm_dec:int=2, # Decimals of a normalized cell (more where they would print it as 0 or 1)
        plot_txt:bool=True, # Write each cell's value in it (up to `max_text` classes)
        max_text:int=20, # Above this many classes, no cell text: it would not be readable
        **kwargs # Passed to `plt.figure` (figsize, dpi, ...), as fastai's
    ):
        "Plot the confusion matrix, readable from 2 to hundreds of classes"
        if self.multilabel:
            raise ValueError("plot_confusion_matrix is for single-label classifiers; see confusion_matrix()")
        if isinstance(normalize, bool): normalize = 'true' if normalize else None  # fastai's bool normalizes the rows
        show.plot_confusion(self.confusion_matrix(normalize), [str(v) for v in self.vocab], normalize, title, cmap,
                            norm_dec, plot_txt, max_text, **kwargs)

    def show_results(self,
        idxs, # Indices of the items: int, slice, list, tensor or array
        **kwargs # Passed to the DataLoader's `show_results`: nrows, ncols, figsize, ...
    ):
        "Show the items at `idxs` with their targets and cached predictions, as fastai shows results: no inference"
        idxs = show.idx_list(idxs, self._n())
        if not idxs: raise ValueError("No items selected: show_results needs one or more")
        b, n_inp = self.batch(idxs), getattr(self.dl, 'n_inp', 1)
        if not hasattr(self.dl, 'show_results') or not self.labelled or len(b) <= n_inp:
            # a plain DataLoader, or no targets to show beside the predictions: the items titled with them
            self._show(idxs, self._titles(idxs), suptitle='Results', **kwargs)
            return
        dec = self._rows(idxs).decoded.to(b[n_inp].device)
        if not self.multilabel and b[n_inp].ndim == 2: dec = dec[:, None]  # a tabular target is (N, 1)
        self.dl.show_results(b, type(b[n_inp])(dec.to(b[n_inp].dtype)), max_n=len(idxs), **kwargs)

    # --- titles
    def _title_parts(self, r, j, top=None):
        "Lines of the title of row `j` of `r`: strings, and the probabilities to print in them as floats"
        p, names = r.probs[j], [str(v) for v in self.vocab]
        if self.multilabel:  # every label predicted or true, with its probability
            on = torch.nonzero(r.decoded[j] + (r.targs[j] if self.labelled else 0)).view(-1).tolist()
            pred = _join([[f'{names[c]}: ', float(p[c])] for c in on if r.decoded[j, c]], ', ')
            lines = [['pred ', *(pred or ['none'])]]
            if self.labelled: lines.append(['given ' + (', '.join(names[c] for c in on if r.targs[j, c]) or 'none')])
        elif top:
            ps, cs = p.topk(min(top, len(p)))
            lines = [_join([[f'{names[c]}: ', v] for c, v in zip(cs.tolist(), ps.tolist())], '  ')]
            if self.labelled: lines.append([f"given {names[r.targs[j]]}"])
        else:
            d = int(r.decoded[j])
            lines = [[f"pred {names[d]}: ", float(p[d])]]
            if self.labelled:
                t = int(r.targs[j])
                lines[0] += [f" · given {names[t]}: ", float(p[t])]
        return lines

    def _titles(self, idxs, loss=False, top=None, score=None):
        "Titles of the items at `idxs`, every probability of the gallery formatted together: one number of decimals"
        idxs = show.idx_list(idxs)
        r = self._rows(idxs)
        parts = [self._title_parts(r, j, top) for j in range(len(idxs))]
        # a title never prints two different probabilities alike, and the gallery keeps one number of decimals
        fps = show.format_prob_groups([[s for line in ls for s in line if isinstance(s, float)] for ls in parts])
        # a score (entropy, margin) formatted over the gallery: different scores read differently
        fs = show.format_probs(score[1]) if score is not None else None
        res = []
        for j, ls in enumerate(parts):
            fp = iter(fps[j])
            lines = [''.join(next(fp) if isinstance(s, float) else s for s in line) for line in ls]
            if loss and r.losses is not None: lines.append(f"loss {show.format_loss(float(r.losses[j]))}")
            if fs is not None:  # on the second line: beside three classes it would overflow the image's width
                s = f"{score[0]} {fs[j]}"
                if len(lines) > 1: lines[-1] += f" · {s}"
                else: lines.append(s)
            res.append('\n'.join(lines))
        return res

    def _title(self, i, loss=False, top=None, score=None):
        "Title of item `i` alone: `score` is (name, value)"
        return self._titles([i], loss, top, None if score is None else (score[0], [score[1]]))[0]

    # --- the items themselves, fetched only for those shown
    def _item_names(self):
        "Per item: its file, its label in the DataFrame (table rows, texts), else its position"
        items = getattr(self.dl, 'items', None)
        n = self._n()
        if items is None or len(items) != n: return list(range(n))
        if isinstance(items, pd.DataFrame): return items.index.tolist()
        return [str(o) for o in items]

    def items(self, idxs):
        "The items at `idxs` (int, slice, list, tensor, array or mask), as the DataLoader holds them (paths, rows)"
        items = getattr(self.dl, 'items', None)
        if items is None: return show.idx_list(idxs, _n_items(self.dl))
        idxs = show.idx_list(idxs, len(items))
        return items.iloc[idxs] if hasattr(items, 'iloc') else [items[i] for i in idxs]

    def batch(self, idxs):
        "A batch of the inputs and targets at `idxs`, as the model saw them: data loading only, no inference"
        idxs = show.idx_list(idxs, _n_items(self.dl))
        if not idxs: raise ValueError("No items selected: a batch needs one or more")
        dl = self.dl
        b = dl.create_batch(dl.before_batch([dl.do_item(i) for i in idxs]))  # before_batch pads text
        return dl.after_batch(to_device(b, getattr(dl, 'device', None)))

    def __repr__(self):
        "What this interpretation is of: items, classes, kind, activation, accuracy, where its numbers come from"
        head = (f"{type(self).__name__}: {self._n():,} items, {len(self.vocab)} "
                f"{'labels' if self.multilabel else 'classes'} ({_some(self.vocab)})")
        kind = [f"{'multi-label' if self.multilabel else 'single-label'}, {_activation(self)}"]
        if self.multilabel: kind.append(f"threshold {_thresh(self.thresh)}")
        if not self.labelled: kind.append('unlabelled')
        else: kind.append(f"{'every label right' if self.multilabel else 'accuracy'} "
                          f"{show.format_pct(self._accuracy())}")
        return '\n'.join([head, '  ' + ' · '.join(kind), *('  ' + line for line in self._provenance())])

    def _temperature_note(self):
        "The temperature the probabilities were made at, if any, for the repr"
        T = getattr(self, 'temperature', None)
        return [] if T is None or getattr(self, 'act', None) is not None else [f"temperature {_thresh(T)}"]

class LabelErrors(NamedTuple):
    """Confident learning's estimate of the label errors: how many, and between which labels

    >>> LabelErrors(3, pd.DataFrame({'given': ['4', '1'], 'suggested': ['7', '2'], 'count': [2, 1]}))
    LabelErrors(count=3, pairs: 4 -> 7: 2, 1 -> 2: 1)
    """
    count: int              # estimated number of items whose given label is wrong
    pairs: pd.DataFrame     # given, suggested, count (the estimate, in whole items): most first

    def __repr__(self):
        "The count and the first pairs on one line: a DataFrame inside a tuple prints as a block of columns"
        shown = [f"{r.given} -> {r.suggested}: {r.count}" for r in self.pairs.head(5).itertuples()]
        more = f", … {len(self.pairs) - 5} more pairs" if len(self.pairs) > 5 else ''
        return f"LabelErrors(count={self.count}, pairs: {', '.join(shown) or 'none'}{more})"

# --- helpers of the views
def _file_line(name):
    "The item's file name on a title line of its own, shortened: a path names a flipped image's folder too"
    s = str(name)
    if '/' not in s and '\\' not in s: return ''
    parts = s.replace('\\', '/').split('/')
    short = '/'.join(parts[-2:])
    return '\n' + (short if len(short) <= 28 else '…' + short[-27:])

def _report_with_intervals(names, right, predicted, support, total, ci, multilabel):
    "Precision and recall per class with Wilson intervals, and accuracy, as a table in a string"
    pct = f"{100 * ci:g}%"
    plo, phi = wilson_interval(right, predicted, ci)
    rlo, rhi = wilson_interval(right, support, ci)
    with np.errstate(all='ignore'): prec, rec = right / predicted, right / support
    fmt = lambda v, lo, hi: 'n/a (none)' if not np.isfinite(v) else f"{v:.3f} ({lo:.3f} to {hi:.3f})"
    rows = [(n, fmt(*a), fmt(*b), f"{int(s):,}") for n, a, b, s in
            zip(names, zip(prec, plo, phi), zip(rec, rlo, rhi), support)]
    k, n = total
    lo, hi = wilson_interval(k, n, ci)
    rows.append(('every label right' if multilabel else 'accuracy', '', fmt(k / n, lo, hi), f"{n:,}"))
    df = pd.DataFrame(rows, columns=['', f'precision ({pct} CI)', f'recall ({pct} CI)', 'support'])
    return df.to_string(index=False, justify='left') + f"\n(Wilson score intervals at {pct}; 'n/a': no item)"

def _right(r, multilabel):
    "Per row of `r`: whether its prediction is right (multilabel: every label right)"
    return (r.decoded == r.targs).all(1) if multilabel else r.decoded == r.targs

def _n_items(dl):
    "How many items `dl` can load by index (None when it cannot tell)"
    try: return len(dl.dataset)
    except (AttributeError, TypeError): return None

def _ranked(view, k):
    "The (scores, idxs) of a ranking `view(k)`: its first `k`, or the ranks listed in `k`, as fastai's plot_top_losses"
    if isinstance(k, (slice, MutableSequence, tuple, range, np.ndarray, torch.Tensor)):
        vals, idxs = view(None)
        pos = show.idx_list(k, len(idxs))
        return vals[pos], idxs[pos]
    return view(k)

def _join(parts, sep):
    "The lists of `parts` joined into one, `sep` between them"
    return [s for j, p in enumerate(parts) for s in ([sep] if j else []) + p]

def _some(names, n=4):
    "The first `n` of `names` and the last, for a one-line summary"
    names = [str(v) for v in names]
    return ', '.join(names if len(names) <= n + 1 else names[:n] + ['…', names[-1]])

def _thresh(t):
    "A threshold or a temperature: one number, or one per label"
    t = torch.as_tensor(t).float()
    if t.numel() == 1: return f'{float(t):.4g}'
    return f"per label, {float(t.min()):.3g} to {float(t.max()):.3g}"

def _activation(interp):
    "Name of the activation the probabilities come from"
    act = getattr(interp, 'act', None)
    if act is not None: return f"act={getattr(act, '__name__', type(act).__name__)}"
    activation = _activation_for(interp.learn.loss_func, warn=False)  # an unregistered loss warned when predicting
    return (f"{activation.name} of {activation.loss}" if activation.name in ACTIVATIONS
            else f"the activation of {activation.loss}")

def source(learn, dl):
    "Which DataLoader the predictions are of: one of `learn.dls`, or another"
    ds = getattr(dl, 'dataset', None)
    names = {0: 'training set', 1: 'validation set'}
    for i, d in enumerate(getattr(getattr(learn, 'dls', None), 'loaders', []) or []):
        if ds is not None and getattr(d, 'dataset', None) is ds:
            return f"the {names.get(i, 'DataLoader')} (learn.dls[{i}])"
    n = _n_items(dl)
    return f"a {type(dl).__name__}" + ('' if n is None else f" of {n:,} items")
