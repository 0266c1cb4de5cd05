"""MFER: multiscale facial expression recognition (Xu et al., IEEE TAFFC 16(2), 2025).

The trainer library: data, model (ConvNeXt backbone, DS attention, Msc heads), losses and the
train/evaluate loop. It trains alone and never imports Ray; ``mfer_platform`` builds sweeps on it.
"""
__version__ = "0.1.0"
