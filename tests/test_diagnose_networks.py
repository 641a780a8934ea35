"""``diagnose`` and ``sensitivity`` on the other three networks (tiny AlexNet, VGG16, GoogLeNet; ResNet18 is
tests/test_diagnose.py and tests/test_sensitivity.py), in OpenVINO, ONNX Runtime and LiteRT.

Each layer of each runtime is the graph's tensor of the same name: every tap a runtime exposes has the
graph's shape and stays within a few quantization steps of it (a tensor matched by position, or to the
wrong name, is tens of steps off: a fused FC+ReLU's output taken for its linear output was 107), and the
taps a runtime does not expose are exactly those its graph has no tensor for. AlexNet in LiteRT runs in
the everyday loop; the other combinations and the sensitivity runs are slow (GoogLeNet's ONNX export
alone takes minutes).
"""

from __future__ import annotations

import pytest
from tiny_recipes import INT8_RECIPE
from torch import nn

from edgecnn.artifact import load_artifact
from edgecnn.export import export, model_for, resolve
from edgecnn.models import create
from edgecnn.numerics.diagnose import diagnose, figure, load_reference
from edgecnn.numerics.reference import graph_taps
from edgecnn.numerics.sensitivity import quantizable_layers, sensitivity
from edgecnn.quantize import stages
from edgecnn.recipes import load_recipe
from edgecnn.train import train

quiet = {"log": lambda s: None, "progress": False}
ARCHS = ("test_alexnet", "test_vgg16", "test_googlenet")
TARGETS = {"onnxruntime": ("cpu", "onnxruntime"), "openvino": ("cpu", "openvino"), "tflite": ("rpi", None)}
FAST = {("test_alexnet", "tflite")}
# tests/tiny_recipes.py's recipe, one training epoch, the small-input stems (AlexNet needs one at 32 px)
RECIPE = (
    INT8_RECIPE.format(qat_lr=0.001)
    .replace('arch = "test_resnet18"', 'arch = "{arch}"')
    .replace("[quick.data]", "[quick.model]\nsmall_input = true\n[quick.data]")
    .replace("epochs = 2\n", "epochs = 1\n")
)


def _cases(pairs):
    return [pytest.param(*p, id="-".join(p), marks=() if p in FAST else pytest.mark.slow) for p in pairs]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``made(arch)``: (recipe, checkpoint), trained once; ``made(arch, runtime)``: its artifact, exported
    once (the three runtimes share one calibration)."""
    root = tmp_path_factory.mktemp("networks")
    cache: dict = {}

    def get(arch: str, runtime: str | None = None):
        if arch not in cache:
            (root / f"{arch}.toml").write_text(RECIPE.replace("{arch}", arch))
            recipe = load_recipe(arch, str(root / f"{arch}.toml"))
            cache[arch] = (recipe, str(train(arch, recipe, threads=1, **quiet).checkpoint))
        if runtime is None:
            return cache[arch]
        if (arch, runtime) not in cache:
            target, rt = TARGETS[runtime]
            recipe, ckpt = cache[arch]
            out = root / f"{arch}-{runtime}"
            runtime_name = resolve(target, rt, "int8")
            graph = model_for(arch, recipe, runtime_name, checkpoint=ckpt, **quiet)
            cache[arch, runtime] = export(
                graph, target, recipe=recipe, runtime=rt, out=out, log=quiet["log"]
            ).dir
        return cache[arch, runtime]

    return get


def _feeds(gm, tap, *ops: str) -> bool:
    """Whether the tap's dequantized value goes into one of ``ops`` (aten names: "cat", "relu")."""
    nodes = {n.name: n for n in gm.graph.nodes}
    return any(
        getattr(u.target, "__name__", "").split(".")[0] in ops for d in tap.dequant for u in nodes[d].users
    )


def _not_in_runtime(gm, taps, runtime: str) -> set[str]:
    """The taps whose tensor the runtime's graph does not have:
    - OpenVINO: a branch output quantized on the scale of the concat it feeds (GoogLeNet's): the IR keeps
      the concat's FakeQuantize alone, the same rounding;
    - LiteRT: the flatten (a reshape, no tensor of its own) and a linear output followed by a ReLU
      (FULLY_CONNECTED runs fused with its ReLU: the tensor is the ReLU's)."""
    if runtime == "openvino":
        return {t.name for t in taps if _feeds(gm, t, "cat")}
    if runtime == "tflite":
        return {
            t.name for t in taps if t.op == "flatten" or (t.op == "linear" and _feeds(gm, t, "relu", "relu_"))
        }
    return set()


@pytest.mark.parametrize(("arch", "runtime"), _cases([(a, r) for a in ARCHS for r in TARGETS]))
def test_every_layer_is_the_graphs_tensor_of_that_name(made, arch, runtime):
    art = made(arch, runtime)
    d = diagnose(art, images=16)
    gm = load_reference(load_artifact(art))
    taps = graph_taps(gm)
    gone = _not_in_runtime(gm, taps, runtime)
    assert set(d.missing) == gone
    assert [lay.name for lay in d.layers] == [t.name for t in taps if t.name not in gone]
    if arch == "test_googlenet":  # nine inception blocks, each concat compared
        concats = [t.name for t in taps if t.op == "concat"]
        assert len(concats) == 9 and set(concats) <= {lay.name for lay in d.layers}
    assert d.agreement >= 0.9 and d.exposed_output_steps is not None
    for lay in d.layers:
        assert lay.values > 0 and lay.max_steps <= 8, lay
        assert lay.fakequant_sqnr_fp32_db is None or lay.fakequant_sqnr_fp32_db > 10, lay


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_plot_has_one_sqnr_line_per_runtime(made, arch):
    results = [diagnose(made(arch, rt), images=8) for rt in TARGETS]
    ax = figure(results).axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert len(labels) == 4 and [lab.split()[0] for lab in labels[:3]] == list(TARGETS)
    assert "fake-quant graph vs FP32" in labels[3]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert len(ticks) == len(set(ticks)) == max(len(r.layers) for r in results)  # every layer, once


def _convs_and_linears(arch: str) -> set[str]:
    model = create(arch, num_classes=10, small_input=True)
    return {
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and not name.startswith("aux")
    }


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_sensitivity_ranks_every_conv_and_linear(made, arch):
    recipe, ckpt = made(arch)
    src = stages.float_source(arch, recipe, checkpoint=ckpt, **quiet)
    x = src.preprocess.apply_torch(src.bundle.test.images[:2])
    layers = quantizable_layers(src.model, x)
    assert set(layers) == _convs_and_linears(arch) and len(layers) == len(set(layers))
    first, last = layers[0], layers[-1]
    r = sensitivity(arch, recipe, checkpoint=ckpt, layers=[first, last], images=100, calib_images=32)
    assert sorted(x.layer for x in r.layers) == sorted([first, last])
    assert [x.index for x in sorted(r.layers, key=lambda x: x.index)] == [0, len(layers) - 1]
    for x in r.layers:
        # one quantized layer adds no more noise than all of them (the last linear's own output is the
        # int8 logits, whose rounding can be all the noise there is: VGG16's and GoogLeNet's were equal)
        assert x.only_sqnr_db is None or x.only_sqnr_db >= r.int8_sqnr_db, x
