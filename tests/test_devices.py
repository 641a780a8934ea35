"""Device profiles, detection from fake filesystem roots, the latency predictor, `edgecnn devices`."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecnn.cli import cli
from edgecnn.devices import (
    HOST,
    detect_device,
    figure_paths,
    host_profile,
    l4t_release,
    list_devices,
    load_device,
    parse_profile,
)
from edgecnn.devices.predict import (
    Efficiency,
    LayerCost,
    efficiency_for,
    fit_efficiency,
    network_costs,
    predict_latency,
    roofline,
)
from edgecnn.devices.profile import ALIASES, CalibrationPoint, device_files
from edgecnn.errors import EdgecnnError

DEVICE_FILES = device_files()
FOUR = ("alexnet", "vgg16", "resnet18", "googlenet")


def test_the_profiles_the_design_names_exist():
    for name in (
        "jetson-orin-nano",
        "jetson-orin-nx",
        "jetson-agx-orin",
        "jetson-agx-xavier",
        "jetson-nano",
        "rpi4",
        "rpi5",
    ):
        assert name in DEVICE_FILES
    assert list_devices()[-1] == HOST


@pytest.mark.parametrize("name", sorted(DEVICE_FILES))
def test_every_profile_loads_and_sources_every_figure(name):
    p = load_device(name)
    assert p.name == name and p.source == f"devices/{name}.toml"
    figures = figure_paths(p)
    assert "power_w" in figures and "memory.bandwidth_gbps" in figures
    missing = [k for k in figures if k not in p.sources]
    assert not missing, f"{name}: no [sources] entry for {missing}"
    for key, text in p.sources.items():
        assert text.strip(), key
    rt, prec = p.check()
    assert p.peak_ops(rt, prec) > 0
    for cp in p.calibration_points:
        assert cp.arch in FOUR and cp.source
    # every peak comes from reference/ or says it is derived
    for key in (k for k in figures if ".peak_tops." in k):
        assert "reference/" in p.sources[key] or p.sources[key].startswith("DERIVED"), key


def test_jetson_nano_has_no_int8():
    p = load_device("jetson-nano")
    assert p.runtime("tensorrt").precisions == ("fp16", "fp32")
    with pytest.raises(EdgecnnError, match="no INT8 path"):
        p.check("tensorrt", "int8")


def test_aliases():
    assert ALIASES == {"cpu": "host", "jetson": "jetson-orin-nano", "rpi": "rpi5"}
    assert load_device("jetson").name == "jetson-orin-nano"
    assert load_device("rpi").name == "rpi5"
    assert load_device("cpu").name == HOST
    assert load_device("rpi5").aliases == ("rpi",)


def test_unknown_device_suggests_the_nearest():
    with pytest.raises(EdgecnnError, match=r"unknown device 'jetson-nan'.*Did you mean: jetson-nano"):
        load_device("jetson-nan")
    with pytest.raises(EdgecnnError, match="Did you mean: .*rpi5"):
        load_device("rpi6")


def _profile_text() -> str:
    return Path(DEVICE_FILES["rpi4"]).read_text()


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda t: t.replace("power_w = 6.4", "power_w = 6.4\npowr = 3"), "powr"),
        (lambda t: t.replace("bandwidth_gbps = 12.8", "bandwidth_gbps = 12.8\nbandwith = 1"), "bandwith"),
        (lambda t: t.replace("[cpu.peak_tops]", "[cpu.peak_tops]\nint4 = 1.0"), "int4"),
        (lambda t: t.replace("[sources]", '[sources]\n"memory.bandwith" = "x"'), "memory.bandwith"),
        (lambda t: t.replace("[runtimes.tflite]", "[runtimes.tflite]\nthreads = 4"), "threads"),
    ],
)
def test_unknown_key_is_an_error_naming_key_and_file(tmp_path, edit, key):
    f = tmp_path / "mydev.toml"
    f.write_text(edit(_profile_text()))
    with pytest.raises(EdgecnnError) as e:
        load_device(str(f))
    assert f"'{key}'" in str(e.value) and str(f) in str(e.value)


def test_unknown_runtime_and_unsupported_precision(tmp_path):
    from edgecnn.config import read_toml

    data = read_toml(DEVICE_FILES["rpi4"])
    bad = {**data, "runtimes": {"tflit": data["runtimes"]["tflite"]}}
    with pytest.raises(EdgecnnError, match="unknown runtime 'tflit'.*Did you mean: tflite"):
        parse_profile(bad, "x.toml")
    bad = {**data, "runtimes": {"tflite": {**data["runtimes"]["tflite"], "precisions": ["int8", "fp16"]}}}
    with pytest.raises(EdgecnnError, match="lists fp16 but .* has no fp16"):
        parse_profile(bad, "x.toml")


# ---- detection ------------------------------------------------------------------------


def _fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "model, tegra, expected",
    [
        ("NVIDIA Jetson Orin Nano Developer Kit\x00", True, "jetson-orin-nano"),
        ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00", True, "jetson-orin-nano"),
        ("NVIDIA Jetson Nano Developer Kit\x00", True, "jetson-nano"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00", True, "jetson-orin-nx"),
        ("Jetson AGX Orin\x00", True, "jetson-agx-orin"),
        ("Jetson-AGX\x00", True, "jetson-agx-xavier"),
        ("Raspberry Pi 5 Model B Rev 1.0\x00", False, "rpi5"),
        ("Raspberry Pi 4 Model B Rev 1.4\x00", False, "rpi4"),
        ("Raspberry Pi 3 Model B Plus Rev 1.3\x00", False, HOST),
        (None, False, HOST),
    ],
)
def test_detect_device_from_fake_root(tmp_path, model, tegra, expected):
    files = {}
    if model is not None:
        files["proc/device-tree/model"] = model
    if tegra:
        files["etc/nv_tegra_release"] = (
            "# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n"
        )
    root = _fake_root(tmp_path, files)
    assert detect_device(root) == expected
    if tegra:
        assert l4t_release(root) == "R36.4.0"


CPUINFO_SPR = "".join(
    f"processor\t: {i}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+ @ 2.00GHz\ncpu MHz\t\t: 1900.000\n"
    "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n\n"
    for i in range(4)
)


def test_host_profile_from_fake_cpuinfo(tmp_path):
    root = _fake_root(
        tmp_path, {"proc/cpuinfo": CPUINFO_SPR, "proc/meminfo": "MemTotal:       16000000 kB\n"}
    )
    assert detect_device(root) == HOST
    p = host_profile(root, use_cache=False)
    assert p.name == HOST and p.kind == "host" and p.target == "cpu"
    assert p.cpu.cores == 4 and p.cpu.clock_ghz == 2.0  # from the model name, not cpu MHz
    assert math.isclose(p.cpu.peak_tops.int8, 4 * 2.0 * 2048 / 1e3)  # AMX
    assert math.isclose(p.cpu.peak_tops.bf16, 4 * 2.0 * 1024 / 1e3)
    assert math.isclose(p.cpu.peak_tops.fp32, 4 * 2.0 * 64 / 1e3)  # AVX-512
    assert "amx_int8" in p.sources["cpu.peak_tops.int8"] and p.sources["cpu.peak_tops.int8"].startswith(
        "DERIVED"
    )
    assert "assumed" in p.sources["memory.bandwidth_gbps"]
    assert p.memory.size_gb == 16.0
    assert "bf16" in p.runtime("openvino").precisions
    assert not [k for k in figure_paths(p) if k not in p.sources]
    # a calibration record replaces the assumed bandwidth by the measured one
    p2 = host_profile(root, {"bandwidth_gbps": 33.3, "created": "t"})
    assert p2.memory.bandwidth_gbps == 33.3 and p2.sources["memory.bandwidth_gbps"].startswith("measured")


def test_host_profile_avx2_only(tmp_path):
    text = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2250.000\nflags\t\t: sse2 avx fma avx2\n"
    root = _fake_root(
        tmp_path, {"proc/cpuinfo": text, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "3000000\n"}
    )
    p = host_profile(root, use_cache=False)
    assert p.cpu.clock_ghz == 3.0
    assert math.isclose(p.cpu.peak_tops.fp32, 3.0 * 32 / 1e3) and math.isclose(
        p.cpu.peak_tops.int8, 3.0 * 64 / 1e3
    )
    assert p.cpu.peak_tops.bf16 is None and "bf16" not in p.runtime("openvino").precisions


# ---- predictor --------------------------------------------------------------------------

EFF = Efficiency(
    compute={"fp32": 0.5, "int8": 0.5}, memory=0.5, overhead_us=10.0, fit_error=math.log(1.2), basis="test"
)


def test_predictor_is_monotone_in_macs():
    p = load_device("rpi4")
    times = []
    for k in range(1, 8):
        conv = LayerCost("conv", "conv", ops=2.0 * k * 1e8, weights=64 * 64 * 9, activations=2 * 64 * 56 * 56)
        times.append(roofline([conv], p, "tflite", "fp32", EFF)["seconds"])
    assert all(a < b for a, b in itertools.pairwise(times))
    net = [network_costs(a) for a in FOUR]
    macs = [sum(c.ops for c in n) for n in net]
    # more layers of the same shape never predict less
    base = network_costs("resnet18")
    assert (
        roofline(base + base, p, "tflite", "int8", EFF)["seconds"]
        > roofline(base, p, "tflite", "int8", EFF)["seconds"]
    )
    assert macs[1] == max(macs)  # vgg16 is the heaviest


def test_fc_layers_are_bandwidth_bound_at_batch_1():
    p = load_device("rpi4")
    fc = LayerCost("fc", "linear", ops=2.0 * 4096 * 4096, weights=4096 * 4096 + 4096, activations=2 * 4096)
    r = roofline([fc], p, "tflite", "int8", EFF)
    bytes_ = (fc.weights + fc.activations) * 1
    assert math.isclose(r["seconds"], bytes_ / (p.bandwidth * EFF.memory) + 10e-6, rel_tol=1e-9)
    assert r["memory_bound_layers"] == ["fc"]
    # more compute does not make a bandwidth-bound layer faster
    faster = Efficiency(compute={"int8": 5.0}, memory=0.5, overhead_us=10.0, fit_error=0.1, basis="t")
    assert math.isclose(roofline([fc], p, "tflite", "int8", faster)["seconds"], r["seconds"])
    # in AlexNet and VGG16 the classifier is bound by weight bandwidth at batch 1
    for arch in ("alexnet", "vgg16"):
        out = predict_latency(arch, "rpi4", precision="fp32")
        assert {"classifier.1" if arch == "alexnet" else "classifier.0"} <= set(
            out["prediction"]["memory_bound_layers"]
        )


@pytest.mark.parametrize("device", [*sorted(DEVICE_FILES), HOST])
def test_predictions_are_labelled_predicted_with_a_band(device):
    p = load_device(device)
    for prec in p.runtime().precisions:
        r = predict_latency("resnet18", p, precision=prec)
        assert r["latency_source"] == "predicted" and r["latency_source"] != "measured"
        lat = r["latency_ms"]
        assert lat["n"] == 0 and lat["min"] < lat["p50"] <= lat["p90"] <= lat["p99"] < lat["max"]
        assert r["error_pct"] > 0 and r["band_ms"] == [lat["min"], lat["max"]]
        assert "measured" not in json.dumps({k: v for k, v in r.items() if k == "latency_source"})


def test_fit_recovers_known_efficiencies_and_reports_loo_error():
    p = load_device("rpi4")
    truth = Efficiency(compute={"fp32": 0.4}, memory=0.6, overhead_us=50.0, fit_error=0.0, basis="truth")
    pts = [
        CalibrationPoint(
            arch=a,
            runtime="tflite",
            precision="fp32",
            measured_with="synthetic",
            source="test",
            latency_ms=roofline(network_costs(a), p, "tflite", "fp32", truth)["seconds"] * 1e3,
        )
        for a in FOUR
    ]
    eff = fit_efficiency(p, "tflite", pts)
    assert eff.points == 4 and set(eff.residuals_pct) == {f"{a}/fp32" for a in FOUR}
    for cp in pts:
        got = roofline(network_costs(cp.arch), p, "tflite", "fp32", eff)["seconds"] * 1e3
        assert abs(got / cp.latency_ms - 1) < 0.1
    assert math.exp(eff.fit_error) < 1.2


def test_published_fit_is_used_and_transferred():
    nano = efficiency_for(load_device("jetson-nano"))
    assert nano.points == 3 and "published" in nano.basis
    orin = efficiency_for(load_device("jetson-orin-nano"))
    assert orin.basis.startswith("transferred from jetson-agx-xavier")
    r = predict_latency("resnet18", "jetson", precision="int8")
    assert r["error_pct"] > 100  # transferred + uncalibrated precision: a wide band, said in notes
    assert any("transferred" in n for n in r["prediction"]["notes"])


# ---- CLI ---------------------------------------------------------------------------------


def test_devices_cli_json():
    r = CliRunner().invoke(cli, ["devices", "--json"], catch_exceptions=False)
    assert r.exit_code == 0
    rows = json.loads(r.output)
    names = [d["name"] for d in rows]
    assert names == list_devices()
    by = {d["name"]: d for d in rows}
    assert by["jetson-orin-nano"]["aliases"] == ["jetson"] and by[HOST]["aliases"] == ["cpu"]
    assert sum(d["this_machine"] for d in rows) == 1
    assert by["rpi4"]["sources"]["memory.bandwidth_gbps"]


def test_devices_cli_table_and_fit_option_error():
    r = CliRunner().invoke(cli, ["devices"], catch_exceptions=False)
    assert r.exit_code == 0 and "jetson-orin-nano" in r.output
    r = CliRunner().invoke(cli, ["devices", "fit", "--int8"])
    assert r.exit_code == 2 and "pass it with --nets" in r.output


def test_devices_calibrate_is_a_hidden_alias_of_fit():
    """The old name keeps working (scripts type it) but is no longer listed: "calibrate" is PTQ's."""
    listed = CliRunner().invoke(cli, ["devices", "--help"], catch_exceptions=False).output
    assert "fit " in listed and "calibrate " not in listed.split("Commands:")[-1]
    r = CliRunner().invoke(cli, ["devices", "calibrate", "--int8"])
    assert r.exit_code == 2 and "pass it with --nets" in r.output
    r = CliRunner().invoke(cli, ["devices", "calibrate", "--help"], catch_exceptions=False)
    assert r.exit_code == 0 and "--nets" in r.output


