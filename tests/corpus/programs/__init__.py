"""The corpus programs, one module per family of sources; importing this package registers them all."""

from tests.corpus.programs import examples, generative, hf, misc, rl, tutorials  # noqa: F401
