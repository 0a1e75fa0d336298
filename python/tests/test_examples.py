"""examples/*.mlir stay in sync with the configurations they come from."""

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
