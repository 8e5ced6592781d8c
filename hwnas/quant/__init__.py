"""Quantization: fake quantizers, calibration, QAT, and HAQ mixed precision: it produces the
quantization parameters (:class:`hwnas.graph.qparams.QuantState`) and never sees a device.

Modules (one algorithm each): ``quantizers``/``calibrate``/``qnet``/``qat`` (the fake-quantized
PyTorch model of a :mod:`hwnas.graph` graph), ``costs``/``profile`` (the latency of a policy, from
per-precision measurements the run layer made on the device), ``haq_env``/``ddpg``/``haq`` (HAQ,
Wang et al. CVPR 2019), ``quantize`` (HAQ on a searched network), ``policy`` (files). The command
``hwnas quantize`` is :mod:`hwnas.runs.quantize`. Importing this package imports nothing heavy.
"""
