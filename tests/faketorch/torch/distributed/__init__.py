"""torch.distributed, as far as the fake torchrun needs (see torch/__init__.py here)."""
