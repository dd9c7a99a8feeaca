"""Re-capture keras-cnn-FORMAT.stats.json: what kmx-tune's `profile` hands to
`result_from_report` -- the runner's STATS report plus the BatchNorm timings
`time_batchnorm` adds -- for train_cnn.py in a keras-mxnet venv.

    python tests/data/profile/capture.py /path/to/keras-venv/bin/python
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from kmx_tune.profiling import BULK_EXEC_OFF, RUNNER, time_batchnorm
from kmx_tune.target import Target

HERE = Path(__file__).parent
python = sys.argv[1]
env = dict(os.environ, KERAS_BACKEND="mxnet", **BULK_EXEC_OFF)
env.pop("OMP_NUM_THREADS", None)
for fmt in ("channels_last", "channels_first"):
    stats = HERE / f"keras-cnn-{fmt}.stats.json"
    subprocess.run(
        [python, str(RUNNER), "--out", f"/tmp/cap-{fmt}.json", "--stats", str(stats), "--"]
        + [str(HERE / "train_cnn.py"), fmt, "640", "1"],
        check=True,
        env=env,
        cwd=HERE,
    )
    report = json.loads(stats.read_text())
    report["batchnorm_timing"] = time_batchnorm(Target(python), report["batchnorm"], env)
    stats.write_text(json.dumps(report))
