"""The run layer: what each command does end to end, and the only place above ``hwnas.devices``
that opens a device.

One module per command (``search``, ``quantize``, ``export``, ``lut`` for build-lut / lut
validate, ``devices`` for measure / probe), plus what they share: ``measure`` (timing models on a
device), ``profile`` (a network's per-precision profile on a device), ``models`` (model files at a
precision: quantization parameters + writers) and ``rundir`` (reading a search run directory).
The CLI calls these; they resolve devices and LUTs, hand the search and the quantizer cost models
only, export, verify on the device and write the run directory. Importing this package imports
nothing heavy.
"""
