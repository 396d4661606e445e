"""The rais protocol as a sans-I/O state machine.

Nothing in this package performs I/O, reads a clock or uses global
randomness: time arrives as ``now`` arguments, randomness as an injected
``random.Random``, and the outside world is reached only through effects
that the caller drains.
"""
