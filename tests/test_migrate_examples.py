"""The migrate rules on real model code: example scripts from Keras 2.2.4 and
keras-apache-mxnet, kept unmodified under tests/data/migrate (see SOURCES.md there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmx_tune.migrate import migrate_source

DATA = Path(__file__).parent / "data" / "migrate"
K224 = "keras-2.2.4"
KMX = "keras-apache-mxnet"

# file -> (layout the script is written for, expected findings going to the other layout
# as (code, line, rewritten)). Each expectation was checked by reading the script.
EXPECTED: dict[str, tuple[str, list[tuple[str, int, bool]]]] = {
    # guarded by `if K.image_data_format() == 'channels_first'`: nothing to do
    f"{K224}/mnist_cnn.py": ("channels_last", []),
    f"{K224}/neural_style_transfer.py": ("channels_last", []),
    f"{KMX}/mnist_denoising_autoencoder.py": ("channels_last", []),
    # input_shape=x_train.shape[1:], the shape computed from data: nothing to do
    f"{K224}/cifar10_cnn.py": ("channels_last", []),
    f"{K224}/mnist_acgan.py": (
        "channels_last",
        [("KMX101", 96, True), ("KMX102", 114, True), ("KMX402", 172, True),
         ("KMX402", 175, True)],
    ),
    f"{K224}/variational_autoencoder_deconv.py": (
        "channels_last",
        [("KMX401", 122, True), ("KMX401", 123, True), ("KMX101", 128, True)],
    ),
    # an RNN over the rows of a (28, 28, 1) array: no conv layer, so only reported
    f"{K224}/mnist_hierarchical_rnn.py": (
        "channels_last",
        [("KMX401", 56, False), ("KMX401", 57, False)],
    ),
    f"{KMX}/cifar10_mobilenet.py": ("channels_last", [("KMX101", 32, True)]),
    f"{KMX}/conv_lstm.py": (
        "channels_last",
        [("KMX101", 23, True), ("KMX301", 41, True), ("KMX403", 55, False),
         ("KMX403", 56, False)],
    ),
    # written for channels_first: migrating it to channels_last is the test
    f"{K224}/mnist_swwae.py": (
        "channels_first",
        [("KMX201", 84, True), ("KMX302", 105, True), ("KMX401", 113, True),
         ("KMX401", 114, True)],
    ),
}  # fmt: skip

OTHER = {"channels_last": "channels_first", "channels_first": "channels_last"}


def test_every_data_file_has_an_expectation() -> None:
    files = {str(p.relative_to(DATA)) for p in DATA.rglob("*.py")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_findings(name: str) -> None:
    native, expected = EXPECTED[name]
    result = migrate_source((DATA / name).read_bytes(), OTHER[native], name)
    assert [(f.code, f.line, f.fixable) for f in result.findings] == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nothing_to_do_in_the_layout_the_script_is_written_for(name: str) -> None:
    native, _ = EXPECTED[name]
    result = migrate_source((DATA / name).read_bytes(), native, name)
    assert [f for f in result.findings if f.fixable] == []
    assert not result.changed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip_gives_the_original_bytes(name: str) -> None:
    native, _ = EXPECTED[name]
    original = (DATA / name).read_bytes()
    there = migrate_source(original, OTHER[native], name)
    assert there.new_source is not None
    back = migrate_source(there.new_source, native, name)
    assert back.new_source == original


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rewritten_script_still_compiles(name: str) -> None:
    native, _ = EXPECTED[name]
    result = migrate_source((DATA / name).read_bytes(), OTHER[native], name)
    assert result.new_source is not None
    compile(result.new_source, name, "exec")


def test_guarded_branches_of_mnist_cnn_are_untouched_in_both_directions() -> None:
    original = (DATA / K224 / "mnist_cnn.py").read_bytes()
    for to in ("channels_first", "channels_last"):
        assert migrate_source(original, to).new_source == original


def test_conv_lstm_rewrite() -> None:
    result = migrate_source((DATA / KMX / "conv_lstm.py").read_bytes(), "channels_first")
    assert result.new_source is not None
    diff = [
        line for line in result.diff().splitlines() if line[:1] in "+-" and line[:3] not in "+++---"
    ]
    assert diff == [
        "-                   input_shape=(None, 40, 40, 1),",
        "+                   input_shape=(None, 1, 40, 40),",
        "-               padding='same', data_format='channels_last'))",
        "+               padding='same', data_format='channels_first'))",
    ]
