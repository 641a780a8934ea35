"""Calibration observers (minmax / percentile / entropy / mse) and calibration manifests.

The observers are checked on synthetic data with known distributions, against reference
implementations of the KL search and of the expected quantization error, and in real
torchao PT2E round trips (PTQ with prepare_pt2e / convert_pt2e, QAT with
prepare_qat_pt2e and FakeQuantize), where a quantizer's activation spec is swapped for
one built from :func:`activation_observer`.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from edgecnn.errors import EdgecnnError
from edgecnn.quantize.calibset import CALIBRATION_DIR, load_calibration, parse_calibration
from edgecnn.quantize.observers import (
    METHODS,
    activation_observer,
    check_calibration_size,
    kl_divergences,
    min_calibration_images,
    side_errors,
)

HIST_METHODS = ("percentile", "entropy", "mse")
SYM = {"dtype": "int8", "symmetric": True}
AFFINE = {"dtype": "uint8", "symmetric": False}


def _observe(obs, data: torch.Tensor, batches: int = 8):
    for chunk in data.chunk(batches):
        assert obs(chunk) is chunk  # forward(x) -> x, untouched
    return obs


def _range(obs) -> tuple[float, float]:
    """The float range the observer's (scale, zero point) represent."""
    scale, zp = obs.calculate_qparams()
    s, z = float(scale), int(zp)
    return (obs.quant_min - z) * s, (obs.quant_max - z) * s


def _qmse(obs, x: torch.Tensor) -> float:
    scale, zp = obs.calculate_qparams()
    q = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), obs.quant_min, obs.quant_max)
    return float(((q - x) ** 2).mean())


def _gauss_with_outliers(n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    outliers = torch.tensor([60.0, -50.0, 45.0, 55.0, -40.0])
    x[torch.randperm(n, generator=g)[:5]] = outliers
    return x, x.abs() < 30


# ----------------------------------------------------------------------------- factory


def test_factory_names_and_errors():
    assert METHODS == ("minmax", "percentile", "entropy", "mse")
    with pytest.raises(
        EdgecnnError, match="unknown calibration method 'entropi'.*Did you mean: entropy.*minmax"
    ):
        activation_observer("entropi", **SYM)
    with pytest.raises(EdgecnnError, match="has no setting 'percentil'.*percentile"):
        activation_observer("percentile", percentil=99.9, **SYM)
    with pytest.raises(EdgecnnError, match="percentile must be"):
        activation_observer("percentile", percentile=101, **SYM)
    with pytest.raises(EdgecnnError, match="dtype"):
        activation_observer("mse", dtype="int4", symmetric=True)
    assert min_calibration_images("minmax") == 1
    assert all(min_calibration_images(m) >= 32 for m in HIST_METHODS)
    check_calibration_size("entropy", 32)
    with pytest.raises(EdgecnnError, match="needs at least 32 images.*got 8"):
        check_calibration_size("entropy", 8)
    from torchao.quantization.pt2e.observer import MinMaxObserver

    assert isinstance(activation_observer("minmax", **SYM)(), MinMaxObserver)


# ----------------------------------------------------------------------------- synthetic data


@pytest.mark.parametrize("form", [SYM, AFFINE], ids=["int8-symmetric", "uint8-affine"])
def test_outliers_shrink_the_range_and_the_error_on_the_bulk(form):
    x, bulk = _gauss_with_outliers()
    ref = _observe(activation_observer("minmax", **form)(), x)
    lo_ref, hi_ref = _range(ref)
    for method in HIST_METHODS:
        obs = _observe(activation_observer(method, **form)(), x)
        lo, hi = _range(obs)
        assert hi - lo < 0.75 * (hi_ref - lo_ref), method
        assert _qmse(obs, x[bulk]) < 0.6 * _qmse(ref, x[bulk]), method
    # percentile and entropy clip near the Gaussian's tail (|x| of a few sigma), not at 40+
    for method in ("percentile", "entropy"):
        lo, hi = _range(_observe(activation_observer(method, **form)(), x))
        assert 3.0 < hi < 8.0 and -8.0 < lo < -3.0, (method, lo, hi)


@pytest.mark.parametrize("form", [SYM, AFFINE], ids=["int8-symmetric", "uint8-affine"])
def test_uniform_data_keeps_about_the_full_range(form):
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(1)) * 8 - 4
    for method in METHODS:
        lo, hi = _range(_observe(activation_observer(method, **form)(), x))
        assert -4.0 * 1.02 < lo < -4.0 * 0.96 and 4.0 * 0.96 < hi < 4.0 * 1.02, (method, lo, hi)


