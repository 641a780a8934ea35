"""A fake ``tensorrt`` (TensorRT 10 API, the parts edgecnn uses): builds run ONNX Runtime."""

from __future__ import annotations

import os
from enum import Enum

import numpy as np
import onnxruntime as ort
from cuda.bindings import runtime as _cudart

__version__ = "10.3.0.30"
MAGIC = b"FAKETRT\n"


class Logger:
    WARNING = 2

    def __init__(self, *_):
        pass


class BuilderFlag(Enum):
    FP16 = 1
    INT8 = 2


class NetworkDefinitionCreationFlag(Enum):
    STRONGLY_TYPED = 5


class TensorIOMode(Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(Enum):
    FLOAT = 0


class MemoryPoolType(Enum):
    WORKSPACE = 0


def nptype(dtype):
    return {DataType.FLOAT: np.float32}[dtype]


class _Input:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _Network:
    onnx = b""

    def get_input(self, i):
        sess = ort.InferenceSession(self.onnx, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[i]
        return _Input(inp.name, tuple(d if isinstance(d, int) else -1 for d in inp.shape))


class OnnxParser:
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def parse(self, data, path=None):
        self.network.onnx = bytes(data)
        return True


class _Config:
    def set_flag(self, flag):
        pass

    def set_memory_pool_limit(self, *a):
        pass

    def add_optimization_profile(self, p):
        pass

    def create_timing_cache(self, blob):
        return _TimingCache(bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing = cache

    def get_timing_cache(self):
        return getattr(self, "timing", None)


class _TimingCache:
    def __init__(self, blob):
        self.blob = blob or b"fake timing cache"

    def serialize(self):
        return self.blob


class _Profile:
    def set_shape(self, name, lo, opt, hi):
        pass


class Builder:
    def __init__(self, logger):
        pass

    def create_network(self, flags=0):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        log = os.environ.get("FAKE_TRT_BUILDS")
        if log:
            with open(log, "a") as f:
                f.write("build\n")
        return MAGIC + network.onnx


class _Context:
    def __init__(self, engine):
        self.engine, self.addr, self.batch = engine, {}, 1

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def set_input_shape(self, name, shape):
        self.batch = shape[0]

    def get_tensor_shape(self, name):
        return (self.batch, *self.engine.shapes[name][1:])

    def execute_async_v3(self, stream):
        e = self.engine
        shape = self.get_tensor_shape(e.inp)
        n = int(np.prod(shape)) * 4
        x = np.frombuffer(bytes(_cudart.MEMORY[self.addr[e.inp]][:n]), np.float32).reshape(shape)
        for name, y in zip(e.outs, e.sess.run(e.outs, {e.inp: x}), strict=True):
            if name in self.addr:  # every graph output is an engine output, as TensorRT's parser makes it
                y = np.ascontiguousarray(y, np.float32)
                _cudart.MEMORY[self.addr[name]][: y.nbytes] = y.tobytes()
        return True


class _Engine:
    def __init__(self, onnx: bytes):
        self.sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        i = self.sess.get_inputs()[0]
        self.inp, self.outs = i.name, [o.name for o in self.sess.get_outputs()]
        self.out = self.outs[0]

        def dims(s):
            return tuple(d if isinstance(d, int) else -1 for d in s)

        self.shapes = {self.inp: dims(i.shape)}
        # TensorRT knows every output's shape after parsing; ONNX Runtime only after a run
        probe = np.zeros((1, *self.shapes[self.inp][1:]), np.float32)
        for name, y in zip(self.outs, self.sess.run(self.outs, {self.inp: probe}), strict=True):
            self.shapes[name] = (-1, *y.shape[1:])
        self.num_io_tensors = 1 + len(self.outs)

    def get_tensor_name(self, i):
        return (self.inp, *self.outs)[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.inp else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def get_tensor_profile_shape(self, name, profile):
        s = self.shapes[name][1:]
        return [(1, *s), (1, *s), (64, *s)]

    def create_execution_context(self):
        return _Context(self)


class Runtime:
    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        return _Engine(data[len(MAGIC) :]) if data.startswith(MAGIC) else None
