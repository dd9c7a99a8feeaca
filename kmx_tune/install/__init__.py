"""Install one MXNet flavor into a target interpreter, verify it, roll back on failure.

- :mod:`.pip`: the target's own pip, run with argument lists under the user's pip
  configuration; what it lists and says.
- :mod:`.plan`: the plan (pure): which package and version, what goes, and why.
- :mod:`.availability`: whether the index serves the plan for that Python and platform.
- :mod:`.verify`: a fresh process imports the new MXNet and runs operations.
- :mod:`.transaction`: carry the plan out; keep it only when verified, else roll back.
- :mod:`.workflow`: what ``kmx-tune install-mxnet`` does, from the request to the result.

Nothing is imported here, so that :mod:`kmx_tune.target` can use :mod:`.pip` without
pulling in the modules that use targets.
"""
