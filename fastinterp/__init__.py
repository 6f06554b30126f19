"fastinterp: true probabilities and honest interpretation for fastai classifiers, whatever the loss"
__version__ = '0.1.0'

from .activations import *
from .preds import patch, unpatch, is_patched
from .interpret import ClassificationInterpretation
from .tta import TTACallback, TTAResult
from . import uncertainty

patch()
