"""Export: ONNX files (``export_onnx``) and TensorRT engine files (``build_engine``, ``EngineRunner``)."""

from .onnx import OnnxExport, export_onnx, ort_parity
from .tensorrt import EngineBuild, EngineRunner, ProfileShape, build_engine, profile_shapes, tensorrt_version

__all__ = ["EngineBuild", "EngineRunner", "OnnxExport", "ProfileShape", "build_engine", "export_onnx", "ort_parity",
           "profile_shapes", "tensorrt_version"]
