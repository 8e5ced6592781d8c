"""Quantization: fake quantizers, calibration, QAT, and HAQ mixed precision with device feedback.

Modules (one algorithm each): ``graph``/``convert`` (BN-folded inference graph), ``plan`` (which
tensors are integer, their grids), ``quantizers``/``calibrate``/``qnet``/``qat`` (the
fake-quantized PyTorch model), ``precision_models``/``hardware``/``profile``/``costs`` (per-
precision latency measured on the device), ``haq_env``/``ddpg``/``haq`` (HAQ, Wang et al. CVPR
2019), ``quantize``/``workflow`` (``hwnas quantize``), ``policy``/``rundir`` (files). Importing
this package imports nothing heavy.
"""
