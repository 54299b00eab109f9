"""The ``vm config`` model: :class:`VMConfig` and its netspec, bondspec and diskspec parts."""
