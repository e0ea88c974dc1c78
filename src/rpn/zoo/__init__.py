"""Gluon's model zoo: the networks the backbones are cut from, in NumPy mode
(:mod:`~rpn.zoo.networks`), and their ImageNet weights
(:mod:`~rpn.zoo.weights`)."""
