"""``intvit quantize``: a float model and its data (:class:`ModelSpec`), calibrated into an
integer-only model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from intvit.models.data import ArraySplit, image_folder
from intvit.models.datasets import BuiltinData, builtin_data, is_builtin
from intvit.models.zoo import SMALL_CONFIGS, load_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig


@dataclass(frozen=True)
class ModelSpec:
    """Where a float model and its data come from."""

    name: str
    checkpoint: str | None = None
    pretrained: bool = False
    #: a built-in data set's name or an ImageFolder root; None: the model's own built-in data
    data: str | None = None
    #: calibration images; None: the whole calibration split of built-in data, 97 of a folder
    calib_count: int | None = None
    #: test images; None: all of them
    test_count: int | None = None

    def load_float(self, progress: bool = True):
        checkpoint = self.checkpoint
        if checkpoint is None and self.name in SMALL_CONFIGS and not self.pretrained:
            from intvit.models.train import ensure_trained

            checkpoint = ensure_trained(self.name, progress=progress)
        return load_float_model(self.name, self.pretrained, checkpoint)

    def own_data(self) -> str | None:
        """The built-in data set the model was made for: a small config's, or the one a
        checkpoint records it was trained on (None for timm models)."""
        from intvit.models.hetero_vit import checkpoint_meta

        if self.name in SMALL_CONFIGS:
            return SMALL_CONFIGS[self.name].data
        return checkpoint_meta(self.name).get("data")

    def builtin(self) -> BuiltinData | None:
        """The built-in data set the splits come from, or None for an ImageFolder."""
        name = self.own_data() if self.data is None else self.data
        if name is None:
            raise ValueError(f"model {self.name!r} needs --data (an ImageFolder root)")
        return builtin_data(name) if is_builtin(name) else None

    def split(self, which: str, img_size: int) -> ArraySplit:
        """The calibration (``calib``) or ``test`` images at ``img_size`` pixels."""
        limit = self.calib_count if which == "calib" else self.test_count
        data = self.builtin()
        if data is None:
            default = 97 if which == "calib" else None
            return image_folder(str(self.data), img_size, default if limit is None else limit)
        name = data.calib if which == "calib" else "test"
        split = data.split(name, img_size)
        if limit is None:
            return split
        if limit > len(split):
            flag = "--calib" if which == "calib" else "--limit"
            raise ValueError(
                f"{flag} {limit}: the {data.name} {name} split holds {len(split)} images"
            )
        return ArraySplit(split.images[:limit], split.labels[:limit])


def fit_config(model, config: QuantConfig) -> QuantConfig:
    """``config`` for ``model``: a GELU-less model (ReLU MLPs, see ``intvit relu-distill``)
    has no GELU to approximate, so its GELU variant is ``relu`` whatever else was asked."""
    from intvit.models.gelu_less import mlp_activation

    return replace(config, gelu="relu") if mlp_activation(model) == "relu" else config


def quantize(spec: ModelSpec, config: QuantConfig, progress: bool = True, fit: bool = True):
    """Calibrate ``spec``'s float model on its calibration split; returns (float, integer).
    ``fit``: switch GELU-less models to the ``relu`` variant (else a mismatch is an error)."""
    model = spec.load_float(progress)
    config = fit_config(model, config) if fit else config
    img = int(model.patch_embed.img_size[0])
    calib = spec.split("calib", img)
    source = spec.checkpoint or (
        spec.name if spec.pretrained else f"{spec.name} ({spec.own_data() or spec.data})"
    )
    return model, calibrate(model, calib.images, config, progress=progress, source=source)
