"""filtergrid's speed benchmark (issues 5 and 11): time to a first layer, whatever the size of the checkpoint.

    python benchmarks/run.py [--framework-python PYTHON ...] [--only KIND ...] [--markdown]

Builds its inputs in a temporary folder (deleted as it goes; at most one 1 GiB input at a time), the
same small CNN written by each framework at ~1 GiB and as a ~100 KB twin: ONNX (conv1 stored first,
and stored after ~1 GiB of other initializers), safetensors, a PyTorch zip and a legacy pickle,
Keras, GGUF, an Orbax checkpoint folder, and issue 11's formats (TensorFlow SavedModel, checkpoint and frozen graph, TFLite,
TF.js, Core ML, OpenVINO, Paddle, Caffe, Darknet, ncnn, scikit-learn, Flax; see make_input.py for
where each stores conv1). Every measurement is a whole fresh process (``filtergrid convert FILE -o
out.npy`` and the naive framework load of the same tensor): its wall time and peak RSS. Each command
runs once to warm up, then ``--repeat`` times in rounds that interleave all commands of an input, and
the median is kept; ratios are medians of per-round ratios, so load from other processes hits both
sides alike.

The floor is ``python -c "import numpy"`` with ``OPENBLAS_NUM_THREADS=1``: the filtergrid command sets
that for itself (it multiplies no matrices), and the naive loaders get it too, so no side gains from
it. Frameworks often need venvs of their own: give ``--framework-python`` once per venv; each input is
written, and its naive load run, by the first one that has its framework (default: this Python).
filtergrid runs in ``--filtergrid-python`` with this checkout first on its path. Not a test: the
targets are checked and printed, and the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIB, TWIN = 1 << 30, 100 << 10
TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: a tiny parent, so %M is the child's own peak

TF = "import os, sys, numpy\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nimport tensorflow as tf\n"

#: The naive way to get one tensor out of each format, as its framework documents it: (what it is,
#: the module it needs, its code). argv: the model file (or folder), the tensor's name, the output.
NAIVE = {
    "onnx": ("onnx.load + numpy_helper.to_array", "onnx",
             ("import sys, numpy, onnx\nfrom onnx import numpy_helper\nmodel = onnx.load(sys.argv[1])\n"
             "tensor = next(t for t in model.graph.initializer if t.name == sys.argv[2])\n"
             "numpy.save(sys.argv[3], numpy_helper.to_array(tensor))")),
    "safetensors": ("safetensors.numpy.load_file", "safetensors",
                    ("import sys, numpy\nfrom safetensors.numpy import load_file\n"
                    "numpy.save(sys.argv[3], load_file(sys.argv[1])[sys.argv[2]])")),
    "torch-zip": ("torch.load(mmap=True, weights_only=True)", "torch",
                  ("import sys, numpy, torch\nstate = torch.load(sys.argv[1], mmap=True, weights_only=True)\n"
                  "numpy.save(sys.argv[3], state[sys.argv[2]].numpy())")),
    # torch.load refuses mmap=True for the legacy format; weights_only is still the safe way.
    "torch-legacy": ("torch.load(weights_only=True)", "torch",
                     ("import sys, numpy, torch\nstate = torch.load(sys.argv[1], weights_only=True)\n"
                     "numpy.save(sys.argv[3], state[sys.argv[2]].numpy())")),
    "keras": ("keras.saving.load_model + get_weights", "keras",
              ("import sys, numpy, keras\nmodel = keras.saving.load_model(sys.argv[1], compile=False)\n"
               "numpy.save(sys.argv[3], model.get_layer(sys.argv[2]).get_weights()[0])")),
    # A weights-only file needs the model's code to be loaded by Keras; h5py reads the dataset directly.
    "keras-weights": ("h5py, the layer's kernel dataset", "h5py",
                      ("import sys, numpy, h5py\nwith h5py.File(sys.argv[1], 'r') as f:\n"
                       "    numpy.save(sys.argv[3], f[f'{sys.argv[2]}/{sys.argv[2]}/kernel'][()])")),
    # Orbax's own restore: the whole tree, then the one leaf.
    "orbax": ("orbax StandardCheckpointer.restore", "orbax.checkpoint",
              ("import sys, numpy, orbax.checkpoint as ocp\n"
               "tree = ocp.StandardCheckpointer().restore(sys.argv[1])\n"
               "for key in sys.argv[2].split('/'):\n    tree = tree[key]\nnumpy.save(sys.argv[3], numpy.asarray(tree))")),
    # The reader maps the file; filtergrid also dequantizes only the first 512 rows of a token embedding.
    "gguf": ("gguf.GGUFReader, the first 512 rows", "gguf",
             ("import sys, numpy\nfrom gguf import GGUFReader\ntensors = GGUFReader(sys.argv[1]).tensors\n"
              "numpy.save(sys.argv[3], next(t for t in tensors if t.name == sys.argv[2]).data[:512])")),
    "tf-savedmodel": ("tf.saved_model.load", "tensorflow",
                      (f"{TF}model = tf.saved_model.load(sys.argv[1])\n"
                       "numpy.save(sys.argv[3], getattr(model, sys.argv[2]).numpy())")),
    "tf-checkpoint": ("tf.train.load_checkpoint().get_tensor", "tensorflow",
                      (f"{TF}reader = tf.train.load_checkpoint(sys.argv[1].removesuffix('.index'))\n"
                       "numpy.save(sys.argv[3], reader.get_tensor(sys.argv[2]))")),
    "tf-graphdef": ("GraphDef.ParseFromString + tf.make_ndarray", "tensorflow",
                    (f"{TF}graph = tf.compat.v1.GraphDef()\nwith open(sys.argv[1], 'rb') as f:\n"
                     "    graph.ParseFromString(f.read())\nnode = next(n for n in graph.node if n.name == sys.argv[2])\n"
                     "numpy.save(sys.argv[3], tf.make_ndarray(node.attr['value'].tensor))")),
    "tflite": ("tf.lite.Interpreter.get_tensor", "tensorflow",
               (f"{TF}interpreter = tf.lite.Interpreter(model_path=sys.argv[1])\ninterpreter.allocate_tensors()\n"
                "conv = next(op for op in interpreter._get_ops_details() if op['op_name'] == 'CONV_2D')\n"
                "numpy.save(sys.argv[3], interpreter.get_tensor(conv['inputs'][1]))")),
    # tensorflowjs imports converters for other libraries at start-up; they are stubbed, as in fixtures/.
    "tfjs": ("tensorflowjs.read_weights (every shard)", "tensorflowjs",
             ("import json, os, sys, numpy\nfrom unittest import mock\nfor name in ('tensorflow_decision_forests', "
              "'tensorflow_hub', 'jax', 'jax.experimental', 'jax.experimental.jax2tf', 'flax'):\n"
              "    sys.modules[name] = mock.MagicMock()\nfrom tensorflowjs.read_weights import read_weights\n"
              "with open(sys.argv[1]) as f:\n    manifest = json.load(f)['weightsManifest']\n"
              "groups = read_weights(manifest, os.path.dirname(sys.argv[1]))\n"
              "numpy.save(sys.argv[3], next(w['data'] for g in groups for w in g if w['name'] == sys.argv[2]))")),
    "coreml-nn": ("coremltools.utils.load_spec", "coremltools",
                  ("import sys, numpy, coremltools\nspec = coremltools.utils.load_spec(sys.argv[1])\n"
                   "conv = next(l for l in spec.neuralNetwork.layers if l.WhichOneof('layer') == 'convolution')\n"
                   "numpy.save(sys.argv[3], numpy.array(conv.convolution.weights.floatValue, numpy.float32))")),
    "coreml-program": ("MLModel(skip_model_load) + get_weights_metadata", "coremltools",
                       ("import sys, numpy, coremltools\nfrom coremltools.optimize.coreml import get_weights_metadata\n"
                        "model = coremltools.models.MLModel(sys.argv[1], skip_model_load=True)\n"
                        "weights = get_weights_metadata(model, weight_threshold=0).values()\n"
                        "numpy.save(sys.argv[3], next(w.val for w in weights if w.val.ndim == 4))")),
    "openvino": ("openvino Core.read_model", "openvino",
                 ("import sys, numpy, openvino\nmodel = openvino.Core().read_model(sys.argv[1])\n"
                  "conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == 'Convolution')\n"
                  "numpy.save(sys.argv[3], conv.input_value(1).get_node().get_data())")),
    "paddle": ("paddle.load", "paddle",
               ("import sys, numpy, paddle\n"
                "numpy.save(sys.argv[3], paddle.load(sys.argv[1], return_numpy=True)[sys.argv[2]])")),
    "paddle-inference": ("paddle.static.load_inference_model", "paddle",
                         ("import sys, numpy, paddle\npaddle.enable_static()\n"
                          "paddle.static.load_inference_model(sys.argv[1].removesuffix('.json'), "
                          "paddle.static.Executor(paddle.CPUPlace()))\n"
                          "numpy.save(sys.argv[3], numpy.array(paddle.static.global_scope().find_var(sys.argv[2]).get_tensor()))")),
    "caffe": ("cv2.dnn.readNetFromCaffe + getParam", "cv2",
              ("import sys, numpy, cv2\n"
               "net = cv2.dnn.readNetFromCaffe(sys.argv[1].replace('.caffemodel', '.prototxt'), sys.argv[1])\n"
               "numpy.save(sys.argv[3], net.getParam(sys.argv[2], 0))")),
    "darknet": ("cv2.dnn.readNetFromDarknet + getParam", "cv2",
                ("import sys, numpy, cv2\n"
                 "net = cv2.dnn.readNetFromDarknet(sys.argv[1].replace('.weights', '.cfg'), sys.argv[1])\n"
                 "conv = next(n for n in net.getLayerNames() if net.getLayer(n).type == 'Convolution')\n"
                 "numpy.save(sys.argv[3], net.getParam(conv, 0))")),
    # ncnn's Python module gives no access to layer weights: this is the load alone.
    "ncnn": ("ncnn.Net load_param + load_model (no weight access)", "ncnn",
             ("import sys, ncnn\nnet = ncnn.Net()\nnet.load_param(sys.argv[1])\n"
              "net.load_model(sys.argv[1].replace('.param', '.bin'))")),
    "sklearn": ("joblib.load, coefs_[0]", "joblib",
                "import sys, numpy, joblib\nnumpy.save(sys.argv[3], joblib.load(sys.argv[1]).coefs_[0])"),
    "flax": ("flax.serialization.msgpack_restore", "flax",
             ("import sys, numpy\nfrom flax.serialization import msgpack_restore\nwith open(sys.argv[1], 'rb') as f:\n"
              "    numpy.save(sys.argv[3], msgpack_restore(f.read())['params']['stem']['kernel'])")),
}


@dataclass(frozen=True)
class Case:
    """One model, written by ``make_input.py KIND`` as ``model<suffix>`` in a folder of its own (a file,
    a folder, or a prefix its companions share); ``naive`` keys NAIVE; ``converter`` the format."""

    kind: str
    title: str
    suffix: str
    naive: str
    converter: str


CASES = (
    Case("onnx-conv-first", "ONNX, conv1 stored first", ".onnx", "onnx", "onnx"),
    Case("onnx-conv-last", "ONNX, conv1 stored after all other initializers", ".onnx", "onnx", "onnx"),
    Case("safetensors", "safetensors", ".safetensors", "safetensors", "safetensors"),
    Case("torch-zip", "PyTorch zip (torch.save)", ".pt", "torch-zip", "pytorch"),
    Case("torch-legacy", "PyTorch legacy pickle", ".pt", "torch-legacy", "pytorch"),
    Case("keras-h5-weights", "Keras 2 weights-only .h5", ".h5", "keras-weights", "keras-h5"),
    Case("keras-h5", "Keras legacy full-model .h5 (model.save)", ".h5", "keras", "keras-h5"),
    Case("keras", "Keras 3 .keras archive", ".keras", "keras", "keras"),
    Case("orbax", "Orbax checkpoint folder (StandardCheckpointer, OCDBT)", "", "orbax", "orbax"),
    Case("gguf", "GGUF, a float16 token embedding takes the bytes", ".gguf", "gguf", "gguf"),
    Case("tf-savedmodel", "TensorFlow SavedModel, conv1 stored after the dense kernels", "", "tf-savedmodel",
         "tensorflow"),
    Case("tf-checkpoint", "TF2 checkpoint (.index + .data), conv1 stored after the dense kernels", ".ckpt",
         "tf-checkpoint", "tensorflow"),
    Case("tf-frozen", "frozen GraphDef .pb, conv1's Const after the dense ones", ".pb", "tf-graphdef", "tensorflow"),
    Case("tflite", "TFLite flatbuffer", ".tflite", "tflite", "tflite"),
    Case("tfjs", "TF.js graph model (model.json + 4 MB shards)", "", "tfjs", "tfjs"),
    Case("coreml-nn", "Core ML NeuralNetwork .mlmodel (weights inline)", ".mlmodel", "coreml-nn", "coreml"),
    Case("coreml-program", "Core ML ML Program .mlpackage (weight.bin)", ".mlpackage", "coreml-program", "coreml"),
    Case("openvino", "OpenVINO IR (.xml + .bin)", ".xml", "openvino", "openvino"),
    Case("paddle", "PaddlePaddle .pdparams (paddle.save)", ".pdparams", "paddle", "paddle"),
    Case("paddle-inference", "PaddlePaddle inference model (PIR .json + .pdiparams)", ".json", "paddle-inference",
         "paddle-inference"),
    Case("caffe", "Caffe .caffemodel (+ .prototxt)", ".caffemodel", "caffe", "caffe"),
    Case("darknet", "Darknet .weights (+ .cfg)", ".weights", "darknet", "darknet"),
    Case("ncnn", "ncnn .param + .bin (pnnx)", ".ncnn.param", "ncnn", "ncnn"),
    Case("sklearn", "scikit-learn MLP, joblib (coefs_ + SGD velocities)", ".joblib", "sklearn", "sklearn"),
    Case("flax", "Flax msgpack, sorted keys: the stem conv after the dense blocks", ".msgpack", "flax", "flax"),
)


@dataclass
class Stats:
    """Repeated measurements of one command, in round order: wall seconds, CPU seconds (user + system,
    which waiting for a core does not inflate) and peak RSS bytes."""

    seconds: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def time(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks)

    def add(self, other: Stats) -> None:
        self.seconds += other.seconds
        self.peaks += other.peaks
        self.cpu += other.cpu

    def over(self, other: Stats) -> float:
        """Median of the per-round ratios: commands of one round ran back to back, so each ratio
        compares them under the same load from other processes."""
        return statistics.median(a / b for a, b in zip(self.seconds, other.seconds))


@dataclass
class Row:
    label: str
    size: int | None
    ours: Stats | str  # a note when not measured
    naive_label: str = ""
    naive: Stats | str | None = None
    speedup: float | None = None
    checks: list[tuple[bool, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]


class Failed(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(command: Command, cwd: Path) -> Stats:
    """One fresh process: wall time around it and its own peak RSS (GNU time's %M, else wait4)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        argv = [TIME, "-f", "%M", "-o", rss.name, *command.argv] if TIME else command.argv
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=command.env, cwd=cwd)
        with proc.stderr:
            stderr = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise Failed(f"{' '.join(command.argv[:4])}...: exit {proc.returncode}: {stderr.strip()[-300:]}")
        kib = int(rss.read().split()[-1]) if TIME else usage.ru_maxrss
    return Stats([seconds], [kib * 1024], [usage.ru_utime + usage.ru_stime])