@pytest.mark.parametrize("method", METHODS)
def test_symmetric_zero_point_is_zero_and_scale_is_threshold_over_127(method):
    relu = torch.relu(torch.randn(50_000, generator=torch.Generator().manual_seed(2)))  # wastes the sign bit
    for data in (relu, -relu, torch.randn(50_000)):
        obs = _observe(activation_observer(method, **SYM)(), data)
        scale, zp = obs.calculate_qparams()
        assert zp.tolist() == [0] and scale.shape == (1,) and float(scale) > 0
        if method != "minmax":  # torchao's MinMaxObserver divides by 127.5 for [-128, 127]
            lo, hi = obs.clip_range()
            assert lo == -hi and float(scale) == pytest.approx(hi / 127, rel=1e-6)


def test_affine_on_nonnegative_data_starts_at_zero():
    relu = torch.relu(torch.randn(50_000, generator=torch.Generator().manual_seed(3)))
    for method in METHODS:
        obs = _observe(activation_observer(method, **AFFINE)(), relu)
        scale, zp = obs.calculate_qparams()
        assert int(zp) == 0 and 2.0 < float(scale) * 255 <= float(relu.max()) + 1e-6, method


def test_entropy_safeguard_on_values_far_from_zero():
    """Few values, all far from zero (like logits): TensorRT's KL is 0 at the threshold that
    clips nearly everything into the first occupied bin; the safeguard keeps 99% of values."""
    x = 0.3 + 0.05 * torch.randn(256, generator=torch.Generator().manual_seed(10))
    _, hi = _observe(activation_observer("entropy", **SYM)(), x, 2).clip_range()
    assert float((x.abs() > hi).float().mean()) <= 0.01
    _, bare = _observe(activation_observer("entropy", max_clip=1.0, **SYM)(), x, 2).clip_range()
    assert float((x.abs() > bare).float().mean()) > 0.9  # what the bare algorithm does


def test_percentile_comes_from_the_histogram_of_all_batches():
    """Not a mean of per-batch percentiles: batches of very different scale, in growing order
    (the range is re-binned several times), give the percentile of the whole data."""
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(20_000, generator=g) * s for s in (0.5, 1.0, 2.0, 4.0)]
    whole = torch.cat(batches)
    for p in (99.0, 99.9):
        obs = activation_observer("percentile", percentile=p, **SYM)()
        for b in batches:
            obs(b)
        exact = float(np.percentile(whole.abs().numpy(), p))
        _, hi = obs.clip_range()
        assert hi == pytest.approx(exact, rel=0.01), p
    mean_of_batches = np.mean([np.percentile(b.abs().numpy(), 99.0) for b in batches])
    assert abs(mean_of_batches - float(np.percentile(whole.abs().numpy(), 99.0))) > 0.5  # the test can tell


@pytest.mark.slow
def test_deterministic_and_state_dict_round_trip():
    x, _ = _gauss_with_outliers(50_000, seed=5)
    for method in HIST_METHODS:
        for form in (SYM, AFFINE):
            a = _observe(activation_observer(method, **form)(), x)
            b = _observe(activation_observer(method, **form)(), x)
            assert [t.tolist() for t in a.calculate_qparams()] == [t.tolist() for t in b.calculate_qparams()]
            c = activation_observer(method, **form)()
            c.load_state_dict(a.state_dict())
            assert [t.tolist() for t in c.calculate_qparams()] == [t.tolist() for t in a.calculate_qparams()]


