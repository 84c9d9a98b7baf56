"""The default models shipped inside the package (``mailwarden.models``, package data).

``content/`` and ``sending/`` hold portable JSON manifests and NumPy arrays written by
``scripts/build-models``; an unset ``[paths] model_dir`` resolves to this folder.
"""
