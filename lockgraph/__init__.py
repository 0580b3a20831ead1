"""lockgraph: lock-dependency verifier for the Linux kernel (lockdep logs + kernel C)."""

__version__ = "0.1.0"
