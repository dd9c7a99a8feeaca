"""kmx-tune: performance advisor and config tool for Keras on the MXNet backend."""

__version__ = "0.1.0"
