"""The platform-neutral lifecycle: ids, state store, status machine, exec fifo."""
