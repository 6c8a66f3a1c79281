"""Datasets in the book's format: :func:`load_mnist`."""
from fastzero.datasets.mnist import load_mnist

__all__ = ["load_mnist"]
