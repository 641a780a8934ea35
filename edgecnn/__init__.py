"""edgecnn: put AlexNet, VGG16, ResNet18 and GoogLeNet on edge hardware.

``import edgecnn`` stays light: it imports no torch and no backend. Submodules
(``edgecnn.models``, ``edgecnn.data``, ``edgecnn.train``) are imported when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
