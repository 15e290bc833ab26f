"""nonn: compress a large CNN into a Network of Neural Networks for distributed IoT inference."""

__version__ = "0.1.0"
