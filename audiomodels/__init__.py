"""Acoustic-model core: audio in, features, label sets, BiGRU-CTC, decoding, alignment, checkpoints.

This package never imports ``training`` or ``service``; both build on it.
"""