def test_non_finite_values_are_ignored():
    obs = activation_observer("entropy", **SYM)()
    with pytest.warns(UserWarning, match="non-finite"):
        obs(torch.tensor([1.0, -2.0, float("inf"), float("nan"), 0.5]))
    assert float(obs.max_val) == 1.0 and float(obs.min_val) == -2.0


# ----------------------------------------------------------------------------- references


def _kl_reference(bins: np.ndarray, levels: int, start: int) -> dict[int, float]:
    """The loop of NVIDIA pytorch-quantization's ``_compute_amax_entropy`` (TensorRT's algorithm)."""
    bins = bins.astype(np.float64).copy()
    bins[0] = bins[1]
    total = bins.sum()
    out = {}
    for i in range(start, len(bins) + 1):
        space = np.linspace(0, i, num=levels + 1)
        dig = np.digitize(np.arange(i), space) - 1
        dig[bins[:i] == 0] = -1
        new_counts = np.zeros(levels)
        for idx, d in enumerate(dig):
            if d != -1:
                new_counts[d] += bins[idx]
        for k, v in zip(*np.unique(dig[dig != -1], return_counts=True), strict=True):
            new_counts[k] /= v
        q = np.array([new_counts[d] if d != -1 else 0.0 for d in dig])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        with np.errstate(divide="ignore"):
            terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0)
        out[i] = float(terms.sum())
        assert p.sum() == pytest.approx(1.0) and total > 0
    return out


def test_kl_matches_the_reference_loop():
    rng = np.random.default_rng(6)
    hist = np.histogram(np.abs(rng.standard_normal(20_000)), bins=200, range=(0, 4.5))[0].astype(float)
    hist[150] = 0  # an empty bin: a threshold there puts outliers on a zero of Q -> infinite KL
    hist[190:] += 3
    for levels in (32, 64):
        ref = _kl_reference(hist, levels, start=40)
        i, kl = kl_divergences(torch.tensor(hist), levels, start_bin=40)
        got = dict(zip(i.tolist(), kl.tolist(), strict=True))
        assert set(got) == set(ref)
        for k in ref:
            if np.isinf(ref[k]):
                assert np.isinf(got[k]), k
            else:
                assert got[k] == pytest.approx(ref[k], rel=1e-7, abs=1e-10), k


def test_mse_error_matches_brute_force():
    """The closed-form expected error equals the error of densely sampled uniform bins."""
    rng = np.random.default_rng(7)
    h = torch.tensor(rng.integers(0, 50, size=256), dtype=torch.float64)
    r, m = 3.0, 400
    t = torch.tensor([0.4, 1.0, 2.2, 3.0], dtype=torch.float64)
    got = side_errors(h, r, t / 127, t)
    w = r / 256
    x = (torch.arange(256)[:, None] + (torch.arange(m)[None, :] + 0.5) / m).double() * w  # m points per bin
    weight = (h[:, None] / m).expand_as(x)
    for k, thr in enumerate(t.tolist()):
        q = torch.clamp(torch.round(x / (thr / 127)), max=127) * (thr / 127)
        brute = float((((x - q) ** 2) * weight).sum())
        assert float(got[k]) == pytest.approx(brute, rel=2e-3)


# ----------------------------------------------------------------------------- PT2E round trips


