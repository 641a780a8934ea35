"""``load_device``: a device profile by name, alias or ``.toml`` path, ``host`` included.

Above :mod:`.profile` (the TOML catalogue) and :mod:`.detect` (the ``host`` profile built from
this machine), so neither needs the other to look a device up.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.devices.detect import host_profile
from edgecnn.devices.profile import HOST, DeviceProfile, device_files, load_profile_file, resolve_name


def load_device(name: str, *, root: str | Path = "/") -> DeviceProfile:
    """The profile of device ``name`` (or alias, or a .toml path); ``host`` is built from detection.

    ``root`` is the filesystem root the host detection reads (tests pass a fake one).
    """
    if name.endswith(".toml"):
        return load_profile_file(name)
    n = resolve_name(name)
    if n == HOST:
        return host_profile(root=root)
    return load_profile_file(device_files()[n])
