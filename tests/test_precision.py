"""The bf16 training path (mhvae_perception/models/precision.py, ``pretrain/run.py with precision=bf16``): each
Linear's product from bfloat16-rounded operands, everything else float32; layers restored after the block (also
after an error); the MHVAE's loss close to float32's; the setting checked, recorded and compared on resume."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mhvae_perception import checkpoints, presets
from mhvae_perception.models import precision
from mhvae_perception.models.precision import PRECISIONS, bfloat16_products, training_context
from pretrain.settings import SettingsError
from tests.test_pretrain import FAST, run


def test_a_linear_product_is_the_exact_product_of_bfloat16_operands():
    torch.manual_seed(0)
    layer, x = nn.Linear(40, 7), torch.randn(5, 40)
    exact = F.linear(x, layer.weight, layer.bias)
    # the closed form: operands rounded to bfloat16, product accumulated and returned in float32, bias added
    rounded = F.linear(x.to(torch.bfloat16), layer.weight.to(torch.bfloat16)).float() + layer.bias
    with bfloat16_products(layer):
        inside = layer(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, rounded)
    assert not torch.equal(inside, exact) and torch.allclose(inside, exact, rtol=0.05, atol=0.05)
    assert type(layer) is nn.Linear and torch.equal(layer(x), exact)  # a plain float32 layer again


def test_layers_are_restored_after_an_error_and_parameters_never_change_dtype():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    params = [p.data_ptr() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        with bfloat16_products(model):
            model(torch.randn(3, 4)).sum().backward()
            raise RuntimeError("boom")
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [p.data_ptr() for p in model.parameters()] == params  # the same tensors: the optimizer's stay valid
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


def test_mhvae_loss_with_bfloat16_products_is_close_to_float32():
    torch.manual_seed(0)
    model = presets.build("mnist", "mhvae").eval()  # eval: no MRD mask, so both passes see the same inputs
    batch = {"image": torch.bernoulli(torch.full((16, 1, 28, 28), 0.3)),
             "label": F.one_hot(torch.arange(16) % 10, 10).float()}
    torch.manual_seed(1)
    full = model.loss(batch, epoch=1.0)
    torch.manual_seed(1)
    with training_context(model, "bf16"):
        low = model.loss(batch, epoch=1.0)
    assert low.loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in low.terms.values())
    assert any(float(low.terms[k]) != float(full.terms[k]) for k in full.terms)  # the products did change
    assert abs(float(low.loss.detach()) - float(full.loss.detach())) < 0.01 * abs(float(full.loss.detach()))
    with pytest.raises(ValueError, match="choose one of"):
        training_context(model, "fp16")
    assert PRECISIONS == ("fp32", "bf16")


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
def test_a_compiled_loss_takes_each_new_epoch_without_recompiling(kind):
    """The epoch changes every step: as a Python float it was a constant of the graph, recompiled each step until
    dynamo's limit sent training back to eager Python (bf16 runs no faster than float32). As a tensor it is an
    input: after the first call (and one graph for a second batch size) nothing recompiles, and the warm-up
    weights and loss are the eager loss's."""
    torch._dynamo.reset()
    model = presets.build("mnist", kind, warmup_modality_epochs=2.0, warmup_core_epochs=4.0).train()  # MRD on
    batch = {"image": torch.bernoulli(torch.full((8, 1, 28, 28), 0.3)),
             "label": F.one_hot(torch.arange(8) % 10, 10).float()}
    loss = precision.compile_loss(model.loss, backend="aot_eager")
    loss(batch, epoch=0.5)
    loss({k: v[:5] for k, v in batch.items()}, epoch=0.75)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for epoch in (1.0, 1.25, 2.5, 7.0):
            torch.manual_seed(3)
            out = loss(batch, epoch=epoch)
            torch.manual_seed(3)
            eager = model.loss(batch, epoch=epoch)
            assert out.schedule == eager.schedule and all(type(v) is float for v in out.schedule.values())
            assert torch.allclose(out.loss, eager.loss, rtol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
def test_the_training_loss_compiles_into_one_graph(kind):
    """No graph break in a training loss: MRD's keep mask comes from thresholds computed once per model (their
    checks are Python branches on tensor values, which split the MHVAE's compiled step into five graphs), and it
    is the shared sampler's mask for the same random numbers."""
    from mhvae_perception.models.subsets import sample_keep_mask

    torch._dynamo.reset()
    model = presets.build("mnist", kind).train()
    batch = {"image": torch.bernoulli(torch.full((8, 1, 28, 28), 0.3)),
             "label": F.one_hot(torch.arange(8) % 10, 10).float()}
    explained = torch._dynamo.explain(model.loss)(batch, epoch=torch.tensor(1.5, dtype=torch.float64))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    torch._dynamo.reset()
    if kind == "mhvae":
        torch.manual_seed(5)
        mask = model.sample_keep_mask(500)
        torch.manual_seed(5)
        assert torch.equal(mask, sample_keep_mask(model.drop_probs, 500)) and mask.any(1).all()
        # the thresholds move with the model, once (no copy from the host in each step on another device)
        assert {t.device.type for t in model.to("meta")._keep_thresholds} == {"meta"}


def test_precision_is_checked_recorded_and_compared_on_resume(tmp_path, monkeypatch):
    from tests.test_pretrain import synthetic_mnist
    from mhvae_perception import data

    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: synthetic_mnist())
    with pytest.raises(SettingsError, match="precision='fp16'.*one of"):
        run(dict(FAST, run_dir=str(tmp_path / "bad"), epochs=1, precision="fp16"))
    assert not (tmp_path / "bad").exists()
    compiled = []  # compiling takes minutes on a loaded CPU: the test checks the plumbing, the benchmark the speed
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(fn) or fn)
    products, forward = [], precision._Bfloat16ProductLinear.forward
    monkeypatch.setattr(precision._Bfloat16ProductLinear, "forward", lambda self, x: products.append(1) or forward(self, x))
    out = tmp_path / "bf16"
    run(dict(FAST, run_dir=str(out), epochs=1, batch_size=64, precision="bf16", num_threads=1))
    assert len(compiled) == 1 and len(products) > 0  # the training loss compiled once, its products in bfloat16
    state = checkpoints.load_checkpoint(out / "checkpoints" / "last.pt").training_state
    assert state["run_config"]["precision"] == "bf16" and state["epoch"] == 1
    assert torch.isfinite(torch.tensor(state["history"][0]["valid/elbo"]))
    with pytest.raises(SettingsError, match="precision: 'bf16' -> 'fp32'"):  # continuing it in float32 mixes runs
        run(dict(FAST, run_dir=str(out), epochs=2, batch_size=64, precision="fp32"))


def test_bf16_training_compiles_and_survives_a_smaller_last_batch(tmp_path, monkeypatch):
    """The compiled path (inductor's code generation aside: minutes) on small networks: 192 training points in batches of 50 end with a batch of 42 (a
    second batch size once crashed the compiled loss in the MRD mask's sampling), the run trains two epochs and
    its validation ELBO is finite."""
    from tests.test_pretrain import synthetic_mnist
    from mhvae_perception import data

    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: synthetic_mnist())
    real_compile = torch.compile  # dynamo's tracing and AOT autograd as in training; no C++ code generation
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: real_compile(fn, **{**kwargs, "backend": "aot_eager"}))
    small = {"modalities": {m: {"network_kwargs": {"hidden": [16]}} for m in ("image", "label")},
             "core": {"hidden": [16]}}
    out = tmp_path / "compiled"
    run(dict(FAST, run_dir=str(out), epochs=2, batch_size=50, precision="bf16", num_threads=1, model_overrides=small))
    state = checkpoints.load_checkpoint(out / "checkpoints" / "last.pt").training_state
    assert state["epoch"] == 2 and all(math.isfinite(r["valid/elbo"]) for r in state["history"])
