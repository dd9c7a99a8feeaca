"""Convert image datasets between channels_last and channels_first, on disk
(:func:`convert_file`) or in memory (:func:`to_channels_first`).

On disk: :mod:`.core` picks the files and where each goes (:mod:`.outputs`: the names,
the ``-o`` folders, collisions), and reports on them;
:mod:`.npy` and :mod:`.npz` convert one file each, with what they share in
:mod:`.common`. Below them: :mod:`.layout` (the rules, pure), :mod:`.npyio`,
:mod:`.zipio` and :mod:`.zipout` (the file formats), :mod:`.sources` and :mod:`.kernel`
(reading and transposing the data), :mod:`.deflate` and :mod:`.writer` (compressing and
writing it). HDF5: :mod:`.h5` converts dataset files (:mod:`.h5io` opens and sniffs them,
:mod:`.h5check` checks the output), :mod:`.keras_model` saved Keras models (in the
target's Keras). Folders: :mod:`.folders` (walking a tree, worker processes) and
:mod:`.record` (what lets a rerun skip outputs that are complete and verified).
"""

from __future__ import annotations

from kmx_tune.convert.common import FileOutcome
from kmx_tune.convert.core import convert_file
from kmx_tune.convert.memory import to_channels_first, to_channels_last

__all__ = ["FileOutcome", "convert_file", "to_channels_first", "to_channels_last"]
