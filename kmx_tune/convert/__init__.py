"""Convert image datasets between channels_last and channels_first, on disk
(:func:`convert_file`) or in memory (:func:`to_channels_first`)."""

from __future__ import annotations

from kmx_tune.convert.core import FileResult, convert_file
from kmx_tune.convert.memory import to_channels_first, to_channels_last

__all__ = ["FileResult", "convert_file", "to_channels_first", "to_channels_last"]
