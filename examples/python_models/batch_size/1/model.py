# The Ray Serve tutorial's BatchSizePredictor (seed 003, section 4), with only its imports changed.
import numpy as np

from ferroserve import Predictor, Checkpoint

import time
class BatchSizePredictor(Predictor):
    @classmethod
    def from_checkpoint(cls, _: Checkpoint):
        return cls()
    
    def predict(self, inp: np.ndarray):
        time.sleep(0.5) # simulate model inference.
        return [(i, len(inp), inp) for i in inp]
