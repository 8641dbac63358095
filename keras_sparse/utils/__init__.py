"""Helpers shared across keras_sparse; Keras internals live in keras_compat*."""
