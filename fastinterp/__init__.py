"fastinterp: true probabilities and honest interpretation for fastai classifiers, whatever the loss"
__version__ = '0.1.0'

import warnings
with warnings.catch_warnings():  # fastai 2.8 scripts a few layers with the deprecated torch.jit.script: fastai's to fix
    warnings.filterwarnings('ignore', '`torch.jit.script` is deprecated', FutureWarning)
    import fastai.layers

from .activations import *
from .patching import patch, unpatch, is_patched
from . import preds, temperature  # Learner.get_preds, predict, temperature; Learner.calibrate
from .tta import TTACallback, TTAResult
from . import uncertainty  # uncertainty measures, MC dropout
from . import calibration  # ECE, MCE, Brier, NLL, temperature fitting
from .stats import StreamingStats
from .streaming import StreamingCallback
from .interpret import ClassificationInterpretation, StreamingInterpretation
from .segmentation import SegmentationInterpretation
from . import labels, selective, intervals  # label issues, selective prediction, intervals
from .folds import out_of_fold

patch()
