"""The ``fxprune`` argument parser: argparse only, so ``fxprune --help`` starts at once. Each
sub-command names its handler as ``"module:function"`` in this package; ``main`` imports that
module when the command runs."""

from __future__ import annotations

import argparse

from .. import __version__
from ..choices import ATTENTION, LAYER_NORM

__all__ = ["build_parser"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like 1,3,224,224, got {text!r}") from None


def _round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--round-to takes a positive integer or 'auto', got {text!r}")
    return value


MODEL_HELP = ("model spec: torchvision:NAME, timm:NAME, hf:DIR (a local HuggingFace config/checkpoint), hf-config:DIR "
              "(its config.json only, on the meta device: no weights in memory), cifar:NAME, "
              "path/to/file.py:factory, package.module:factory, or a saved model.fxp / model.pt2")


def _add_model_source(p: argparse.ArgumentParser, *, default: str | None = None, help: str = MODEL_HELP) -> None:
    """--model, --weights and --trust: where the model comes from."""
    p.add_argument("--model", required=default is None, default=default, help=help)
    p.add_argument("--weights", help="local state-dict file to load into the model")
    p.add_argument("--trust", action="store_true", help="the model file is yours: read a .pt2 (torch.export.load can "
                   "run code from the file) or a .fxp with custom modules (unpickled)")


def _add_model_options(p: argparse.ArgumentParser, *, plan_file: bool = True) -> None:
    """The model, plan and example-input options shared by prune / export / bench."""
    _add_model_source(p)
    if plan_file:
        p.add_argument("--plan", help="a plan JSON file (instead of the budget options)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--sparsity", type=float, help="fraction of channels to remove (default 0.5)")
    budget.add_argument("--flops", type=float, help="fraction of the dense MACs to keep")
    budget.add_argument("--params", type=float, help="fraction of the dense parameters to keep")
    p.add_argument("--criterion", default="l1")
    p.add_argument("--scope", choices=["local", "global"], help="default: the criterion's (global for cpmc, else local)")
    p.add_argument("--round-to", type=_round_to, help="kept widths become multiples of this; 'auto': the step the "
                   "backend runs well, measured (default: auto for bench / export, 1 for prune)")
    p.add_argument("--attention", choices=list(ATTENTION), default="heads",
                   help="prune attention by whole heads (default) or by the same head dims in every head")
    p.add_argument("--layer-norm", choices=list(LAYER_NORM), default="exact",
                   help="pruned LayerNorms keep the dense count (exact, default) or become nn.LayerNorm over the kept "
                        "channels (native: faster, a different function; fine-tune)")
    p.add_argument("--prune-outputs", action="store_true", help="the model's outputs may lose channels too (backbones)")
    p.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    p.add_argument("--seed", type=int, default=0)


def _byte_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    number = text.upper().rstrip("KMGIB")
    unit = text.upper()[len(number):]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a size looks like 2GB, 500MB or 1048576, got {text!r}")
    return int(value)


def _checkpoint_parsers(sub: argparse._SubParsersAction) -> None:
    rs = sub.add_parser("resolve", help="choose the kept channels (resolution.json) without building the pruned "
                                        "model; on a hf-config: model the weight scores stream from its shards")
    rs.add_argument("--model", required=True, help=MODEL_HELP)
    rs.add_argument("--weights", help="hf-config: models: the directory of safetensors shards the weight criteria "
                                      "read; other models: a state-dict file")
    budget = rs.add_mutually_exclusive_group()
    budget.add_argument("--sparsity", type=float, help="fraction of channels to remove (default 0.5)")
    budget.add_argument("--flops", type=float, help="fraction of the dense MACs to keep")
    budget.add_argument("--params", type=float, help="fraction of the dense parameters to keep")
    rs.add_argument("--criterion", default="l2")
    rs.add_argument("--round-to", type=int, default=1, help="kept widths become multiples of this")
    rs.add_argument("--uniform", action="store_true", help="one width per layer kind (every layer the same), as a "
                    "HuggingFace config needs: required by `fxprune apply`")
    rs.add_argument("--attention", choices=list(ATTENTION), default="heads",
                    help="prune attention by whole heads (default) or by the same head dims in every head")
    rs.add_argument("--ignore", nargs="*", help="module names to leave alone")
    rs.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,128 (token ids)")
    rs.add_argument("--seed", type=int, default=0)
    rs.add_argument("--out", required=True, help="the resolution JSON file to write")
    rs.set_defaults(handler="checkpoint:cmd_resolve")

    ap = sub.add_parser("apply", help="write the pruned HuggingFace checkpoint of a resolution, streaming the dense "
                                      "shards one tensor at a time (config.json rewritten)")
    ap.add_argument("--model", required=True, help="hf-config:DIR (or hf:DIR) of the dense checkpoint")
    ap.add_argument("--weights", required=True, help="directory of the dense safetensors shards")
    ap.add_argument("--resolution", required=True, help="resolution JSON (from `fxprune resolve` or `prune`)")
    ap.add_argument("--out", required=True, help="output directory of the pruned checkpoint")
    ap.add_argument("--max-shard-size", type=_byte_size, help="size of the written shards, e.g. 2GB (default: a "
                    "quarter of the largest dense shard, which bounds the memory used)")
    ap.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,128 (token ids)")
    ap.set_defaults(handler="checkpoint:cmd_apply")


def _app_parsers(sub: argparse._SubParsersAction) -> None:
    ej = sub.add_parser("explain-joints", help="train (or load) the skeleton channel-attention model and write "
                                               "per-joint importance (JSON + PNG)")
    ej.add_argument("--data", default="synthetic",
                    help="'synthetic' (generated infant movements, signal planted in known joints) or an .npz with "
                         "x (N x C x T x V) and y (N)")
    ej.add_argument("--samples", type=int, default=600, help="synthetic: number of sequences")
    ej.add_argument("--frames", type=int, default=64, help="synthetic: frames per sequence")
    ej.add_argument("--planted", nargs="+", default=["l_wrist", "r_ankle"], help="synthetic: joints carrying the class")
    ej.add_argument("--weights", help="a CPAttentionNet state dict to load instead of training")
    ej.add_argument("--epochs", type=int, default=15)
    ej.add_argument("--attention-l1", type=float, default=0.05, help="L1 weight on the joint-attention gates")
    ej.add_argument("--prune", type=float, help="also prune with the attention criterion at this sparsity")
    ej.add_argument("--top", type=int, default=8, help="rows of the printed table")
    ej.add_argument("--seed", type=int, default=0)
    ej.add_argument("--out", default="runs/joints", help="output directory")
    ej.set_defaults(handler="apps:cmd_explain_joints")

    st = sub.add_parser("stylize", help="ArtNet universal style transfer of one image (bundled sample images "
                                        "by default)")
    st.add_argument("content", nargs="?", default="skimage:astronaut",
                    help="content image file, or skimage:NAME for a scikit-image sample")
    st.add_argument("style", nargs="?", default="skimage:hubble_deep_field", help="style image (file or skimage:NAME)")
    st.add_argument("-o", "--output", default="stylized.png")
    st.add_argument("--size", type=int, default=512, help="content is resized to size x size")
    st.add_argument("--style-size", type=int, help="style resize (default: --size)")
    st.add_argument("--transform", choices=["s2", "adain", "wct"], default="s2")
    st.add_argument("--alpha", type=float, default=1.0, help="content/style blend (1: full style)")
    st.add_argument("--max-patches", type=int, default=1024, help="s2: cap on 3x3 style patches")
    st.add_argument("--encoder-weights", help="a local torchvision GoogLeNet state-dict file (never downloaded)")
    st.add_argument("--decoder-weights", help="decoder (or whole ArtNet) state-dict file; default: the bundled one")
    st.add_argument("--zero-prune", action="store_true", help="run the zero-channel-pruned model (exact)")
    st.set_defaults(handler="apps:cmd_stylize")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fxprune", description="Graph-compiler channel pruning for PyTorch.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the compiler does; tracebacks on errors")
    p.add_argument("--version", action="version", version=f"fxprune {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prune", help="prune a model and write it, its plan and resolution")
    _add_model_options(pr, plan_file=False)
    pr.add_argument("--data", choices=["none", "digits", "skeleton"], default="none",
                    help="calibration data for data-driven criteria (taylor, zero_channel, attention)")
    pr.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    pr.add_argument("--min-channels", type=int, default=1)
    pr.add_argument("--ignore", nargs="*", help="module names to leave alone")
    pr.add_argument("--no-verify", action="store_true", help="skip the pruned == masked-dense check")
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--json", action="store_true",
                    help="print the result as one JSON object on stdout (the tables then go to stderr)")
    pr.set_defaults(handler="commands:cmd_prune")

    an = sub.add_parser("analyze", help="similarity / applicability of pruning criteria and the conv-weight "
                                        "distribution assumption; writes analysis.json and PNGs")
    _add_model_source(an)
    an.add_argument("--criteria", nargs="+", default=["l1", "l2", "fpgm", "bn_scale", "taylor"])
    an.add_argument("--sparsity", type=float, default=0.5, help="pruning ratio for pruned sets and thresholds")
    an.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (tables on stderr)")
    an.add_argument("--data", choices=["none", "digits", "skeleton"], default="none",
                    help="calibration data for data-driven criteria (taylor): scikit-learn digits, resized")
    an.add_argument("--batches", type=int, default=4, help="calibration batches (of 32)")
    an.add_argument("--band", type=float, default=0.05, help="near-threshold band, relative to the threshold")
    an.add_argument("--alpha", type=float, default=0.05, help="significance level of the normality tests")
    an.add_argument("--input-shape", type=_shape, help="example input shape, e.g. 1,3,224,224")
    an.add_argument("--seed", type=int, default=0)
    an.add_argument("--out", required=True, help="output directory")
    an.set_defaults(handler="commands:cmd_analyze")

    ex = sub.add_parser("export", help="prune and export to ONNX (and a TensorRT engine on a GPU machine)")
    _add_model_options(ex)
    ex.add_argument("--onnx", required=True, help="output .onnx file (a .json export report is written beside it)")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    ex.add_argument("--batch", type=int, default=1, help="example batch (the batch axis stays dynamic)")
    ex.add_argument("--static-batch", action="store_true", help="fix the batch axis")
    ex.add_argument("--fp16", action="store_true", help="FP16 ONNX (and FP16 engine with --trt)")
    ex.add_argument("--trt", help="also build a TensorRT engine file (needs TensorRT and a GPU)")
    ex.add_argument("--max-batch", type=int, help="TensorRT profile: largest batch (default: --batch)")
    ex.add_argument("--workspace-gib", type=float, default=4.0)
    ex.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    ex.add_argument("--json", action="store_true", help="print the export report as JSON on stdout (tables on stderr)")
    ex.add_argument("--latency-backend", choices=["ort", "eager", "none"], default="ort",
                    help="where the plan is measured: round_to='auto' step and the check that the pruned model is "
                         "faster (default ort; none: not measured, round_to 1)")
    ex.set_defaults(handler="commands:cmd_export")

    be = sub.add_parser("bench", help="latency of the dense and the pruned model, same run, over backends")
    _add_model_options(be)
    be.add_argument("--latency", type=float, help="latency budget: keep this fraction of the dense latency "
                                                  "(per-layer latency table measured on --latency-backend)")
    be.add_argument("--latency-backend", choices=["ort", "eager"],
                    help="where the plan is measured: latency table, round_to='auto' step, and the check that the "
                         "pruned model is faster (default: ort if among --backend, else eager)")
    be.add_argument("--backend", nargs="+", default=["eager", "ort"],
                    help="eager, compile, ort; on CUDA: cuda-fp16, cuda-graphs, cuda-compile, ort-cuda, ort-trt, trt")
    be.add_argument("--batch", type=int, default=1)
    be.add_argument("--threads", type=int, default=0, help="threads per worker (0: all cores)")
    be.add_argument("--processes", type=int, default=3, help="separate worker processes per backend")
    be.add_argument("--iters", type=int, default=50)
    be.add_argument("--warmup", type=int, default=10)
    be.add_argument("--json", help="write the result JSON here ('-': print it on stdout, tables on stderr)")
    be.add_argument("--plot", help="write a latency-vs-MACs PNG here")
    be.set_defaults(handler="commands:cmd_bench")

    tr = sub.add_parser("train", help="train and prune to a MACs budget with a training-time method "
                                      "(also under torchrun: DDP)")
    tr.add_argument("--method", required=True, choices=["ghfp", "sfp", "hfp", "dais", "oneshot", "dense"])
    _add_model_source(tr, default="cifar:resnet20", help="model spec for 3x32x32 inputs, e.g. cifar:resnet56")
    tr.add_argument("--data", choices=["digits"], default="digits", help="scikit-learn digits at 32x32 (no download)")
    tr.add_argument("--flops", type=float, default=0.5, help="fraction of the dense MACs to keep")
    tr.add_argument("--epochs", type=int, default=10, help="epochs of the method (after any pre-training)")
    tr.add_argument("--pretrain-epochs", type=int, default=0, help="dense training before the method")
    tr.add_argument("--criterion", help="ranking criterion (default: l2 for sfp/hfp/ghfp, l1 for oneshot)")
    tr.add_argument("--scope", choices=["local", "global"])
    tr.add_argument("--search-fraction", type=float, default=0.5, help="dais: share of the epochs spent searching")
    tr.add_argument("--options", help='extra method options as JSON, e.g. \'{"soft_decay": 0.5}\'')
    tr.add_argument("--lr", type=float, default=0.1)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="output directory (result.json, model.fxp)")
    tr.set_defaults(handler="train:cmd_train")


    _checkpoint_parsers(sub)
    _app_parsers(sub)
    return p
