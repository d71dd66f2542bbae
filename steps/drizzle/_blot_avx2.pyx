# The blot (_blot.pyx) compiled a second time, with AVX2 (see _native.py).
include "_blot.pyx"