def has_module(python: str, module: str) -> bool:
    """Whether ``python`` can find ``module`` (found, not imported: some import slowly or need stubs)."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0


def warm(path: Path) -> None:
    """Read the file (every file of a folder) once so every process finds it in the page cache (no one
    measures the disk)."""
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as f:
            while f.read(16 << 20):
                pass


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        # Every process gets cached bytecode, as an installed package has (this environment may set
        # PYTHONDONTWRITEBYTECODE, which would recompile filtergrid's sources on every run), kept in
        # the temp dir; and numpy's default thread pool, unless a row says otherwise.
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "OPENBLAS_NUM_THREADS")}
        base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.env = base
        self.one_thread = {**base, "OPENBLAS_NUM_THREADS": "1"}
        self.fg_env = {**base, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [base.get("PYTHONPATH")])])}
        self.floor = Stats()
        self.rows: list[Row] = []
        self.fastest: list[tuple[bool, str]] = []  # the targets again, from each command's fastest run
        self.pythons: dict[str, str | None] = {}  # module -> the first framework Python that has it
        probe = "from filtergrid.converters import BY_NAME; print(' '.join(BY_NAME))"
        self.formats = subprocess.run([args.filtergrid_python, "-c", probe], env=self.fg_env, check=True,
                                      capture_output=True, text=True).stdout.split()

    # -- commands ---------------------------------------------------------------------------------
    def filtergrid(self, *args: str) -> Command:
        return Command([self.args.filtergrid_python, "-m", "filtergrid", *args], self.fg_env)

    def convert(self, path: Path) -> Command:
        return self.filtergrid("convert", str(path), "-o", str(self.work / "filtergrid-out.npy"), "-q")

    def python_with(self, module: str) -> str | None:
        """The first ``--framework-python`` that has ``module``."""
        if module not in self.pythons:
            self.pythons[module] = next((p for p in self.args.framework_python if has_module(p, module)), None)
        return self.pythons[module]

    def naive(self, case: Case, path: Path, tensor: str) -> Command:
        """The framework's load; with one OpenBLAS thread, as filtergrid's command sets for itself."""
        return Command([self.python_with(NAIVE[case.naive][1]), "-c", NAIVE[case.naive][2], str(path), tensor,
                        str(self.work / "naive-out.npy")], self.one_thread)

    def rounds(self, commands: dict[str, Command]) -> dict[str, Stats]:
        """One untimed warm-up of each command, then ``--repeat`` interleaved rounds, each with the floor
        (``import numpy`` with one OpenBLAS thread, filtergrid's own setting)."""
        commands = {"floor": Command([self.args.filtergrid_python, "-c", "import numpy"], self.one_thread),
                    **commands}
        for command in commands.values():
            measure(command, self.work)
        stats = {name: Stats() for name in commands}
        for _ in range(self.args.repeat):
            for name, command in commands.items():
                stats[name].add(measure(command, self.work))
        self.floor.add(stats["floor"])
        return stats

    # -- inputs -----------------------------------------------------------------------------------
    def build(self, case: Case, size: int) -> tuple[Path, dict] | None:
        """Write the input in a folder of its own, with the first framework Python that has its framework
        (else filtergrid's); the JSON from make_input.py says which file to open and how big it all is."""
        folder = self.work / f"{case.kind}-{size}"
        folder.mkdir()
        for python in dict.fromkeys([*self.args.framework_python, self.args.filtergrid_python]):
            proc = subprocess.run([python, str(HERE / "make_input.py"), case.kind, str(size), str(folder / f"model{case.suffix}")],
                                  capture_output=True, text=True, check=False, cwd=folder)
            if proc.returncode == 0:
                meta = json.loads(proc.stdout.strip().splitlines()[-1])
                return folder / Path(meta["path"]).relative_to(folder), meta
            if proc.returncode != 3:
                raise Failed(f"make_input.py {case.kind}: {proc.stderr.strip()[-300:]}")
        return None

    def run_case(self, case: Case) -> None:
        log(f"{case.title}: building ~100 KB and ~{self.args.size_mib} MiB inputs")
        twin = self.build(case, TWIN)
        if twin is None:
            self.rows.append(Row(case.title, None, f"not built: no Python here has {NAIVE[case.naive][1]}"))
            return
        try:
            big = self.build(case, self.args.size_mib << 20)
            files = {"big": big, "twin": twin}
            commands = {}
            for which, (path, meta) in files.items():
                warm(path.parent if path.is_file() else path)
                if case.converter in self.formats:
                    commands[f"ours-{which}"] = self.convert(path)
                if self.python_with(NAIVE[case.naive][1]):
                    commands[f"naive-{which}"] = self.naive(case, path, meta["tensor"])
            log(f"{case.title}: measuring {', '.join(commands)} x{self.args.repeat}")
            stats = self.rounds(commands)
        finally:
            for size in (TWIN, self.args.size_mib << 20):
                shutil.rmtree(self.work / f"{case.kind}-{size}", ignore_errors=True)
        missing = f"converter not available (no {case.converter!r} format in this filtergrid)"
        no_framework = f"{NAIVE[case.naive][1]} not installed in any --framework-python"
        for which, label in (("big", case.title), ("twin", f"{case.title} (twin)")):
            ours, naive = stats.get(f"ours-{which}"), stats.get(f"naive-{which}")
            self.rows.append(Row(label, files[which][1]["bytes"], ours or missing, NAIVE[case.naive][0],
                                 naive or no_framework, naive.over(ours) if ours and naive else None))
        if "ours-big" in stats:
            self.check(case, self.rows[-2], self.rows[-1], stats)

    def check(self, case: Case, big: Row, twin: Row, stats: dict[str, Stats]) -> None:
        """The issue's targets from per-round medians, shown in the rows; and again from each command's
        fastest run (the least disturbed by other processes), counted in ``self.fastest``."""
        for fastest in (False, True):
            ratio = (lambda a, b: min(a.seconds) / min(b.seconds)) if fastest else Stats.over
            checks = self.targets(case, stats, big.naive_label, ratio)
            if fastest:
                self.fastest += [(ok, f"{big.label}: {text}") for row_checks in checks for ok, text in row_checks]
            else:
                big.checks, twin.checks = checks

    @staticmethod
    def targets(case: Case, stats: dict[str, Stats], naive_label: str, ratio) -> tuple[list, list]:
        big, twin = [], []
        ours, naive = stats["ours-big"], stats.get("naive-big")
        growth = ratio(ours, stats["ours-twin"])
        most = 1.3 if case.converter.startswith("keras") else 1.2  # issue 9's target for Keras
        big.append((growth <= most, f"{growth:.2f}x its twin (<= {most}x)"))
        if naive and case.naive == "onnx":
            speedup = ratio(naive, ours)
            big.append((speedup >= 10, f"{speedup:.1f}x faster than onnx.load (>= 10x)"))
        if case.naive == "onnx":
            big.append((ours.peak < 100e6, f"peak {ours.peak / 1e6:.0f} MB (< 100 MB)"))
        if naive and case.converter == "pytorch":
            speedup = ratio(naive, ours)
            big.append((speedup >= 1, f"{speedup:.1f}x as fast as {naive_label} (>= 1x)"))
        small = ratio(stats["ours-twin"], stats["floor"])
        twin.append((small <= 2.5, f"{small:.2f}x `import numpy` (<= 2.5x)"))
        return big, twin

    def run_render(self) -> None:
        """A 4096-filter bank of 16x16x3: the whole ``render`` process, and render_result alone in-process."""
        bank = self.work / "bank4096.npy"
        make = ("import numpy, sys\nnumpy.save(sys.argv[1], numpy.random.default_rng(0)"
                ".standard_normal((4096, 16, 16, 3), dtype=numpy.float32))")
        subprocess.run([self.args.filtergrid_python, "-c", make, str(bank)], check=True)
        warm(bank)
        render = self.filtergrid("render", str(bank), "--layout", "NHWC", "-o", str(self.work / "grid.png"), "-q")
        log(f"render: measuring a 4096x16x16x3 bank x{self.args.repeat}")
        stats = self.rounds({"render": render})["render"]
        inner = ("import sys, time, filtergrid\nfrom filtergrid.renderer import RenderOptions, render_result\n"
                 "bank = filtergrid.load(sys.argv[1], layout='NHWC'); times = []\n"
                 "for _ in range(5):\n    t = time.perf_counter(); result = render_result(bank, RenderOptions())\n"
                 "    times.append(time.perf_counter() - t)\nprint(sorted(times)[2], *result.image.size)")
        out = subprocess.run([self.args.filtergrid_python, "-c", inner, str(bank)], env=self.fg_env, check=True,
                             capture_output=True, text=True).stdout.split()
        size = bank.stat().st_size
        bank.unlink()
        self.rows.append(Row(f"`render` of a 4096x16x16x3 bank ({out[1]}x{out[2]} PNG)", size, stats,
                             "render_result alone, in-process", f"{float(out[0]):.3f} s"))

    def run_startup(self) -> None:
        log(f"start-up: measuring python, import numpy, filtergrid --help x{self.args.repeat}")
        python = self.args.filtergrid_python
        stats = self.rounds({"pass": Command([python, "-c", "pass"], self.env),
                             "numpy": Command([python, "-c", "import numpy"], self.env),
                             "help": self.filtergrid("--help")})
        self.rows += [Row('`python -c "pass"`', None, stats["pass"]),
                      Row('`python -c "import numpy"`', None, stats["numpy"]),
                      Row("`filtergrid --help`", None, stats["help"])]

    def add_floor(self) -> None:
        self.rows.insert(2, Row('`python -c "import numpy"`, OPENBLAS_NUM_THREADS=1 (the floor)', None, self.floor))


# -- output ---------------------------------------------------------------------------------------
def size_text(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.{1 if size < 100 * scale else 0}f} {unit}"
    return f"{size} B"


def time_text(stats: Stats | str | None) -> tuple[str, str, str]:
    """``("0.162 s (0.15-0.19)", "0.091 s", "34 MB")``: wall, CPU, peak RSS; or a note and nothing."""
    if not isinstance(stats, Stats):
        return stats or "", "", ""
    return (f"{stats.time:.3f} s ({min(stats.seconds):.2f}-{max(stats.seconds):.2f})",
            f"{statistics.median(stats.cpu):.3f} s", f"{stats.peak / 1e6:.0f} MB")


HEADER = ("input", "size", "filtergrid: wall (min-max)", "CPU", "peak RSS", "naive load", "naive: wall (min-max)",
          "CPU", "peak RSS", "naive / filtergrid", "targets (on median wall times)")


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    out = []
    for row in rows:
        ratio = f"{row.speedup:.1f}x" if row.speedup is not None else ""
        checks = "; ".join(f"{'PASS' if ok else 'FAIL'} {text}" for ok, text in row.checks)
        out.append((row.label, size_text(row.size), *time_text(row.ours), row.naive_label if row.naive else "",
                    *time_text(row.naive), ratio, checks))
    return out


def plain(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [HEADER, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[tuple[str, ...]]) -> str:
    cells = [[c.replace("|", "\\|") for c in r] for r in [HEADER, *rows]]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in HEADER) + "|")
    return "\n".join(lines)