def test_calibration_record_is_cached_atomically(edgecnn_home, monkeypatch):
    from edgecnn.devices import fit
    from edgecnn.devices.detect import load_host_fit

    fake = {
        "gemm_tops": {"fp32": 0.05, "int8": 0.1},
        "conv_tops": {},
        "backend": "fake",
        "bandwidth_gbps": 12.5,
    }
    monkeypatch.setattr(fit, "microbenchmarks", lambda **kw: dict(fake))
    _, path = fit.fit_host(layers=False)
    assert (
        path.parent == edgecnn_home / "devices" and path.name.startswith("host-") and path.suffix == ".json"
    )
    assert load_host_fit()["bandwidth_gbps"] == 12.5
    assert not list(path.parent.glob(".*.tmp"))
    prof = load_device("host")
    assert prof.memory.bandwidth_gbps == 12.5
    eff = efficiency_for(prof, "openvino")
    assert "microbenchmark" in eff.basis and math.isclose(eff.compute["fp32"], 0.05 / prof.cpu.peak_tops.fp32)


def test_microbenchmarks_structure():
    from edgecnn.devices.fit import microbenchmarks

    out = microbenchmarks(threads=1, seconds=0.01, size=64)
    assert out["bandwidth_gbps"] > 0 and out["gemm_tops"]["fp32"] > 0


