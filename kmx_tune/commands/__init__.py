"""One module per command. Each parses its options, makes one core call and renders
the result. Keep imports of heavy modules (numpy, rich, cpuinfo) inside the functions
so that ``kmx-tune --help`` stays fast."""
