"""OpenVINO INT8 agreement with the fake-quant graph, before and after ``residual_form``, with the
layer-by-layer diagnosis of each (and of ONNX Runtime and TFLite beside them).

Before: the QDQ graph as every other runtime gets it (a convolution feeding a residual add
requantized), as an OpenVINO IR with uint8 after ReLU (what `edgecnn export --target cpu` wrote
before). After: the artifact `edgecnn export --target cpu` writes now (pt2e.residual_form).

Usage: python benchmarks/openvino_residual_agreement.py --arch resnet18 --checkpoint PATH [--images 512]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def before_artifact(ov_dir: Path, jetson_dir: Path, stage_dir: Path, dest: Path) -> Path:
    """The OpenVINO artifact as export wrote it before residual_form: same calibration, same encoding."""
    from edgecnn.artifact import write_metadata
    from edgecnn.export.openvino import qdq_to_int8_ir

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ov_dir, dest)
    qdq_to_int8_ir(jetson_dir / "model.onnx", dest / "model.xml")
    shutil.copy(stage_dir / "predictions.npy", dest / "reference_predictions.npy")
    meta = json.loads((dest / "metadata.json").read_text())
    meta["quantization"].pop("residual_form", None)
    meta["files"] = list(meta["files"])
    write_metadata(dest, meta)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--recipe", default="quick")
    ap.add_argument("--images", type=int, default=512, help="test images for the layer-by-layer diagnosis")
    ap.add_argument("--out", default="openvino-residual")
    args = ap.parse_args()

    from edgecnn.evaluate import evaluate_artifact
    from edgecnn.export import export, model_for
    from edgecnn.numerics.diagnose import diagnose, plot
    from edgecnn.recipes import load_recipe

    out = Path(args.out)
    recipe = load_recipe(args.arch, args.recipe)
    quiet = {"log": lambda s: None, "progress": False}
    arts = {
        rt: export(
            model_for(args.arch, recipe, rt, checkpoint=args.checkpoint, **quiet),
            target,
            recipe=recipe,
            runtime=runtime,
            out=out / rt,
            log=quiet["log"],
        ).dir
        for rt, (target, runtime) in {
            "openvino": ("cpu", "openvino"),
            "onnxruntime": ("cpu", "onnxruntime"),
            "tflite": ("rpi", None),
            "tensorrt": ("jetson", None),
        }.items()
    }
    stage = Path(
        json.loads((arts["onnxruntime"] / "metadata.json").read_text())["source"]["quantized_graph"]
    ).parent
    arts["openvino-before"] = before_artifact(
        arts["openvino"], arts["tensorrt"], stage, out / "openvino-before"
    )
    rows, diags = [], []
    for name in ("openvino-before", "openvino", "onnxruntime", "tflite"):
        ev = evaluate_artifact(arts[name])
        d = diagnose(arts[name], images=args.images)
        adds = (
            diagnose(arts[name], images=args.images, layers="*add*") if name.startswith("openvino") else None
        )
        diags.append(d)
        rows.append(
            {
                "artifact": name,
                "top1": ev["top1"],
                "fp32_top1": ev["fp32_top1"],
                "agreement": ev["agreement"],
                "first_departure": d.first_departure,
                "exposed_output_steps": d.exposed_output_steps,
                "first_departure_adds_only": adds.first_departure if adds else None,
                "worst_layer_share_off": max(x.share_off for x in d.layers),
                "adds_only_worst_share_off": max(x.share_off for x in adds.layers) if adds else None,
            }
        )
    plot(diags, out / "sqnr.png")
    print(json.dumps(rows, indent=2))
    print(
        "\n| artifact | top-1 | FP32 top-1 | agreement with its fake-quant graph (test split) | first "
        "departure "
        f"({args.images} images, every layer exposed) | worst layer, values off | adds only exposed: first "
        f"departure, worst |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        adds = (
            "-"
            if r["adds_only_worst_share_off"] is None
            else f"{r['first_departure_adds_only'] or 'none'}, {100 * r['adds_only_worst_share_off']:.2f}%"
        )
        print(
            f"| {r['artifact']} | {100 * r['top1']:.2f}% | {100 * r['fp32_top1']:.2f}% | "
            f"{100 * r['agreement']:.2f}% "
            f"| {r['first_departure'] or 'none'} | {100 * r['worst_layer_share_off']:.3f}% | {adds} |"
        )


if __name__ == "__main__":
    main()
