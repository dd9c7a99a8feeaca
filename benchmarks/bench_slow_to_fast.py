"""From slow to fast, measured: a small Keras-MXNet CNN trained for real in the set-ups
the README's walkthrough goes through, alternating, epoch 2 timed (epoch 1 warms up):

- ``default``: keras.json as Keras-MXNet writes it (channels_last), OMP_NUM_THREADS unset;
- ``format``: ``kmx-tune set-format channels_first`` and the data from
  ``kmx-tune convert``, OMP_NUM_THREADS unset;
- ``tuned``: the same plus ``OMP_NUM_THREADS`` as ``kmx-tune doctor`` advises.

The keras.json files are written by ``kmx-tune set-format`` and the data converted by
``kmx-tune convert``: the workflow itself, not a copy of it. The model reads
``K.image_data_format()``, as the Keras examples do. Ratios are medians of per-round
ratios against ``default`` in the same round.

    python benchmarks/bench_slow_to_fast.py --python ~/venvs/keras-mxnet/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = r"""
import json, sys, time
import numpy as np
import keras
from keras import backend as K
from keras.layers import Activation, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D
from keras.models import Sequential

data = np.load(sys.argv[1])
x, y = data["x"].astype("float32") / 255.0, data["y"]
axis = 1 if K.image_data_format() == "channels_first" else -1
model = Sequential()
model.add(Conv2D(32, 3, padding="same", input_shape=x.shape[1:]))
for filters in (None, 64):
    if filters:
        model.add(Conv2D(filters, 3, padding="same"))
    model.add(BatchNormalization(axis=axis))
    model.add(Activation("relu"))
    model.add(MaxPooling2D())
model.add(Flatten())
model.add(Dense(10, activation="softmax"))
model.compile("sgd", "sparse_categorical_crossentropy")
times = []


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.start)


model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[Timer()])
print(json.dumps({"format": K.image_data_format(), "epoch_s": times[-1]}))
"""


def kmx(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="a venv with keras-mxnet and mxnet")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kmx-slow-to-fast-") as tmp:
        work = Path(tmp)
        data = work / "data.npz"
        subprocess.run(
            [
                opts.python,
                "-c",
                "import numpy as np, sys; r = np.random.RandomState(0); n = int(sys.argv[2]); "
                "np.savez(sys.argv[1], x=r.randint(0, 256, (n, 32, 32, 3)).astype('uint8'), "
                "y=r.randint(0, 10, n))",
                str(data),
                str(opts.images),
            ],
            check=True,
        )
        kmx("convert", str(data))  # -> data.channels_first.npz
        script = work / "train.py"
        script.write_text(TRAIN)
        homes = {}
        for fmt in ("channels_last", "channels_first"):
            homes[fmt] = work / f"keras-{fmt}"
            kmx("set-format", fmt, "--keras-home", str(homes[fmt]))
        report = json.loads(kmx("doctor", "--python", opts.python, "--json"))
        omp = next(
            f["fix"].split("=", 1)[1]
            for f in report["findings"]
            if f["id"] == "env.OMP_NUM_THREADS" and f["fix"]
        )
        base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "KERAS_HOME")}
        setups = {
            "default": (homes["channels_last"], data, {}),
            "format": (homes["channels_first"], work / "data.channels_first.npz", {}),
            "tuned": (
                homes["channels_first"],
                work / "data.channels_first.npz",
                {"OMP_NUM_THREADS": omp},
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in setups}
        load = os.getloadavg()[0]
        started = time.time()
        for round_ in range(opts.rounds):
            names = list(setups) if round_ % 2 == 0 else list(reversed(setups))
            for name in names:
                home, path, extra = setups[name]
                env = {**base, "KERAS_HOME": str(home), "KERAS_BACKEND": "mxnet", **extra}
                out = subprocess.run(
                    [opts.python, str(script), str(path)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout
                result = json.loads(out.strip().splitlines()[-1])
                times[name].append(result["epoch_s"])
                print(f"round {round_ + 1} {name:<8} {result['epoch_s']:6.2f} s", flush=True)
        load_after = os.getloadavg()[0]

    print(
        f"\n{opts.images} images 32x32x3, batch 64, Conv2D-BN-ReLU-MaxPool x2 + Dense, epoch 2, "
        f"{opts.rounds} rounds alternating; load average {load:.1f} -> {load_after:.1f} on "
        f"{os.cpu_count()} CPUs; {time.time() - started:.0f} s"
    )
    for name in setups:
        ratios = [d / t for d, t in zip(times["default"], times[name])]
        print(
            f"  {name:<8} median {statistics.median(times[name]):6.2f} s/epoch "
            f"(min {min(times[name]):.2f}, max {max(times[name]):.2f}); "
            f"{statistics.median(ratios):.2f}x as fast as default "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(f"  OMP_NUM_THREADS={omp} (from kmx-tune doctor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
