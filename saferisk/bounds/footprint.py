"""What the bound computations keep alive, measured: the constants of the memory model, read by
the engine (CROWN rows), the forward bounds and saferisk.bounds.memory (what a radius job asks
the scheduler for; torch-free, so the workflow reads it without loading torch)."""

ROW_BYTES_FACTOR = 12  # live coefficient tensors per CROWN row (branches, temporaries; measured on a ResNet-18)
# below this many entries (n x largest node) CROWN's per-neuron rows stay affordable, and on deep
# nets they are far tighter (ResNet-18 at 1x8x8: 2.2e-2 certified by CROWN, 5.8e-5 with forward
# intermediate bounds; at 1x28x28 and above CROWN ran out of time and certified nothing)
FORWARD_MIN_ENTRIES = 1 << 22
LIVE_FACTOR = 20  # forward bounds: bytes of n x the largest node, x dtype size, at peak (measured: ResNet-18, 3x32x32)
