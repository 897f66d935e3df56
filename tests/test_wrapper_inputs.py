"""Observations that would be silently wrong: frames already in [0, 1] sent into a declared uint8 [0, 255] space,
and an image shape that fits the model both channel-first and channel-last."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium import spaces

from mhvae_perception import CoreSpec, ModalitySpec, ModelConfig, build_model
from mhvae_perception.wrappers import ObservationAdapter, OutOfRangeObservationError


def image_model(shape):
    cfg = ModelConfig("mhvae", (ModalitySpec("image", shape, "bernoulli", 2, "linear"),
                                ModalitySpec("v", (2,), "gaussian", 2, "linear")), CoreSpec(2, (8,)))
    return build_model(cfg).eval()


def obs_space(image_box):
    return spaces.Dict({"image": image_box, "v": spaces.Box(-1, 1, (2,), np.float32)})


def test_frames_already_scaled_into_a_uint8_space_are_reported():
    model = image_model((1, 16, 16))
    space = obs_space(spaces.Box(0, 255, (16, 16, 1), np.uint8))
    scaled = {"image": np.full((1, 16, 16, 1), 0.8, np.float32), "v": np.zeros((1, 2), np.float32)}
    with pytest.raises(OutOfRangeObservationError, match="already scaled.*divided by 255 again"):
        ObservationAdapter(space, model).convert(scaled, ["image"])
    with pytest.warns(UserWarning, match="already scaled"):
        ObservationAdapter(space, model, on_out_of_range="warn").convert(scaled, ["image"])
    frames = {"image": np.full((1, 16, 16, 1), 204, np.uint8), "v": np.zeros((1, 2), np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, flagged = ObservationAdapter(space, model).convert(frames, ["image"])  # as declared: no word
    np.testing.assert_allclose(x["image"], 0.8, atol=1e-6)
    assert flagged == [[]]


def test_an_image_shape_that_fits_both_layouts_warns_unless_the_layout_is_given():
    model = image_model((3, 16, 16))
    space = obs_space(spaces.Box(0.0, 1.0, (16, 16, 3), np.float32))  # channel-last, unambiguous
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ObservationAdapter(space, model).layouts["image"].layout == "HWC"
    cube = image_model((16, 16, 16))
    space = obs_space(spaces.Box(0.0, 1.0, (16, 16, 16), np.float32))
    with pytest.warns(UserWarning, match="both channel-first and channel-last.*layout="):
        ObservationAdapter(space, cube)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ObservationAdapter(space, cube, layout={"image": "HWC"}).layouts["image"].layout == "HWC"
