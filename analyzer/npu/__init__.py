"""NPU compilers: Arm Ethos-U through Vela."""