def test_host_fit_to_measured_network_points(edgecnn_home):
    from edgecnn.devices.detect import FIT_FORMAT, host_fit_path
    from edgecnn.fileio import atomic_write_json

    prof = load_device("host")
    truth = Efficiency(compute={"fp32": 0.3}, memory=0.5, overhead_us=20.0, fit_error=0.0, basis="truth")
    pts = [
        {
            "arch": a,
            "runtime": "openvino",
            "precision": "fp32",
            "measured_with": "synthetic",
            "source": "test",
            "latency_ms": roofline(network_costs(a), prof, "openvino", "fp32", truth)["seconds"] * 1e3,
        }
        for a in FOUR
    ]
    atomic_write_json(host_fit_path(), {"format": FIT_FORMAT, "calibration_points": pts})
    eff = efficiency_for(load_device("host"), "openvino")
    assert eff.points == 4 and "measured on this host" in eff.basis
    r = predict_latency("resnet18", "host", precision="fp32")
    assert r["latency_source"] == "predicted" and r["prediction"]["basis"] == eff.basis


def test_single_layer_costs_match_the_network_profiler():
    """The layer suite counts ops and bytes as the network costs do: a suite layer equal to a
    ResNet18 layer has that layer's cost."""
    from edgecnn.devices.layers import layer_cost

    net = {c.name: c for c in network_costs("resnet18")}
    ours = layer_cost(("conv", 64, 64, 3, 1, 56))
    ref = net["layer1.0.conv1"]  # 64->64 3x3 at 56 px, no bias in ResNet: one bias vector less
    assert ours.ops == ref.ops and ours.activations == ref.activations and ours.weights == ref.weights + 64
    fc = layer_cost(("linear", 512, 1000))
    assert (fc.ops, fc.weights) == (net["fc"].ops, net["fc"].weights)
    pool = layer_cost(("pool", 64, 3, 2, 112))
    assert pool.ops == 0 and pool.activations == 64 * 112 * 112 + 64 * 55 * 55


