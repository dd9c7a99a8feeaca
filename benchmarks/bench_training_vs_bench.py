"""Does `kmx-tune bench` predict what switching to channels_first gains in real
Keras-MXNet training? Real epochs of a real training script in both formats,
alternating, against bench's prediction, in one run.

The set-up is the new user's (../shared/reports/new-user-run-2026-11-30.md), scaled to
fit a 2-core machine: keras-mxnet 2.2.4.3 + mxnet 1.9.1 + numpy 1.23.5 in a Python 3.8
venv, a CIFAR-like CNN (4 x Conv2D + BatchNormalization + ReLU, 3 MaxPooling2D, Dense
128, Dropout, Dense 10) trained with `model.fit` on 32x32x3 uint8 images from an .npz
(divided by 255), batch 64, Adam. The channels_first side is made with kmx-tune's own
workflow: `kmx-tune convert` for the data and a keras.json written by `kmx-tune
set-format channels_first` (each format gets its own KERAS_HOME).

How the epochs are timed: one training process per format, both alive for the whole
run; each trains one epoch (a full `model.fit(..., epochs=1)`) when told to, so the two
formats' epochs alternate (the order swaps every pair) and a machine getting busier or
quieter hits both alike. The first epoch of each is a warm-up and is not counted. The
ratio is the median of the per-pair ratios (channels_last epoch / channels_first epoch).

After each pair, `kmx-tune bench --quick --json` (kmx-tune's representative CNN) and
`kmx-tune bench --quick --model train_cnn.py:build_model --json` (the script's own model)
run in the same environment, so the predictions alternate with the real epochs and see
the same machine; with --full, the default (full) bench runs once after the last pair.
Each prediction is its `ratio.median`; the table sets their medians beside the real
one. The 1-minute load average is printed after each pair: other people's jobs on this
machine change the absolute times a lot, and the ratio too: channels_last epochs slow far
more than channels_first ones when other jobs run (up to 6x with OMP_NUM_THREADS=2 here).

Usage:
    python benchmarks/bench_training_vs_bench.py --python ~/venvs/keras38/bin/python
        [--images 4000] [--pairs 4] [--omp 2] [--full]
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

TRAIN = '''\
"""A user's training script: the CIFAR-like CNN of the new-user report."""
import sys
import time

import numpy as np
import keras
from keras import backend as K
from keras.layers import Activation, BatchNormalization, Conv2D, Dense, Dropout
from keras.layers import Flatten, MaxPooling2D
from keras.models import Sequential