def machine(args: argparse.Namespace) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    version = subprocess.run([args.filtergrid_python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=False).stdout.strip()
    return (f"{datetime.date.today()}, {os.cpu_count()} CPUs ({cpu}), {ram:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {version}; median of {args.repeat} runs per cell")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework-python", action="append",
                        help="a Python with frameworks, to write the inputs and run the naive loads; repeat it for "
                             "frameworks in different venvs: each input uses the first that has its framework "
                             "(default: this Python alone)")
    parser.add_argument("--filtergrid-python", default=sys.executable,
                        help="Python that runs filtergrid (this checkout is put first on its path)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (median kept)")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big inputs")
    parser.add_argument("--only", nargs="*", choices=[c.kind for c in CASES], help="run only these inputs")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build inputs (default: a temp dir)")
    args = parser.parse_args(argv)
    args.framework_python = args.framework_python or [sys.executable]
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="filtergrid-bench-", dir=args.workdir) as tmp:
        bench = Bench(args, Path(tmp))
        bench.run_startup()
        for case in CASES:
            if not args.only or case.kind in args.only:
                done = len(bench.rows)
                try:
                    bench.run_case(case)
                except Failed as error:  # one input that cannot be built or read costs its row, not the run
                    log(f"{case.title}: {error}")
                    bench.rows.append(Row(case.title, None, f"failed: {str(error)[-200:]}"))
                log(f"{case.title}: done\n{markdown(table_rows(bench.rows[done:]))}")  # kept if the run is cut short
        bench.run_render()
        bench.add_floor()
    rows = table_rows(bench.rows)
    checks = [ok for row in bench.rows for ok, _ in row.checks]
    missed = [text for ok, text in bench.fastest if not ok]
    load_after = os.getloadavg()
    summary = (f"{sum(checks)} of {len(checks)} targets pass on medians; from each command's fastest run "
               f"(closest to an idle machine) {len(bench.fastest) - len(missed)} of {len(bench.fastest)}"
               f"{' (missed: ' + '; '.join(missed) + ')' if missed else ''}. Ran {time.perf_counter() - started:.0f} s; "
               f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs.")
    print(f"{machine(args)}\n\n{plain(rows)}\n\n{summary}")
    if args.markdown:
        print(f"\n{machine(args)}\n\n{markdown(rows)}\n\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
