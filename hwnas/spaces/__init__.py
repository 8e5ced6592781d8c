"""Search spaces: torch-free geometry and encodings (``*_geometry``), and the registered
:class:`~hwnas.spaces.base.Space` implementations (``create_space(name, SpaceConfig(...))``).

Importing this package does not import torch.
"""
