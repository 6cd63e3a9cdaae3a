"""dlib's face detector and 68-point shape predictor, loaded once per process.

The model files ship in the PyPI package face-recognition-models. Its __init__ imports
pkg_resources (gone from current setuptools), so the files are located through the
import system's metadata without importing the package.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import dlib

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def model_path(name: str) -> str:
    """Path of a model file inside face_recognition_models/models (or $AVPREP_DLIB_MODELS)."""
    folder = os.environ.get("AVPREP_DLIB_MODELS")
    if not folder:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("package face-recognition-models is not installed "
                                    "(or set AVPREP_DLIB_MODELS to a folder with the dlib models)")
        folder = os.path.join(list(spec.submodule_search_locations)[0], "models")
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dlib model file not found: {path}")
    return path


@functools.lru_cache(maxsize=1)
def face_detector():
    """dlib's HOG frontal face detector (cached for the process)."""
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def shape_predictor():
    """dlib's 68-point shape predictor (cached for the process)."""
    return dlib.shape_predictor(model_path(PREDICTOR_FILE))
