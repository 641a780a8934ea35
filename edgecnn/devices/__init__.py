"""Device profiles, detection of the machine edgecnn runs on, and the latency predictor.

>>> from edgecnn.devices import load_device, list_devices, detect_device
>>> list_devices()            # every devices/*.toml, then "host"
>>> load_device("jetson")     # alias of jetson-orin-nano
>>> from edgecnn.devices.predict import predict_latency
>>> predict_latency("resnet18", "rpi5")["latency_source"]
'predicted'

Importing this package imports neither torch nor a backend; :mod:`.predict` imports
torch (on the meta device) only to profile a network's layers.
"""

from edgecnn.devices.detect import detect_device, device_tree_model, host_profile, l4t_release
from edgecnn.devices.profile import (
    ALIASES,
    HOST,
    CalibrationPoint,
    ComputeUnit,
    DeviceProfile,
    Memory,
    Peaks,
    RuntimeSupport,
    figure_paths,
    list_devices,
    parse_profile,
    resolve_name,
)
from edgecnn.devices.registry import load_device

__all__ = [
    "ALIASES",
    "HOST",
    "CalibrationPoint",
    "ComputeUnit",
    "DeviceProfile",
    "Memory",
    "Peaks",
    "RuntimeSupport",
    "detect_device",
    "device_tree_model",
    "figure_paths",
    "host_profile",
    "l4t_release",
    "list_devices",
    "load_device",
    "parse_profile",
    "resolve_name",
]
