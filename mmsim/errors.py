"""mmsim's own exception types, under one base class.

A syscall that fails raises ``OSError`` with the kernel's errno, as Python's ``os``
module does; these are for what is not a kernel answer: a malformed trace, a call the
live kernel cannot be compared on."""


class MmsimError(Exception):
    """The base class of every exception mmsim defines."""


__all__ = ["MmsimError"]
