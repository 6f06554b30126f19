"fastinterp: true probabilities and honest interpretation for fastai classifiers, whatever the loss"
__version__ = '0.1.0'

import warnings
with warnings.catch_warnings():  # fastai 2.8 scripts a few layers with the deprecated torch.jit.script: fastai's to fix, not the user's
    warnings.filterwarnings('ignore', '`torch.jit.script` is deprecated', FutureWarning)
    import fastai.layers

from .activations import *
from .preds import patch, unpatch, is_patched
from .interpret import ClassificationInterpretation
from .tta import TTACallback, TTAResult
from . import uncertainty
from . import calibration  # Learner.calibrate, ECE, reliability diagram, MC dropout
from .streaming import StreamingStats, StreamingCallback, StreamingInterpretation

patch()
