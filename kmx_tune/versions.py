"""Version numbers, compared one way everywhere: through ``packaging`` (PEP 440).

MXNet wheels are versioned like ``1.6.0.post0`` while ``mxnet.__version__`` says
``1.6.0``; NVIDIA drivers like ``535.104.05``; CUDA like ``11.2``. All of them parse
as PEP 440 versions, and anything that does not parse sorts before every real one."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

_ZERO = Version("0")


def parse(text: str | None) -> Version | None:
    """The version, or None when *text* is not a version number."""
    if text is None:
        return None
    try:
        return Version(str(text).strip())
    except InvalidVersion:
        return None


def key(text: str | None) -> Version:
    """A sort key: the version, or 0 for text that is not one."""
    return parse(text) or _ZERO


def release(text: str | None) -> tuple[int, ...]:
    """The release numbers without trailing zeros: (1, 8) for "1.8.0.post0" and for
    "1.8.0" alike, so a wheel's version and the module's ``__version__`` compare equal.
    () for text that is not a version."""
    version = parse(text)
    if version is None:
        return ()
    numbers = list(version.release)
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def at_least(text: str | None, minimum: str) -> bool:
    """True when *text* is a version no older than *minimum*."""
    version = parse(text)
    return version is not None and version >= Version(minimum)


def same(a: str | None, b: str | None) -> bool:
    """True when both parse and are the same version (1.9 == 1.9.0)."""
    va, vb = parse(a), parse(b)
    return va is not None and va == vb
