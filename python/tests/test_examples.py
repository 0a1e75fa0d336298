"""examples/ (bf16 and quantized/) stays in sync with the configurations it
comes from."""

import pathlib

import pytest

from moe_compiler import configs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", configs.EXAMPLE_LAYERS, ids=lambda c: c.name)
def test_example_matches_generator(config):
    path = configs.example_path(REPO_ROOT, config)
    assert path.read_text() == configs.layer_mlir(config), (
        f"{path} is stale: run `python -m moe_compiler.configs --write-examples .`")


@pytest.mark.parametrize("config", configs.EXAMPLE_LAYERS, ids=lambda c: c.name)
def test_scaled_example_matches_generator(config):
    path = configs.example_path(REPO_ROOT, config, scaled=True)
    assert path.read_text() == configs.layer_mlir(configs.scaled_example(config)), (
        f"{path} is stale: run `python -m moe_compiler.configs --write-examples .`")


@pytest.mark.parametrize("config,scheme", configs.QUANTIZED_EXAMPLES,
                         ids=lambda v: getattr(v, "name", None))
@pytest.mark.parametrize("scaled", [False, True], ids=["full", "scaled"])
def test_quantized_example_matches_generator(config, scheme, scaled):
    path = configs.example_path(REPO_ROOT, config, scaled, scheme)
    layer = configs.scaled_example(config) if scaled else config
    assert path.read_text() == configs.layer_mlir(layer, scheme), (
        f"{path} is stale: run `python -m moe_compiler.configs --write-examples .`")
