"""Host side of the device agent: the device registry, transports and the protocol client.

Torch-free. ``open_device(name)`` gives an :class:`~hwnas.devices.client.AgentClient` for any
registered device (``local``, TCP, SSH, ``--exec`` command).
"""