def test_fit_to_layers_recovers_the_efficiencies_and_predicts_the_networks():
    """Layer timings made by a known roofline are fitted back to it, and the networks predicted
    from that fit match the same roofline: the fit generalises from layers to networks."""
    from edgecnn.devices.layers import SUITE, layer_cost
    from edgecnn.devices.predict import fit_to_layers

    prof = load_device("host")
    truth = Efficiency(
        compute={"fp32": 0.35, "int8": 0.2}, memory=0.6, overhead_us=15.0, fit_error=0.0, basis="truth"
    )
    pts = [
        {
            "layer": list(spec),
            "precision": prec,
            "seconds": roofline([layer_cost(spec)], prof, "openvino", prec, truth)["seconds"],
        }
        for prec in ("fp32", "int8")
        for spec in SUITE
    ]
    eff = fit_to_layers(prof, "openvino", pts)
    assert eff.points == len(pts) and "single layers" in eff.basis
    for arch in FOUR:
        for prec in ("fp32", "int8"):
            want = roofline(network_costs(arch), prof, "openvino", prec, truth)["seconds"]
            got = roofline(network_costs(arch), prof, "openvino", prec, eff)["seconds"]
            assert got == pytest.approx(want, rel=0.08), (arch, prec)


def test_host_uses_the_layer_fit_when_calibrated(edgecnn_home):
    from edgecnn.devices.detect import FIT_FORMAT, host_fit_path
    from edgecnn.devices.layers import SUITE, layer_cost
    from edgecnn.fileio import atomic_write_json

    prof = load_device("host")
    truth = Efficiency(compute={"fp32": 0.3}, memory=0.5, overhead_us=10.0, fit_error=0.0, basis="truth")
    pts = [
        {
            "layer": list(spec),
            "precision": "fp32",
            "seconds": roofline([layer_cost(spec)], prof, "openvino", "fp32", truth)["seconds"],
        }
        for spec in SUITE
    ]
    atomic_write_json(
        host_fit_path(),
        {
            "format": FIT_FORMAT,
            "gemm_tops": {"fp32": 0.01},
            "layer_points": {"runtime": "openvino", "threads": 2, "points": pts},
        },
    )
    eff = efficiency_for(load_device("host"), "openvino")
    assert "single layers" in eff.basis and eff.compute["fp32"] == pytest.approx(0.3, rel=0.1)
    assert "GEMM" in efficiency_for(load_device("host"), "onnxruntime").basis  # layers were timed in OpenVINO


