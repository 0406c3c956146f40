"""The VM machine manager (QEMU + SSH) used on macOS and Windows."""
