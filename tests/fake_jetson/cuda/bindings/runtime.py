"""A fake ``cuda.bindings.runtime`` (cuda-python): "device memory" is a dict of bytearrays."""

from __future__ import annotations

from enum import Enum
from types import SimpleNamespace

import numpy as np

MEMORY: dict[int, bytearray] = {}


class cudaError_t(Enum):
    cudaSuccess = 0


class cudaMemcpyKind(Enum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


OK = cudaError_t.cudaSuccess


def cudaGetDevice():
    return OK, 0


def cudaGetDeviceProperties(dev):
    return OK, SimpleNamespace(name=b"Orin (fake)\0\0", major=8, minor=7)


def cudaStreamCreate():
    return OK, 1


def cudaMalloc(n):
    ptr = 0x1000 * (len(MEMORY) + 1)
    MEMORY[ptr] = bytearray(n)
    return OK, ptr


def cudaMemcpyAsync(dst, src, n, kind, stream):
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        MEMORY[dst][:n] = np.ascontiguousarray(src).view(np.uint8).reshape(-1)[:n].tobytes()
    else:
        dst.view(np.uint8).reshape(-1)[:n] = np.frombuffer(bytes(MEMORY[src][:n]), np.uint8)
    return (OK,)


def cudaStreamSynchronize(stream):
    return (OK,)


def cudaFree(ptr):
    MEMORY.pop(ptr, None)
    return (OK,)


def cudaStreamDestroy(stream):
    return (OK,)