def test_layer_microbenchmark_runs_int8_kernels_in_openvino():
    """The INT8 suite layers really run as u8 kernels (not float with FakeQuantize), the prefix
    hands them u8 input (no conversion before the layer), and the timings come back positive."""
    pytest.importorskip("openvino")
    from edgecnn.devices.layers import build, measure_layers
    from edgecnn.devices.openvino_cpu import compile_cpu

    for spec in (("conv", 16, 16, 3, 1, 14), ("linear", 64, 32)):
        compiled = compile_cpu(build(spec, "int8")[0], "int8", 1)
        kinds = {
            op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
            for op in compiled.get_runtime_model().get_ordered_ops()
        }
        assert kinds.get("Convolution", kinds.get("FullyConnected")) == "u8", kinds
    compiled = compile_cpu(build(("pool", 16, 2, 2, 14), "int8")[0], "int8", 1)
    ops = [
        (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
        for op in compiled.get_runtime_model().get_ordered_ops()
    ]
    kinds = [k for k, _ in ops]
    assert ("Pooling", "u8") in ops and kinds[kinds.index("Pooling") - 1] == "Convolution", ops
    out = measure_layers(
        ("fp32", "int8"),
        threads=1,
        seconds=0.01,
        min_runs=2,
        suite=(("conv", 16, 16, 3, 1, 14), ("pool", 8, 2, 2, 16)),
    )
    assert len(out["points"]) == 4
    assert all(0 < p["seconds"] <= p["with_prefix_seconds"] for p in out["points"])


# ---- the last-level cache ---------------------------------------------------------------


def _with_cache(profile, mib):
    import dataclasses

    return dataclasses.replace(profile, memory=dataclasses.replace(profile.memory, cache_mb=mib))


def test_host_profile_reads_the_last_level_cache(tmp_path):
    from edgecnn.devices.detect import host_profile

    base = "sys/devices/system/cpu/cpu0/cache"
    files = {"proc/cpuinfo": "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: sse2 avx2 fma\n"}
    for i, (level, kind, size) in enumerate(
        [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"), (3, "Unified", "32768K")]
    ):
        files.update(
            {
                f"{base}/index{i}/level": f"{level}\n",
                f"{base}/index{i}/type": f"{kind}\n",
                f"{base}/index{i}/size": f"{size}\n",
            }
        )
    p = host_profile(_fake_root(tmp_path, files), use_cache=False)
    assert p.memory.cache_mb == 32.0 and p.cache_bytes == 32 * 2**20
    assert "index3/size (L3)" in p.sources["memory.cache_mb"]
    assert (
        host_profile(
            _fake_root(tmp_path / "bare", {"proc/cpuinfo": files["proc/cpuinfo"]}), use_cache=False
        ).memory.cache_mb
        is None
    )


def test_weights_that_fit_in_the_cache_are_read_at_the_cache_efficiency():
    """ResNet18's INT8 weights (11.7 MB) stay in a 32 MiB cache from one inference to the next;
    of AlexNet's 61 MB only the part the cache holds does, so its FC layers stay bound by the
    DRAM bandwidth."""
    prof = _with_cache(load_device("host"), 32.0)
    eff = Efficiency(
        compute={"fp32": 0.5, "int8": 0.5},
        memory=1.0,
        overhead_us=0.0,
        fit_error=0.1,
        basis="t",
        memory_cache=10.0,
    )
    costs = network_costs("alexnet")
    fc1 = next(c for c in costs if c.name == "classifier.1")
    r = roofline([fc1], prof, "openvino", "int8", eff)  # a lone layer: 37.7 MB, 32 MiB of them cached
    res = 32 * 2**20 / fc1.weights
    want = (fc1.weights * (1 - res) + fc1.weights * res / 10.0 + fc1.activations / 10.0) / prof.bandwidth
    assert r["seconds"] == pytest.approx(want, rel=1e-9)
    whole = roofline(costs, prof, "openvino", "int8", eff)
    total = sum(c.weights for c in costs)
    frac = 32 * 2**20 / total
    assert 0.4 < frac < 0.6  # about half of AlexNet's INT8 weights stay in the cache
    assert "classifier.1" in whole["memory_bound_layers"]
    t_fc1 = (fc1.weights * (1 - frac) + fc1.weights * frac / 10.0 + fc1.activations / 10.0) / prof.bandwidth
    assert whole["memory_bound_ms"] > t_fc1 * 1e3
    res = network_costs("resnet18")
    cached = roofline(res, prof, "openvino", "int8", eff)["seconds"]
    no_cache = roofline(res, _with_cache(prof, None), "openvino", "int8", eff)["seconds"]
    assert cached < no_cache  # the same bytes, read from the cache
    # without a cache term in the efficiency every byte is read at eff_memory, cache or not
    plain = Efficiency(compute=eff.compute, memory=1.0, overhead_us=0.0, fit_error=0.1, basis="t")
    assert roofline(res, prof, "openvino", "int8", plain)["seconds"] == pytest.approx(no_cache)


def test_fit_to_layers_recovers_the_cache_efficiency():
    """Layer timings from a roofline with a cache term (fast cache-resident bytes, slow DRAM ones)
    are fitted back to it; networks on both sides of the cache size are then predicted right,
    where one memory efficiency cannot serve both."""
    from edgecnn.devices.layers import SUITE, layer_cost
    from edgecnn.devices.predict import fit_to_layers

    prof = _with_cache(load_device("host"), 32.0)
    truth = Efficiency(
        compute={"fp32": 0.5, "int8": 0.5},
        memory=1.0,
        overhead_us=5.0,
        fit_error=0.0,
        basis="truth",
        memory_cache=8.0,
    )
    pts = [
        {
            "layer": list(spec),
            "precision": prec,
            "seconds": roofline([layer_cost(spec)], prof, "openvino", prec, truth)["seconds"],
        }
        for prec in ("fp32", "int8")
        for spec in SUITE
    ]
    eff = fit_to_layers(prof, "openvino", pts)
    assert eff.memory == pytest.approx(1.0, rel=0.15) and eff.memory_cache == pytest.approx(8.0, rel=0.3)
    single = fit_to_layers(_with_cache(prof, None), "openvino", pts)
    assert single.memory_cache is None
    errs = {}
    for arch in FOUR:
        for prec in ("fp32", "int8"):
            want = roofline(network_costs(arch), prof, "openvino", prec, truth)["seconds"]
            got = roofline(network_costs(arch), prof, "openvino", prec, eff)["seconds"]
            assert got == pytest.approx(want, rel=0.08), (arch, prec)
            errs[(arch, prec)] = (
                roofline(network_costs(arch), _with_cache(prof, None), "openvino", prec, single)["seconds"]
                / want
                - 1
            )
    assert max(abs(e) for e in errs.values()) > 0.15  # the single efficiency misses some network


# ---- the device fit: cited figures, kernel classes, physical efficiencies (issue 15) ----------

ARM_AND_JETSON = [d for d in sorted(DEVICE_FILES) if not d.startswith("host")]


def test_published_figures_cite_their_source_and_fit_rows_are_describable():
    from edgecnn.devices.predict import costs_for
    from edgecnn.devices.published import published_figures

    figs = published_figures()
    assert {f.device for f in figs} >= {"rpi4", "jetson-nano", "jetson-agx-xavier"}
    for f in figs:
        assert f.source_url.startswith("https://") and f.source_title and f.runtime_version
        assert f.device in DEVICE_FILES and f.precision in load_device(f.device).runtime(f.runtime).precisions
        if f.fit:
            assert sum(c.ops for c in costs_for(f.arch, f.image_size, f.batch)) > 0
        else:
            assert f.note.startswith("not fitted")


def test_reference_networks_match_their_papers():
    from edgecnn.devices.reference_nets import mobilenet_v1, mobilenet_v2

    for net, macs, params in ((mobilenet_v1(), 569e6, 4.2e6), (mobilenet_v2(), 300e6, 3.5e6)):
        assert abs(sum(c.ops for c in net) / 2 / macs - 1) < 0.01
        assert abs(sum(c.weights for c in net) / params - 1) < 0.02
        assert {c.kernel_class for c in net} == {"conv3x3", "depthwise", "conv1x1", "pool", "fc"}


def test_kernel_classes_of_the_four_networks():
    classes = {a: {c.kernel_class for c in network_costs(a)} for a in FOUR}
    assert classes["vgg16"] == {"conv3x3", "pool", "fc"}
    assert {"conv3x3", "conv_other", "pool", "fc"} <= classes["resnet18"]  # the 7x7 stem; 1x1 downsample
    assert "conv1x1" in classes["resnet18"] and "conv1x1" in classes["googlenet"]


@pytest.mark.parametrize("device", ARM_AND_JETSON)
def test_device_efficiencies_are_physical(device):
    eff = efficiency_for(load_device(device))
    assert eff.physical
    for prec, table in eff.kernel_table().items():
        assert all(0 < e <= 1 for e in table.values()), (prec, table)
    assert 0 < eff.memory <= 1 and 0 <= eff.overhead_us <= 300


@pytest.mark.parametrize("device", ["rpi4", "rpi5"])
def test_32px_resnet18_is_not_dominated_by_overhead(device):
    for prec in ("int8", "fp32"):
        r = predict_latency("resnet18", device, precision=prec, image_size=32)
        assert r["prediction"]["overhead_ms"] < 0.25 * r["latency_ms"]["p50"], r["prediction"]
        # 49x fewer MACs; the 11.7 MB of INT8 weights (46.8 MB FP32) are still read from DRAM every time
        assert (
            r["latency_ms"]["p50"]
            < predict_latency("resnet18", device, precision=prec)["latency_ms"]["p50"] / 2
        )


def test_224px_predictions_lie_within_the_band_of_the_cited_figures():
    from edgecnn.devices.predict import cited_points, costs_for

    # Arm's GoogLeNet INT8 on the Pi 5 takes 2.9x ResNet18's time for fewer MACs; the roofline cannot
    # explain it (ops outside XNNPACK's fast kernels?) and says so: docs/BENCHMARKS.md. Checked to stay out,
    # so that a model that learns to explain it shows up here.
    known_miss = {("rpi5", "googlenet", "int8")}
    checked = 0
    for device in ARM_AND_JETSON:
        p = load_device(device)
        for cp in cited_points(p, p.default_runtime):
            r = predict_latency(
                costs_for(cp.arch, cp.image_size), p, precision=cp.precision, threads=cp.threads
            )
            lo, hi = r["band_ms"]
            inside = lo <= cp.latency_ms <= hi
            assert inside != ((device, cp.arch, cp.precision) in known_miss), (device, cp.arch, r["band_ms"])
            checked += 1
    assert checked >= 14


def test_isa_decides_the_int8_rate():
    from edgecnn.devices.profile import int8_rate

    p4, p5 = load_device("rpi4"), load_device("rpi5")
    assert int8_rate(p4.cpu.isa) == (2.0, "neon") and int8_rate(p5.cpu.isa) == (4.0, "dotprod")
    assert int8_rate(("asimd", "asimddp", "i8mm")) == (8.0, "i8mm")
    for p in (p4, p5):
        assert math.isclose(
            p.cpu.peak_tops.int8 / p.cpu.peak_tops.fp32, int8_rate(p.cpu.isa)[0], rel_tol=0.05
        )
    # the same efficiencies on a dotprod core: INT8 runs relatively faster than FP32 on the Pi 5
    eff = efficiency_for(p4)

    def int8_speedup(device):
        return (
            predict_latency("resnet18", device, precision="fp32", efficiency=eff)["latency_ms"]["p50"]
            / predict_latency("resnet18", device, precision="int8", efficiency=eff)["latency_ms"]["p50"]
        )

    assert int8_speedup("rpi5") > 1.5 * int8_speedup("rpi4")
    data = {**_profile_dict("rpi5")}
    data["cpu"]["peak_tops"]["int8"] = data["cpu"]["peak_tops"]["fp32"] * 2
    with pytest.raises(EdgecnnError, match="dotprod"):
        parse_profile(data, "test.toml")


def _profile_dict(name: str) -> dict:
    from edgecnn.config import read_toml

    return read_toml(DEVICE_FILES[name])


def test_ncnn_is_only_a_labelled_fallback():
    from edgecnn.devices.predict import cited_points

    pi5 = efficiency_for(load_device("rpi5"))
    assert pi5.basis.startswith("fit to 6 published latencies on rpi5") and "ncnn" not in pi5.basis
    # a precision the Pi 5's figures left out would take the Pi 4's efficiency, labelled, band widened
    p = load_device("rpi5")
    only_int8 = [cp for cp in cited_points(p, "tflite") if cp.precision == "int8"]
    from edgecnn.devices.predict import _borrow_precisions

    eff = _borrow_precisions(fit_efficiency(p, "tflite", only_int8), p, "tflite")
    assert eff.borrowed == {"fp32": "rpi4"} and eff.compute_for("fp32") == (eff.compute["fp32"], False)
    r = predict_latency("resnet18", p, precision="fp32", efficiency=eff)
    assert (
        any("rpi4's" in n for n in r["prediction"]["notes"])
        and r["error_pct"] > predict_latency("resnet18", p, precision="int8", efficiency=eff)["error_pct"]
    )
    assert "ncnn" not in efficiency_for(load_device("rpi4")).basis
    data = _profile_dict("rpi5")
    del data["runtimes"]["tflite"]["transfer_from"]
    alone = parse_profile(data, "user-rpi5.toml")  # not shipped: no published rows, no transfer
    eff = efficiency_for(alone)
    assert eff.basis.startswith("FALLBACK") and "ncnn" in eff.basis and eff.physical
