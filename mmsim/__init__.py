"""mmsim: a userspace simulator of the Linux memory-management subsystem."""

from .kernel import Kernel
from .vma_tree import VmaTree

__version__ = "0.1.0"
__all__ = ["Kernel", "VmaTree"]
