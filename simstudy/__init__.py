"""simstudy: simulation and sensitivity studies of the SS-MELSM."""
__version__ = "0.1.0"
