"""The Python environment being tuned: one :class:`Target` object, used by every
command that takes ``--python``: its interpreter, its facts and its pip.

The target may be a different, older interpreter than the one running kmx-tune
(``--python PATH``), so nothing here imports from it: a stdlib-only script from
``kmx_tune/_in_target/`` runs inside it and reports back as JSON. Tests describe a
target with :class:`RecordedTarget` (facts as the script reports them), which runs
nothing.

Modules: :mod:`.core` (Target, how the default is chosen), :mod:`.choose` (--python
to a path; kmx-tune's own environment), :mod:`.run` (running a script in the target,
bounded), :mod:`.facts` (the facts report, checked).
"""

from kmx_tune.target.choose import NoTargetError, resolve_python
from kmx_tune.target.core import MissingTarget, RecordedTarget, Target, find_default
from kmx_tune.target.facts import (
    FACTS_SCHEMA,
    KerasFacts,
    RuntimeFacts,
    TargetInfo,
    facts_from_json,
    facts_problem,
)
from kmx_tune.target.run import (
    IN_TARGET_DIR,
    OUTPUT_LIMIT,
    failure_tail,
    run_in_target,
    run_script,
)

__all__ = [
    "FACTS_SCHEMA",
    "IN_TARGET_DIR",
    "OUTPUT_LIMIT",
    "KerasFacts",
    "MissingTarget",
    "NoTargetError",
    "RecordedTarget",
    "RuntimeFacts",
    "Target",
    "TargetInfo",
    "facts_from_json",
    "facts_problem",
    "failure_tail",
    "find_default",
    "resolve_python",
    "run_in_target",
    "run_script",
]
