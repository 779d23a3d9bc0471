"""The on-disk stores: the cache root, the activation cache, the results cache and the size cap."""
