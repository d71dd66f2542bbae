# The drizzle core (_core.pyx) compiled a second time, with AVX2 (see _native.py).
include "_core.pyx"
