"""The SB3 features extractor: the same z_c as the observation wrapper when frozen, gradients into the model when
fine-tuned (its own copy), and PPO / SAC with MultiInputPolicy on a Dict env."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from mhvae_perception import CoreSpec, ModalitySpec, ModelConfig, build_model
from mhvae_perception.wrappers import MHVAEExtractor, MHVAEObservation


class TwoSensorEnv(gym.Env):
    """A uint8 channel-last image and a vector, both driven by a 1-d state; Box actions."""

    observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (16, 16, 1), np.uint8),
                                     "vec": spaces.Box(-5, 5, (3,), np.float32)})
    action_space = spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.s, self.t = float(self.np_random.uniform(-1, 1)), 0
        return self._obs(), {}

    def _obs(self):
        img = np.zeros((16, 16, 1), np.uint8)
        img[:, int((self.s + 1) * 7.5)] = 255
        return {"pixels": img, "vec": np.array([self.s, -self.s, 0.5], np.float32)}

    def step(self, action):
        self.s = float(np.clip(self.s + 0.1 * float(action[0]), -1, 1))
        self.t += 1
        return self._obs(), -abs(self.s), False, self.t >= 20, {}


def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig("mhvae", (ModalitySpec("pixels", (1, 16, 16), "bernoulli", 4, "mlp", {"hidden": [32]}),
                                ModalitySpec("vec", (3,), "gaussian", 2, "mlp", {"hidden": [16]})), CoreSpec(3, (16,)))
    return build_model(cfg).eval()


def sb3_obs(env_obs: dict) -> dict:
    """What SB3's preprocessing gives the extractor for one raw observation (after VecTransposeImage: CHW, /255)."""
    return {"pixels": torch.as_tensor(env_obs["pixels"]).permute(2, 0, 1)[None].float() / 255,
            "vec": torch.as_tensor(env_obs["vec"])[None]}


def test_frozen_extractor_gives_the_wrappers_latent_and_leaves_the_model_alone():
    model = tiny_model()
    env = TwoSensorEnv()
    obs, _ = env.reset(seed=0)
    wrapped = MHVAEObservation(TwoSensorEnv(), model, modalities=("pixels", "vec"))
    z_wrapper, _ = wrapped.reset(seed=0)
    transposed = spaces.Dict({"pixels": spaces.Box(0, 255, (1, 16, 16), np.uint8), "vec": env.observation_space["vec"]})
    extractor = MHVAEExtractor(transposed, model)
    z = extractor(sb3_obs(obs))
    np.testing.assert_allclose(z.detach().numpy()[0], z_wrapper, atol=1e-5)
    assert not any(p.requires_grad for p in extractor.parameters())
    only_vec = MHVAEExtractor(transposed, model, modalities=["vec"])(sb3_obs(obs))
    np.testing.assert_allclose(only_vec.numpy()[0], model.encode({"vec": sb3_obs(obs)["vec"]})[0].numpy()[0], atol=1e-5)
    # a policy trained from one sensor is tested from another: the extractor switches like the wrapper does
    extractor.set_modalities("pixels")
    wrapped.set_modalities(("pixels",))
    np.testing.assert_allclose(extractor(sb3_obs(obs)).numpy()[0], wrapped.observation(obs), atol=1e-5)
    with pytest.raises(ValueError, match="sound"):
        extractor.set_modalities("sound")


def test_fine_tuned_extractor_trains_its_own_copy_in_eval_mode():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    space = spaces.Dict({"pixels": spaces.Box(0, 255, (1, 16, 16), np.uint8), "vec": TwoSensorEnv.observation_space["vec"]})
    extractor = MHVAEExtractor(space, model, fine_tune=True).train()
    assert not extractor.model.training  # BatchNorm keeps pretraining's statistics
    obs = {"pixels": torch.rand(4, 1, 16, 16), "vec": torch.randn(4, 3)}
    optimizer = torch.optim.SGD(extractor.parameters(), lr=0.1)
    extractor(obs).pow(2).sum().backward()
    grads = [p.grad for p in extractor.model.encoders["pixels"].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    optimizer.step()
    assert any(not torch.equal(v, extractor.model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the caller's model unchanged


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_multi_input_policy_learns_with_the_extractor(algo):
    import stable_baselines3 as sb3

    model = tiny_model()
    kwargs = {"features_extractor_class": MHVAEExtractor,
              "features_extractor_kwargs": {"model": model, "modalities": ["pixels"], "fine_tune": True}}
    extra = {"n_steps": 32, "batch_size": 16} if algo == "PPO" else {"learning_starts": 8, "batch_size": 8,
                                                                        "buffer_size": 100}
    agent = getattr(sb3, algo)("MultiInputPolicy", TwoSensorEnv(), policy_kwargs=kwargs, seed=0, device="cpu",
                               **extra)
    start = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(40)
    assert isinstance(agent.policy.features_extractor if algo == "PPO" else agent.policy.actor.features_extractor,
                      MHVAEExtractor)
    assert any(not torch.equal(a, b) for a, b in zip(start, agent.policy.parameters()))
    action, _ = agent.predict(TwoSensorEnv().reset(seed=1)[0], deterministic=True)
    assert action.shape == (1,)


def test_compare_table_says_when_transfer_is_undefined():
    """A seed whose agent does not beat random from its own sensor has no transfer ratio: the table says so
    (it printed "nan%" before) and the JSON record holds null, not NaN."""
    import json

    from agents.extractor_compare import summary, table

    per_seed = {"own": [-200.0, -1700.0], "other": [-300.0, -1600.0], "transfer": [0.8, None], "steps_per_s": [30, 31]}
    none_beat = {**per_seed, "transfer": [None, None]}
    record = {"train_sensor": "sound", "test_sensor": "image", "random": summary([-1600.0, -1630.0]),
              "variants": {"finetuned": {k: summary(v) for k, v in per_seed.items()},
                           "wrapper": {k: summary(v) for k, v in none_beat.items()}}}
    text = table(record)
    assert "80% ± 0% (1 of 2 seeds beat random)" in text and "— (own no better than random)" in text
    assert "nan" not in text.lower() and "NaN" not in json.dumps(record)
