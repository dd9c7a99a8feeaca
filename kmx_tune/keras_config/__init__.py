"""Find keras.json the way Keras-MXNet does, read it, and edit it safely.

This module is the one place in kmx-tune that knows where Keras looks: ``doctor``,
``config`` and ``set-format`` all go through :func:`locate` and :func:`read`.

Where Keras-MXNet 2.2.4.x looks (``keras/backend/__init__.py`` of
awslabs/keras-apache-mxnet; read from the yashsaboo/keras-apache-mxnet fork)::

    if 'KERAS_HOME' in os.environ:
        _keras_dir = os.environ.get('KERAS_HOME')
    else:
        _keras_base_dir = os.path.expanduser('~')
        if not os.access(_keras_base_dir, os.W_OK):
            _keras_base_dir = '/tmp'
        _keras_dir = os.path.join(_keras_base_dir, '.keras')
    _config_path = os.path.expanduser(os.path.join(_keras_dir, 'keras.json'))
    ...
        except ValueError:          # invalid JSON is read as {}
            _config = {}
        assert _floatx in {'float16', 'float32', 'float64'}
        assert isinstance(_epsilon, float)
        assert _image_data_format in {'channels_last', 'channels_first'}
    ...
    f.write(json.dumps(_config, indent=4))   # only when the file is missing
    ...
    if 'KERAS_BACKEND' in os.environ:        # a non-empty value beats the file
        _backend = os.environ['KERAS_BACKEND']
        if _backend:
            _BACKEND = _backend

So: KERAS_HOME (even when empty) wins; the /tmp fallback applies only without it and
depends on the *home folder* being writable, not ~/.keras; a top-level value that is not
an object, or a value of the wrong type, makes ``import keras`` fail.
"""

from kmx_tune.keras_config.edit import (
    EditResult,
    KeyChange,
    atomic_write,
    backup_path,
    dumps,
    next_numbered_backup,
    set_format,
    update,
)
from kmx_tune.keras_config.guard import file_lock, legacy_lock_path, lock_path
from kmx_tune.keras_config.locate import (
    FILENAME,
    FLOATX_VALUES,
    KERAS_DEFAULTS,
    LOCK_TIMEOUT_S,
    TMP_FALLBACK_BASE,
    KerasJsonLocation,
    locate,
)
from kmx_tune.keras_config.salvage import Salvage, salvage
from kmx_tune.keras_config.state import (
    MAX_BYTES,
    KerasJsonState,
    effective_values,
    parse,
    read,
    repair_command,
    validate,
)

__all__ = [
    "FILENAME",
    "FLOATX_VALUES",
    "KERAS_DEFAULTS",
    "LOCK_TIMEOUT_S",
    "MAX_BYTES",
    "TMP_FALLBACK_BASE",
    "EditResult",
    "KerasJsonLocation",
    "KerasJsonState",
    "KeyChange",
    "Salvage",
    "atomic_write",
    "backup_path",
    "dumps",
    "effective_values",
    "file_lock",
    "legacy_lock_path",
    "lock_path",
    "locate",
    "next_numbered_backup",
    "parse",
    "read",
    "repair_command",
    "salvage",
    "set_format",
    "update",
    "validate",
]
