"""Scripts that run INSIDE the target interpreter, by path (``python script.py``).

They must be stdlib-only and valid on Python 3.6+: no f-string ``=``, no walrus, no
``from __future__ import annotations``, no dataclasses, no typing subscripts of builtins.
CI checks this with vermin. Each script prints one JSON object on stdout."""