def build_model():
    if K.image_data_format() == "channels_first":
        shape = (3, 32, 32)
    else:
        shape = (32, 32, 3)
    model = Sequential()
    model.add(Conv2D(32, (3, 3), padding="same", input_shape=shape))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(Conv2D(32, (3, 3), padding="same"))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), padding="same"))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), padding="same"))
    model.add(BatchNormalization())
    model.add(Activation("relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dropout(0.5))
    model.add(Dense(10, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


if __name__ == "__main__":
    data = np.load(sys.argv[1])
    x = data["x_train"].astype("float32") / 255.0
    y = keras.utils.to_categorical(data["y_train"], 10)
    model = build_model()
    # one epoch each time the driver says "go"; the epoch's wall time goes back
    for line in sys.stdin:
        start = time.perf_counter()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        sys.stdout.write("EPOCH_S=%r\\n" % (time.perf_counter() - start))
        sys.stdout.flush()
'''


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def kmx_tune() -> list[str]:
    script = Path(sys.executable).parent / "kmx-tune"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kmx_tune"]


def make_data(folder: Path, images: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=(images, 1)).astype(np.int64)
    path = folder / "data.npz"
    np.savez(path, x_train=x, y_train=y)
    subprocess.run([*kmx_tune(), "convert", str(path)], check=True, capture_output=True)
    return path


def keras_home(folder: Path, fmt: str, env: dict[str, str]) -> Path:
    home = folder / f"keras-{fmt}"
    home.mkdir()
    subprocess.run(
        [*kmx_tune(), "set-format", fmt, "--keras-home", str(home)],
        check=True,
        capture_output=True,
        env=env,
    )
    return home


class Trainer:
    def __init__(self, python: str, script: Path, data: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [python, str(script), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def epoch(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("EPOCH_S="):
                return float(line.split("=", 1)[1])
        raise SystemExit(f"the training process ended (status {self.proc.wait()})")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def bench(python: str, env: dict[str, str], *extra: str) -> dict[str, object]:
    proc = subprocess.run(
        [*kmx_tune(), "bench", "--python", python, "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"kmx-tune bench failed:\n{proc.stdout}\n{proc.stderr}")
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="a venv with keras-mxnet and mxnet")
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--omp", default="2", help="OMP_NUM_THREADS ('unset' to leave it out)")
    parser.add_argument("--full", action="store_true", help="the full bench, not --quick")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper

    env = dict(os.environ)
    env["KERAS_BACKEND"] = "mxnet"
    if args.omp == "unset":
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = args.omp
    print(f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}; load average {load()}")
    with tempfile.TemporaryDirectory(prefix="kmx-train-") as tmp:
        folder = Path(tmp)
        script = folder / "train_cnn.py"
        script.write_text(TRAIN)
        data = make_data(folder, args.images)
        trainers = {}
        for fmt, path in (
            ("channels_last", data),
            ("channels_first", data.with_name("data.channels_first.npz")),
        ):
            run_env = dict(env, KERAS_HOME=str(keras_home(folder, fmt, env)))
            trainers[fmt] = Trainer(args.python, script, path, run_env)
        model_spec = f"{script}:build_model"
        benches = {
            "kmx-tune bench --quick": ["--quick"],
            "kmx-tune bench --quick --model train_cnn.py:build_model": [
                "--quick",
                "--model",
                model_spec,
            ],
        }
        predicted: dict[str, list[float]] = {label: [] for label in benches}
        walls: dict[str, list[float]] = {label: [] for label in benches}
        loads = [os.getloadavg()[0]]
        full = None
        try:
            print(f"warm-up epoch of each ({args.images} images, batch 64); load {load()}")
            for trainer in trainers.values():
                trainer.epoch()
            times: dict[str, list[float]] = {"channels_last": [], "channels_first": []}
            for pair in range(args.pairs):
                order = list(trainers) if pair % 2 == 0 else list(reversed(trainers))
                for fmt in order:
                    times[fmt].append(trainers[fmt].epoch())
                cl, cf = times["channels_last"][-1], times["channels_first"][-1]
                line = f"pair {pair + 1}: real epochs cl {cl:.2f} s, cf {cf:.2f} s: {cl / cf:.2f}x"
                # the predictions alternate with the epochs, so both see the same machine
                for label, extra in benches.items():
                    start = time.perf_counter()
                    result = bench(args.python, env, *extra)
                    walls[label].append(time.perf_counter() - start)
                    ratio = result["ratio"]
                    assert isinstance(ratio, dict)
                    predicted[label].append(float(ratio["median"]))
                    line += f"; {label.split(' ', 2)[2]}: {predicted[label][-1]:.2f}x"
                loads.append(os.getloadavg()[0])
                print(f"{line}; load {load()}")
            if args.full:
                start = time.perf_counter()
                full = (bench(args.python, env), time.perf_counter() - start)
        finally:
            for trainer in trainers.values():
                trainer.close()
    ratios = [cl / cf for cl, cf in zip(times["channels_last"], times["channels_first"])]
    real = statistics.median(ratios)
    print(
        f"real training: channels_last {statistics.median(times['channels_last']):.2f} "
        f"s/epoch, channels_first {statistics.median(times['channels_first']):.2f} s/epoch; "
        f"median ratio {real:.2f} (pairs {min(ratios):.2f}-{max(ratios):.2f}); "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print()
    print("| | channels_first faster by (median, range) | vs real | wall (median) |")
    print("|---|---|---|---|")
    print(
        f"| real training, {args.images} images, {args.pairs} epoch pairs | {real:.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}) | | |"
    )
    for label, values in predicted.items():
        med = statistics.median(values)
        print(
            f"| `{label}`, {len(values)} runs | {med:.2f}x ({min(values):.2f}-{max(values):.2f}) "
            f"| {med / real - 1:+.0%} | {statistics.median(walls[label]):.0f} s |"
        )
    if full is not None:
        result, wall = full
        ratio = result["ratio"]
        assert isinstance(ratio, dict)
        med = float(ratio["median"])
        print(
            f"| `kmx-tune bench` (the full run, after the pairs) | {med:.2f}x "
            f"(IQR {ratio['iqr'][0]:.2f}-{ratio['iqr'][1]:.2f}) | {med / real - 1:+.0%} "
            f"| {wall:.0f} s |"
        )


if __name__ == "__main__":
    main()
