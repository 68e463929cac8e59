"""ferroserve's Python module: the shapes Python predictors are written in.

A model that is code is a class with ``from_checkpoint(checkpoint)`` and ``predict(batch)`` (Ray
AIR's ``Predictor``: a tutorial's class runs with its imports changed to
``from ferroserve import Predictor, Checkpoint``), or a plain class with ``load()`` and
``predict(batch)`` (the shape of MLServer's ``MLModel`` and KServe's ``kserve.Model``). ferroserve
runs it in worker processes of its own, one per instance, and hands ``predict`` whole batches made
by its batcher: a NumPy array (a dict of arrays for several inputs) or a pandas DataFrame.

``PicklePredictor`` serves a pickled scikit-learn-style model that ferroserve could not convert.
"""

import json
import os
import pickle
import shutil
import tempfile

__all__ = ["Checkpoint", "Predictor", "PicklePredictor"]

_DICT_JSON = "checkpoint.json"
_DICT_PICKLE = "checkpoint.pkl"


class Checkpoint:
    """A model's state: a dictionary or a folder (as Ray AIR's ``Checkpoint``)."""

    def __init__(self, data=None, path=None):
        self._data = data
        self._path = path

    @classmethod
    def from_dict(cls, data):
        return cls(data=dict(data))

    @classmethod
    def from_directory(cls, path):
        return cls(path=os.fspath(path))

    def to_dict(self):
        """The dictionary; a folder checkpoint written by ``to_directory`` from a dictionary
        reads back as that dictionary, any other folder as ``{"path": folder}``."""
        if self._data is not None:
            return dict(self._data)
        j = os.path.join(self._path, _DICT_JSON)
        if os.path.isfile(j):
            with open(j) as f:
                return json.load(f)
        p = os.path.join(self._path, _DICT_PICKLE)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                return pickle.load(f)
        return {"path": self._path}

    def to_directory(self, path=None):
        """Writes the checkpoint into ``path`` (a new temporary folder when not given) and
        returns the folder."""
        path = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint-")
        os.makedirs(path, exist_ok=True)
        if self._data is not None:
            try:
                text = json.dumps(self._data)
            except (TypeError, ValueError):
                with open(os.path.join(path, _DICT_PICKLE), "wb") as f:
                    pickle.dump(self._data, f)
            else:
                with open(os.path.join(path, _DICT_JSON), "w") as f:
                    f.write(text)
        elif os.path.abspath(self._path) != os.path.abspath(path):
            shutil.copytree(self._path, path, dirs_exist_ok=True)
        return path

    @property
    def path(self):
        """The folder, for a folder checkpoint."""
        return self._path

    def __repr__(self):
        if self._data is not None:
            return f"Checkpoint(dict with keys {sorted(self._data)})"
        return f"Checkpoint(directory={self._path!r})"


class Predictor:
    """Base class of predictors built from a checkpoint (Ray AIR's shape)."""

    @classmethod
    def from_checkpoint(cls, checkpoint, **kwargs):
        raise NotImplementedError(f"{cls.__name__} does not define from_checkpoint")

    def predict(self, data, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define predict")


class PicklePredictor(Predictor):
    """A pickled (or joblib) model with ``predict`` (and ``predict_proba`` for classifiers).

    The checkpoint's ``file`` names the pickle, relative to the version folder. Loading a
    pickle runs code stored in it: serve only files you trust. Classifiers answer ``label``
    and ``probabilities``, other models ``value``.
    """

    def __init__(self, model):
        self.model = model

    @classmethod
    def from_checkpoint(cls, checkpoint, **kwargs):
        d = checkpoint.to_dict()
        file = d.get("file")
        if not file:
            raise ValueError("PicklePredictor needs checkpoint.file, the pickle's name")
        try:
            import joblib

            model = joblib.load(file)
        except ImportError:
            with open(file, "rb") as f:
                model = pickle.load(f)
        return cls(model)

    def predict(self, data, **kwargs):
        if hasattr(self.model, "predict_proba"):
            return {
                "label": self.model.predict(data),
                "probabilities": self.model.predict_proba(data),
            }
        return {"value": self.model.predict(data)}
