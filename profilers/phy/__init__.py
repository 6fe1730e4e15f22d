"""Classical MIMO link-level baselines: Gray QAM, channels, ZF/MMSE/ML detection, Monte Carlo BER.

numpy and scipy only (no TensorFlow), so the CLI and the training jobs' evaluation can use it
without loading a framework. One channel use per message (N = 1): each transmit antenna sends
one complex symbol carrying k bits.
"""