class _TinyNet(nn.Module):
    """conv-bn-relu, conv-bn + residual add, relu, pool, linear: the ops the four networks use.
    Without BatchNorm for the QAT test: prepare_qat_pt2e's conv-bn pattern matching costs ~5 s."""

    def __init__(self, bn: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), norm(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), norm(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def _net_and_data(bn: bool = True):
    torch.manual_seed(0)
    net = _TinyNet(bn)
    data = torch.randn(64, 3, 12, 12, generator=torch.Generator().manual_seed(8))
    return net, data


def _act_spec(method: str, *, symmetric: bool, qat: bool = False, **kw):
    """The activation QuantizationSpec: int8 symmetric [-128, 127] zero point 0 (TensorRT), or
    uint8 affine [0, 255] (x86). For QAT the same observer sits inside a FakeQuantize."""
    from torchao.quantization.pt2e import FakeQuantize
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    dtype, qscheme, qmin, qmax = (
        (torch.int8, torch.per_tensor_symmetric, -128, 127)
        if symmetric
        else (torch.uint8, torch.per_tensor_affine, 0, 255)
    )
    obs = activation_observer(method, dtype="int8" if symmetric else "uint8", symmetric=symmetric, **kw)
    ctr = FakeQuantize.with_args(observer=obs) if qat else obs
    return QuantizationSpec(
        dtype=dtype,
        quant_min=qmin,
        quant_max=qmax,
        qscheme=qscheme,
        is_dynamic=False,
        observer_or_fake_quant_ctr=ctr,
    )


def _symmetric_quantizer(method: str, qat: bool = False):
    """torchao's XNNPACK quantizer config with the activation observer swapped."""
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    base = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    act = _act_spec(method, symmetric=True, qat=qat)
    return XNNPACKQuantizer().set_global(
        dataclasses.replace(base, input_activation=act, output_activation=act)
    )


def _x86_quantizer(method: str, *, symmetric: bool = False, qat: bool = False):
    """torchao's x86 Inductor quantizer (uint8 affine activations by default) with the observer
    swapped; its QAT annotation is cheap (XNNPACK's traces a dozen conv-bn patterns, ~5 s)."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    base = get_default_x86_inductor_quantization_config(is_qat=qat)
    act = _act_spec(method, symmetric=symmetric, qat=qat)
    return X86InductorQuantizer().set_global(
        dataclasses.replace(base, input_activation=act, output_activation=act)
    )


@pytest.fixture(scope="module")
def exported_eval():
    net, data = _net_and_data()
    net.eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        net.train()(data)
    net.eval()
    gm = torch.export.export(net, (data[:16],), strict=True).module()
    return net, gm, data


def _activation_qparams(converted) -> list[tuple[float, int, int, int]]:
    out = []
    for n in converted.graph.nodes:
        if (
            n.op == "call_function"
            and "quantize_per_tensor" in str(n.target)
            and "dequantize" not in str(n.target)
        ):
            _, scale, zp, qmin, qmax, _ = n.args
            out.append((float(scale), int(zp), qmin, qmax))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_ptq_round_trip_symmetric_int8(method, exported_eval):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    net, gm, data = exported_eval
    prepared = prepare_pt2e(copy.deepcopy(gm), _symmetric_quantizer(method))
    observers = [
        m
        for m in prepared.modules()
        if type(m).__module__ == "edgecnn.quantize.observers" or type(m).__name__ == "MinMaxObserver"
    ]
    with torch.no_grad():
        for batch in data.split(16):
            prepared(batch)
    expected = {round(float(o.calculate_qparams()[0]), 9) for o in observers if o.dtype == torch.int8}
    converted = convert_pt2e(prepared)
    qparams = _activation_qparams(converted)
    assert len(qparams) >= 4
    assert all(zp == 0 and (qmin, qmax) == (-128, 127) for _, zp, qmin, qmax in qparams)
    assert {round(s, 9) for s, *_ in qparams} <= expected
    with torch.no_grad():
        ref, out = net(data[:16]), converted(data[:16])
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max())


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_ptq_round_trip_uint8_affine_x86(method, exported_eval):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    net, gm, data = exported_eval
    prepared = prepare_pt2e(copy.deepcopy(gm), _x86_quantizer(method))
    with torch.no_grad():
        for batch in data.split(16):
            prepared(batch)
    converted = convert_pt2e(prepared)
    qparams = _activation_qparams(converted)
    assert len(qparams) >= 3 and all((qmin, qmax) == (0, 255) for _, _, qmin, qmax in qparams)
    assert any(zp > 0 for _, zp, _, _ in qparams)  # the input image is signed: affine zero point
    with torch.no_grad():
        ref, out = net(data[:16]), converted(data[:16])
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max())


def test_qat_with_fake_quantize_round_trip():
    from torchao.quantization.pt2e import FakeQuantize, disable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    net, data = _net_and_data(bn=False)
    gm = torch.export.export(net.train(), (data[:16],), strict=True).module()
    prepared = prepare_qat_pt2e(gm, _x86_quantizer("entropy", symmetric=True, qat=True))
    fqs = [
        m
        for m in prepared.modules()
        if isinstance(m, FakeQuantize) and type(m.activation_post_process).__name__ == "EntropyObserver"
    ]
    assert len(fqs) >= 3
    opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
    target = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(9))
    for step, (x, y) in enumerate(zip(data.split(16), target.split(16), strict=True)):
        if step == 2:
            prepared.apply(disable_observer)  # scales freeze after the calibration batches
        loss = nn.functional.cross_entropy(prepared(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    for fq in fqs:
        scale, _ = fq.activation_post_process.calculate_qparams()
        assert int(fq.zero_point) == 0 and float(fq.scale) == pytest.approx(float(scale))
    # (no BatchNorm or Dropout here, so no move_exported_model_to_eval before converting)
    converted = convert_pt2e(prepared)
    qparams = _activation_qparams(converted)
    assert qparams and all(zp == 0 and (qmin, qmax) == (-128, 127) for _, zp, qmin, qmax in qparams)
    with torch.no_grad():
        assert torch.isfinite(converted(data[:16])).all()


# ----------------------------------------------------------------------------- manifests


def test_builtin_manifest_loads_and_drives_the_observers():
    assert (CALIBRATION_DIR / "fashion-mnist.toml").is_file()
    m = load_calibration("fashion-mnist")
    assert (m.dataset, m.split, m.images, m.seed) == ("fashion-mnist", "calib", 512, None)
    assert m.images >= max(min_calibration_images(x) for x in METHODS)
    assert m.observer_kwargs("minmax") == {}
    for method in METHODS:
        assert activation_observer(method, **SYM, **m.observer_kwargs(method))() is not None
    m.check_dataset("fashion-mnist")
    with pytest.raises(EdgecnnError, match="is for dataset 'fashion-mnist', not 'flowers'"):
        m.check_dataset("flowers")


def test_manifest_selects_from_the_calib_split():
    from edgecnn.data.splits import Split

    calib = Split("calib", "train", np.arange(100, 1100), "h")
    m = parse_calibration({"dataset": "x", "images": 256}, "t.toml")
    small, big = m.select(calib, 128), m.select(calib)
    assert len(big) == 256 and list(small.indices) == list(big.indices[:128])  # nested prefixes
    seeded = parse_calibration({"dataset": "x", "images": 256, "seed": 3}, "t.toml").select(calib)
    assert len(seeded) == 256 and set(seeded.indices) <= set(calib.indices)
    with pytest.raises(EdgecnnError, match="calib split"):
        m.select(Split("test", "test", np.arange(10), "h"))
    with pytest.raises(EdgecnnError, match="not possible"):
        m.select(calib, 5000)


def test_manifest_errors_name_the_key_and_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('dataset = "x"\nimage = 10\n')
    with pytest.raises(EdgecnnError, match=r"unknown key 'image' in .*c\.toml.*Did you mean: images"):
        load_calibration(p)
    p.write_text('dataset = "x"\nsplit = "test"\n')
    with pytest.raises(EdgecnnError, match="split = 'test' is not one of 'calib'"):
        load_calibration(str(p))
    p.write_text('dataset = "x"\n[percentile]\npercentile = 120\n')
    with pytest.raises(EdgecnnError, match=r"c\.toml.*percentile must be in"):
        load_calibration(p)
    with pytest.raises(EdgecnnError, match="no calibration manifest named 'fashion'.*fashion-mnist"):
        load_calibration("fashion")
